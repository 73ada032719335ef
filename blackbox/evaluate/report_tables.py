"""The comparison report's tables, as Markdown: a statistic per method and eps (the paper's Tables 1 and
2, success, crops showing the goal, queries, SSIM), the smallest successful perturbation per image, and
the queries the white-box eps bisection spent. Rows are ``results.csv`` rows as
:func:`blackbox.experiment.record.parse_csv_row` reads them.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Sequence

import numpy as np

FloatRow = dict[str, object]


def ordered(values: Sequence[str]) -> list[str]:
    """``values`` without repeats, in the order they first appear (images and methods as attacked)."""
    return list(dict.fromkeys(values))


def _mean(values: list[float]) -> float:
    return float(np.mean(values)) if values else math.nan


def _cell(value: float, fmt: str = "{:.1f}") -> str:
    return "-" if value is None or (isinstance(value, float) and math.isnan(value)) else fmt.format(value)


def method_eps_table(
    rows: list[FloatRow],
    methods: list[str],
    eps_list: list[float],
    statistic: Callable[[list[FloatRow]], float],
    fmt: str,
) -> str:
    header = "| method | " + " | ".join(f"{e:g}" for e in eps_list) + " |"
    lines = [header, "|---|" + "---|" * len(eps_list)]
    for method in methods:
        cells = []
        for eps in eps_list:
            subset = [r for r in rows if r["method"] == method and r["eps"] == eps]
            cells.append(_cell(statistic(subset), fmt) if subset else "-")
        lines.append(f"| {method} | " + " | ".join(cells) + " |")
    return "\n".join(lines)


def success_rate(rows: list[FloatRow]) -> float:
    """Percent of successes among images not already in the goal when clean."""
    attacked = [r for r in rows if not r["clean_in_goal"]]
    return 100.0 * _mean([float(bool(r["success"])) for r in attacked]) if attacked else math.nan


def crop_rate(rows: list[FloatRow]) -> float:
    shown = sum(float(r["crops_showing_goal"] or 0) for r in rows)
    total = sum(float(r["crops"] or 0) for r in rows)
    return 100.0 * shown / total if total else math.nan


def smallest_success(rows: list[FloatRow], methods: list[str]) -> str:
    """Per image and method, the smallest L2 of a successful adversarial image (bisection included)."""
    images = ordered([str(r["image"]) for r in rows])
    header = "| image | " + " | ".join(methods) + " |"
    lines = [header, "|---|" + "---|" * len(methods)]
    per_method: dict[str, list[float]] = {m: [] for m in methods}
    for image in images:
        cells = []
        for method in methods:
            l2 = [
                float(r["l2"])
                for r in rows
                if r["image"] == image and r["method"] == method and r["success"] and not r["clean_in_goal"]
            ]
            if l2:
                per_method[method].append(min(l2))
            cells.append(f"{min(l2):.2f}" if l2 else "-")
        lines.append(f"| {image} | " + " | ".join(cells) + " |")
    means = {m: _mean(v) for m, v in per_method.items()}
    counts = {m: len(v) for m, v in per_method.items()}
    lines.append(
        "| **mean (images)** | "
        + " | ".join(f"{_cell(means[m], '{:.2f}')} ({counts[m]})" for m in methods)
        + " |"
    )
    return "\n".join(lines)


def bisection_note(rows: list[FloatRow], methods: list[str], steps: object) -> str:
    """What the smallest-L2 table's white-box cells are: where the eps bisection stopped.

    Per white-box method, the mean width of the eps bracket left between the largest size that
    failed below the smallest success (0 if none) and that success: the true smallest eps lies in it.
    """
    white = [m for m in methods if any(r["method"] == m and r["family"] == "white-box" for r in rows)]
    if not white:
        return ""
    brackets = []
    for method in white:
        widths = []
        for image in ordered([str(r["image"]) for r in rows if r["method"] == method]):
            mine = [
                r for r in rows if r["image"] == image and r["method"] == method and not r["clean_in_goal"]
            ]
            wins = [float(r["eps"]) for r in mine if r["success"]]  # type: ignore[arg-type]
            if wins:
                losses = [float(r["eps"]) for r in mine if not r["success"] and float(r["eps"]) < min(wins)]  # type: ignore[arg-type]
                widths.append(min(wins) - max(losses, default=0.0))
        if widths:
            brackets.append(f"{method} {_mean(widths):.3g}")
    resolution = f" (mean eps width per image: {', '.join(brackets)})" if brackets else ""
    return (
        "white-box cells are not a measured minimum but where the eps bisection stopped: the L2 of the "
        f"smallest eps that succeeded among the sweep sizes and {steps} bisection steps "
        "(`smallest_eps.bisection_steps`), each halving the bracket between the largest failing and the "
        "smallest successful size. The smallest successful eps lies somewhere in the last bracket, whose "
        f"width is the bisection's resolution{resolution}. Black-box cells: the smallest successful "
        "sweep size's L2 (no bisection)."
    )


def bisection_queries(rows: list[FloatRow], methods: list[str]) -> str:
    """Per method, mean target queries per image over every size, the bisection's checks included."""
    lines = ["| method | sweep | bisection | total |", "|---|---|---|---|"]
    for method in methods:
        images = ordered([str(r["image"]) for r in rows if r["method"] == method])
        if not images:
            continue
        sweep = sum(float(r["queries"] or 0) for r in rows if r["method"] == method and not r["bisection"])  # type: ignore[arg-type]
        extra = sum(float(r["queries"] or 0) for r in rows if r["method"] == method and r["bisection"])  # type: ignore[arg-type]
        n = len(images)
        lines.append(f"| {method} | {sweep / n:.1f} | {extra / n:.1f} | {(sweep + extra) / n:.1f} |")
    return "\n".join(lines)
