"""The comparison report: the paper's Tables 1 and 2, success and queries, and its figures.

Built from ``results.csv`` alone, so it can be rebuilt at any time (``python -m blackbox.report
RUN_DIR``). Figures: the per-image shift histogram (the paper's Fig. 3), success against queries
for the black-box methods beside the white-box rates, and an example grid of original against
adversarial images with their crops (Fig. 4).
"""

from __future__ import annotations

import argparse
import csv
import json
import math
import sys
from collections.abc import Callable, Mapping, Sequence
from pathlib import Path

import numpy as np
from PIL import Image

from blackbox.evaluate.selection import SelectionReport
from blackbox.experiment.record import parse_csv_row as parse_row
from blackbox.experiment.run_folder import stored_settings
from targets import UserError

FloatRow = dict[str, object]


def _ordered(values: Sequence[str]) -> list[str]:
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
    images = _ordered([str(r["image"]) for r in rows])
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
        for image in _ordered([str(r["image"]) for r in rows if r["method"] == method]):
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
        images = _ordered([str(r["image"]) for r in rows if r["method"] == method])
        if not images:
            continue
        sweep = sum(float(r["queries"] or 0) for r in rows if r["method"] == method and not r["bisection"])  # type: ignore[arg-type]
        extra = sum(float(r["queries"] or 0) for r in rows if r["method"] == method and r["bisection"])  # type: ignore[arg-type]
        n = len(images)
        lines.append(f"| {method} | {sweep / n:.1f} | {extra / n:.1f} | {(sweep + extra) / n:.1f} |")
    return "\n".join(lines)


def _figures(
    run_dir: Path, rows: list[FloatRow], methods: list[str], eps_list: list[float], cfg: Mapping
) -> list[str]:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    import matplotlib.ticker

    made = []
    figures = run_dir / "figures"
    figures.mkdir(exist_ok=True)
    example_eps = float(cfg.get("examples", {}).get("eps", eps_list[-1]))
    if example_eps not in eps_list:
        example_eps = min(eps_list, key=lambda e: abs(e - example_eps))

    # Fig. 3: per-image shift (% of the peak-to-target distance) at one size.
    fig, ax = plt.subplots(figsize=(7, 4))
    bins = np.linspace(-50, 150, 21)
    for method in methods:
        shifts = [
            float(np.clip(r["shift_pct_distance"], -50, 150))
            for r in rows
            if r["method"] == method and r["eps"] == example_eps and r["shift_pct_distance"] is not None
        ]
        if shifts:
            ax.hist(shifts, bins=bins, histtype="step", linewidth=1.5, label=method)
    ax.set(xlabel="peak shift, % of peak-to-target distance", ylabel="images", title=f"eps = {example_eps:g}")
    ax.legend(fontsize=7)
    fig.tight_layout()
    fig.savefig(figures / "shift_histogram.png", dpi=110)
    plt.close(fig)
    made.append("figures/shift_histogram.png")

    # Success against queries: black-box curves, white-box rates as flat lines (they spend no queries).
    black = [m for m in methods if any(r["method"] == m and r["family"] == "black-box" for r in rows)]
    white = [m for m in methods if m not in black]
    budget = int(cfg.get("budget", 200))
    if black:
        fig, axes = plt.subplots(
            1, len(eps_list), figsize=(3.2 * len(eps_list), 3.2), sharey=True, squeeze=False
        )
        queries = np.arange(1, budget + 1)
        for ax, eps in zip(axes[0], eps_list, strict=True):
            for method in black:
                subset = [
                    r for r in rows if r["method"] == method and r["eps"] == eps and not r["clean_in_goal"]
                ]
                if not subset:
                    continue
                firsts = np.array(
                    [
                        r["queries_to_success"] if r["queries_to_success"] is not None else np.inf
                        for r in subset
                    ]
                )
                ax.plot(queries, 100 * (firsts[None, :] <= queries[:, None]).mean(axis=1), label=method)
            for i, method in enumerate(white):
                subset = [r for r in rows if r["method"] == method and r["eps"] == eps]
                if subset:
                    colour = f"C{(len(black) + i) % 10}"
                    ax.axhline(success_rate(subset), linestyle="--", linewidth=1, color=colour, label=method)
            ticks = [q for q in (1, 10, 100, 1000, 10000) if q <= budget]
            ax.set(xscale="log", xlabel="target queries", title=f"eps = {eps:g}", ylim=(-2, 102))
            ax.set_xticks(ticks, [str(q) for q in ticks])
            ax.xaxis.set_minor_formatter(matplotlib.ticker.NullFormatter())
        axes[0][0].set_ylabel("success, %")
        axes[0][-1].legend(fontsize=6)
        fig.tight_layout()
        fig.savefig(figures / "success_vs_queries.png", dpi=110)
        plt.close(fig)
        made.append("figures/success_vs_queries.png")

    grid_path = _example_grid(
        run_dir, rows, methods, example_eps, int(cfg.get("examples", {}).get("images", 4))
    )
    if grid_path:
        made.append(grid_path)
    return made


