"""Framework overhead of the black-box attack, and what each Optuna storage costs per trial.

    python -m benchmarks.overhead --targets classic twitter --samplers tpe random --budget 200

**Overhead ratio**, per (target, sampler): the wall time of one image's budget-200 attack
(``blackbox.experiment.run.run`` on the composed config, early stop off so all 200 queries are spent, the
default journal storage) divided by 200 x the target's single-query latency (p50 at batch 1, same
image). 1.0 is the physical limit: nothing but target queries. Below 1.0 is possible because the
attack sends ``batch_size`` images per call. The time spent inside target calls is also reported,
so ``wall - in target`` is what the framework itself costs.

**Storage cost per trial**: the same attack against a target that answers instantly (a constant
output), once per storage kind; ``ms/trial`` minus the in-memory figure is the storage's cost.

Prints tables and writes JSON under ``runs/benchmarks/``.
"""

from __future__ import annotations

import argparse
import contextlib
import io
import json
import tempfile
import time
from collections.abc import Sequence
from pathlib import Path

import numpy as np

from benchmarks._compose import compose_run
from blackbox.core.images import load_bundled
from blackbox.settings.commands import run
from targets import DEFAULT_ASPECT_RATIOS, Output, Target, TargetOutput, crop_boxes, load

PHOTO = "chelsea"


class TimedTarget(Target):
    """Forwards to ``inner`` and adds up the wall time spent inside its calls."""

    def __init__(self, inner: Target) -> None:
        super().__init__(aspect_ratios=inner.aspect_ratios)
        self.inner = inner
        self.name = inner.name
        self.seconds = 0.0
        self.calls = 0

    @property
    def outputs(self) -> frozenset[Output]:
        return self.inner.outputs

    def _query(self, images: list[np.ndarray]) -> list[TargetOutput]:
        started = time.perf_counter()
        try:
            return self.inner.query(images)
        finally:
            self.seconds += time.perf_counter() - started
            self.calls += 1


class InstantTarget(Target):
    """Answers every image with the same point at once: what is left is the framework's cost."""

    name = "instant"

    @property
    def outputs(self) -> frozenset[Output]:
        return frozenset({Output.POINT, Output.CROPS})

    def _query(self, images: list[np.ndarray]) -> list[TargetOutput]:
        results = []
        for image in images:
            height, width = image.shape[:2]
            point = (width / 2, height / 2)
            results.append(TargetOutput(point, crop_boxes(width, height, point, self.aspect_ratios)))
        return results


def attack_seconds(target: Target, overrides: Sequence[str]) -> tuple[float, float]:
    """Wall and CPU seconds of ``run`` on the one photo (its clean query included; model loading not).

    CPU time (every thread of this process) is reported beside wall time: on a shared machine, wall
    time also measures the neighbours.
    """
    cfg = compose_run([f"dataset.names=[{PHOTO}]", "early_stop=false", "progress=false", *overrides])
    with tempfile.TemporaryDirectory() as run_dir, contextlib.redirect_stdout(io.StringIO()):
        started, cpu = time.perf_counter(), time.process_time()
        run(cfg, Path(run_dir), target_name=target.name, target=target)
        return time.perf_counter() - started, time.process_time() - cpu


def single_query_ms(target: Target, repeats: int) -> tuple[float, float]:
    """p50 wall ms and mean CPU ms of one batch-1 query of the photo."""
    pixels = load_bundled(PHOTO).pixels.astype(np.float32) / 255.0
    target.query([pixels])  # warm-up
    seconds = []
    cpu = time.process_time()
    for _ in range(repeats):
        started = time.perf_counter()
        target.query([pixels])
        seconds.append(time.perf_counter() - started)
    return 1000.0 * float(np.median(seconds)), 1000.0 * (time.process_time() - cpu) / repeats


def overhead_row(name: str, inner: Target, sampler: str, budget: int, repeats: int, extra: list[str]) -> dict:
    latency, latency_cpu = single_query_ms(inner, repeats)
    timed = TimedTarget(inner)
    wall, cpu = attack_seconds(timed, [f"target={name}", f"sampler={sampler}", f"budget={budget}", *extra])
    return {
        "kind": "overhead",
        "target": name,
        "sampler": sampler,
        "budget": budget,
        "extra": extra,
        "single_query_ms": latency,
        "single_query_cpu_ms": latency_cpu,
        "wall_s": wall,
        "cpu_s": cpu,
        "in_target_s": timed.seconds,
        "target_calls": timed.calls,
        "ratio": wall / (budget * latency / 1000.0),
        "cpu_ratio": cpu / (budget * latency_cpu / 1000.0),
        "framework_ms_per_trial": 1000.0 * (wall - timed.seconds) / budget,
    }


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--targets", nargs="+", default=["classic", "twitter"])
    parser.add_argument("--samplers", nargs="+", default=["tpe", "random"])
    parser.add_argument("--storages", nargs="+", default=["memory", "journal", "sqlite"])
    parser.add_argument("--budget", type=int, default=200)
    parser.add_argument("--repeats", type=int, default=20, help="single-query timings per target")
    parser.add_argument("--extra", nargs="*", default=[], help="Hydra overrides for every run")
    parser.add_argument("--out", type=Path, default=Path("runs/benchmarks"))
    args = parser.parse_args()
    rows: list[dict] = []

    print("| target | sampler | query ms | wall s | in target s | ratio | framework ms/trial | CPU ratio |")
    print("|---|---|---|---|---|---|---|---|")
    for name in args.targets:
        inner = load(name)
        for sampler in args.samplers:
            row = overhead_row(name, inner, sampler, args.budget, args.repeats, args.extra)
            rows.append(row)
            print(
                f"| {name} | {sampler} | {row['single_query_ms']:.1f} | {row['wall_s']:.1f} | "
                f"{row['in_target_s']:.1f} | {row['ratio']:.2f} | {row['framework_ms_per_trial']:.1f} | "
                f"{row['cpu_ratio']:.2f} |",
                flush=True,
            )

    print("\n| storage | sampler | ms/trial (instant target) | storage ms/trial over memory |")
    print("|---|---|---|---|")
    instant = InstantTarget(aspect_ratios=DEFAULT_ASPECT_RATIOS)
    for sampler in args.samplers:
        memory_ms = None
        for storage in args.storages:
            wall, _ = attack_seconds(
                instant, [f"sampler={sampler}", f"storage={storage}", f"budget={args.budget}", *args.extra]
            )
            per_trial = 1000.0 * wall / args.budget
            memory_ms = per_trial if storage == "memory" else memory_ms
            extra = None if memory_ms is None else per_trial - memory_ms
            rows.append(
                {
                    "kind": "storage",
                    "storage": storage,
                    "sampler": sampler,
                    "extra": args.extra,
                    "ms_per_trial": per_trial,
                    "over_memory_ms": extra,
                }
            )
            print(
                f"| {storage} | {sampler} | {per_trial:.1f} | {'-' if extra is None else f'{extra:.1f}'} |",
                flush=True,
            )

    out = args.out / f"overhead-{time.strftime('%Y%m%d-%H%M%S')}.json"
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text(json.dumps(rows, indent=2))
    print(f"\nwritten {out}")


if __name__ == "__main__":
    main()
