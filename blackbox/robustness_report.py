"""``python -m blackbox.robustness_report run=RUN_DIR``: rebuild a robustness report from its results.csv.

The code lives in :mod:`blackbox.evaluate.robustness_report`; this file is the ``python -m`` entry point.
"""

import sys
from pathlib import Path

from blackbox.evaluate.robustness_report import rebuild
from blackbox.settings.arguments import Setting, run_command

SETTINGS = (
    Setting("run", "the robustness run folder python -m blackbox.robustness printed", Path, required=True),
)


def main(argv: list[str] | None = None) -> int:
    return run_command(
        lambda args: rebuild(args["run"]),
        argv,
        SETTINGS,
        prog="python -m blackbox.robustness_report",
        description=__doc__ or "",
    )


if __name__ == "__main__":
    sys.exit(main())
