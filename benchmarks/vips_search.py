"""Issue 16's goals for libvips' croppers: which black-box search moves ``vips_attention`` / ``vips_entropy``;
issue 28's for the feature croppers ``smartcrop`` and ``faces``.

    python -m benchmarks.photos runs/benchmarks/photos
    python -m benchmarks.vips_search                     # every variant below, eps 10 20 40
    python -m benchmarks.vips_search --variants grid_tpe grid_random --targets vips_entropy
    python -m benchmarks.vips_search --targets smartcrop faces --variants grid_tpe blobs_tpe
    python -m benchmarks.vips_search --targets smartcrop faces --heldout    # the 20 held-out pictures
    python -m benchmarks.vips_search --report runs/benchmarks/a.json runs/benchmarks/b.json  # parts together

On the 13 offline pictures of the README's search-design table (the 5 bundled photos and the 8 of
``benchmarks.photos``; with ``--heldout`` the pictures of :mod:`benchmarks.heldout_photos`, which no
search was tuned on), with the default goal of crop-only targets (``beyond_crop``) and the crops
rule (``success=crops``: the goal inside every crop that can hold it), each variant sweeps ``--eps``
from the *largest* down and stops a picture's sweep at its first failure: a picture's smallest eps
is the smallest eps of the sweep down to which every attack succeeded. (Downwards, a picture the
search cannot move costs one budget, not one per eps; ``python -m blackbox.robustness`` sweeps
upwards.) Each search early-stops at its first success within the variant's budget. Every piece is
the real pipeline's (settings composed as ``python -m blackbox`` composes them, ``goal_rule``,
``attack_spec``), with trials kept in memory.

The goals (issue 16), printed as met or not with the figures:

1. on each cropper the crops show the goal on >= 80% of the pictures at some eps <= 40 within 500
   queries (the best variant of budget <= 500);
2. ``tpe`` within 500 queries reaches the success ``random`` reaches within 2000 (``grid_tpe``
   against ``grid_random``, success at some eps <= 40).

Prints the tables (success rate at each eps, smallest eps per picture, queries) and writes JSON to
``runs/benchmarks/vips_search.json``. Results are deterministic for a seed.
"""

from __future__ import annotations

import argparse
import json
import logging
import statistics
import time
from pathlib import Path

from hydra.utils import instantiate

from benchmarks._compose import compose_run
from benchmarks.photos import EXTRA_PHOTOS
from blackbox.attacks import AttackProblem
from blackbox.core.datasets import sources_from_config
from blackbox.settings.build import attack_spec, goal_rule

#: name -> (Hydra overrides, budget). ``grid``: blackbox/search/features.py; ``blobs``: the default.
VARIANTS: dict[str, tuple[list[str], int]] = {
    "blobs_tpe": (["search=blobs", "sampler=tpe"], 500),
    "grid_tpe": (["search=grid", "sampler=tpe"], 500),
    "grid_random": (["search=grid", "sampler=random"], 2000),
    "grid_checker_tpe": (["search=grid", "search.kinds=[checker]", "sampler=tpe"], 500),
    "grid_noise_tpe": (["search=grid", "search.kinds=[noise]", "sampler=tpe"], 500),
    # grid_sparse_rs (sampler=sparse_rs) and grid_accumulate (attack=accumulate_grid) ran here too; they
    # won on neither cropper and left conf/ (docs/benchmarks.md, "Search design on libvips' croppers")
    # entropy trims whole slices from the ends of the cut side: features anywhere on the goal's side
    "grid_wide_tpe": (["search=grid", "search.margin=4", "search.space.w.high=16", "sampler=tpe"], 500),
}
DEFAULT_VARIANTS = ("grid_tpe", "blobs_tpe", "grid_random")
TARGETS = ("vips_attention", "vips_entropy", "smartcrop", "faces")
DEFAULT_TARGETS = ("vips_attention", "vips_entropy")
GOAL_RATE, GOAL_EPS, GOAL_BUDGET = 0.8, 40.0, 500


