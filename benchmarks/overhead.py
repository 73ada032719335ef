"""Framework overhead of the black-box attack, and what each Optuna storage costs per trial.

    python -m benchmarks.overhead --targets classic twitter --samplers square tpe random --budget 200

**Overhead ratio**, per (target, sampler): the wall time of one image's budget-200 attack
(``blackbox.experiment.run.run`` on the composed config, early stop off so all 200 queries are spent, the
default journal storage) divided by 200 x the target's single-query latency (p50 at batch 1, same
image). 1.0 is the physical limit: nothing but target queries. Below 1.0 is possible because the
attack sends ``batch_size`` images per call. The time spent inside target calls is also reported,
so ``wall - in target`` is what the framework itself costs.

``square`` in ``--samplers`` is the default attack on a map target (``attack=square``: its own loop,
its trials written to the storage once per image, so no component breakdown beyond ``target``); the
others are samplers of the patch search (``attack=blackbox``).

**Storage cost per trial**: the same attack against a target that answers instantly (a constant
output), once per storage kind; ``ms/trial`` minus the in-memory figure is the storage's cost.

**Where the time goes** (per trial, on the same runs): ``sampler`` (Optuna's ``ask``: TPE's Parzen
estimators; with ``ask_ahead`` it runs while the target answers, so it overlaps ``target``),
``render`` (patches rendered, rescaled and quantised to 8 bits; with ``ask_ahead`` the next batch is
rendered while the target answers too), ``target`` (inside the target's
calls, its input checks included), ``score`` (the objective on each answer), ``storage`` (tell and
the batch's write to the storage), ``callbacks`` (trial attributes and artifact PNGs) and ``other``
(wall minus the rest: the loop, image conversions; negative when the sampler hid behind the target).
The components are timed by wrapping those functions here, not inside the search.

Prints tables and writes JSON under ``runs/benchmarks/``.
"""

from __future__ import annotations

import argparse
import contextlib
import io
import json
import tempfile
import time
from collections.abc import Callable, Iterator, Sequence
from pathlib import Path

import numpy as np
import optuna

import blackbox.search._session as session_module
import blackbox.search.patch_search as patch_search_module
from benchmarks._compose import compose_run
from blackbox.core.images import load_bundled
from blackbox.experiment.artifacts import TrialArtifacts
from blackbox.search._study import SearchStudy
from blackbox.settings.commands import run
from targets import DEFAULT_ASPECT_RATIOS, Output, Target, TargetOutput, crop_boxes, load

PHOTO = "chelsea"
COMPONENTS = ("sampler", "render", "target", "score", "storage", "callbacks")


class TimedTarget(Target):
    """Forwards to ``inner`` and adds up the wall time spent inside its calls.

    It overrides :meth:`query` itself, so the images are checked once (by ``inner``), as the
    search's own target checks them: wrapping ``answer`` would check them twice and count both.
    """

    def __init__(self, inner: Target) -> None:
        super().__init__(aspect_ratios=inner.aspect_ratios)
        self.inner = inner
        self.name = inner.name
        self.seconds = 0.0
        self.calls = 0

    @property
    def outputs(self) -> frozenset[Output]:
        return self.inner.outputs

    def query(self, images: Sequence[np.ndarray] | np.ndarray) -> list[TargetOutput]:
        started = time.perf_counter()
        try:
            return self.inner.query(images)
        finally:
            self.seconds += time.perf_counter() - started
            self.calls += 1

    def answer(self, images: list[np.ndarray]) -> list[TargetOutput]:
        return self.inner.query(images)


class InstantTarget(Target):
    """Answers every image with the same point at once: what is left is the framework's cost."""

    name = "instant"

    @property
    def outputs(self) -> frozenset[Output]:
        return frozenset({Output.POINT, Output.CROPS})

    def answer(self, images: list[np.ndarray]) -> list[TargetOutput]:
        results = []
        for image in images:
            height, width = image.shape[:2]
            point = (width / 2, height / 2)
            results.append(TargetOutput(point, crop_boxes(width, height, point, self.aspect_ratios)))
        return results


def _timed(function: Callable, totals: dict[str, float], key: str) -> Callable:
    def wrapper(*args: object, **kwargs: object) -> object:
        started = time.perf_counter()
        try:
            return function(*args, **kwargs)
        finally:
            totals[key] += time.perf_counter() - started

    return wrapper


