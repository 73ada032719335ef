"""``python -m blackbox.maps target=NAME [images=[A.jpg,B.png]]``: what a cropper sees, as one picture.

For each image (default: the bundled photos) the target's saliency map over the photo, its salient
point and its crop boxes, in a grid saved as a PNG. Use it to check that a target behaves like a gaze
model (people and objects salient, not only edges) before attacking it.
"""

from __future__ import annotations

import sys
from pathlib import Path

from blackbox.core.images import BUNDLED_PHOTOS, LoadedImage, load_bundled, load_image
from blackbox.core.visualize import fitting_columns, grid, saliency_view, with_legend
from blackbox.settings.arguments import Setting, paths, run_command
from targets import DEFAULT_ASPECT_RATIOS, Target, UserError, load


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


SETTINGS = (
    Setting(
        "target",
        "a zoo name (conf/target/<name>.yaml); target.<key>=... its settings",
        str,
        default="classic",
        prefix=True,
    ),
    Setting("images", "image files, one or [a.jpg,b.png] (default: the bundled photos)", paths),
    Setting("working_width", "the width images are resized to", int, default=640),
    Setting("out", "the PNG to write (default: runs/maps/<target>.png)", Path),
)


def main(argv: list[str] | None = None) -> int:
    description = (__doc__ or "").split("\n\n", 1)[-1]
    return run_command(_main, argv, SETTINGS, prog="python -m blackbox.maps", description=description)


def _main(args: dict) -> int:
    name, target_settings = args["target"], args["target.*"]
    try:
        target = load(name, aspect_ratios=DEFAULT_ASPECT_RATIOS, **target_settings)
        if args["images"]:
            images = [load_image(path, working_width=args["working_width"]) for path in args["images"]]
        else:
            images = [load_bundled(n, working_width=args["working_width"]) for n in BUNDLED_PHOTOS]
    except UserError as error:  # an unknown target or setting, a missing model file, a bad image
        print(f"error: {error}", file=sys.stderr)
        return 2
    out = args["out"] or Path("runs") / "maps" / f"{name}.png"
    out.parent.mkdir(parents=True, exist_ok=True)
    maps_picture(target, images).save(out)
    print(out)
    return 0


if __name__ == "__main__":
    sys.exit(main())
