"""``python -m blackbox.robustness targets=[...] eps_list=[...] budget=N``: the cropper robustness
report (the code: :mod:`blackbox.evaluate.robustness`).
"""

from __future__ import annotations

import sys
from pathlib import Path

import hydra
from hydra.core.hydra_config import HydraConfig
from omegaconf import DictConfig

from blackbox.experiment.run import EXIT_BAD_CONFIG
from blackbox.experiment.run_folder import discard_if_unused
from blackbox.settings.commands import robustness
from blackbox.settings.preflight import expand_home, preflight, wants_preflight
from targets import UserError


@hydra.main(version_base="1.3", config_path="../conf", config_name="robustness")
def main(cfg: DictConfig) -> None:
    run_dir = Path(HydraConfig.get().runtime.output_dir)
    try:
        code = robustness(cfg, run_dir)
    except UserError as error:
        print(f"error: {error}", file=sys.stderr)
        discard_if_unused(run_dir)  # leave no empty run folder behind
        sys.exit(EXIT_BAD_CONFIG)
    sys.exit(code)


if __name__ == "__main__":
    # The same checks as `python -m blackbox`, before Hydra makes the run folder: a bad setting
    # leaves nothing behind.
    sys.argv[1:] = expand_home(sys.argv[1:])
    if wants_preflight(sys.argv[1:]):
        try:
            preflight(sys.argv[1:], config_name="robustness")
        except UserError as error:
            print(f"error: {error}", file=sys.stderr)
            sys.exit(EXIT_BAD_CONFIG)
    main()