def _example_grid(
    run_dir: Path, rows: list[FloatRow], methods: list[str], eps: float, count: int
) -> str | None:
    """Fig. 4: per image, the original and each method's adversarial image with crops and goal."""
    from blackbox.core.goal import Goal
    from blackbox.core.visualize import annotate, grid, with_legend

    panels = []
    images = _ordered([str(r["image"]) for r in rows])[:count]
    for image in images:
        clean_path = run_dir / "clean" / f"{image}.png"
        if not clean_path.exists():
            continue
        records = []
        for method in methods:
            path = run_dir / "adversarial" / method / f"eps{eps:g}" / f"{image}.json"
            if path.exists():
                records.append((method, json.loads(path.read_text())))
        if not records:
            continue
        first = records[0][1]
        goal = Goal(**first["goal"])
        clean = np.asarray(Image.open(clean_path).convert("RGB"))
        clean_output = _output(first["salient_point_clean"], first["clean_crop_boxes"])
        panels.append(annotate(clean, clean_output, goal, f"{image}: original"))
        for method, record in records:
            path = run_dir / "adversarial" / method / f"eps{eps:g}" / f"{image}.png"
            pixels = np.asarray(Image.open(path).convert("RGB"))
            adversarial = _output(record["salient_point_adversarial"], record["crop_boxes"])
            panels.append(
                annotate(pixels, adversarial, goal, f"{method} [{'ok' if record['success'] else 'x'}]")
            )
    if not panels:
        return None
    columns = len(methods) + 1
    # Panels shrunk before the grid is made, and labels sized for the shrunk panel: a readable
    # picture of a few hundred kB, not a 6 MB one whose labels are 3 px tall.
    panel_width = min(320, max(p.width for p in panels))
    panels = [p.resize((panel_width, max(1, round(p.height * panel_width / p.width)))) for p in panels]
    picture = with_legend(grid(panels, columns=columns), [float(r) for r in first["crop_boxes"]])
    picture.save(run_dir / "figures" / "examples.png", optimize=True)
    return "figures/examples.png"


def _output(point: Sequence[float], boxes: Mapping[str, Sequence[int]]):
    """A drawable output from a record's salient point and ``{ratio: [left, top, width, height]}``."""
    from targets import CropBox, TargetOutput

    crops = tuple(CropBox(*(int(v) for v in box), aspect_ratio=float(ratio)) for ratio, box in boxes.items())
    return TargetOutput((float(point[0]), float(point[1])), crops)


def load_rows(run_dir: Path) -> list[FloatRow]:
    path = run_dir / "results.csv"
    if not path.exists():
        return []
    with path.open(newline="") as handle:
        return [parse_row(row) for row in csv.DictReader(handle)]


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
    methods = _ordered([str(r["method"]) for r in sweep])
    eps_list = sorted({float(r["eps"]) for r in sweep})  # type: ignore[arg-type]
    images = _ordered([str(r["image"]) for r in sweep])
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
                lambda s: _mean([float(r["shift_pct_distance"]) for r in s]),
                "{:.1f}",
            ),
            "",
            "## Peak shift, % of the image width (the paper's Table 2)",
            "",
            method_eps_table(
                sweep, methods, eps_list, lambda s: _mean([float(r["shift_pct_width"]) for r in s]), "{:.1f}"
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
        lines += [f"![{name}]({name})" for name in _figures(run_dir, sweep, methods, eps_list, cfg)]
    report = "\n".join(lines) + "\n"
    (run_dir / "report.md").write_text(report)
    return report


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
        raise MergeError("name the parts to merge: python -m blackbox.report OUT --merge PART [PART ...]")
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


def main(argv: list[str] | None = None) -> int:
    """``python -m blackbox.report RUN_DIR``: rebuild a comparison's report from its results.csv.

    ``python -m blackbox.report OUT --merge PART [PART ...]``: merge a comparison split over several
    processes (one folder each, its own images; see :func:`merge`) into ``OUT`` and report on it.
    """
    parser = argparse.ArgumentParser(prog="python -m blackbox.report", description=main.__doc__)
    parser.add_argument("run_dir", type=Path)
    parser.add_argument("--merge", nargs="+", type=Path, default=None, metavar="PART")
    args = parser.parse_args(argv)
    if args.merge is not None:
        try:
            rows, skipped, cfg = merge(args.run_dir, args.merge)
        except (MergeError, ValueError) as error:
            print(f"error: {error}", file=sys.stderr)
            return 2
        print(write_report(args.run_dir, rows, None, skipped, cfg))
        return 0
    if not (args.run_dir / "results.csv").exists():
        print(f"error: {args.run_dir} has no results.csv (is it a compare run folder?)", file=sys.stderr)
        return 2

    cfg = stored_settings(args.run_dir)
    with (args.run_dir / "results.csv").open(newline="") as handle:
        raw = list(csv.DictReader(handle))
    print(write_report(args.run_dir, raw, None, {}, cfg))  # type: ignore[arg-type]
    return 0
