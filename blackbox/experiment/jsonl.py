"""JSON-lines files that survive a crash: whole lines on disk, a torn last line set aside, not lost.

A line is appended with one ``write`` and ``fsync``ed before the run moves on, so a killed process
leaves every earlier line intact. Power loss or a full disk can still leave a partial last line:
:func:`repair_torn_tail` moves those bytes to ``<file>.torn`` (appended, never overwritten) and warns,
so the file parses again and nothing is thrown away.
"""

from __future__ import annotations

import json
import os
import sys
from pathlib import Path

from targets import UserError


class JsonlError(UserError, ValueError):
    """A line in the middle of a JSON-lines file is not JSON: the file was edited or damaged."""


def append_record(path: Path, record: dict) -> None:
    """Append one JSON line and make it durable before returning."""
    data = (json.dumps(record, allow_nan=False) + "\n").encode()
    with path.open("ab") as handle:
        handle.write(data)
        handle.flush()
        os.fsync(handle.fileno())


def repair_torn_tail(path: Path) -> bool:
    """Move a last line without its newline to ``<path>.torn``; say so on stderr. True if one was."""
    if not path.exists():
        return False
    with path.open("rb+") as handle:
        size = handle.seek(0, os.SEEK_END)
        if size == 0:
            return False
        handle.seek(size - 1)
        if handle.read(1) == b"\n":
            return False
        handle.seek(0)
        data = handle.read()
        keep = data.rfind(b"\n") + 1
        torn = path.with_name(path.name + ".torn")
        with torn.open("ab") as aside:
            aside.write(data[keep:])
            aside.flush()
            os.fsync(aside.fileno())
        handle.truncate(keep)
    print(
        f"warning: {path} ended in a partial line (a write cut off by a crash); its {size - keep} bytes "
        f"were moved to {torn} and the rest of the file is used",
        file=sys.stderr,
    )
    return True


def read_records(path: Path) -> list[dict]:
    """Every record of a JSON-lines file (none if it does not exist), after repairing a torn tail."""
    if not path.exists():
        return []
    repair_torn_tail(path)
    records = []
    for number, line in enumerate(path.read_text().splitlines(), start=1):
        if not line.strip():
            continue
        try:
            records.append(json.loads(line))
        except json.JSONDecodeError as error:
            raise JsonlError(
                f"{path}, line {number} is not JSON ({error.msg}); fix or delete that line, or re-run "
                "in a new folder (hydra.run.dir=...)"
            ) from error
    return records


def check_lines(path: Path, what: str, remedy: str) -> None:
    """Every complete line of ``path`` is JSON; else raise :class:`JsonlError` naming the line.

    A last line still being written (no newline yet) is left alone: readers open files a live run
    writes. ``what`` names the file's kind in the message; ``remedy`` says what to do.
    """
    if not path.exists():
        return
    with path.open("rb") as handle:
        for number, line in enumerate(handle, start=1):
            if not line.endswith(b"\n") or not line.strip():
                continue
            try:
                json.loads(line)
            except (json.JSONDecodeError, UnicodeDecodeError) as error:
                reason = getattr(error, "msg", None) or str(error)
                raise JsonlError(
                    f"{path}, line {number} is not a whole {what} ({reason}): the file was damaged after "
                    f"it was written (a copy cut short, a disk error, an edit). {remedy}"
                ) from None
