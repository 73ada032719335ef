"""``python -m blackbox.distill [student=surrogate|deepgaze] ...``: train a student of a target from its
answers (the code: :mod:`blackbox.training`).
"""

from __future__ import annotations

import sys
from pathlib import Path

import hydra
from hydra.core.hydra_config import HydraConfig
from omegaconf import DictConfig

from blackbox.core.extras import import_pysaliency
from blackbox.training.distill import EXIT_INTERRUPTED, distill
from targets import UserError


@hydra.main(version_base="1.3", config_path="../conf", config_name="distill")
def main(cfg: DictConfig) -> None:
    try:
        summary = distill(cfg, Path(HydraConfig.get().runtime.output_dir))
    except UserError as error:
        print(f"error: {error}", file=sys.stderr)
        sys.exit(2)
    sys.exit(EXIT_INTERRUPTED if summary.interrupted else 0)


if __name__ == "__main__":
    try:  # before Hydra makes a run folder: without pysaliency nothing can be measured
        import_pysaliency("python -m blackbox.distill")
    except UserError as error:
        print(f"error: {error}", file=sys.stderr)
        sys.exit(2)
    main()
