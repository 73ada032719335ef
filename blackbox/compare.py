"""``python -m blackbox.compare target=<name> methods=[...] eps_list=[...] budget=N``: white-box and
black-box attacks on one dataset (the code: :mod:`blackbox.evaluate.compare`,
its settings: :func:`blackbox.settings.commands.compare`).
"""

from __future__ import annotations

import sys
from pathlib import Path

import hydra
from hydra.core.hydra_config import HydraConfig
from omegaconf import DictConfig

from blackbox.experiment.run import EXIT_BAD_CONFIG
from blackbox.experiment.run_folder import discard_if_unused
from blackbox.settings.commands import compare
from blackbox.settings.preflight import expand_home, preflight, wants_preflight
from targets import UserError


@hydra.main(version_base="1.3", config_path="../conf", config_name="compare")
def main(cfg: DictConfig) -> None:
    hydra_cfg = HydraConfig.get()
    target_name = hydra_cfg.runtime.choices.get("target", "target")
    try:
        code = compare(cfg, Path(hydra_cfg.runtime.output_dir), target_name=target_name)
    except UserError as error:
        print(f"error: {error}", file=sys.stderr)
        discard_if_unused(Path(hydra_cfg.runtime.output_dir))  # leave no empty run folder behind
        sys.exit(EXIT_BAD_CONFIG)
    sys.exit(code)


if __name__ == "__main__":
    # The same checks as `python -m blackbox`, before Hydra makes the run folder: a bad setting
    # leaves nothing behind.
    sys.argv[1:] = expand_home(sys.argv[1:])  # dataset.path=~/CAT2000, as the README writes it
    if wants_preflight(sys.argv[1:]):
        try:
            preflight(sys.argv[1:], config_name="compare")
        except UserError as error:
            print(f"error: {error}", file=sys.stderr)
            sys.exit(EXIT_BAD_CONFIG)
    main()