def heldout_pictures(folder: Path, working_width: int) -> list:
    """The held-out pictures of ``benchmarks.heldout_photos`` (written if missing), sorted by name."""
    from benchmarks.heldout_photos import write_photos

    if not any(folder.glob("*.png")):
        write_photos(folder)
    sources = sources_from_config(image=None, dataset={"kind": "folder", "path": str(folder)})
    return [s.load(working_width) for s in sources]


def pictures(photos: Path, working_width: int) -> list:
    """The 13 pictures: the bundled 5, then the 8 of ``benchmarks.photos`` (written if missing)."""
    if not all((photos / f"{name}.png").exists() for name in EXTRA_PHOTOS):
        from benchmarks.photos import write_photos

        write_photos(photos)
    dataset = {"kind": "bundled", "names": ["astronaut", "coffee", "chelsea", "rocket", "hubble_deep_field"]}
    sources = sources_from_config(image=None, dataset=dataset)
    sources += sources_from_config(image=None, dataset={"kind": "folder", "path": str(photos)})
    return [s.load(working_width) for s in sources]


def sweep(
    variant: str, target_name: str, eps_list: list[float], images: list, seed: int, cache: dict
) -> dict:
    """One variant on one cropper: per picture, the smallest eps that succeeded and its queries."""
    overrides, budget = VARIANTS[variant]
    base = [f"target={target_name}", "success=crops", "storage=memory", "artifacts=none", "progress=false"]
    base += [f"budget={budget}", f"seed={seed}", *overrides]
    if target_name not in cache:
        cache[target_name] = instantiate(compose_run(base).target)
    target = cache[target_name]
    per_image: dict[str, dict] = {}
    started = time.perf_counter()
    for image in images:
        clean = target.query([image.as_float])[0]
        row: dict = {"smallest_eps": None, "queries": {}, "success_queries": {}}
        for eps in sorted(eps_list, reverse=True):
            cfg = compose_run([*base, f"eps={eps:g}"])
            goal = goal_rule(cfg).goal_for(image, clean)
            problem = AttackProblem(image, clean, goal, float(eps), "l2", target_name, "crops")
            result = attack_spec(cfg).build(storage=None).run(problem, target)
            row["queries"][f"{eps:g}"] = result.queries
            if not result.success:
                break
            row["smallest_eps"] = float(eps)
            row["success_queries"][f"{eps:g}"] = result.queries_to_success
        per_image[image.image_id] = row
        print(
            f"  {variant} {target_name} {image.image_id}: smallest eps {row['smallest_eps']}, "
            f"queries {row['queries']}",
            flush=True,
        )
    return {
        "variant": variant,
        "target": target_name,
        "budget": budget,
        "seconds": time.perf_counter() - started,
        "images": per_image,
    }


def rate_at(result: dict, eps: float) -> float:
    rows = result["images"].values()
    return sum(r["smallest_eps"] is not None and r["smallest_eps"] <= eps for r in rows) / len(rows)


def report(results: list[dict], eps_list: list[float]) -> str:
    lines = [
        "| variant | target | budget | "
        + " | ".join(f"eps <= {e:g}" for e in eps_list)
        + " | median queries to success at the largest eps | s |",
        "|---|---|---|" + "---|" * len(eps_list) + "---|---|",
    ]
    for r in results:
        top = f"{max(eps_list):g}"
        queries = [
            row["success_queries"][top] for row in r["images"].values() if top in row["success_queries"]
        ]
        median = f"{statistics.median(queries):g}" if queries else "-"
        cells = " | ".join(f"{100 * rate_at(r, e):.0f}" for e in eps_list)
        lines.append(
            f"| {r['variant']} | {r['target']} | {r['budget']} | {cells} | {median} | {r['seconds']:.0f} |"
        )
    lines += [
        "",
        "Smallest eps that moved every judged crop to the goal (`-`: none up to the largest eps):",
        "",
    ]
    columns = [f"{r['variant']} {r['target'].removeprefix('vips_')}" for r in results]
    names = list(dict.fromkeys(name for r in results for name in r["images"]))
    lines += ["| picture | " + " | ".join(columns) + " |", "|---|" + "---|" * len(columns)]
    for name in names:
        cells = [r["images"].get(name, {}).get("smallest_eps") for r in results]
        lines.append(f"| {name} | " + " | ".join(f"{c:g}" if c is not None else "-" for c in cells) + " |")
    return "\n".join(lines)


