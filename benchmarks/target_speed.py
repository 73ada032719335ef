"""Milliseconds per 640x480 image: ``query`` and forward+backward, at batch sizes 1 and 8.

    python -m benchmarks.target_speed --targets twitter classic --batches 1 8 --repeats 5

Forward+backward is what a white-box attack step costs: ``log_density`` on a batch that requires
grad, a scalar loss, ``backward`` to the pixels. Times are medians over ``--repeats`` runs after one
warm-up; the table is printed and written as JSON under ``runs/benchmarks/``.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import statistics
import time
from collections.abc import Callable
from pathlib import Path

import numpy as np
import torch

from blackbox.zoo import load_target
from targets import DEFAULT_ASPECT_RATIOS, DifferentiableTarget

HEIGHT, WIDTH = 480, 640


def median_ms(action: Callable[[], object], repeats: int) -> float:
    action()  # warm-up: first calls allocate and pick kernels
    times = []
    for _ in range(repeats):
        start = time.perf_counter()
        action()
        times.append(time.perf_counter() - start)
    return 1000.0 * statistics.median(times)


def measure(name: str, batch: int, repeats: int) -> dict:
    target = load_target(name, aspect_ratios=DEFAULT_ASPECT_RATIOS)
    rng = np.random.default_rng(0)
    images = [rng.random((HEIGHT, WIDTH, 3), dtype=np.float32) for _ in range(batch)]
    row = {"target": name, "batch": batch}
    row["query_ms_per_image"] = median_ms(lambda: target.query(images), repeats) / batch
    if isinstance(target, DifferentiableTarget):
        tensor = torch.from_numpy(np.stack(images)).permute(0, 3, 1, 2).contiguous()

        def forward_backward() -> None:
            x = tensor.clone().requires_grad_(True)
            log_density = target.log_density(x)
            log_density[:, :, : WIDTH // 4].logsumexp(dim=(1, 2)).sum().backward()

        row["forward_backward_ms_per_image"] = median_ms(forward_backward, repeats) / batch
    else:
        row["forward_backward_ms_per_image"] = None
    return row


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--targets", nargs="+", default=["twitter"])
    parser.add_argument("--batches", type=int, nargs="+", default=[1, 8])
    parser.add_argument("--repeats", type=int, default=9)
    parser.add_argument("--threads", type=int, default=None, help="torch threads (default: torch's)")
    parser.add_argument("--out", type=Path, default=Path("runs/benchmarks"))
    args = parser.parse_args()
    if args.threads:
        torch.set_num_threads(args.threads)

    rows = [measure(name, batch, args.repeats) for name in args.targets for batch in args.batches]
    load = os.getloadavg()[0]  # other processes on the machine slow every figure down
    print(
        f"{WIDTH}x{HEIGHT} images, torch {torch.__version__}, {torch.get_num_threads()} threads, CPU, "
        f"{os.cpu_count()} cores, load average {load:.1f}"
    )
    print("| target | batch | query ms/image | forward+backward ms/image |")
    print("| --- | ---: | ---: | ---: |")
    for row in rows:
        backward = row["forward_backward_ms_per_image"]
        print(
            f"| {row['target']} | {row['batch']} | {row['query_ms_per_image']:.1f} | "
            + (f"{backward:.1f} |" if backward is not None else "n/a |")
        )
    args.out.mkdir(parents=True, exist_ok=True)
    path = args.out / f"target_speed-{time.strftime('%Y%m%d-%H%M%S')}.json"
    meta = {
        "image": [WIDTH, HEIGHT],
        "threads": torch.get_num_threads(),
        "torch": torch.__version__,
        "machine": platform.machine(),
        "processor": platform.processor(),
        "repeats": args.repeats,
        "cores": os.cpu_count(),
        "load_average_1min": load,
    }
    path.write_text(json.dumps({"meta": meta, "rows": rows}, indent=1))
    print(f"wrote {path}")


if __name__ == "__main__":
    main()
