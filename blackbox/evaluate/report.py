"""The comparison report: the paper's Tables 1 and 2, success and queries, and its figures.

Built from ``results.csv`` alone, so it can be rebuilt at any time (``python -m blackbox.report
run=RUN_DIR``). Figures: the per-image shift histogram (the paper's Fig. 3), success against queries
for the black-box methods beside the white-box rates, and an example grid of original against
adversarial images with their crops (Fig. 4). The tables are built by
:mod:`blackbox.evaluate.report_tables`, the figures by :mod:`blackbox.evaluate.report_figures`; a
comparison split over processes is merged by :mod:`blackbox.evaluate.merge`.
"""

from __future__ import annotations

import csv
import sys
from collections.abc import Mapping
from pathlib import Path

from blackbox.evaluate.merge import MergeError, merge
from blackbox.evaluate.report_figures import write_figures
from blackbox.evaluate.report_tables import (
    _mean,
    bisection_note,
    bisection_queries,
    crop_rate,
    method_eps_table,
    ordered,
    smallest_success,
    success_rate,
)
from blackbox.evaluate.selection import SelectionReport
from blackbox.experiment.record import parse_csv_row as parse_row
from blackbox.experiment.run_folder import stored_settings


def write_report(
    run_dir: Path,
    raw_rows: list[Mapping[str, str]],
    selection: SelectionReport | None,
    skipped: Mapping,
    cfg: Mapping,
) -> str:
    """Write ``report.md`` and the figures; return the report's Markdown."""
    rows = [parse_row(r) for r in raw_rows]
    sweep = [r for r in rows if not r["bisection"]]
    methods = ordered([str(r["method"]) for r in sweep])
    eps_list = sorted({float(r["eps"]) for r in sweep})  # type: ignore[arg-type]
    images = ordered([str(r["image"]) for r in sweep])
    first = sweep[0] if sweep else {}
    lines = [
        "# Comparison report",
        "",
        f"Target attacked: `{first.get('target', '-')}`; measured on: `{first.get('measure', '-')}`; "
        f"images: {len(images)}; black-box budget: {cfg.get('budget', '-')} queries; "
        f"norm: {cfg.get('norm', 'l2')}.",
        "Success: the measured salient point lands in the goal; images whose clean salient point was already "
        "there are left out of success rates and smallest sizes.",
        "",
    ]
    if selection is not None:
        lines += [selection.markdown(), ""]
    if skipped:
        lines += [f"Skipped ({len(skipped)}): see `selection.json`.", ""]
    if not sweep:
        lines.append("No attack finished: nothing to report.")
    else:
        lines += [
            "## Peak shift, % of the peak-to-target distance (the paper's Table 1)",
            "",
            method_eps_table(
                sweep,
                methods,
                eps_list,
                lambda s: _mean([float(v) for r in s if (v := r["shift_pct_distance"]) is not None]),
                "{:.1f}",
            ),
            "",
            "## Peak shift, % of the image width (the paper's Table 2)",
            "",
            method_eps_table(
                sweep,
                methods,
                eps_list,
                lambda s: _mean([float(v) for r in s if (v := r["shift_pct_width"]) is not None]),
                "{:.1f}",
            ),
            "",
            "## Success rate, %",
            "",
            method_eps_table(sweep, methods, eps_list, success_rate, "{:.0f}"),
            "",
            "## Crops showing the goal, % of (image, aspect ratio) pairs",
            "",
            method_eps_table(sweep, methods, eps_list, crop_rate, "{:.0f}"),
            "",
            "## Mean target queries per attack (black-box: spent; white-box: 1, the final check)",
            "",
            "One attack at one size; the white-box bisection's extra checks are counted in the next table.",
            "",
            method_eps_table(
                sweep, methods, eps_list, lambda s: _mean([float(r["queries"]) for r in s]), "{:.1f}"
            ),
            "",
            "## Mean SSIM of the adversarial image",
            "",
            method_eps_table(
                sweep, methods, eps_list, lambda s: _mean([float(r["ssim"]) for r in s]), "{:.4f}"
            ),
            "",
        ]
        table = smallest_success(rows, methods)
        lines += [
            "## Mean target queries per image, every size together",
            "",
            "Sweep: one attack per size in `eps_list`; bisection: the white-box search for the smallest "
            "successful eps, one target check per step. The clean image's query (the goal) is not counted.",
            "",
            bisection_queries(rows, methods),
            "",
            "## Smallest successful perturbation, L2 (white-box: bisection on eps; black-box: the sweep)",
            "",
            table,
            "",
        ]
        note = bisection_note(rows, methods, cfg.get("smallest_eps", {}).get("bisection_steps", "?"))
        if note:
            lines += [f"Note: {note}", ""]
        lines += [f"![{name}]({name})" for name in write_figures(run_dir, sweep, methods, eps_list, cfg)]
    report = "\n".join(lines) + "\n"
    (run_dir / "report.md").write_text(report)
    return report


def rebuild(run_dir: Path, merge_parts: list[Path] | None = None) -> int:
    """Rebuild a comparison's report from its results.csv, and print it; the exit code.

    With ``merge_parts``: merge a comparison split over several processes (one folder each, its own
    images; see :func:`merge`) into ``run_dir`` and report on it. A folder without results, or parts
    that do not merge, print the reason and give 2.
    """
    if merge_parts is not None:
        try:
            rows, skipped, cfg = merge(run_dir, merge_parts)
        except (MergeError, ValueError) as error:
            print(f"error: {error}", file=sys.stderr)
            return 2
        print(write_report(run_dir, rows, None, skipped, cfg))
        return 0
    if not (run_dir / "results.csv").exists():
        print(f"error: {run_dir} has no results.csv (is it a compare run folder?)", file=sys.stderr)
        return 2

    cfg = stored_settings(run_dir)
    with (run_dir / "results.csv").open(newline="") as handle:
        raw = list(csv.DictReader(handle))
    print(write_report(run_dir, raw, None, {}, cfg))  # type: ignore[arg-type]
    return 0
