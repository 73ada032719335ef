"""Issue 28's goals for ``target=thumbnail`` against the reference thumbnail service, on loopback.

    python -m benchmarks.thumbnail_service                       # both goals
    python -m benchmarks.thumbnail_service --goal crops --targets smartcrop faces --qualities 75 95
    python -m benchmarks.thumbnail_service --goal rate --rate 5 --budget 60
    python -m benchmarks.thumbnail_service --goal crops --targets faces \\
        --service-url 'http://127.0.0.1:8888/unsafe/{width}x{height}/smart/{image_url}'   # thumbor

1. **crops**: each zoo cropper is served by ``python -m targets.serve``'s app with ``response=thumbnail``
   (JPEG at each ``--qualities``, Lanczos resize) and asked through ``target=thumbnail`` (the image by
   URL from its loopback file server, thumbnails at ``--scale`` of the crop); every crop box found
   back from the thumbnails is compared with the same cropper queried directly, on the 13 pictures of
   the search-design table (the 5 bundled photos and the 8 of ``benchmarks.photos``) at 640 px. Goal:
   every edge of every crop within 2 px.
2. **rate**: the service answers at most ``--rate`` requests a second (429 and ``Retry-After`` beyond);
   the real attack (``search=grid``, ``--budget`` queries, no early stop) runs through the thumbnail
   target on ``--pictures`` pictures three times: with no ``rate_limit`` of the client's own (it
   bursts, gets 429s, waits ``Retry-After`` and retries), with the service's rate, and with 90% of
   it. Goal: the service answered exactly the clean image and the budget per picture (a thumbnail per
   aspect ratio each), and no query failed.

Prints the tables and the goals as met or not, and writes JSON to ``runs/benchmarks/thumbnail_service.json``.
"""

from __future__ import annotations

import argparse
import contextlib
import json
import logging
import time
from pathlib import Path

import requests

from benchmarks._compose import compose_run
from benchmarks.vips_search import pictures
from blackbox.attacks import AttackProblem
from blackbox.settings.build import attack_spec, goal_rule
from targets import load
from targets.serve import create_app, running_server
from targets.thumbnail import ThumbnailTarget

URL = "{base}/thumbnail/{{width}}x{{height}}/smart/{{image_url_quoted}}"
TOLERANCE = 2


def same_crops(
    names: list[str], qualities: list[int], scale: float, images: list, service_url: str | None = None
) -> list[dict]:
    """Each cropper's crops through thumbnails against the same cropper queried directly; with
    ``service_url`` the thumbnails come from that service (e.g. thumbor) instead of the reference one."""
    rows = []
    for name in names:
        direct = load(name)
        answers = {image.image_id: direct.query([image.as_float])[0] for image in images}
        for quality in [None] if service_url else qualities:
            worst, within, total, failed = 0, 0, 0, []
            started = time.perf_counter()
            with contextlib.ExitStack() as stack:
                if service_url:
                    url = service_url
                else:
                    app = create_app(load(name), response="thumbnail", thumbnail={"jpeg_quality": quality})
                    url = URL.format(base=stack.enter_context(running_server(app)))
                target = stack.enter_context(ThumbnailTarget(url=url, thumbnail_scale=scale))
                for image in images:
                    try:
                        found = target.query([image.as_float])[0]
                    except Exception as error:  # a named failure counts as a miss, with its reason
                        failed.append(f"{image.image_id}: {error}")
                        total += len(direct.aspect_ratios)
                        continue
                    for near, exact in zip(found.crops, answers[image.image_id].crops, strict=True):
                        edges = (near.left, near.top, near.right, near.bottom)
                        truth = (exact.left, exact.top, exact.right, exact.bottom)
                        error = max(abs(a - b) for a, b in zip(edges, truth, strict=True))
                        worst = max(worst, error)
                        within += error <= TOLERANCE
                        total += 1
                counts = target.counters()
            rows.append(
                {
                    "target": name,
                    "quality": quality,
                    "crops": total,
                    "within": within,
                    "worst_px": worst,
                    "failed": failed,
                    "requests": counts["requests"],
                    "seconds": time.perf_counter() - started,
                }
            )
            source = f"q{quality}" if quality else service_url
            print(
                f"  {name} {source}: {within}/{total} crops within {TOLERANCE} px, worst {worst} px, "
                f"{len(failed)} failed, {rows[-1]['seconds']:.0f} s",
                flush=True,
            )
    return rows


