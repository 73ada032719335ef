"""Latency of each local target at 640x480: query, and forward+backward for differentiable ones.

    python -m benchmarks.target_latency --targets classic --batches 1 4 16 --repeats 20
    python -m benchmarks.target_latency --targets vips_attention vips_entropy --batches 1 4
    python -m benchmarks.target_latency --targets smartcrop faces --batches 1 4

Prints p50/p95 milliseconds per call and per image, the throughput gained by batching (images per
second at batch B over batch 1), and the peak resident memory above the loaded model during the
first call of each kind; writes the table as JSON under ``runs/benchmarks/``. Random images of
the working size stand in for photos: latency does not depend on the content. Thread count is
torch's default unless ``--threads`` is given. The ``vips_*`` targets (libvips' smartcrop, one call per
aspect ratio, and one more for ``attention``'s point) run on libvips' own thread pool (``VIPS_CONCURRENCY``,
default one thread per core), printed beside torch's; ``smartcrop`` (smartcrop.py: numpy and Pillow, one
feature pass per image and one scoring pass per aspect ratio) and ``faces`` (OpenCV's Haar cascade, then
corners; OpenCV's own thread pool, ``cv2.getNumThreads()``, printed too) answer one image at a time.
"""

from __future__ import annotations

import argparse
import json
import time
from pathlib import Path

import numpy as np
import torch

from benchmarks._memory import PeakSampler, rss_mb
from targets import DEFAULT_ASPECT_RATIOS, Capability, load


def _timings(call, repeats: int) -> tuple[np.ndarray, float]:
    """Milliseconds per call, and the peak MB above the resident set before the first call."""
    before = rss_mb()
    sampler = PeakSampler()
    sampler.start()
    call()  # warm-up: first calls allocate and build caches
    peak_mb = sampler.stop() - before
    seconds = []
    for _ in range(repeats):
        started = time.perf_counter()
        call()
        seconds.append(time.perf_counter() - started)
    return 1000.0 * np.asarray(seconds), peak_mb


def _row(target: str, mode: str, batch: int, timed: tuple[np.ndarray, float]) -> dict:
    ms, peak_mb = timed
    p50, p95 = float(np.percentile(ms, 50)), float(np.percentile(ms, 95))
    return {
        "target": target,
        "mode": mode,
        "batch": batch,
        "p50_ms": p50,
        "p95_ms": p95,
        "p50_ms_per_image": p50 / batch,
        "repeats": len(ms),
        "peak_mb": peak_mb,
    }


def measure(
    name: str, batches: list[int], repeats: int, width: int, height: int, overrides: dict
) -> list[dict]:
    target = load(name, aspect_ratios=DEFAULT_ASPECT_RATIOS, **overrides)
    rng = np.random.default_rng(0)
    rows = []
    for batch in batches:
        images = rng.random((batch, height, width, 3), dtype=np.float32)
        rows.append(_row(name, "query", batch, _timings(lambda images=images: target.query(images), repeats)))
        if Capability.GRADIENTS in target.capabilities:
            tensor = torch.from_numpy(images).permute(0, 3, 1, 2).contiguous()

            def forward_backward(tensor: torch.Tensor = tensor) -> None:
                x = tensor.clone().requires_grad_()
                target.log_density(x)[:, :, : width // 4].logsumexp(dim=(1, 2)).sum().backward()

            rows.append(_row(name, "forward+backward", batch, _timings(forward_backward, repeats)))
    return rows


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--targets", nargs="+", default=["classic"])
    parser.add_argument("--batches", type=int, nargs="+", default=[1, 4, 16])
    parser.add_argument("--repeats", type=int, default=20)
    parser.add_argument("--size", type=int, nargs=2, default=[640, 480], metavar=("WIDTH", "HEIGHT"))
    parser.add_argument("--threads", type=int, default=None)
    parser.add_argument("--set", nargs="*", default=[], metavar="TARGET.KEY=VALUE")
    parser.add_argument("--out", type=Path, default=Path("runs/benchmarks"))
    args = parser.parse_args()
    if args.threads:
        torch.set_num_threads(args.threads)
    overrides: dict[str, dict] = {}
    for item in args.set:
        key, value = item.split("=", 1)
        name, setting = key.split(".", 1)
        overrides.setdefault(name, {})[setting] = value
    rows = []
    threads = f"torch threads: {torch.get_num_threads()}"
    if any(name.startswith("vips") for name in args.targets):
        import pyvips

        from targets.vips import libvips_version

        threads += f", libvips {libvips_version()} threads: {pyvips.concurrency_get()}"
    if "faces" in args.targets:
        from targets._opencv import load_cv2

        threads += f", OpenCV {load_cv2().__version__} threads: {load_cv2().getNumThreads()}"
    print(f"{threads}, image {args.size[0]}x{args.size[1]}")
    print(
        f"{'target':>10} {'mode':>17} {'batch':>5} {'p50 ms':>9} {'p95 ms':>9} {'ms/image':>9} "
        f"{'x batch 1':>9} {'peak MB':>8}"
    )
    for name in args.targets:
        single: dict[str, float] = {}
        for row in measure(name, args.batches, args.repeats, *args.size, overrides.get(name, {})):
            # Throughput against one image per call (the sequential attacker): >1 means batching pays.
            single.setdefault(row["mode"], row["p50_ms_per_image"] if row["batch"] == 1 else float("nan"))
            row["throughput_vs_batch1"] = single[row["mode"]] / row["p50_ms_per_image"]
            rows.append(row)
            print(
                f"{row['target']:>10} {row['mode']:>17} {row['batch']:>5} {row['p50_ms']:>9.1f} "
                f"{row['p95_ms']:>9.1f} {row['p50_ms_per_image']:>9.1f} "
                f"{row['throughput_vs_batch1']:>9.2f} {row['peak_mb']:>8.0f}",
                flush=True,
            )
    out = args.out / f"target_latency-{time.strftime('%Y%m%d-%H%M%S')}.json"
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text(json.dumps({"threads": torch.get_num_threads(), "rows": rows}, indent=2))
    print(f"written {out}")


if __name__ == "__main__":
    main()
