"""Success against queries under an invisible L-inf cap: the black-box searches beside PGD and iterative FGM.

    python -m benchmarks.photos runs/benchmarks/photos            # the 8 extra pictures of the 13
    python -m benchmarks.heldout_photos runs/benchmarks/heldout   # the 22 held-out pictures
    OMP_NUM_THREADS=1 python -m benchmarks.invisible --targets classic twitter --cap 4 --budget 200

Every attack gets the same budget: L2 ``eps`` (20, the default, which the cap keeps far from binding)
and the L-inf cap of ``--cap`` 8-bit levels. Each picture's goal is the protocol's (the band beyond
the narrowest clean crop where every clean crop shows the protocol's band). Printed per target,
picture set and method: pictures attacked, successes within 20 queries and within the budget (the
white-box attacks spend no queries; their success is the reference), that count as a share of PGD's,
the median L2 of the successes (and PGD's on the same pictures), the lowest SSIM and SSIMULACRA 2 of
a success. ``--jsonl`` keeps one line per attack for later tables.
"""

from __future__ import annotations

import argparse
import json
import statistics
import sys
import time
import warnings
from pathlib import Path

import numpy as np

import targets
from benchmarks._compose import compose_run
from blackbox.attacks import AttackProblem
from blackbox.attacks.iterative_fgm import IterativeFGM
from blackbox.attacks.pgd import PGD
from blackbox.core.datasets import bundled_sources, folder_sources, iterate
from blackbox.core.goal import GoalError
from blackbox.core.goal_rule import GoalRule
from blackbox.core.images import ImageLoadError, LoadedImage
from blackbox.core.metrics import perturbation_norms, ssim, ssimulacra2
from blackbox.search.capped_baselines import BanditsTD, Parsimonious, SimBADCT, SquareAttack
from blackbox.search.square_search import SquareSearch
from blackbox.settings.auto import resolved_for
from blackbox.settings.build import attack_spec

SETS = {
    "bundled": ("bundled",),  # the 5 photos of dataset=bundled
    "readme": ("bundled", "runs/benchmarks/photos"),
    "heldout": ("runs/benchmarks/heldout",),
}
BLACKBOX = {
    "square": {},
    "square_tpe": {"sampler": "tpe"},
    "square_flat": {"patterns": ["flat"]},
    "square_noise": {"patterns": ["noise1", "noise2", "noise4", "noise8"]},
    "square_uniform": {"placement": "uniform"},  # Square Attack's placement
    "square_large": {"max_side": 192, "reach": 160},  # larger squares, further from the anchors
    "square_cells": {"min_side": 32, "max_side": 128},  # at least one of FastGaze's 32 px cells
    "square_blocks": {"patterns": ["flat", "noise2", "noise4", "noise8"]},  # no 1-px noise
}
BASELINES = {  # the field's dense black-box attacks under the cap (blackbox/search/capped_baselines.py)
    "square_attack": SquareAttack,
    "parsimonious": Parsimonious,
    "simba_dct": SimBADCT,
    "bandits": BanditsTD,
}
# The patch search (attack=blackbox) with its feature grid, the best search on libvips' croppers under
# L2 (docs/benchmarks.md), run under the same cap.
PATCH_SEARCHES = {
    "grid": ["attack=blackbox", "search=grid", "sampler=tpe"],
    "texture": ["attack=blackbox", "search=texture", "sampler=tpe"],
    "texture_blobs": ["attack=blackbox", "search=texture_blobs", "sampler=tpe"],
}
# What python -m blackbox runs by default: the search the target declares (blackbox/settings/auto.py).
DEFAULT = {"auto": ["attack=auto", "search=auto"]}
WHITEBOX = {"pgd": lambda: PGD(steps=40), "iterative_fgm": lambda: IterativeFGM(steps=10)}


class CropsOnly(targets.Target):
    """``inner`` seen through its crops alone (``--feedback crops``): no map, no point of its own."""

    def __init__(self, inner: targets.Target) -> None:
        super().__init__(aspect_ratios=inner.aspect_ratios)
        self.inner, self.name = inner, inner.name

    @property
    def outputs(self) -> frozenset[targets.Output]:
        return frozenset({targets.Output.CROPS})

    def answer(self, images: list[np.ndarray]) -> list[targets.TargetOutput]:
        answers = self.inner.query(images)
        return [
            targets.TargetOutput(targets.estimate_point(a.crops, i.shape[1], i.shape[0]), a.crops)
            for a, i in zip(answers, images, strict=True)
        ]


