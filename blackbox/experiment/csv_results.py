"""``results.csv``: an append-only table of finished attacks, written row by row and read back checked.

Used by ``blackbox.evaluate.compare`` (one row per image, method and eps) and
``blackbox.evaluate.robustness`` (one row per target, image and eps). Each row is appended and
flushed as its attack ends, so an interrupted run loses none and a re-run of the same folder
resumes from the rows there.
"""

from __future__ import annotations

import csv
from collections.abc import Sequence
from pathlib import Path

from blackbox.experiment.jsonl import repair_torn_tail
from targets import ConfigError


class CsvResults:
    """The rows of ``path`` (``dict[str, str]`` each, as :mod:`csv` reads them), and more appended.

    ``columns`` are written in this order; ``required`` must be non-empty in every row read back,
    ``flags`` must read ``True`` or ``False`` and ``numbers`` must parse as floats.

    Raises:
        ConfigError: an existing row is not whole (a damaged or edited file), naming its line.
    """

    def __init__(
        self,
        path: Path,
        *,
        columns: Sequence[str],
        required: Sequence[str],
        flags: Sequence[str] = (),
        numbers: Sequence[str] = ("eps",),
    ) -> None:
        self.path = path
        self.columns = tuple(columns)
        self.required, self.flags, self.numbers = tuple(required), tuple(flags), tuple(numbers)
        self.rows: list[dict] = []
        if path.exists():
            repair_torn_tail(path)  # a row cut off by a crash is set aside, not read as a result
            with path.open(newline="") as handle:
                reader = csv.DictReader(handle)
                for row in reader:
                    self._check(reader.line_num, row)
                    self.rows.append(row)

    def _check(self, line: int, row: dict) -> None:
        missing = [k for k in self.required if not row.get(k)]
        problem = None
        if missing or None in row or any(v is None for v in row.values()):
            problem = f"missing {', '.join(missing)}" if missing else "a different number of columns"
        else:
            for key in self.flags:
                if row[key] not in ("True", "False"):
                    problem = f"{key} is {row[key]!r}, not True or False"
                    break
            else:
                for key in self.numbers:
                    try:
                        float(row[key])
                    except ValueError:
                        problem = f"{key} is {row[key]!r}, not a number"
                        break
        if problem:
            raise ConfigError(
                f"{self.path}, line {line} is not a whole results row ({problem}): the file was damaged "
                "or edited. Fix or delete that line and re-run the same command (a deleted row is "
                "attacked again), or re-run in a new folder (hydra.run.dir=...)"
            )

    def append(self, row: dict) -> None:
        """Write ``row`` (its ``columns``; missing ones empty) at once, the header first in a new file."""
        new_file = not self.path.exists()
        with self.path.open("a", newline="") as handle:
            writer = csv.DictWriter(handle, fieldnames=self.columns)
            if new_file:
                writer.writeheader()
            writer.writerow({k: row.get(k) for k in self.columns})
        self.rows.append({k: str(row.get(k)) for k in self.columns})