@contextlib.contextmanager
def component_timers() -> Iterator[dict[str, float]]:
    """Seconds spent in each search component (but ``target``: see :class:`TimedTarget`) meanwhile.

    Wraps the functions the search calls for each (Optuna's ``Study.ask``, the session's
    ``render_config``, the judge, :class:`SearchStudy`'s writes, :class:`TrialArtifacts`), and puts
    them back on exit.
    """
    totals = dict.fromkeys(COMPONENTS, 0.0)
    patches: list[tuple[object, str, object]] = [
        (optuna.Study, "ask", _timed(optuna.Study.ask, totals, "sampler")),
        (session_module, "render_config", _timed(session_module.render_config, totals, "render")),
        (TrialArtifacts, "__call__", _timed(TrialArtifacts.__call__, totals, "callbacks")),
    ]
    for method in ("tell", "write", "mark_in_flight", "fail", "skip_unchanged"):
        patches.append((SearchStudy, method, _timed(getattr(SearchStudy, method), totals, "storage")))
    judge_for = patch_search_module.judge_for

    def timed_judge_for(*args: object, **kwargs: object) -> Callable:
        return _timed(judge_for(*args, **kwargs), totals, "score")

    patches.append((patch_search_module, "judge_for", timed_judge_for))
    saved = [(owner, name, getattr(owner, name)) for owner, name, _ in patches]
    for owner, name, replacement in patches:
        setattr(owner, name, replacement)
    try:
        yield totals
    finally:
        for owner, name, original in saved:
            setattr(owner, name, original)


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


def method_overrides(sampler: str) -> list[str]:
    """``square``: the default attack; anything else: the patch search with that sampler."""
    return (
        ["attack=square", "eps_inf=4"] if sampler == "square" else ["attack=blackbox", f"sampler={sampler}"]
    )


def overhead_row(name: str, inner: Target, sampler: str, budget: int, repeats: int, extra: list[str]) -> dict:
    latency, latency_cpu = single_query_ms(inner, repeats)
    timed = TimedTarget(inner)
    with component_timers() as totals:
        wall, cpu = attack_seconds(
            timed, [f"target={name}", *method_overrides(sampler), f"budget={budget}", *extra]
        )
    totals["target"] = timed.seconds
    per_trial = {key: 1000.0 * seconds / budget for key, seconds in totals.items()}
    per_trial["other"] = 1000.0 * wall / budget - sum(per_trial.values())
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
        "components_ms_per_trial": per_trial,
    }


def print_breakdown(rows: Sequence[dict]) -> None:
    """One line per run: milliseconds per trial in each component (see the module docstring)."""
    keys = (*COMPONENTS, "other")
    print("\n| run | sampler | wall ms/trial | " + " | ".join(keys) + " |")
    print("|---|---|---|" + "---|" * len(keys))
    for row in rows:
        parts = row["components_ms_per_trial"]
        if row["kind"] == "overhead":
            label, wall = row["target"], 1000.0 * row["wall_s"] / row["budget"]
        else:
            label, wall = f"instant, {row['storage']}", row["ms_per_trial"]
        cells = " | ".join(f"{parts[key]:.1f}" for key in keys)
        print(f"| {label} | {row['sampler']} | {wall:.1f} | {cells} |")


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--targets", nargs="+", default=["classic", "twitter"])
    parser.add_argument("--samplers", nargs="+", default=["square", "tpe", "random"])
    parser.add_argument("--storages", nargs="+", default=["memory", "journal", "sqlite"])
    parser.add_argument("--budget", type=int, default=200)
    parser.add_argument("--repeats", type=int, default=20, help="single-query timings per target")
    parser.add_argument("--extra", nargs="*", default=[], help="Hydra overrides for every run")
    parser.add_argument("--out", type=Path, default=Path("runs/benchmarks"))
    args = parser.parse_args()
    rows: list[dict] = []

    storage = next((o.split("=", 1)[1] for o in args.extra if o.startswith("storage=")), "journal")
    print(f"storage={storage}, budget={args.budget}, early stop off, photo {PHOTO}")
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
            with component_timers() as totals:
                wall, _ = attack_seconds(
                    instant,
                    [*method_overrides(sampler), f"storage={storage}", f"budget={args.budget}", *args.extra],
                )
            per_trial = 1000.0 * wall / args.budget
            components = {key: 1000.0 * seconds / args.budget for key, seconds in totals.items()}
            components["other"] = per_trial - sum(components.values())
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
                    "components_ms_per_trial": components,
                }
            )
            print(
                f"| {storage} | {sampler} | {per_trial:.1f} | {'-' if extra is None else f'{extra:.1f}'} |",
                flush=True,
            )

    print_breakdown(rows)
    out = args.out / f"overhead-{time.strftime('%Y%m%d-%H%M%S')}.json"
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text(json.dumps(rows, indent=2))
    print(f"\nwritten {out}")


if __name__ == "__main__":
    main()
