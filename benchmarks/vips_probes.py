"""What moves libvips' croppers: hand-made grid features on the goal, no search.

    python -m benchmarks.vips_probes                   # both croppers, eps 10 20 40
    python -m benchmarks.vips_probes --targets vips_entropy --eps 5 10

On the 13 offline pictures of ``benchmarks.vips_search`` (default ``beyond_crop`` goal, crops rule),
each probe is one feature of ``search=grid`` (:mod:`blackbox.search.features`) laid on the goal by
hand and filled to the L2 budget: a cell ``checker``, grey pixel ``noise`` or a flat colour, over the
goal band's columns (``band``) or from the band to the image's edge on its side (``side``), at a few
heights (2, 4 or 8 grid rows at a quarter, half or three quarters of the height, or the full height).
A picture counts when any placement of the probe moves every judged crop to the goal. Prints the
count per probe and eps, and which pictures; writes JSON to ``runs/benchmarks/vips_probes.json``.
"""

from __future__ import annotations

import argparse
import json
from pathlib import Path

import numpy as np
from hydra.utils import instantiate

from benchmarks._compose import compose_run
from benchmarks.vips_search import TARGETS, pictures
from blackbox.core.goal import Goal
from blackbox.core.objective import succeeded
from blackbox.search.features import render_features
from blackbox.settings.build import goal_rule

COLOURS = {
    "white": [1.0, 1.0, 1.0],
    "red": [1.0, -1.0, -1.0],
    "skin": [0.9, 0.45, 0.25],
    "black": [-1.0, -1.0, -1.0],
}
# name -> (feature kind, colour, where)
PROBES = {
    "checker band": ("checker", None, "band"),
    "noise band": ("noise", None, "band"),
    "noise side": ("noise", None, "side"),
    **{f"{name} band": ("colour", rgb, "band") for name, rgb in COLOURS.items()},
}
PLACEMENTS = [(rows, at) for rows in (2, 4, 8) for at in (0.25, 0.5, 0.75)] + [(32, 0.5)]


def _feature(
    kind: str, colour, where: str, goal: Goal, clean_crops, width: int, rows: int, at: float
) -> dict:
    cell = width / 32
    x0, x1 = goal.x0, goal.x1
    if where == "side":
        narrow = min((c for c in clean_crops if c.width < width - 2), key=lambda c: c.width)
        x0, x1 = (goal.x0, width) if goal.x0 >= narrow.left + narrow.width else (0, goal.x1)
    columns = max(1, round((x1 - x0) / cell))
    return {
        "x": (x0 + x1) / 2 / cell,
        "y": at * 32,
        "w": columns,
        "h": rows,
        "kind": kind,
        "weight": 1.0,
        "colour": colour or [0.0, 0.0, 0.0],
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--targets", nargs="+", default=list(TARGETS), choices=TARGETS)
    parser.add_argument("--eps", nargs="+", type=float, default=[10.0, 20.0, 40.0])
    parser.add_argument("--photos", type=Path, default=Path("runs/benchmarks/photos"))
    parser.add_argument("--out", type=Path, default=Path("runs/benchmarks/vips_probes.json"))
    args = parser.parse_args()
    images = pictures(args.photos, 640)
    found: dict = {}
    for target_name in args.targets:
        cfg = compose_run([f"target={target_name}", "success=crops"])
        target = instantiate(cfg.target)
        for image in images:
            clean = target.query([image.as_float])[0]
            goal = goal_rule(cfg).goal_for(image, clean)
            for eps in args.eps:
                for probe, (kind, colour, where) in PROBES.items():
                    for rows, at in PLACEMENTS:
                        feature = _feature(kind, colour, where, goal, clean.crops, image.width, rows, at)
                        config = {"grid": 32, "eps": eps, "norm": "l2", "features": [feature]}
                        adversarial = render_features(image.pixels, config)
                        output = target.query([adversarial.astype(np.float32) / 255.0])[0]
                        if succeeded(output, goal, image.width, image.height, has_point=False, rule="crops"):
                            found.setdefault(f"{target_name}|{probe}|{eps:g}", []).append(image.image_id)
                            break
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(json.dumps(found, indent=1))
    eps_cols = " | ".join(f"eps {e:g}" for e in args.eps)
    print(f"Pictures (of {len(images)}) whose crops one hand-made probe moved to the goal\n")
    print(f"| target | probe | {eps_cols} | pictures at eps {max(args.eps):g} |")
    print("|---|---|" + "---|" * len(args.eps) + "---|")
    for target_name in args.targets:
        for probe in PROBES:
            counts = " | ".join(str(len(found.get(f"{target_name}|{probe}|{e:g}", []))) for e in args.eps)
            names = ", ".join(found.get(f"{target_name}|{probe}|{max(args.eps):g}", []))
            print(f"| {target_name} | {probe} | {counts} | {names} |")


if __name__ == "__main__":
    main()
