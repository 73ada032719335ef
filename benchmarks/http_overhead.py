"""Queries/s and per-query overhead of ``target=http`` against the same target in-process.

    python -m benchmarks.http_overhead                       # classic, 640 px photo, full and crop-only
    python -m benchmarks.http_overhead --width 160 --batch 8 --repeats 30

The reference server runs as its own process (``python -m targets.serve ... port=0``) on 127.0.0.1,
so client and server do not share a GIL, as with a real service. Measured, per answer mode:
in-process ``query`` (one call of ``--batch`` images), HTTP single requests one at a time and
``--concurrency`` at a time, and the batch endpoint. Then a load run: ``--clients`` threads, each
its own target, ``--requests`` single queries of a tiny image; throughput and latency percentiles.
The table is printed and written as JSON under ``runs/benchmarks/``.
"""

from __future__ import annotations

import argparse
import json
import os
import re
import subprocess
import sys
import tempfile
import threading
import time
from pathlib import Path

import numpy as np

import targets as zoo
from blackbox.core.images import load_bundled
from targets import Target
from targets._protocol import encode_png
from targets.http import HttpTarget

REPO = Path(__file__).resolve().parents[1]


class Server:
    """``python -m targets.serve`` in a subprocess on a free loopback port."""

    def __init__(self, *settings: str) -> None:
        self.log = tempfile.NamedTemporaryFile("w+", suffix=".log", delete=False)  # noqa: SIM115
        env = {**os.environ, "OMP_NUM_THREADS": os.environ.get("OMP_NUM_THREADS", "1")}
        args = [sys.executable, "-m", "targets.serve", "port=0", *settings]
        self.process = subprocess.Popen(args, cwd=REPO, env=env, stdout=self.log, stderr=subprocess.STDOUT)
        deadline = time.monotonic() + 120
        while time.monotonic() < deadline:
            found = re.search(
                r"Uvicorn running on http://127\.0\.0\.1:(\d+)", Path(self.log.name).read_text()
            )
            if found:
                self.base = f"http://127.0.0.1:{found.group(1)}"
                return
            if self.process.poll() is not None:
                break
            time.sleep(0.1)
        self.stop()
        raise RuntimeError(f"the server did not start: {Path(self.log.name).read_text()}")

    def stop(self) -> None:
        self.process.terminate()
        self.process.wait(timeout=30)
        Path(self.log.name).unlink(missing_ok=True)


def per_image_ms(target: Target, images: list[np.ndarray], repeats: int) -> float:
    target.query(images)  # warm: caches, connections
    started = time.perf_counter()
    for _ in range(repeats):
        target.query(images)
    return (time.perf_counter() - started) / (repeats * len(images)) * 1e3


