"""``python -m blackbox target=<name> budget=<queries> ...``: the main entry (Hydra)."""

from __future__ import annotations

import sys
from pathlib import Path

import hydra
from hydra.core.hydra_config import HydraConfig
from hydra.types import RunMode
from omegaconf import DictConfig

from blackbox.run import EXIT_BAD_CONFIG, USER_ERRORS, run


@hydra.main(version_base="1.3", config_path="../conf", config_name="config")
def main(cfg: DictConfig) -> int:
    hydra_cfg = HydraConfig.get()
    target_name = hydra_cfg.runtime.choices.get("target", "target")
    try:
        code = run(cfg, Path(hydra_cfg.runtime.output_dir), target_name=target_name).exit_code
    except USER_ERRORS as error:
        print(f"error: {error}", file=sys.stderr)
        code = EXIT_BAD_CONFIG
    if hydra_cfg.mode == RunMode.MULTIRUN:
        return code  # sys.exit here would end a -m sweep after its first job (and kill joblib's others)
    sys.exit(code)


if __name__ == "__main__":
    main()
