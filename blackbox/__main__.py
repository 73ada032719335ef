"""``python -m blackbox target=<name> budget=<queries> ...``: the main entry (Hydra)."""

from __future__ import annotations

import sys
from pathlib import Path

import hydra
from hydra.core.hydra_config import HydraConfig
from hydra.errors import InstantiationException
from omegaconf import DictConfig

from blackbox.config_checks import ConfigError
from blackbox.goal import GoalError
from blackbox.images import ImageLoadError
from blackbox.run import EXIT_BAD_CONFIG, run
from blackbox.search_space import SearchSpaceError
from blackbox.zoo import UnknownTargetError
from targets.vxm import VxmFormatError
from targets.weights import MissingModelFileError

# Errors that mean "a setting or an input is wrong": one line saying what to do, exit code 2.
USER_ERRORS = (
    ConfigError,
    GoalError,
    ImageLoadError,
    SearchSpaceError,
    MissingModelFileError,
    UnknownTargetError,
    VxmFormatError,
)


@hydra.main(version_base="1.3", config_path="../conf", config_name="config")
def main(cfg: DictConfig) -> None:
    hydra_cfg = HydraConfig.get()
    target_name = hydra_cfg.runtime.choices.get("target", "target")
    try:
        summary = run(cfg, Path(hydra_cfg.runtime.output_dir), target_name=target_name)
    except USER_ERRORS as error:
        print(f"error: {error}", file=sys.stderr)
        sys.exit(EXIT_BAD_CONFIG)
    except InstantiationException as error:
        # Hydra wraps what a target's constructor raises (a missing model file, a bad setting).
        if not isinstance(error.__cause__, (*USER_ERRORS, ValueError)):
            raise
        print(f"error: {error.__cause__}", file=sys.stderr)
        sys.exit(EXIT_BAD_CONFIG)
    sys.exit(summary.exit_code)


if __name__ == "__main__":
    main()
