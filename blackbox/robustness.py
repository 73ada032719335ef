"""``python -m blackbox.robustness targets=[...] eps_list=[...] budget=N``: the cropper robustness
report (the code: :mod:`blackbox.evaluate.robustness`).
"""

from __future__ import annotations

import sys

import hydra
from omegaconf import DictConfig

from blackbox.experiment.run import EXIT_BAD_CONFIG
from blackbox.experiment.run_folder import discard_if_unused
from blackbox.settings.commands import robustness
from blackbox.settings.hydra_run import record_of, run_dir
from blackbox.settings.preflight import check_planned_folder, expand_home, preflight, wants_preflight
from targets import UserError


@hydra.main(version_base="1.3", config_path="../conf", config_name="robustness")
def main(cfg: DictConfig) -> None:
    try:
        code = robustness(cfg, run_dir(), record=record_of())
    except UserError as error:
        print(f"error: {error}", file=sys.stderr)
        discard_if_unused(run_dir())  # leave no empty run folder behind
        sys.exit(EXIT_BAD_CONFIG)
    sys.exit(code)


if __name__ == "__main__":
    # The same checks as `python -m blackbox`, before Hydra makes the run folder: a bad setting
    # leaves nothing behind.
    sys.argv[1:] = expand_home(sys.argv[1:])
    if wants_preflight(sys.argv[1:]):
        try:
            preflight(sys.argv[1:], config_name="robustness")
            check_planned_folder(sys.argv[1:], config_name="robustness")
        except UserError as error:
            print(f"error: {error}", file=sys.stderr)
            sys.exit(EXIT_BAD_CONFIG)
    main()
