"""The comparison report's figures, under ``figures/`` of the run folder: the per-image shift histogram
(the paper's Fig. 3), success against queries for the black-box methods beside the white-box rates, and
an example grid of original against adversarial images with their crops (Fig. 4).
"""

from __future__ import annotations

import json
from collections.abc import Mapping, Sequence
from pathlib import Path

import numpy as np
from PIL import Image

from blackbox.evaluate.report_tables import FloatRow, ordered, success_rate


def write_figures(
    run_dir: Path, rows: list[FloatRow], methods: list[str], eps_list: list[float], cfg: Mapping
) -> list[str]:
    """Draw the figures (see module doc) under ``run_dir / "figures"`` from the sweep's ``rows``; return
    their paths relative to ``run_dir``, for the report's Markdown."""
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
    images = ordered([str(r["image"]) for r in rows])[:count]
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
