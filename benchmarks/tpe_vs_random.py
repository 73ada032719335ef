"""Success rate and mean peak shift of ``tpe`` against ``random`` on the bundled photos.

    python -m benchmarks.tpe_vs_random --target classic --eps 10 20 30 --budgets 20 200 --seeds 0 1

Every cell runs the real pipeline (``experiment.run.run`` on the composed Hydra config) with in-memory
storage, and the table is printed and written as JSON under ``runs/benchmarks/``.
"""

from __future__ import annotations

import argparse
import contextlib
import io
import json
import time
from pathlib import Path

import numpy as np
from hydra.utils import instantiate

from benchmarks._compose import compose_run
from blackbox.experiment.summary import success_rate
from blackbox.settings.commands import run


def _mean(records: list[dict], key: str) -> float:
    """The mean of ``key`` over the records that have it (a target without a map has no peak shift)."""
    values = [r[key] for r in records if r.get(key) is not None]
    return float(np.mean(values)) if values else float("nan")


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--target", default="classic")
    parser.add_argument("--eps", type=float, nargs="+", default=[10.0, 20.0, 30.0])
    parser.add_argument("--budgets", type=int, nargs="+", default=[20, 200])
    parser.add_argument("--samplers", nargs="+", default=["tpe", "random"])
    parser.add_argument("--seeds", type=int, nargs="+", default=[0])
    parser.add_argument("--extra", nargs="*", default=[], help="more Hydra overrides")
    parser.add_argument("--out", type=Path, default=Path("runs/benchmarks"))
    args = parser.parse_args()

    stamp = time.strftime("%Y%m%d-%H%M%S")
    rows = []
    target = None
    for eps in args.eps:
        for budget in args.budgets:
            for sampler in args.samplers:
                records = []
                started = time.perf_counter()
                for seed in args.seeds:
                    overrides = [
                        f"target={args.target}",
                        f"eps={eps}",
                        f"budget={budget}",
                        f"sampler={sampler}",
                        f"seed={seed}",
                        "storage=memory",
                        "progress=false",
                        *args.extra,
                    ]
                    cfg = compose_run(overrides)
                    target = target or instantiate(cfg.target)
                    run_dir = args.out / stamp / f"{sampler}-eps{eps:g}-b{budget}-s{seed}"
                    with contextlib.redirect_stdout(io.StringIO()):
                        summary = run(cfg, run_dir, target_name=args.target, target=target)
                    records += summary.records
                row = {
                    "target": args.target,
                    "eps": eps,
                    "budget": budget,
                    "sampler": sampler,
                    "images": len(records),
                    "success_rate": success_rate(records),
                    "point_shift_pct_distance": _mean(records, "point_shift_pct_distance"),
                    "shift_pct_distance": _mean(records, "shift_pct_distance"),
                    "shift_pct_width": _mean(records, "shift_pct_width"),
                    "mean_queries": float(np.mean([r["queries"] for r in records])),
                    "clean_already_in_goal": int(sum(r["clean_in_goal"] for r in records)),
                    "seconds": time.perf_counter() - started,
                }
                rows.append(row)
                print(
                    f"eps={eps:>5g} budget={budget:>4} {sampler:>6}: "
                    f"success {100 * row['success_rate']:5.1f}% "
                    f"point {row['point_shift_pct_distance']:6.1f}% "
                    f"peak {row['shift_pct_distance']:6.1f}% dist "
                    f"queries {row['mean_queries']:6.1f}  ({row['images']} runs, {row['seconds']:.0f} s)",
                    flush=True,
                )
    out = args.out / stamp / "tpe_vs_random.json"
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text(json.dumps(rows, indent=2))
    print(f"written {out}")


if __name__ == "__main__":
    main()
