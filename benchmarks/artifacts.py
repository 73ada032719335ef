"""What per-trial artifacts cost: ms per trial of the search with ``artifacts=none|best|all``.

    python -m benchmarks.artifacts --target classic --budget 40

Part by part, on the bundled photos at the working width (640 px): one target query (per image, in
batches of ``batch_size``), the callback's per-trial attributes, and one upload (adversarial PNG and
overlay encoded, copied into the artifact store, linked to the trial in the journal). Then the real
pipeline (``experiment.run.run``, journal storage) once per mode: wall ms per trial and trials uploaded.
The table is printed and written as JSON under ``runs/benchmarks/``.
"""

from __future__ import annotations

import argparse
import contextlib
import io
import json
import statistics
import tempfile
import time
from pathlib import Path

import numpy as np
import optuna
from hydra.utils import instantiate

from benchmarks._compose import compose_run
from blackbox.core.datasets import bundled_sources, iterate
from blackbox.experiment.artifacts import TrialArtifacts, artifact_store
from blackbox.experiment.pipeline import Pipeline
from blackbox.search.patch_search import TrialRecord
from blackbox.settings.commands import run


def _median_ms(fn, repeats: int) -> float:
    times = []
    for _ in range(repeats):
        started = time.perf_counter()
        fn()
        times.append(1000 * (time.perf_counter() - started))
    return statistics.median(times)


def parts(target, *, batch: int, repeats: int) -> dict[str, float]:
    (_, image), *_ = iterate(bundled_sources(["chelsea"]), 640)
    pipeline = Pipeline(target=target, target_name="bench")
    clean = pipeline.clean(image)
    problem = pipeline.problem(clean, pipeline.goal(clean), eps=20.0)
    rng = np.random.default_rng(0)
    adversarial = np.clip(image.pixels.astype(int) + rng.integers(-3, 4, image.pixels.shape), 0, 255).astype(
        np.uint8
    )
    query_ms = _median_ms(lambda: target.query([adversarial / 255.0] * batch), repeats) / batch
    output = target.query([adversarial / 255.0])[0]
    with tempfile.TemporaryDirectory() as folder:
        storage = optuna.storages.JournalStorage(
            optuna.storages.journal.JournalFileBackend(str(Path(folder) / "optuna.journal"))
        )
        study = optuna.create_study(storage=storage, direction="maximize")
        callback = TrialArtifacts(store=artifact_store(Path(folder) / "artifacts"), mode="all")
        attributes = TrialArtifacts(store=None, mode="none")

        def record() -> TrialRecord:
            return TrialRecord(study, study.ask(), problem, adversarial, output, 0.0, False, 1)

        attrs_ms = _median_ms(lambda: attributes(record()), repeats)
        upload_ms = _median_ms(lambda: callback.upload(record()), repeats)
        ask_ms = _median_ms(record, repeats)
    return {
        "query_ms_per_image": query_ms,
        "attributes_ms": attrs_ms - ask_ms,
        "upload_ms": upload_ms - ask_ms,
    }


def pipeline(target, target_name: str, *, mode: str, budget: int, images: list[str]) -> dict:
    cfg = compose_run(
        [
            f"target={target_name}",
            f"budget={budget}",
            "early_stop=false",
            f"artifacts={mode}",
            "progress=false",
            f"dataset.names=[{','.join(images)}]",
        ]
    )
    with tempfile.TemporaryDirectory() as folder:
        started = time.perf_counter()
        with contextlib.redirect_stdout(io.StringIO()):
            run(cfg, Path(folder), target_name=target_name, target=target)
        seconds = time.perf_counter() - started
        uploaded = len(list((Path(folder) / "artifacts").glob("*"))) // 2 if mode != "none" else 0
    trials = budget * len(images)
    return {
        "mode": mode,
        "ms_per_trial": 1000 * seconds / trials,
        "trials": trials,
        "uploaded_trials": uploaded,
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--target", default="classic")
    parser.add_argument("--budget", type=int, default=40)
    parser.add_argument("--images", nargs="+", default=["chelsea", "coffee"])
    parser.add_argument("--repeats", type=int, default=15)
    parser.add_argument("--out", type=Path, default=Path("runs/benchmarks"))
    args = parser.parse_args()
    target = instantiate(compose_run([f"target={args.target}"]).target)
    measured = parts(target, batch=4, repeats=args.repeats)
    print(f"{args.target} at 640 px, median of {args.repeats}:")
    print("| part | ms |\n|---|---|")
    for key, value in measured.items():
        print(f"| {key} | {value:.1f} |")
    rows = [
        pipeline(target, args.target, mode=m, budget=args.budget, images=args.images)
        for m in ("none", "best", "all")
    ]
    rows += [
        pipeline(target, args.target, mode=m, budget=args.budget, images=args.images)
        for m in ("none", "best", "all")
    ]
    best = {
        m: min((r for r in rows if r["mode"] == m), key=lambda r: r["ms_per_trial"])
        for m in ("none", "best", "all")
    }
    print(f"\nwhole search, journal, budget {args.budget} x {len(args.images)} images (best of 2 rounds):")
    print("| artifacts | ms per trial | trials with images |\n|---|---|---|")
    for mode, row in best.items():
        print(f"| {mode} | {row['ms_per_trial']:.1f} | {row['uploaded_trials']} of {row['trials']} |")
    args.out.mkdir(parents=True, exist_ok=True)
    path = args.out / f"artifacts-{time.strftime('%Y%m%d-%H%M%S')}.json"
    path.write_text(json.dumps({"target": args.target, "parts": measured, "pipeline": rows}, indent=2) + "\n")
    print(f"\nwritten: {path}")


if __name__ == "__main__":
    main()