def load(base: str, *, clients: int, requests: int, expect: list[str]) -> dict:
    image = (np.random.default_rng(0).integers(0, 256, (48, 64, 3)) / 255.0).astype(np.float32)
    targets = [
        HttpTarget(url=f"{base}/v1/saliency", expect=expect, max_concurrency=1) for _ in range(clients)
    ]
    latencies: list[list[float]] = [[] for _ in range(clients)]
    errors: list[str] = []

    def work(i: int) -> None:
        for _ in range(requests):
            started = time.perf_counter()
            try:
                targets[i].query([image])
            except Exception as error:  # counted, not raised: the figure is the error count
                errors.append(repr(error))
            latencies[i].append(time.perf_counter() - started)

    threads = [threading.Thread(target=work, args=(i,)) for i in range(clients)]
    started = time.perf_counter()
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    elapsed = time.perf_counter() - started
    flat = np.array([x for per in latencies for x in per]) * 1e3
    retries = sum(t.retries for t in targets)
    for t in targets:
        t.close()
    return {
        "clients": clients,
        "requests_each": requests,
        "errors": len(errors),
        "retries": retries,
        "requests_per_s": len(flat) / elapsed,
        "latency_ms_p50": float(np.percentile(flat, 50)),
        "latency_ms_p95": float(np.percentile(flat, 95)),
        "latency_ms_p99": float(np.percentile(flat, 99)),
    }


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--target", default="classic")
    parser.add_argument("--image", default="chelsea", help="a bundled photo")
    parser.add_argument("--width", type=int, default=640, help="working width, as in a run")
    parser.add_argument("--batch", type=int, default=4, help="images per query call (a run's batch_size)")
    parser.add_argument("--concurrency", type=int, default=4)
    parser.add_argument("--repeats", type=int, default=10)
    parser.add_argument("--responses", nargs="+", default=["full", "crop"])
    parser.add_argument("--clients", type=int, default=8)
    parser.add_argument("--requests", type=int, default=100)
    parser.add_argument("--out", type=Path, default=REPO / "runs" / "benchmarks")
    args = parser.parse_args()

    photo = load_bundled(args.image, working_width=args.width)
    rng = np.random.default_rng(0)
    # Distinct 8-bit images, as a search sends: the photo with a little noise each.
    images = [
        (np.clip(photo.pixels + rng.integers(-2, 3, photo.pixels.shape), 0, 255) / 255.0).astype(np.float32)
        for _ in range(args.batch)
    ]
    local = zoo.load(args.target)
    rows = []
    in_process = per_image_ms(local, images, args.repeats)
    rows.append({"mode": "in-process", "response": "-", "ms_per_image": in_process})
    for response in args.responses:
        expect = ["crops"] if response == "crop" else ["saliency", "point", "crops"]
        server = Server(f"target={args.target}", f"response={response}")
        try:
            url = f"{server.base}/v1/saliency"
            modes = {
                "http single": HttpTarget(url=url, expect=expect, max_concurrency=1),
                f"http single x{args.concurrency}": HttpTarget(
                    url=url, expect=expect, max_concurrency=args.concurrency
                ),
                "http batch": HttpTarget(url=url, batch_url=f"{url}/batch", expect=expect),
            }
            for mode, target in modes.items():
                ms = per_image_ms(target, images, args.repeats)
                rows.append(
                    {
                        "mode": mode,
                        "response": response,
                        "ms_per_image": ms,
                        "overhead_ms_per_image": ms - in_process,
                        "retries": target.retries,
                    }
                )
                target.close()
            loaded = load(server.base, clients=args.clients, requests=args.requests, expect=expect)
            rows.append({"mode": "load", "response": response, **loaded})
        finally:
            server.stop()

    png_kib = len(encode_png(images[0])) / 1024
    print(f"target={args.target}, {photo.width}x{photo.height} px, batch {args.batch}, PNG {png_kib:.0f} KiB")
    print(f"cpu cores: {os.cpu_count()}, OMP_NUM_THREADS={os.environ.get('OMP_NUM_THREADS', '-')}\n")
    print("| mode | response | ms/image | images/s | overhead ms/image |")
    print("|---|---|---|---|---|")
    for row in rows:
        if row["mode"] == "load":
            continue
        overhead = row.get("overhead_ms_per_image")
        print(
            f"| {row['mode']} | {row['response']} | {row['ms_per_image']:.1f} | "
            f"{1e3 / row['ms_per_image']:.1f} | {'-' if overhead is None else f'{overhead:+.1f}'} |"
        )
    print(f"\nload: {args.clients} clients x {args.requests} single requests, 64x48 image")
    print("| response | errors | retries | requests/s | p50 ms | p95 ms | p99 ms |")
    print("|---|---|---|---|---|---|---|")
    for row in rows:
        if row["mode"] == "load":
            print(
                f"| {row['response']} | {row['errors']} | {row['retries']} | {row['requests_per_s']:.0f} | "
                f"{row['latency_ms_p50']:.1f} | {row['latency_ms_p95']:.1f} | {row['latency_ms_p99']:.1f} |"
            )
    args.out.mkdir(parents=True, exist_ok=True)
    path = args.out / f"http_overhead-{time.strftime('%Y%m%d-%H%M%S')}.json"
    path.write_text(json.dumps({"args": {k: str(v) for k, v in vars(args).items()}, "rows": rows}, indent=1))
    print(f"\nwritten: {path}")


if __name__ == "__main__":
    main()
