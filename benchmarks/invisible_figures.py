"""The README's pictures: clean and adversarial side by side at 100%, where the perturbation is densest.

    make run                                                     # the default command: a run folder
    python -m benchmarks.invisible_figures runs/<date>/<time> docs/figures coffee chelsea rocket

For each named image of the run: a ``size x size`` window of the working copy (no resampling: one
screen pixel per image pixel) centred on the perturbation's densest part, the clean window, the
adversarial window, and the perturbation times 32 around grey, written as
``invisible-<image>.png``. The clean pixels are re-read from the run's own dataset settings.
"""

from __future__ import annotations

import argparse
import json
from pathlib import Path

import numpy as np
from PIL import Image
from scipy.ndimage import uniform_filter

from blackbox.core.datasets import bundled_sources, iterate

GAP = 8


def window(changed: np.ndarray, size: int) -> tuple[slice, slice]:
    """The ``size x size`` window holding the most changed pixels (inside the image)."""
    height, width = changed.shape
    density = uniform_filter(changed.astype(np.float64), size=size, mode="constant")
    row, col = np.unravel_index(np.argmax(density), density.shape)
    y0 = int(np.clip(row - size // 2, 0, max(0, height - size)))
    x0 = int(np.clip(col - size // 2, 0, max(0, width - size)))
    return slice(y0, y0 + size), slice(x0, x0 + size)


def figure(clean: np.ndarray, adversarial: np.ndarray, size: int) -> np.ndarray:
    delta = adversarial.astype(np.int16) - clean.astype(np.int16)
    rows, cols = window(np.any(delta != 0, axis=2), size)
    shown = np.clip(128 + 32 * delta, 0, 255).astype(np.uint8)
    gap = np.full((clean[rows, cols].shape[0], GAP, 3), 255, dtype=np.uint8)
    return np.concatenate([clean[rows, cols], gap, adversarial[rows, cols], gap, shown[rows, cols]], axis=1)


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("run", type=Path)
    parser.add_argument("out", type=Path)
    parser.add_argument("images", nargs="+")
    parser.add_argument("--size", type=int, default=256)
    args = parser.parse_args(argv)
    config = json.loads((args.run / "resume.json").read_text()) if (args.run / "resume.json").exists() else {}
    width = int(config.get("working_width", 640) or 640)
    clean = {image.image_id: image.pixels for _, image in iterate(bundled_sources(), width)}
    args.out.mkdir(parents=True, exist_ok=True)
    for name in args.images:
        adversarial = np.asarray(Image.open(args.run / "adversarial" / f"{name}.png").convert("RGB"))
        path = args.out / f"invisible-{name}.png"
        Image.fromarray(figure(clean[name], adversarial, args.size)).save(path, optimize=True)
        print(path)


if __name__ == "__main__":
    main()
