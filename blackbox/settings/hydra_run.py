"""The Hydra run an attacking command is in: its folder, and the record of its settings it writes.

Hydra itself writes nothing in a run folder (``hydra.output_subdir: null`` in ``conf/config.yaml``):
a run the folder refuses (other settings, another process there, a read-only disk) must leave a
finished folder as it was. :func:`record_of` gives the command what writes the record once the
folder has accepted the run (:func:`~blackbox.experiment.run_folder.record_settings`).
"""

from __future__ import annotations

from collections.abc import Callable
from functools import partial
from pathlib import Path

from hydra.core.hydra_config import HydraConfig
from omegaconf import DictConfig

from blackbox.experiment.run_folder import record_settings


def run_dir() -> Path:
    """The folder Hydra gave this run (``hydra.run.dir``, or a sweep job's folder)."""
    return Path(HydraConfig.get().runtime.output_dir)


def record_of() -> Callable[[DictConfig], None]:
    """What writes ``.hydra/config.yaml`` (the config it is given: the run's, with ``attack=auto`` and
    ``search=auto`` resolved, :mod:`blackbox.settings.auto`), ``overrides.yaml`` and ``hydra.yaml`` in
    :func:`run_dir`."""
    hydra = HydraConfig.get()
    return partial(record_settings, run_dir(), overrides=list(hydra.overrides.task), hydra=hydra)
