"""1 against 2 worker processes on one ``storage=postgres`` experiment: wall time and speed-up.

    BLACKBOX_POSTGRES_URL=postgresql://... python -m benchmarks.workers --target classic --budget 20

Each configuration starts the real command (``python -m blackbox ... storage=postgres``) N times at
once on a fresh experiment and times it until the last worker exits: process start-up included,
as a user sees it. Every image must end in the results exactly once. The table is printed and
written as JSON under ``runs/benchmarks/``. Speed-up is bounded by the cores the machine really
has free: the load average at the start is recorded with the figures.
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import time
import uuid
from pathlib import Path

from blackbox.core.images import BUNDLED_PHOTOS

REPO = Path(__file__).resolve().parents[1]


def run_workers(n: int, *, url: str, overrides: list[str], out: Path) -> dict:
    experiment = f"bench_{uuid.uuid4().hex[:8]}"
    env = {**os.environ, "OMP_NUM_THREADS": "1", "BLACKBOX_POSTGRES_URL": url}
    load = os.getloadavg()[0]
    started = time.perf_counter()
    workers = [
        subprocess.Popen(
            [
                sys.executable,
                "-m",
                "blackbox",
                *overrides,
                "storage=postgres",
                f"storage.experiment={experiment}",
                "progress=false",
                f"hydra.run.dir={out / experiment / f'worker{i}'}",
            ],
            cwd=REPO,
            env=env,
            stdout=subprocess.DEVNULL,
            stderr=subprocess.PIPE,
            text=True,
        )
        for i in range(n)
    ]
    errors = [w.communicate()[1] for w in workers]
    seconds = time.perf_counter() - started
    for worker, error in zip(workers, errors, strict=True):
        if worker.returncode != 0:
            raise SystemExit(f"a worker failed ({worker.returncode}):\n{error}")
    images = [json.loads(line)["image"] for line in (out / experiment / "worker0" / "results.jsonl").open()]
    if len(images) != len(set(images)):
        raise SystemExit(f"an image was recorded twice: {images}")
    _drop(url, experiment)
    return {"workers": n, "seconds": seconds, "images": len(images), "load_at_start": load}


def _drop(url: str, experiment: str) -> None:
    import sqlalchemy

    engine = sqlalchemy.create_engine(url)
    with engine.begin() as connection:
        connection.execute(sqlalchemy.text(f'DROP SCHEMA IF EXISTS "bb_{experiment}" CASCADE'))
    engine.dispose()


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--url", default=os.environ.get("BLACKBOX_POSTGRES_URL"))
    parser.add_argument("--target", default="classic")
    parser.add_argument("--budget", type=int, default=20)
    parser.add_argument(
        "--images", nargs="+", default=list(BUNDLED_PHOTOS), help="bundled photo names (default: all five)"
    )
    parser.add_argument("--workers", type=int, nargs="+", default=[1, 2])
    parser.add_argument("--rounds", type=int, default=2, help="alternating rounds; the best of each is kept")
    parser.add_argument("--extra", nargs="*", default=[], help="more Hydra overrides")
    parser.add_argument("--out", type=Path, default=Path("runs/benchmarks"))
    args = parser.parse_args()
    if not args.url:
        raise SystemExit("give --url or set BLACKBOX_POSTGRES_URL (a PostgreSQL database the workers share)")
    overrides = [
        f"target={args.target}",
        f"budget={args.budget}",
        "early_stop=false",  # the same work in every configuration
        f"dataset.names=[{','.join(args.images)}]",
        *args.extra,
    ]
    stamp = time.strftime("%Y%m%d-%H%M%S")
    out = (args.out / f"workers-{stamp}").resolve()
    runs: list[dict] = []
    for _ in range(args.rounds):
        for n in args.workers:
            runs.append(run_workers(n, url=args.url, overrides=overrides, out=out))
            print(
                f"  {n} worker(s): {runs[-1]['seconds']:.1f} s (load {runs[-1]['load_at_start']:.1f})",
                flush=True,
            )
    best = {n: min(r["seconds"] for r in runs if r["workers"] == n) for n in args.workers}
    base = best[args.workers[0]]
    print(f"\n{args.target}, {len(args.images)} images, budget {args.budget}, {os.cpu_count()} CPUs")
    print("| workers | wall s (best of rounds) | images/min | speed-up |\n|---|---|---|---|")
    for n in args.workers:
        print(f"| {n} | {best[n]:.1f} | {60 * len(args.images) / best[n]:.1f} | {base / best[n]:.2f}x |")
    out.mkdir(parents=True, exist_ok=True)
    report = {
        "target": args.target,
        "budget": args.budget,
        "images": args.images,
        "cpus": os.cpu_count(),
        "runs": runs,
        "best_seconds": best,
        "speed_up": {n: base / best[n] for n in args.workers},
    }
    path = args.out / f"workers-{stamp}.json"
    path.write_text(json.dumps(report, indent=2) + "\n")
    print(f"\nwritten: {path}")


if __name__ == "__main__":
    main()
