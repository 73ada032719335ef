"""DeepGaze II (``target=deepgaze``) speed and memory on a 640x480 image, batch 1 and 8.

    OMP_NUM_THREADS=2 python -m benchmarks.deepgaze_latency                 # random weights, all variants
    python -m benchmarks.deepgaze_latency --models ~/.cache/blackbox/models  # real files, if you have them

Speed and memory do not depend on the weights' values, so by default the model runs on random files
in the exact layouts (``targets.fixtures``), on the astronaut photograph resized to 640x480. Modes:

* ``query``: ``Target.query`` on numpy images, as the black-box search calls it (inference mode,
  salient point and crops included);
* ``no_grad``: ``log_density`` under ``torch.no_grad`` instead of inference mode;
* ``fwd_bwd``: ``log_density`` with gradients, and the backward pass of a goal-region score to the
  image, as the white-box attacks call it.

Variants: ``fp32`` (contiguous NCHW), ``channels_last`` (the target's default), ``bf16`` (channels
last under CPU bfloat16 autocast; how far its map and salient point move from fp32 is printed),
``jit_freeze`` (the VGG-19 traced and frozen by TorchScript, which fuses each convolution with its
ReLU; inference only). The last two are measurements, not settings the target offers.

Timing: all variants of a (batch, mode) live in one process and are called in turn, round after
round, so that a machine shared with other work slows them alike; min and median over the rounds
are reported, after one warm-up call each (oneDNN picks its kernels on the first call of a shape).
Memory: each (variant, batch, mode) runs once more in a fresh process, whose resident set is
sampled every millisecond during its first call; the peak above the loaded model is reported (the
allocator keeps what it freed, so a long process would under-report later cells). The table is
printed with the load average and written as JSON under ``runs/benchmarks/``.
"""

from __future__ import annotations

import argparse
import contextlib
import json
import os
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable
from pathlib import Path

import numpy as np

from benchmarks._memory import PeakSampler, rss_mb

VARIANTS = {
    "fp32": {"channels_last": False},
    "channels_last": {"channels_last": True},
    "bf16": {"channels_last": True, "autocast": True},
    "jit_freeze": {"channels_last": True, "jit_freeze": True},
}
INFERENCE_ONLY = {"bf16", "jit_freeze"}
MODES = ("query", "no_grad", "fwd_bwd")
HEIGHT, WIDTH = 480, 640


def photo(batch: int) -> np.ndarray:
    """The astronaut photograph at 640x480, float32 in [0, 1], repeated ``batch`` times."""
    import skimage.data
    from PIL import Image

    image = Image.fromarray(skimage.data.astronaut()).resize((WIDTH, HEIGHT), Image.Resampling.BILINEAR)
    return np.repeat(np.asarray(image, dtype=np.float32)[None] / 255.0, batch, axis=0)


