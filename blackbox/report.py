"""``python -m blackbox.report run=RUN_DIR [merge=[PART,...]]``: rebuild a comparison's report.

``run=`` a compare run folder: its report.md and figures are rebuilt from its results.csv. With
``merge=[PART,...]``: the parts of a comparison split over several processes (one folder each, its
own images) are merged into ``run=`` and reported on (:func:`blackbox.evaluate.merge.merge`).
"""

import sys
from pathlib import Path

from blackbox.evaluate.report import rebuild
from blackbox.settings.arguments import Setting, paths, run_command

SETTINGS = (
    Setting("run", "the compare run folder (with merge=: the folder to merge into)", Path, required=True),
    Setting("merge", "the part folders to merge, [runs/part1,runs/part2]", paths),
)


def main(argv: list[str] | None = None) -> int:
    def report(args: dict) -> int:
        return rebuild(args["run"], args["merge"])

    return run_command(report, argv, SETTINGS, prog="python -m blackbox.report", description=__doc__ or "")


if __name__ == "__main__":
    sys.exit(main())
