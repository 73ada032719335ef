"""Success rate against target queries, for black-box search variants beside white-box references.

    python -m benchmarks.query_efficiency --target twitter --eps 10 20 30 --budget 500 \\
        --variant tpe=sampler=tpe --variant random=sampler=random

Each ``--variant NAME=OVERRIDE[,OVERRIDE...]`` is a black-box search design given as Hydra overrides
(``search.region=image``, ``warm_start=surrogate``, ...). Every (variant, eps, seed) runs the real
pipeline (``blackbox.experiment.run.run``) on the dataset with early stop, so an image's first success is its
``queries_to_success``; success at ``k`` queries is the share of images whose first success came
within ``k``. White-box methods (``--whitebox``) craft with gradients of the same target at the same
eps; they spend one query. Images whose clean salient point already lies in the goal are left out.
Prints one table and writes JSON under ``runs/benchmarks/``.
"""

from __future__ import annotations

import argparse
import contextlib
import io
import json
import os
import time
from pathlib import Path

from hydra.utils import instantiate

from benchmarks._compose import compose_run
from blackbox.settings.commands import run

CHECKPOINTS = (20, 50, 100, 200, 500)


def parse_variant(text: str) -> tuple[str, list[str]]:
    name, _, overrides = text.partition("=")
    if not name or not overrides:
        raise SystemExit(f"--variant takes NAME=OVERRIDE[,OVERRIDE...], got {text!r}")
    return name, [o for o in overrides.split(",") if o]


def success_at(records: list[dict], k: int) -> float | None:
    """Share of (non-trivial) images whose first success came within ``k`` queries."""
    counted = [r for r in records if not r["clean_in_goal"]]
    if not counted:
        return None
    hits = [r["queries_to_success"] is not None and r["queries_to_success"] <= k for r in counted]
    return sum(hits) / len(counted)


def run_records(
    overrides: list[str], run_dir: Path, target_name: str, cache: dict
) -> tuple[list[dict], float]:
    cfg = compose_run(overrides)
    key = str(cfg.target)
    if key not in cache:
        cache[key] = instantiate(cfg.target)
    started = time.perf_counter()
    with contextlib.redirect_stdout(io.StringIO()):
        summary = run(cfg, run_dir, target_name=target_name, target=cache[key])
    return summary.records, time.perf_counter() - started


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--target", default="twitter")
    parser.add_argument("--eps", type=float, nargs="+", default=[10.0, 20.0, 30.0])
    parser.add_argument("--budget", type=int, default=max(CHECKPOINTS))
    parser.add_argument("--variant", action="append", default=[], help="NAME=OVERRIDE[,OVERRIDE...]")
    parser.add_argument("--whitebox", nargs="*", default=["iterative_fgm", "pgd"])
    parser.add_argument("--seeds", type=int, nargs="+", default=[0])
    parser.add_argument("--extra", nargs="*", default=[], help="Hydra overrides for every run")
    parser.add_argument("--out", type=Path, default=Path("runs/benchmarks"))
    args = parser.parse_args()
    variants = [parse_variant(v) for v in args.variant] or [
        ("tpe", ["sampler=tpe"]),
        ("random", ["sampler=random"]),
    ]
    checkpoints = [k for k in CHECKPOINTS if k <= args.budget]

    stamp = time.strftime("%Y%m%d-%H%M%S")
    out_dir = args.out / f"query_efficiency-{stamp}-{os.getpid()}"  # two started in one second differ
    common = [f"target={args.target}", "storage=memory", "artifacts=none", "progress=false", *args.extra]
    cache: dict = {}
    rows = []

    def report(row: dict) -> None:
        rows.append(row)
        cells = " ".join(f"{'-' if v is None else f'{100 * v:5.1f}%':>6}" for v in row["success_at"].values())
        print(
            f"eps={row['eps']:>4g} {row['method']:>18}: {cells}   mean to success "
            f"{row['mean_queries_to_success'] or float('nan'):6.1f}  ({row['images']} counted, "
            f"{row['seconds']:.0f} s)",
            flush=True,
        )
        (out_dir / "query_efficiency.json").write_text(json.dumps(rows, indent=2))

    out_dir.mkdir(parents=True, exist_ok=True)
    print(f"success within {', '.join(map(str, checkpoints))} queries")
    for eps in args.eps:
        for method in args.whitebox:
            records, seconds = run_records(
                [*common, f"attack={method}", f"eps={eps}"],
                out_dir / f"{method}-eps{eps:g}",
                args.target,
                cache,
            )
            counted = [r for r in records if not r["clean_in_goal"]]
            # One query, the final check: success is the record's own (queries_to_success 1, or null).
            rate = sum(r["success"] for r in counted) / len(counted) if counted else None
            report(
                {
                    "method": method,
                    "kind": "white-box",
                    "eps": eps,
                    "images": len(counted),
                    "success_at": {str(k): rate for k in checkpoints},
                    "mean_queries_to_success": 1.0 if rate else None,
                    "seconds": seconds,
                    "records": records,
                }
            )
        for name, overrides in variants:
            records, seconds = [], 0.0
            for seed in args.seeds:
                got, took = run_records(
                    # A variant's own overrides come last: ``seed=1`` in a variant wins over --seeds.
                    [*common, f"eps={eps}", f"budget={args.budget}", f"seed={seed}", *overrides],
                    out_dir / f"{name}-eps{eps:g}-s{seed}",
                    args.target,
                    cache,
                )
                records += got
                seconds += took
            counted = [r for r in records if not r["clean_in_goal"]]
            to_success = [r["queries_to_success"] for r in counted if r["queries_to_success"] is not None]
            report(
                {
                    "method": name,
                    "kind": "black-box",
                    "overrides": overrides,
                    "eps": eps,
                    "images": len(counted),
                    "success_at": {str(k): success_at(records, k) for k in checkpoints},
                    "mean_queries_to_success": sum(to_success) / len(to_success) if to_success else None,
                    "queries": sum(r["queries"] for r in records),
                    "seconds": seconds,
                    "records": records,
                }
            )
    print(f"written {out_dir / 'query_efficiency.json'}")


if __name__ == "__main__":
    main()