def goals(results: list[dict]) -> str:
    lines = []
    for target in TARGETS:
        mine = [r for r in results if r["target"] == target and r["budget"] <= GOAL_BUDGET]
        if not mine:
            continue
        best = max(mine, key=lambda r: rate_at(r, GOAL_EPS))
        rate = rate_at(best, GOAL_EPS)
        verdict = "met" if rate >= GOAL_RATE else "NOT met"
        lines.append(
            f"goal 1, {target}: {verdict}: {100 * rate:.0f}% of {len(best['images'])} pictures at some "
            f"eps <= {GOAL_EPS:g} within {best['budget']} queries ({best['variant']}; goal >= 80%)"
        )
        by_name = {r["variant"]: r for r in results if r["target"] == target}
        if "grid_tpe" in by_name and "grid_random" in by_name:
            tpe, rnd = rate_at(by_name["grid_tpe"], GOAL_EPS), rate_at(by_name["grid_random"], GOAL_EPS)
            verdict = "met" if tpe >= rnd else "NOT met"
            lines.append(
                f"goal 2, {target}: {verdict}: tpe within {by_name['grid_tpe']['budget']} queries "
                f"{100 * tpe:.0f}%, random within {by_name['grid_random']['budget']} {100 * rnd:.0f}%"
            )
    return "\n".join(lines)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--variants", nargs="+", default=list(DEFAULT_VARIANTS), choices=sorted(VARIANTS))
    parser.add_argument("--targets", nargs="+", default=list(DEFAULT_TARGETS), choices=TARGETS)
    parser.add_argument("--eps", nargs="+", type=float, default=[10.0, 20.0, 40.0])
    parser.add_argument("--photos", type=Path, default=Path("runs/benchmarks/photos"))
    parser.add_argument(
        "--heldout",
        nargs="?",
        type=Path,
        const=Path("runs/benchmarks/heldout"),
        help="the held-out pictures of benchmarks.heldout_photos (in this folder) instead of the 13",
    )
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--out", type=Path, default=Path("runs/benchmarks/vips_search.json"))
    parser.add_argument(
        "--report",
        type=Path,
        nargs="+",
        help="print the tables of saved JSON files (runs in parts), run nothing",
    )
    args = parser.parse_args()
    if args.report:
        saved = [json.loads(path.read_text()) for path in args.report]
        results = [r for part in saved for r in part["results"]]
        print(report(results, sorted({e for part in saved for e in part["eps"]})))
        print()
        print(goals(results))
        return
    logging.getLogger("optuna").setLevel(logging.WARNING)  # a line per study otherwise
    if any(e <= 0 for e in args.eps):
        parser.error(f"--eps must be positive L2 sizes, got {args.eps}")
    images = heldout_pictures(args.heldout, 640) if args.heldout else pictures(args.photos, 640)
    cache: dict = {}
    results = []
    args.out.parent.mkdir(parents=True, exist_ok=True)
    for target in args.targets:
        for variant in args.variants:
            results.append(sweep(variant, target, args.eps, images, args.seed, cache))
            print(
                f"{variant} on {target}: {100 * rate_at(results[-1], max(args.eps)):.0f}% "
                f"({results[-1]['seconds']:.0f} s)",
                flush=True,
            )
            args.out.write_text(
                json.dumps({"eps": args.eps, "seed": args.seed, "results": results}, indent=1)
            )
    print(report(results, sorted(args.eps)))
    print()
    print(goals(results))
    print(
        f"\nreproduce: python -m benchmarks.vips_search --variants {' '.join(args.variants)} "
        f"--targets {' '.join(args.targets)} --eps {' '.join(f'{e:g}' for e in args.eps)} --seed {args.seed}"
        + (f" --heldout {args.heldout}" if args.heldout else "")
    )


if __name__ == "__main__":
    main()
