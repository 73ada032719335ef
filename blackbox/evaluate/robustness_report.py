"""The robustness report: per cropper, success rate against eps and the smallest eps per image.

Built from ``results.csv`` alone (:mod:`blackbox.evaluate.robustness` writes it), so it can be rebuilt at any
time: ``python -m blackbox.robustness_report run=RUN_DIR``. Writes ``report.md`` and ``robustness.png``.
"""

from __future__ import annotations

import csv
import json
import math
import sys
from collections.abc import Mapping, Sequence
from pathlib import Path

import numpy as np

from blackbox.evaluate.report_tables import FloatRow, ordered
from blackbox.experiment.record import parse_csv_row as parse_row
from blackbox.experiment.run_folder import stored_settings


def counted_images(rows: list[FloatRow], target: str) -> list[str]:
    """The images attacked on ``target`` whose clean answer did not already meet its success rule."""
    return ordered([str(r["image"]) for r in rows if r["target"] == target and not r["clean_in_goal"]])


def smallest_eps(rows: list[FloatRow], target: str, image: str) -> float:
    """The smallest eps that succeeded on ``image`` against ``target``; ``inf`` if none did."""
    eps = [float(r["eps"]) for r in rows if r["target"] == target and r["image"] == image and r["success"]]  # type: ignore[arg-type]
    return min(eps, default=math.inf)


def success_curve(rows: list[FloatRow], target: str, eps_list: Sequence[float]) -> list[float]:
    """Percent of counted images moved by some eps <= each eps of ``eps_list`` (NaN if none counted)."""
    images = counted_images(rows, target)
    if not images:
        return [math.nan] * len(eps_list)
    firsts = np.array([smallest_eps(rows, target, image) for image in images])
    return [100.0 * float(np.mean(firsts <= eps)) for eps in eps_list]


def _eps_text(eps: float, largest: float) -> str:
    return f"> {largest:g}" if math.isinf(eps) else f"{eps:g}"


def report_text(
    rows: list[FloatRow], targets: list[str], eps_list: list[float], skipped: Mapping[str, str], cfg: Mapping
) -> str:
    """``report.md``: the settings, the success-rate table, the smallest-eps table, what was skipped."""
    largest = max(eps_list)
    images = ordered([str(r["image"]) for r in rows])
    sweep = ", ".join(f"{e:g}" for e in eps_list)
    stop = (
        "an image's sweep stops at its first success, so the larger eps are not attacked and each "
        "smallest eps is the smallest *of the sweep*"
        if cfg.get("stop_at_first_success", True)
        else "every eps is attacked"
    )
    lines = [
        "# Cropper robustness",
        "",
        f"Black-box attack: sampler `{cfg.get('sampler', {}).get('name', '?')}`, at most "
        f"{cfg.get('budget')} target queries per "
        f"(target, image, eps) with early stop at the first success; {cfg.get('norm', 'l2')} eps swept "
        f"over {sweep} from the smallest ({stop}). {len(images)} images at working width "
        f"{cfg.get('working_width')} px, seed {cfg.get('seed')}.",
        "",
        "Success follows each target's own rule (`success=" + str(cfg.get("success", "auto")) + "`; "
        "`auto` is the salient point for a target that gives a point or a map, the crops for a "
        "crop-only one): the rule column says which. Success at eps *e* means some eps <= *e* moved "
        "the crop; images whose clean answer already met the rule are left out of the rates.",
        "",
        "## Success rate against eps (%)",
        "",
        "| target | success rule | images | " + " | ".join(f"{e:g}" for e in eps_list) + " |",
        "|---|---|---|" + "---|" * len(eps_list),
    ]
    for target in targets:
        rules = ordered([str(r["success_rule"]) for r in rows if r["target"] == target])
        curve = success_curve(rows, target, eps_list)
        cells = ["-" if math.isnan(v) else f"{v:.0f}" for v in curve]
        lines.append(
            f"| {target} | {', '.join(rules) or '-'} | {len(counted_images(rows, target))} | "
            + " | ".join(cells)
            + " |"
        )
    lines += [
        "",
        "## Smallest eps that moved the crop, per image",
        "",
        f"`> {largest:g}`: no eps of the sweep did; `clean`: the clean image already met the rule; "
        "`-`: not attacked (skipped, see below). The median counts `> "
        f"{largest:g}` as larger than every eps (an even count: the mean of the middle two).",
        "",
        "| image | " + " | ".join(targets) + " |",
        "|---|" + "---|" * len(targets),
    ]
    for image in images:
        cells = []
        for target in targets:
            mine = [r for r in rows if r["target"] == target and r["image"] == image]
            if not mine:
                cells.append("-")
            elif all(r["clean_in_goal"] for r in mine):
                cells.append("clean")
            else:
                cells.append(_eps_text(smallest_eps(rows, target, image), largest))
        lines.append(f"| {image} | " + " | ".join(cells) + " |")
    medians = []
    for target in targets:
        firsts = [smallest_eps(rows, target, image) for image in counted_images(rows, target)]
        medians.append(_eps_text(float(np.median(firsts)), largest) if firsts else "-")
    lines.append("| **median** | " + " | ".join(medians) + " |")
    if skipped:
        lines += ["", f"## Skipped ({len(skipped)})", "", "| what | reason |", "|---|---|"]
        lines += [f"| {key} | {reason.replace('|', '/')} |" for key, reason in skipped.items()]
    return "\n".join(lines) + "\n"