def make_call(
    variant: str, mode: str, batch: int, readout: str, vgg: str
) -> tuple[Callable[[], None], object]:
    """A no-argument call of ``mode`` on a freshly loaded target of ``variant``, and the target."""
    import torch

    from targets.deepgaze import DeepGazeII

    settings = dict(VARIANTS[variant])
    autocast = settings.pop("autocast", False)
    jit_freeze = settings.pop("jit_freeze", False)
    target = DeepGazeII(weights=readout, vgg_weights=vgg, **settings)
    if jit_freeze:
        vgg_module = target.network.vgg
        example = torch.rand(1, 3, HEIGHT // 2, WIDTH // 2).contiguous(memory_format=torch.channels_last)
        with torch.no_grad():
            frozen = torch.jit.freeze(torch.jit.trace(vgg_module.eval(), example))
        vgg_module.forward = lambda x: list(frozen(x))  # type: ignore[method-assign]
    images = photo(batch)
    tensor = torch.from_numpy(images).permute(0, 3, 1, 2).contiguous()
    region = (slice(None), slice(None), slice(0, WIDTH // 4))

    def call() -> None:
        context = torch.autocast("cpu", dtype=torch.bfloat16) if autocast else contextlib.nullcontext()
        with context:
            if mode == "query":
                target.query(images)
            elif mode == "no_grad":
                with torch.no_grad():
                    target.log_density(tensor)
            else:
                x = tensor.clone().requires_grad_(True)
                target.log_density(x)[region].logsumexp(dim=(1, 2)).sum().backward()

    def log_density() -> torch.Tensor:
        context = torch.autocast("cpu", dtype=torch.bfloat16) if autocast else contextlib.nullcontext()
        with torch.inference_mode(), context:
            return target.log_density(tensor).float()

    return call, log_density


def timing_worker(args: argparse.Namespace) -> None:
    calls = {v: make_call(v, args.mode, args.batch, args.readout, args.vgg) for v in args.variants}
    for call, _ in calls.values():
        call()  # warm-up
    times: dict[str, list[float]] = {v: [] for v in args.variants}
    loads = [os.getloadavg()[0]]
    for _ in range(args.rounds):
        for variant, (call, _) in calls.items():
            started = time.perf_counter()
            call()
            times[variant].append(1000 * (time.perf_counter() - started))
        loads.append(os.getloadavg()[0])
    result = {"times_ms": times, "loadavg_1min": loads}
    if args.mode == "query" and "fp32" in calls:
        # How far the inexact variants move the map from fp32 (exact variants must not move it).
        exact = calls["fp32"][1]()
        result["drift"] = {}
        for variant, (_, log_density) in calls.items():
            approx = log_density()
            a, b = exact.flatten(1).argmax(1), approx.flatten(1).argmax(1)
            moved = ((a // WIDTH - b // WIDTH) ** 2 + (a % WIDTH - b % WIDTH) ** 2).double().sqrt().max()
            result["drift"][variant] = {
                "max_abs_log_density_diff": float((approx - exact).abs().max()),
                "salient_point_moved_px": float(moved),
            }
    print(json.dumps(result))


def memory_worker(args: argparse.Namespace) -> None:
    (variant,) = args.variants
    call, _ = make_call(variant, args.mode, args.batch, args.readout, args.vgg)
    loaded = rss_mb()
    sampler = PeakSampler()
    sampler.start()
    call()
    print(json.dumps({"peak_mb_above_model": sampler.stop() - loaded, "model_rss_mb": loaded}))


def run_worker(kind: str, variants: list[str], batch: int, mode: str, args, readout, vgg) -> dict:
    command = [
        *(sys.executable, "-m", "benchmarks.deepgaze_latency", "--worker", kind),
        *("--variants", *variants, "--batch", str(batch), "--mode", mode, "--rounds", str(args.rounds)),
        *("--readout", str(readout), "--vgg", str(vgg)),
    ]
    done = subprocess.run(command, capture_output=True, text=True, check=False)
    if done.returncode != 0:
        raise RuntimeError(f"{kind} worker failed for {variants} {batch} {mode}:\n{done.stderr[-2000:]}")
    return json.loads(done.stdout.strip().splitlines()[-1])


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--variants", nargs="+", default=list(VARIANTS), choices=list(VARIANTS))
    parser.add_argument("--batches", nargs="+", type=int, default=[1, 8])
    parser.add_argument("--modes", nargs="+", default=list(MODES), choices=list(MODES))
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--models", type=Path, help="a folder with the real files (default: random ones)")
    parser.add_argument("--out", type=Path, default=Path("runs/benchmarks"))
    parser.add_argument("--worker", choices=["timing", "memory"], help=argparse.SUPPRESS)
    parser.add_argument("--batch", type=int, help=argparse.SUPPRESS)
    parser.add_argument("--mode", help=argparse.SUPPRESS)
    parser.add_argument("--readout", help=argparse.SUPPRESS)
    parser.add_argument("--vgg", help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.worker == "timing":
        timing_worker(args)
        return
    if args.worker == "memory":
        memory_worker(args)
        return

    rows = []
    with tempfile.TemporaryDirectory() as scratch:
        if args.models:
            readout, vgg = args.models / "deepgaze2_readout.pth", args.models / "vgg19-dcbb9e9d.pth"
            weights = "real files"
        else:
            from targets.fixtures import write_deepgaze2_fixtures

            files = write_deepgaze2_fixtures(scratch)
            readout, vgg, weights = files["readout"], files["vgg"], "random fixture files"
        threads = os.environ.get("OMP_NUM_THREADS", "unset")
        print(f"DeepGaze II, {WIDTH}x{HEIGHT}, {weights}, OMP_NUM_THREADS={threads}, {args.rounds} rounds")
        print(
            "| batch | mode | variant | min ms | median ms | min ms/image | peak MB above model | load avg |"
        )
        print("|---|---|---|---|---|---|---|---|", flush=True)
        for batch in args.batches:
            for mode in args.modes:
                variants = [v for v in args.variants if not (v in INFERENCE_ONLY and mode != "query")]
                timing = run_worker("timing", variants, batch, mode, args, readout, vgg)
                load = timing["loadavg_1min"]
                for variant in variants:
                    memory = run_worker("memory", [variant], batch, mode, args, readout, vgg)
                    times = timing["times_ms"][variant]
                    drift = timing.get("drift", {}).get(variant)
                    row = {
                        "batch": batch,
                        "mode": mode,
                        "variant": variant,
                        "times_ms": times,
                        "min_ms": min(times),
                        "median_ms": float(np.median(times)),
                        **memory,
                        "loadavg_1min": load,
                        "drift_from_fp32": drift,
                    }
                    rows.append(row)
                    note = ""
                    if drift and variant != "fp32":
                        note = (
                            f" vs fp32: max abs log-density diff {drift['max_abs_log_density_diff']:.2g}, "
                            f"salient point moved {drift['salient_point_moved_px']:.0f} px"
                        )
                    print(
                        f"| {batch} | {mode} | {variant} | {row['min_ms']:.0f} | {row['median_ms']:.0f} | "
                        f"{row['min_ms'] / batch:.0f} | {row['peak_mb_above_model']:.0f} | "
                        f"{min(load):.1f}-{max(load):.1f} |{note}",
                        flush=True,
                    )
    args.out.mkdir(parents=True, exist_ok=True)
    path = args.out / f"deepgaze_latency-{time.strftime('%Y%m%d-%H%M%S')}.json"
    path.write_text(json.dumps({"weights": weights, "threads": threads, "rows": rows}, indent=1))
    print(f"\nwritten: {path}")


if __name__ == "__main__":
    main()
