"""Merging a comparison split over processes: each part run in its own folder on its own images,
gathered into one run folder (``python -m blackbox.report run=OUT merge=[PART,...]``).
"""

from __future__ import annotations

import csv
import json
from collections.abc import Sequence
from pathlib import Path

from blackbox.experiment.run_folder import stored_settings
from targets import UserError

# Settings that may differ between the parts of one comparison: which images, where, how shown.
PART_SETTINGS = ("image", "dataset", "progress", "torch_threads", "worker")


class MergeError(UserError, ValueError):
    """Parts that cannot make one comparison; the message says which and why."""


def merge(out: Path, parts: Sequence[Path]) -> tuple[list[dict], dict, dict]:
    """Gather the parts of one comparison split over processes into ``out``.

    Split a comparison by images: run each part in its own folder with its own ``dataset.names``
    (or ``image=``/``dataset.path``), everything else equal; then merge. ``results.csv`` rows,
    ``clean/`` and ``adversarial/`` are gathered into ``out`` (which must be new or empty); the parts
    are left as they are. Returns the rows, the merged ``skipped`` reasons and the first part's
    settings. Raises :class:`MergeError` if a part is not a compare folder, the parts' settings
    differ beyond :data:`PART_SETTINGS`, or two parts attacked the same image with the same method
    and eps.
    """
    import shutil

    from blackbox.evaluate.compare import ResultsTable

    if out.exists() and any(out.iterdir()):
        raise MergeError(f"{out} is not empty: merge into a new folder (nothing there is overwritten)")
    if not parts:
        raise MergeError("name the parts to merge: python -m blackbox.report run=OUT merge=[PART,...]")
    settings, rows, skipped, seen = None, [], {}, {}
    for part in parts:
        config_path = part / ".hydra" / "config.yaml"
        if not (part / "results.csv").exists() or not config_path.exists():
            raise MergeError(f"{part} is not a compare run folder (results.csv and .hydra/config.yaml)")
        cfg = stored_settings(part)
        shared = {k: v for k, v in cfg.items() if k not in PART_SETTINGS}
        if settings is None:
            settings, first_cfg, first = shared, cfg, part
        elif shared != settings:
            keys = sorted(k for k in {*shared, *settings} if shared.get(k) != settings.get(k))
            raise MergeError(
                f"{part} and {first} were run with other settings ({', '.join(keys)}): only the images "
                f"({', '.join(PART_SETTINGS)}) may differ between the parts of one comparison"
            )
        for row in ResultsTable(part / "results.csv").rows:
            key = ResultsTable.key(row["image"], row["method"], float(row["eps"]), row["bisection"] == "True")
            if key in seen:
                raise MergeError(
                    f"{seen[key]} and {part} both attacked {row['image']!r} with {row['method']} at "
                    f"eps {float(row['eps']):g}: give each part its own images (dataset.names=[...])"
                )
            seen[key] = part
            rows.append(row)
        selection = part / "selection.json"
        if selection.exists():
            skipped.update(json.loads(selection.read_text()).get("skipped", {}))
    out.mkdir(parents=True, exist_ok=True)
    shutil.copytree(first / ".hydra", out / ".hydra")
    for part in parts:
        for folder in ("clean", "adversarial"):
            if (part / folder).is_dir():
                shutil.copytree(part / folder, out / folder, dirs_exist_ok=True)
    from blackbox.evaluate.compare import COLUMNS

    with (out / "results.csv").open("w", newline="") as handle:
        writer = csv.DictWriter(handle, fieldnames=COLUMNS)
        writer.writeheader()
        writer.writerows({k: row.get(k) for k in COLUMNS} for row in rows)
    merged = {"skipped": skipped, "merged_from": [str(p) for p in parts]}
    (out / "selection.json").write_text(json.dumps(merged, indent=2))
    return rows, skipped, first_cfg
