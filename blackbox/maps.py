"""``python -m blackbox.maps --target NAME [IMAGE ...]``: what a cropper sees, as one picture.

For each image (default: the bundled photos) the target's saliency map over the photo, its salient
point and its crop boxes, in a grid saved as a PNG. Use it to check that a target behaves like a gaze
model (people and objects salient, not only edges) before attacking it.
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

from blackbox.core.images import BUNDLED_PHOTOS, ImageLoadError, LoadedImage, load_bundled, load_image
from blackbox.core.visualize import fitting_columns, grid, saliency_view, with_legend
from targets import DEFAULT_ASPECT_RATIOS, Target, UnknownChoiceError, load
from targets.weights import MissingModelFileError


def maps_picture(target: Target, images: list[LoadedImage], *, columns: int | None = None):
    """One panel per image: the map, salient point and crops of ``target``.

    ``columns``: default as many as fit the count (:func:`fitting_columns`), so no row is left
    half blank.
    """
    outputs = [target.query([image.as_float])[0] for image in images]
    panels = [
        saliency_view(image.pixels, output, f"{target.name}: {image.image_id}")
        for image, output in zip(images, outputs, strict=True)
    ]
    ratios = list(getattr(target, "aspect_ratios", ()))
    columns = fitting_columns(len(panels)) if columns is None else min(columns, len(panels))
    heat = any(output.log_density is not None for output in outputs)  # a colour bar where maps are drawn
    return with_legend(grid(panels, columns=columns), ratios, goal=False, heat=heat)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m blackbox.maps", description=__doc__.splitlines()[0])
    parser.add_argument("images", nargs="*", help="image files (default: the bundled photos)")
    parser.add_argument("--target", default="classic", help="a zoo name (conf/target/<name>.yaml)")
    parser.add_argument("--set", nargs="*", default=[], metavar="KEY=VALUE", help="target settings")
    parser.add_argument("--working-width", type=int, default=640)
    parser.add_argument("--out", type=Path, default=None, help="PNG path (default runs/maps/<target>.png)")
    args = parser.parse_args(argv)
    overrides = dict(item.split("=", 1) for item in args.set)
    try:
        target = load(args.target, aspect_ratios=DEFAULT_ASPECT_RATIOS, **overrides)
        if args.images:
            images = [load_image(path, working_width=args.working_width) for path in args.images]
        else:
            images = [load_bundled(name, working_width=args.working_width) for name in BUNDLED_PHOTOS]
    except (UnknownChoiceError, MissingModelFileError, ImageLoadError) as error:
        print(f"error: {error}", file=sys.stderr)
        return 2
    out = args.out or Path("runs") / "maps" / f"{args.target}.png"
    out.parent.mkdir(parents=True, exist_ok=True)
    maps_picture(target, images).save(out)
    print(out)
    return 0


if __name__ == "__main__":
    sys.exit(main())