def pictures(which: str, width: int = 640) -> list[LoadedImage]:
    sources = []
    for part in SETS[which]:
        if part != "bundled" and not Path(part).is_dir():
            writer = "heldout_photos" if "heldout" in part else "photos"
            sys.exit(f"{part} is missing: write it first with python -m benchmarks.{writer} {part}")
        sources += bundled_sources() if part == "bundled" else folder_sources(part)
    return [image for _, image in iterate(sources, width) if not isinstance(image, ImageLoadError)]


def attack_row(method: str, problem: AttackProblem, target: targets.Target, budget: int, seed: int) -> dict:
    if method in PATCH_SEARCHES or method in DEFAULT:
        cap = round(problem.budget.cap_levels or 0)
        settings = [
            f"budget={budget}",
            f"eps={problem.eps:g}",
            f"eps_inf={cap}",
            f"seed={seed}",
            "progress=false",
        ]
        overrides = PATCH_SEARCHES.get(method) or DEFAULT[method]
        cfg = resolved_for(compose_run([*overrides, *settings, f"success={problem.success}"]), target)
        result = attack_spec(cfg).build(storage=None).run(problem, target)
    elif method in WHITEBOX:
        result = WHITEBOX[method]().run(problem, target)
    elif method in BASELINES:
        result = BASELINES[method](budget=budget, seed=seed).run(problem, target)
    else:
        result = SquareSearch(budget=budget, seed=seed, label=method, **BLACKBOX[method]).run(problem, target)
    row = {
        "image": problem.image.image_id,
        "method": method,
        "success": bool(result.success),
        "queries": result.queries,
        "queries_to_success": result.queries_to_success,
    }
    if result.success:
        clean = problem.image.pixels
        row.update(perturbation_norms(clean, result.adversarial))
        row["ssim"] = ssim(clean, result.adversarial)
        row["ssimulacra2"] = ssimulacra2(clean, result.adversarial)
    return row


def summarise(rows: list[dict], method: str, reference: dict[str, dict]) -> str:
    mine = [r for r in rows if r["method"] == method]
    wins = [r for r in mine if r["success"]]
    q = [r["queries_to_success"] for r in wins]
    within20 = sum(1 for v in q if v is None or v <= 20)
    ref_wins = sum(1 for r in reference.values() if r["success"])
    share = f"{100 * len(wins) / ref_wins:.0f}%" if ref_wins else "-"
    share20 = f"{100 * within20 / ref_wins:.0f}%" if ref_wins else "-"
    l2 = statistics.median(r["l2"] for r in wins) if wins else float("nan")
    both = [r for r in wins if reference.get(r["image"], {}).get("success")]
    ratio = statistics.median(r["l2"] / reference[r["image"]]["l2"] for r in both) if both else float("nan")
    low_ssim = min((r["ssim"] for r in wins), default=float("nan"))
    low_s2 = min((r["ssimulacra2"] for r in wins), default=float("nan"))
    return (
        f"{method:15s} n={len(mine):2d} success={len(wins):2d} ({share} of PGD) within 20 q={within20:2d} "
        f"({share20}) median L2={l2:.2f} L2/PGD's (median)={ratio:.2f} min SSIM={low_ssim:.4f} "
        f"min SSIMULACRA2={low_s2:.1f}"
    )


def noise_scale(levels: list[int], seed: int = 0) -> None:
    """SSIMULACRA 2 and PSNR of random +-c noise on every pixel of the bundled photos: the cap's scale."""
    rng = np.random.default_rng(seed)
    for image in pictures("readme")[:5]:
        clean = image.pixels
        cells = []
        for c in levels:
            noisy = np.clip(clean.astype(np.int16) + rng.choice([-c, c], size=clean.shape), 0, 255).astype(
                np.uint8
            )
            cells.append(
                f"{c}: {ssimulacra2(clean, noisy):5.1f} ({perturbation_norms(clean, noisy)['psnr']:.1f} dB)"
            )
        print(f"  {image.image_id:18s} " + "  ".join(cells), flush=True)


