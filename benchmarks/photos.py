"""Write more of scikit-image's bundled pictures to a folder, for benchmarks wider than 5 photos.

    python -m benchmarks.photos runs/benchmarks/photos
    python -m benchmarks.query_efficiency --extra dataset=folder dataset.path=runs/benchmarks/photos

Offline: every picture ships inside scikit-image. The five of ``dataset=bundled`` are left out so
the two sets can be reported apart. Note that ``surrogate`` distillation trained on some of these.
"""

from __future__ import annotations

import sys
from pathlib import Path

import numpy as np
import skimage.data
from PIL import Image

EXTRA_PHOTOS = (
    "camera",
    "clock",
    "coins",
    "moon",
    "stereo_motorcycle",
    "immunohistochemistry",
    "retina",
    "page",
)


def write_photos(folder: Path) -> list[Path]:
    folder.mkdir(parents=True, exist_ok=True)
    written = []
    for name in EXTRA_PHOTOS:
        array = getattr(skimage.data, name)()
        array = np.asarray(array[0] if isinstance(array, tuple) else array)
        path = folder / f"{name}.png"
        Image.fromarray(array).convert("RGB").save(path)
        written.append(path)
    return written


if __name__ == "__main__":
    for path in write_photos(Path(sys.argv[1] if len(sys.argv) > 1 else "runs/benchmarks/photos")):
        print(path)