def plot(path: Path, rows: list[FloatRow], targets: list[str], eps_list: list[float], cfg: Mapping) -> None:
    """``robustness.png``: success rate against eps, one line per target (its rule in the legend)."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    import matplotlib.ticker

    fig, ax = plt.subplots(figsize=(7, 4.5))
    for i, target in enumerate(targets):
        rules = ordered([str(r["success_rule"]) for r in rows if r["target"] == target])
        curve = success_curve(rows, target, eps_list)
        label = f"{target} ({', '.join(rules) or 'no result'}, {len(counted_images(rows, target))} images)"
        # Markers and dashes differ too, so a line that runs under another (both at 100%) still shows.
        ax.plot(
            eps_list,
            curve,
            marker="osD^vP"[i % 6],
            markersize=7,
            linestyle=("-", "--", "-.", ":")[i % 4],
            linewidth=2,
            color=f"C{i % 10}",
            label=label,
        )
    ax.set_xscale("log")
    ax.set_xticks(eps_list, [f"{e:g}" for e in eps_list])
    ax.xaxis.set_minor_formatter(matplotlib.ticker.NullFormatter())
    ax.set_ylim(-3, 103)
    ax.grid(True, alpha=0.3)
    ax.set_xlabel(f"perturbation size eps ({cfg.get('norm', 'l2').upper()}, 0-1 pixels)", fontsize=11)
    ax.set_ylabel("crop moved to the goal, % of images", fontsize=11)
    sampler = cfg.get("sampler", {}).get("name", "?")
    ax.set_title(
        f"Which cropper is easiest to steer ({sampler}, {cfg.get('budget')} queries per eps)", fontsize=11
    )
    ax.legend(title="target (success rule)", fontsize=9, title_fontsize=9, loc="best")
    fig.tight_layout()
    fig.savefig(path, dpi=120)
    plt.close(fig)


def write_robustness_report(
    run_dir: Path, raw_rows: list[dict], skipped: Mapping[str, str], cfg: Mapping
) -> str:
    """Write ``report.md`` and ``robustness.png`` into ``run_dir``; returns the report's text.

    ``raw_rows`` are ``results.csv`` rows as read (strings); ``cfg`` the run's settings.
    """
    rows = [parse_row(r) for r in raw_rows]
    targets = [str(t) for t in cfg.get("targets") or []] or ordered([str(r["target"]) for r in rows])
    targets += [t for t in ordered([str(r["target"]) for r in rows]) if t not in targets]
    eps_list = sorted({float(e) for e in cfg.get("eps_list") or []} | {float(r["eps"]) for r in rows})  # type: ignore[arg-type]
    text = report_text(rows, targets, eps_list, skipped, cfg)
    plot(run_dir / "robustness.png", rows, targets, eps_list, cfg)
    (run_dir / "report.md").write_text(text + "\n![success rate against eps](robustness.png)\n")
    return text


def rebuild(run_dir: Path) -> int:
    """Rebuild a robustness run's ``report.md`` and plot from its files, and print the report; the
    exit code (2: not a robustness run folder)."""
    settings = run_dir / ".hydra" / "config.yaml"
    if not (run_dir / "results.csv").is_file() or not settings.is_file():
        print(
            f"error: {run_dir} holds no robustness run (results.csv and .hydra/config.yaml); "
            "give the folder python -m blackbox.robustness printed",
            file=sys.stderr,
        )
        return 2

    cfg = stored_settings(run_dir)
    skipped_path = run_dir / "skipped.json"
    skipped = json.loads(skipped_path.read_text()) if skipped_path.is_file() else {}
    with (run_dir / "results.csv").open(newline="") as handle:
        raw = list(csv.DictReader(handle))
    print(write_robustness_report(run_dir, raw, skipped, cfg))  # type: ignore[arg-type]
    return 0