def rate_limited(rate: float, budget: int, images: list, cropper: str) -> list[dict]:
    rows = []
    for client_rate in (None, rate, 0.9 * rate):
        app = create_app(load(cropper), response="thumbnail", thumbnail={"rate_limit": rate})
        with running_server(app) as base:
            overrides = [
                "target=thumbnail",  # built below with this server's URL; here for the goal and search
                "search=grid",
                f"budget={budget}",
                "early_stop=false",
                "storage=memory",
                "artifacts=none",
                "progress=false",
                "success=crops",
            ]
            cfg = compose_run(overrides)
            target = ThumbnailTarget(
                url=URL.format(base=base), rate_limit=client_rate, max_retries=8, retry_after_max=30
            )
            queries, failed, started = 0, 0, time.perf_counter()
            for image in images:
                clean = target.query([image.as_float])[0]
                goal = goal_rule(cfg).goal_for(image, clean)
                problem = AttackProblem(image, clean, goal, 20.0, "l2", "thumbnail", "crops")
                result = attack_spec(cfg).build(storage=None).run(problem, target)
                queries += result.queries
                failed += result.failed_queries
            seconds = time.perf_counter() - started
            health = requests.get(f"{base}/health", timeout=10).json()["counts"]
            counts = target.counters()
            target.close()
        rows.append(
            {
                "client_rate_limit": client_rate,
                "service_rate_limit": rate,
                "pictures": len(images),
                "budget": budget,
                "queries_counted": queries,
                "failed_queries": failed,
                # The service counts thumbnails: one per query and aspect ratio.
                "thumbnails_served": health.get("images", 0),
                "expected_thumbnails": len(images) * (1 + budget) * len(target.aspect_ratios),
                "requests": counts["requests"],
                "answered_429": health.get("status_429", 0),
                "client_throttled": counts["throttled"],
                "retries": counts["retries"],
                "seconds": seconds,
                "requests_per_second": counts["requests"] / seconds,
            }
        )
        print(f"  client rate_limit={client_rate}: {json.dumps(rows[-1])}", flush=True)
    return rows


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--goal", choices=["crops", "rate", "both"], default="both")
    parser.add_argument(
        "--targets", nargs="+", default=["smartcrop", "faces", "vips_attention", "vips_entropy", "classic"]
    )
    parser.add_argument("--qualities", nargs="+", type=int, default=[75, 95])
    parser.add_argument(
        "--service-url",
        help="crops goal: thumbnails from this URL template (another service, e.g. thumbor) instead of "
        "the reference server",
    )
    parser.add_argument("--scale", type=float, default=0.5, help="target.thumbnail_scale")
    parser.add_argument("--rate", type=float, default=5.0, help="the service's requests a second")
    parser.add_argument("--budget", type=int, default=60)
    parser.add_argument("--pictures", type=int, default=2, help="pictures attacked in the rate goal")
    parser.add_argument("--cropper", default="smartcrop", help="the zoo cropper served in the rate goal")
    parser.add_argument("--photos", type=Path, default=Path("runs/benchmarks/photos"))
    parser.add_argument("--out", type=Path, default=Path("runs/benchmarks/thumbnail_service.json"))
    args = parser.parse_args()
    logging.getLogger("optuna").setLevel(logging.WARNING)
    logging.getLogger("targets.serve").setLevel(logging.WARNING)
    images = pictures(args.photos, 640)
    out: dict = {"args": {k: str(v) for k, v in vars(args).items()}}
    lines = []
    if args.goal in ("crops", "both"):
        print(f"crops through thumbnails (scale {args.scale:g}) against the cropper queried directly:")
        out["crops"] = rows = same_crops(args.targets, args.qualities, args.scale, images, args.service_url)
        lines += [
            "| target | JPEG quality | crops within 2 px | worst px | failed | requests |",
            "|---|---|---|---|---|---|",
        ]
        lines += [
            f"| {r['target']} | {r['quality'] or 'the service'} | {r['within']} / {r['crops']} | "
            f"{r['worst_px']} | {len(r['failed'])} | {r['requests']} |"
            for r in rows
        ]
        met = all(r["within"] == r["crops"] for r in rows)
        lines.append(
            f"\ngoal (same crops within 2 px on the {len(images)} pictures, JPEG "
            f"{', '.join(map(str, args.qualities))}): {'met' if met else 'NOT met'}"
        )
    if args.goal in ("rate", "both"):
        print(f"a rate-limited service ({args.rate:g} requests a second):")
        out["rate"] = rows = rate_limited(args.rate, args.budget, images[: args.pictures], args.cropper)
        lines += [
            "",
            "| client rate_limit | queries counted | thumbnails served (expected) | requests | 429s "
            "| failed queries | req/s |",
            "|---|---|---|---|---|---|---|",
        ]
        lines += [
            f"| {r['client_rate_limit'] or 'none'} | {r['queries_counted']} | {r['thumbnails_served']} "
            f"({r['expected_thumbnails']}) | {r['requests']} | {r['answered_429']} | {r['failed_queries']} | "
            f"{r['requests_per_second']:.1f} |"
            for r in rows
        ]
        met = all(
            r["failed_queries"] == 0
            and r["thumbnails_served"] == r["expected_thumbnails"]
            and r["queries_counted"] == r["pictures"] * r["budget"]
            for r in rows
        )
        lines.append(
            "\ngoal (no query beyond the budget, none lost to 429s): " + ("met" if met else "NOT met")
        )
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(json.dumps(out, indent=1))
    print("\n".join(lines))


if __name__ == "__main__":
    main()
