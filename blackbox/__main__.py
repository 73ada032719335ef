"""``python -m blackbox target=<name> budget=<queries> ...``: the main entry (Hydra)."""

from __future__ import annotations

import sys

import hydra
from hydra.core.hydra_config import HydraConfig
from hydra.types import RunMode
from omegaconf import DictConfig

from blackbox.experiment.run import EXIT_BAD_CONFIG, EXIT_NOTHING_DONE, EXIT_SKIPPED
from blackbox.experiment.run_folder import discard_if_unused
from blackbox.settings.commands import run
from blackbox.settings.hydra_run import record_of, run_dir
from blackbox.settings.preflight import check_planned_folder, expand_home, preflight, wants_preflight
from targets import UserError

# A sweep's exit code: the most serious of its jobs' (a bad setting, then nothing done, then skips).
_SEVERITY = (EXIT_BAD_CONFIG, EXIT_NOTHING_DONE, EXIT_SKIPPED)
_sweep_codes: list[int] = []


@hydra.main(version_base="1.3", config_path="../conf", config_name="config")
def main(cfg: DictConfig) -> int:
    hydra_cfg = HydraConfig.get()
    target_name = hydra_cfg.runtime.choices.get("target", "target")
    try:
        code = run(cfg, run_dir(), target_name=target_name, record=record_of()).exit_code
    except UserError as error:
        print(f"error: {error}", file=sys.stderr)
        code = EXIT_BAD_CONFIG
        # Nothing attacked: leave no empty run folder behind (the dashboard would pick it).
        discard_if_unused(run_dir())
    if hydra_cfg.mode != RunMode.MULTIRUN:
        sys.exit(code)
    # Exiting here would end a -m sweep after its first job (and kill joblib's other jobs). Jobs run
    # by an out-of-process launcher (joblib) report only through their own runs' files.
    # The sweep's combined table comes from blackbox.settings.sweep_table.SweepTable, a Hydra callback.
    _sweep_codes.append(code)
    return code


def sweep_exit_code(codes: list[int]) -> int:
    return next((code for code in _SEVERITY if code in codes), 0)


if __name__ == "__main__":
    sys.argv[1:] = expand_home(sys.argv[1:])  # dataset.path=~/photos, as the README writes it
    # Settings and the run folder are checked before Hydra makes or touches the folder: a bad
    # setting, or a run the folder refuses, leaves nothing behind.
    if wants_preflight(sys.argv[1:]):
        try:
            preflight(sys.argv[1:])
            check_planned_folder(sys.argv[1:])
        except UserError as error:
            print(f"error: {error}", file=sys.stderr)
            sys.exit(EXIT_BAD_CONFIG)
    main()
    sys.exit(sweep_exit_code(_sweep_codes))
