"""The protection goals of issue 27, measured: ``python -m blackbox.protect`` on two picture sets.

    python -m benchmarks.protect                                   # the defaults below
    python -m benchmarks.protect --budget 400 --alone-budget 100 --heldout 12

Pictures: the 13 of the README's search-design table (the 5 bundled photos and the 8 of
:mod:`benchmarks.photos`) and held-out pictures no setting was tuned on (:mod:`benchmarks.heldout_photos`:
its 8 side-by-side composites, 2 portrait crops, then single pictures, ``--heldout`` of them). Each
is written as a PNG file and protected end to end through :func:`blackbox.protect` (the written file
is what is measured). Boxes (in the picture's own pixels), each one some clean crop of some cropper cuts:

* ``beyond``: just beyond the narrowest clean crop of the four croppers after the goal's treatment
  (a band 10% of the cut side wide, 30% of the other side long, centred on it), on the side with more room;
* ``corner``: a square 10% of the shorter side in the bottom-right corner, 2% in from the edges (where
  notices sit).

Goals printed: the share of pictures whose box every crop of every cropper keeps after JPEG q75 and
a resize to 1200 px (the goal's treatment, also the search's), within ``--budget`` queries in all;
SSIM and L-inf at the original resolution; per cropper, the share kept when it alone is attacked
(``--alone-budget`` queries) versus within the ensemble. A box every crop already keeps is counted
apart ("nothing to do"), never as a success.
"""

from __future__ import annotations

import argparse
import json
import tempfile
import time
from pathlib import Path

import numpy as np

from benchmarks import heldout_photos, photos
from blackbox.core.images import BUNDLED_PHOTOS, load_bundled, load_image
from blackbox.protection import NothingToProtectError, TransformRange, protect
from blackbox.protection._protect import PROTECT_ASPECT_RATIOS, served_verdicts
from targets import load

CROPPERS = ("twitter", "classic", "vips_attention", "vips_entropy")
GOAL = TransformRange(qualities=(75,), long_sides=(1200,), samples=1)


def picture_files(folder: Path, heldout: int) -> dict[str, list[Path]]:
    """The two sets as PNG files under ``folder``."""
    readme = []
    for name in BUNDLED_PHOTOS:
        path = folder / "readme" / f"{name}.png"
        path.parent.mkdir(parents=True, exist_ok=True)
        from PIL import Image

        Image.fromarray(load_bundled(name, working_width=None).pixels).save(path)
        readme.append(path)
    readme += photos.write_photos(folder / "readme")
    written = heldout_photos.write_photos(folder / "heldout")
    composites = [p for p in written if "+" in p.stem or p.stem.startswith("grace_hopper_")]
    singles = [p for p in written if p not in composites]
    return {"readme": readme, "heldout": (composites + singles)[:heldout]}


def boxes(path: Path, croppers: dict) -> dict[str, list[float]]:
    """The ``beyond`` and ``corner`` boxes of the picture (module doc)."""
    pixels = load_image(path, working_width=None).pixels
    height, width = pixels.shape[:2]
    side = 0.1 * min(width, height)
    inset = 0.02 * min(width, height)
    out = {"corner": [width - inset - side, height - inset - side, width - inset, height - inset]}
    treatment = GOAL.corners((width, height))[0]
    verdicts, served = served_verdicts(pixels, [0, 0, 1, 1], croppers, [treatment], {})
    served_h, served_w = served[treatment.name][0].shape[:2]
    sx, sy = width / served_w, height / served_h
    crops = [v.crop for vs in verdicts.values() for v in vs]
    cut_x = [c for c in crops if c.width < served_w - 2]
    cut_y = [c for c in crops if c.height < served_h - 2]
    # The narrowest crop along the axis crops cut most.
    candidates = [(c.width / served_w, "x", c) for c in cut_x] + [
        (c.height / served_h, "y", c) for c in cut_y
    ]
    if candidates:
        _, axis, crop = min(candidates, key=lambda item: item[0])
        if axis == "x":
            start, end, extent, other = crop.left * sx, crop.right * sx, width, height
        else:
            start, end, extent, other = crop.top * sy, crop.bottom * sy, height, width
        band = 0.1 * extent
        low = end + 1 if extent - end >= start else start - 1 - band
        low = min(max(0.0, low), extent - band)
        length = 0.3 * other
        a, b = (other - length) / 2, (other + length) / 2
        out["beyond"] = [low, a, low + band, b] if axis == "x" else [a, low, b, low + band]
    return out


def run_one(path: Path, box: list[float], croppers: list[str], budget: int, out: Path, ensemble: str) -> dict:
    started = time.perf_counter()
    try:
        result = protect(
            path, box=box, croppers=croppers, transforms=GOAL, budget=budget, ensemble=ensemble, out_dir=out
        )
    except NothingToProtectError:
        return {"nothing_to_do": True, "seconds": time.perf_counter() - started}
    written = result.norms["written"]
    return {
        "nothing_to_do": False,
        "kept": result.kept,
        "kept_by": {name: result.kept_by(name) for name in croppers},
        "cut_before": {
            name: not all(v.kept for (n, _), vs in result.before.items() if n == name for v in vs)
            for name in croppers
        },
        "queries": sum(result.queries.values()),
        "queries_to_kept": result.queries_to_kept,
        "ssim": written["ssim"],
        "linf_levels": written["linf_levels"],
        "psnr": written["psnr"],
        "seconds": time.perf_counter() - started,
    }


