"""A picture of a target's saliency maps on real photos, with its salient points and crops.

    python -m benchmarks.target_maps --target twitter [--photos astronaut chelsea coffee rocket]

Each photo (scikit-image's, at 640 px wide as the attacks see it) is shown with the target's density
over it, the salient point (a star) and the crop boxes for the aspect ratios 0.56 and 2.0. Writes
``runs/figures/<target>_maps.png``.
"""

from __future__ import annotations

import argparse
from pathlib import Path

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt
import numpy as np
from matplotlib.patches import Rectangle

from blackbox.images import load_bundled
from blackbox.zoo import load_target

SHOWN_RATIOS = (0.56, 2.0)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--target", default="twitter")
    parser.add_argument("--photos", nargs="+", default=["astronaut", "chelsea", "coffee", "rocket"])
    parser.add_argument("--width", type=int, default=640)
    parser.add_argument("--out", type=Path, default=Path("runs/figures"))
    args = parser.parse_args()

    target = load_target(args.target, aspect_ratios=SHOWN_RATIOS)
    figure, axes = plt.subplots(2, len(args.photos), figsize=(4.2 * len(args.photos), 6.4), squeeze=False)
    for column, name in enumerate(args.photos):
        image = load_bundled(name, working_width=args.width)
        output = target.query([image.as_float])[0]
        top, bottom = axes[0, column], axes[1, column]
        top.imshow(image.pixels)
        top.set_title(f"{name} {image.width}x{image.height}")
        bottom.imshow(image.pixels)
        if output.log_density is not None:
            density = np.exp(output.log_density)
            bottom.imshow(density / density.max(), cmap="inferno", alpha=0.6, vmin=0, vmax=1)
            spread = output.log_density.max() - output.log_density.min()
            bottom.set_title(f"log-density span {spread:.2f} nats")
        for axis in (top, bottom):
            axis.plot(*output.salient_point, marker="*", color="cyan", markersize=16, markeredgecolor="k")
            axis.set_axis_off()
        for crop, colour in zip(output.crops, ("lime", "yellow"), strict=True):
            top.add_patch(
                Rectangle((crop.left, crop.top), crop.width, crop.height, fill=False, color=colour, lw=2.5)
            )
    figure.suptitle(
        f"target={args.target}: density (bottom), salient point (star), crops 0.56 (green) and 2.0 (yellow)"
    )
    figure.tight_layout()
    args.out.mkdir(parents=True, exist_ok=True)
    path = args.out / f"{args.target}_maps.png"
    figure.savefig(path, dpi=80)
    print(f"wrote {path}")


if __name__ == "__main__":
    main()
