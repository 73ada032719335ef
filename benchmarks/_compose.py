"""Compose the run configuration as ``python -m blackbox`` does, for in-process benchmarks.

The benchmarks written for the patch search (``attack=blackbox``, with ``search=`` and ``sampler=``)
measure it under L2 alone, with ``search=blobs`` the default their figures were taken with (before
``search=auto``), as their figures say: :func:`compose_run` starts from ``attack=blackbox eps_inf=null
search=blobs``, and an override of any (``attack=square``, ``eps_inf=4``, ``search=grid``) wins, as
Hydra's last value does. The default attack under the cap has its own benchmark, :mod:`benchmarks.invisible`.
"""

from __future__ import annotations

from pathlib import Path

from hydra import compose, initialize_config_dir
from omegaconf import DictConfig

CONF = Path(__file__).resolve().parents[1] / "conf"
PATCH_SEARCH = ["attack=blackbox", "eps_inf=null", "search=blobs"]


def compose_run(overrides: list[str]) -> DictConfig:
    with initialize_config_dir(config_dir=str(CONF), version_base="1.3"):
        return compose(config_name="config", overrides=[*PATCH_SEARCH, *overrides])