def table(path: Path) -> None:
    """A Markdown table of a ``--jsonl`` file: per target, set, cap, budget and method."""
    rows = [json.loads(line) for line in path.read_text().splitlines() if line.strip()]
    header = ("target", "pictures", "cap", "budget", "method", "moved", "within 20", "median queries")
    print("| " + " | ".join((*header, "median L2", "min SSIM")) + " |")
    print("|---|---|---|---|---|---|---|---|---|---|")
    keys = sorted({(r["target"], r["set"], r["cap"], r["budget"], r["method"]) for r in rows}, key=str)
    for target, which, cap, budget, method in keys:
        mine = [
            r
            for r in rows
            if (r["target"], r["set"], r["cap"], r["budget"], r["method"])
            == (target, which, cap, budget, method)
        ]
        wins = [r for r in mine if r["success"]]
        queries = [r["queries_to_success"] for r in wins if r["queries_to_success"] is not None]
        within = sum(1 for q in queries if q <= 20)
        median_q = f"{statistics.median(queries):g}" if queries and method not in WHITEBOX else "-"
        median_l2 = f"{statistics.median(r['l2'] for r in wins):.2f}" if wins else "-"
        low = f"{min(r['ssim'] for r in wins):.3f}" if wins else "-"
        shown_within = "-" if method in WHITEBOX else str(within)
        print(
            f"| {target} | {which} | {cap} | {budget} | {method} | {len(wins)} of {len(mine)} | "
            f"{shown_within} | {median_q} | {median_l2} | {low} |"
        )


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--targets", nargs="+", default=["classic", "twitter"])
    parser.add_argument("--sets", nargs="+", default=["readme", "heldout"], choices=sorted(SETS))
    parser.add_argument("--methods", nargs="+", default=["pgd", "iterative_fgm", "square"])
    parser.add_argument("--cap", type=int, default=4, help="the L-inf cap, 8-bit levels")
    parser.add_argument("--eps", type=float, default=20.0, help="the L2 budget beside the cap")
    parser.add_argument("--budget", type=int, default=200, help="queries per image (black-box)")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--success", default="auto", help="the success rule: auto | point | crops | any_crop")
    parser.add_argument("--only", nargs="*", default=None, help="picture ids to keep")
    parser.add_argument(
        "--feedback",
        choices=("all", "crops"),
        default="all",
        help="crops: the black-box searches see the target's crops alone (PGD keeps its gradients)",
    )
    parser.add_argument("--jsonl", type=Path, default=None, help="append one line per attack here")
    parser.add_argument(
        "--noise-scale",
        nargs="*",
        type=int,
        default=None,
        help="only print SSIMULACRA 2 of +-c noise, c levels",
    )
    parser.add_argument("--table", type=Path, default=None, help="only print a --jsonl file as a table")
    args = parser.parse_args(argv)
    warnings.filterwarnings("ignore")
    if args.table is not None:
        table(args.table)
        return
    if args.noise_scale is not None:
        print("SSIMULACRA 2 (PSNR) of random +-c levels on every pixel, c:")
        noise_scale(args.noise_scale or [1, 2, 3, 4, 8], args.seed)
        return
    known = {*BLACKBOX, *BASELINES, *PATCH_SEARCHES, *DEFAULT, *WHITEBOX}
    unknown = [m for m in args.methods if m not in known]
    if unknown:
        sys.exit(f"unknown methods {unknown}; choose from {sorted(known)}")
    rule = GoalRule()
    for name in args.targets:
        target = targets.load(name)
        blind = CropsOnly(target)
        methods = [m for m in args.methods if m not in WHITEBOX or target.differentiable]
        for which in args.sets:
            started = time.perf_counter()
            rows: list[dict] = []
            for image in pictures(which):
                if args.only and image.image_id not in args.only:
                    continue
                clean = target.query([image.as_float])[0]
                try:
                    goal = rule.goal_for(image, clean)
                except (GoalError, ValueError) as error:
                    print(f"  {image.image_id}: no goal ({error})", flush=True)
                    continue
                problem = AttackProblem(
                    image, clean, goal, args.eps, "l2", name, success=args.success, eps_inf=args.cap / 255.0
                )
                # Crop-only feedback: the same goal, judged by the crops (the only rule without a point).
                blind_problem = AttackProblem(
                    image,
                    blind.query([image.as_float])[0],
                    goal,
                    args.eps,
                    "l2",
                    name,
                    success="crops",
                    eps_inf=args.cap / 255.0,
                )
                for method in methods:
                    seen = target if args.feedback == "all" or method in WHITEBOX else blind
                    shown = problem if seen is target else blind_problem
                    row = attack_row(method, shown, seen, args.budget, args.seed)
                    row.update(target=name, set=which, cap=args.cap, budget=args.budget)
                    if args.feedback != "all":
                        row["feedback"] = args.feedback
                    rows.append(row)
                    if args.jsonl:
                        with args.jsonl.open("a") as handle:
                            handle.write(json.dumps(row) + "\n")
                print(
                    f"  {image.image_id}: "
                    + " ".join(
                        f"{r['method']}={'yes@' + str(r['queries_to_success']) if r['success'] else 'no'}"
                        for r in rows
                        if r["image"] == image.image_id
                    ),
                    flush=True,
                )
            reference = {r["image"]: r for r in rows if r["method"] == "pgd"}
            print(
                f"{name} {which} cap {args.cap}/255 eps {args.eps:g} budget {args.budget} "
                f"({time.perf_counter() - started:.0f} s)"
            )
            for method in methods:
                print("  " + summarise(rows, method, reference))
            sys.stdout.flush()


if __name__ == "__main__":
    main()
