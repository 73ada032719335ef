"""A held-out set of offline pictures that no search design of this project was tuned on.

    python -m benchmarks.heldout_photos runs/benchmarks/heldout

Issue 18 asks that the black-box figures also be measured on at least 12 pictures chosen apart from
the 13 the README's search-design table uses (``dataset=bundled`` and :mod:`benchmarks.photos`) and
not tuned on. Every picture ships inside an installed package (no download):

* matplotlib's sample data: ``grace_hopper.jpg`` (a portrait), ``Minduka_Present_Blue_Pack.png``,
  ``logo2.png``;
* the scikit-image pictures the other sets leave out: ``brick``, ``cell``, ``colorwheel``, ``grass``,
  ``gravel``, ``horse``, ``logo``, ``text``, ``shepp_logan_phantom``;
* landscape pictures made of two of those side by side on a 4:3 canvas (two salient things, as the
  paper's protocol expects of a photo), and two 4:3 crops of the portrait.

Many single textures have one salient region every crop already shows, and the pipeline skips
them; the composites are there so that at least 12 are counted.
"""

from __future__ import annotations

import sys
from pathlib import Path

import matplotlib
import numpy as np
import skimage.data
from PIL import Image

SKIMAGE = ("brick", "cell", "colorwheel", "grass", "gravel", "horse", "logo", "text", "shepp_logan_phantom")
MATPLOTLIB = ("grace_hopper.jpg", "Minduka_Present_Blue_Pack.png", "logo2.png")
PAIRS = (
    ("grace_hopper", "colorwheel"),
    ("text", "horse"),
    ("logo", "cell"),
    ("colorwheel", "brick"),
    ("Minduka_Present_Blue_Pack", "grace_hopper"),
    ("shepp_logan_phantom", "logo2"),
    ("horse", "gravel"),
    ("cell", "grace_hopper"),
)


def _rgb(array: np.ndarray) -> Image.Image:
    array = np.asarray(array)
    if array.dtype == bool:
        array = array.astype(np.uint8) * 255
    elif array.dtype != np.uint8:
        array = np.clip(array * 255.0 if array.max() <= 1.0 else array, 0, 255).astype(np.uint8)
    image = Image.fromarray(array)
    if image.mode == "RGBA":  # composited on white, as the pipeline reads alpha
        background = Image.new("RGB", image.size, "white")
        background.paste(image, mask=image.getchannel("A"))
        return background
    return image.convert("RGB")


def pictures() -> dict[str, Image.Image]:
    """Every held-out picture by name, as RGB PIL images."""
    out = {name: _rgb(getattr(skimage.data, name)()) for name in SKIMAGE}
    sample = Path(matplotlib.get_data_path()) / "sample_data"
    for file in MATPLOTLIB:
        out[Path(file).stem] = _rgb(np.asarray(Image.open(sample / file)))
    return out


def side_by_side(
    left: Image.Image, right: Image.Image, *, width: int = 640, height: int = 480
) -> Image.Image:
    """``left`` and ``right`` each fitted into half of a grey ``width x height`` canvas."""
    canvas = Image.new("RGB", (width, height), (128, 128, 128))
    half = width // 2
    for index, picture in enumerate((left, right)):
        fitted = picture.copy()
        fitted.thumbnail((half, height))
        canvas.paste(fitted, (index * half + (half - fitted.width) // 2, (height - fitted.height) // 2))
    return canvas


def write_photos(folder: Path) -> list[Path]:
    folder.mkdir(parents=True, exist_ok=True)
    singles = pictures()
    images = dict(singles)
    for left, right in PAIRS:
        images[f"{left}+{right}"] = side_by_side(singles[left], singles[right])
    portrait = singles["grace_hopper"]
    side = portrait.width
    images["grace_hopper_top"] = portrait.crop((0, 0, side, side * 3 // 4))
    images["grace_hopper_bottom"] = portrait.crop((0, portrait.height - side * 3 // 4, side, portrait.height))
    written = []
    for name, image in images.items():
        path = folder / f"{name}.png"
        image.save(path)
        written.append(path)
    return written


if __name__ == "__main__":
    for path in write_photos(Path(sys.argv[1] if len(sys.argv) > 1 else "runs/benchmarks/heldout")):
        print(path)