def summary(rows: list[dict]) -> str:
    lines = [
        "| set | box | rule | pictures | nothing to do | kept by all 4 | median queries to kept | "
        "SSIM min / median (all written) | L-inf levels median / max (all written) |",
        "|---|---|---|---|---|---|---|---|---|",
    ]
    groups: dict[tuple, list[dict]] = {}
    for row in rows:
        if row["mode"] == "ensemble":
            groups.setdefault((row["set"], row["box"], row["rule"]), []).append(row)
    for (name, box, rule), group in groups.items():
        done = [r for r in group if not r["nothing_to_do"]]
        kept = [r for r in done if r["kept"]]
        to_kept = [r["queries_to_kept"] for r in kept if r["queries_to_kept"] is not None]
        # Over every written image (kept or not): what the perturbation costs in visibility.
        ssims = [r["ssim"] for r in done] or [float("nan")]
        linf = [r["linf_levels"] for r in done] or [float("nan")]
        share = f"{len(kept)}/{len(done)} ({100 * len(kept) / len(done):.0f}%)" if done else "-"
        lines.append(
            f"| {name} | {box} | {rule} | {len(group)} | {len(group) - len(done)} | {share} | "
            f"{np.median(to_kept) if to_kept else '-'} | {min(ssims):.4f} / {np.median(ssims):.4f} | "
            f"{np.median(linf):g} / {max(linf):g} |"
        )
    lines += [
        "",
        "| set | box | cropper | cut before (of the ensemble's pictures) | kept: in the ensemble "
        "| kept: alone |",
        "|---|---|---|---|---|---|",
    ]
    for (name, box, rule), group in groups.items():
        if rule != "worst":
            continue
        done = [r for r in group if not r["nothing_to_do"]]
        for cropper in CROPPERS:
            cut = [r for r in done if r["cut_before"].get(cropper)]
            within = sum(r["kept_by"][cropper] for r in cut)
            alone = [
                r
                for r in rows
                if r["mode"] == f"alone:{cropper}"
                and r["set"] == name
                and r["box"] == box
                and not r["nothing_to_do"]
            ]
            alone_text = f"{sum(r['kept'] for r in alone)}/{len(alone)}" if alone else "not run"
            lines.append(
                f"| {name} | {box} | {cropper} | {len(cut)}/{len(done)} | {within}/{len(cut)} "
                f"| {alone_text} |"
            )
    return "\n".join(lines)


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--budget", type=int, default=2000, help="the ensemble's queries in all, per picture")
    parser.add_argument(
        "--alone-budget", type=int, default=0, help="queries per cropper attacked alone (0: skip)"
    )
    parser.add_argument(
        "--alone-sets", nargs="*", default=["readme"], help="sets the single-cropper runs cover"
    )
    parser.add_argument("--heldout", type=int, default=12, help="held-out pictures")
    parser.add_argument("--sets", nargs="*", default=["readme", "heldout"])
    parser.add_argument("--limit", type=int, default=None, help="at most this many pictures per set")
    parser.add_argument("--boxes", nargs="*", default=["beyond", "corner"])
    parser.add_argument("--rules", nargs="*", default=["worst"], help="ensemble rules to measure")
    parser.add_argument("--results", type=Path, default=Path("runs/benchmarks/protect.jsonl"))
    parser.add_argument(
        "--summarise", type=Path, default=None, help="print the summary of a results file and stop"
    )
    args = parser.parse_args()
    if args.summarise is not None:
        print(summary([json.loads(line) for line in args.summarise.read_text().splitlines() if line.strip()]))
        return
    croppers = {name: load(name, aspect_ratios=PROTECT_ASPECT_RATIOS) for name in CROPPERS}
    rows: list[dict] = []
    args.results.parent.mkdir(parents=True, exist_ok=True)
    with tempfile.TemporaryDirectory() as scratch, args.results.open("a") as log:
        files = picture_files(Path(scratch) / "pictures", args.heldout)
        plans = []
        for name in args.sets:
            for path in files[name][: args.limit]:
                picture_boxes = boxes(path, croppers)
                for box_name in args.boxes:
                    if box_name not in picture_boxes:
                        print(f"{name}/{path.stem}: no {box_name} box (no crop cuts the picture)", flush=True)
                        continue
                    for rule in args.rules:
                        plans.append(
                            (
                                name,
                                path,
                                box_name,
                                picture_boxes[box_name],
                                "ensemble",
                                list(CROPPERS),
                                rule,
                                args.budget,
                            )
                        )
                    if args.alone_budget and name in args.alone_sets:
                        for cropper in CROPPERS:
                            plans.append(
                                (
                                    name,
                                    path,
                                    box_name,
                                    picture_boxes[box_name],
                                    f"alone:{cropper}",
                                    [cropper],
                                    "worst",
                                    args.alone_budget,
                                )
                            )
        for index, (name, path, box_name, box, mode, chosen, rule, budget) in enumerate(plans):
            out = Path(scratch) / "out" / f"{index}"
            row = {
                "set": name,
                "picture": path.stem,
                "box": box_name,
                "mode": mode,
                "rule": rule,
                "budget": budget,
            }
            row.update(run_one(path, box, chosen, budget, out, rule))
            rows.append(row)
            log.write(json.dumps(row) + "\n")
            log.flush()
            print(json.dumps(row), flush=True)
    print(summary(rows))


if __name__ == "__main__":
    main()
