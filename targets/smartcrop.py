"""``target=smartcrop``: the smartcrop.js algorithm, through its maintained Python port (smartcrop.py).

smartcrop.js (Jonas Wagner, 2014) and its ports (smartcrop.py, smartcrop-sharp, smartcrop-gm, the Go,
Rust, Java and .NET ones) are the feature scorers behind many upload pipelines and WordPress plugins.
What it does (``smartcrop/library.py`` of the ``smartcrop`` package, 0.5.0):

* three feature maps at image resolution: **edges** (a 3 x 3 Laplacian on CIE luminance), **skin**
  (closeness of the normalised RGB to a skin colour, brightness-gated) and **saturation**
  (brightness-gated); shrunk by ``score_down_sample`` (8) with Lanczos and mixed into one score map
  (skin and saturation weighed by the detail under them);
* every crop window of the requested size on a ``step`` (8 px) lattice is scored by the sum of the
  score map under an importance mask (a peak near the middle and on the rule-of-thirds lines, a
  penalty near the window's edges) minus what is left outside; the best window wins (the first on
  ties, row by row).

The crop size per aspect ratio (``height / width``) is Twitter's rule
(:func:`targets.crop.crop_size`), as for the ``vips_*`` targets: the largest window of that ratio,
one side kept whole (the port's ``min_scale = max_scale = 1``, smartcrop.js's default ``minScale``).
Asked for that size the port analyses the image at full resolution (no prescale). The feature maps
do not depend on the crop size, so they are computed once per image and every aspect ratio is scored
on them with the port's own functions (:meth:`Smartcrop._windows`); ``tests/test_target_smartcrop.py``
checks the crops against the port's ``SmartCrop.crop`` on every call.

Images arrive as float RGB in [0, 1] and are read as the 8-bit pixels an uploaded PNG of them
decodes to. Crop-only: no map, no point of its own (the point is estimated from the crops).
"""

from __future__ import annotations

import dataclasses
import math
from collections.abc import Mapping, Sequence
from typing import Any

import numpy as np
from PIL import Image

from targets._base import Output, Target
from targets._output import CropBox, TargetOutput
from targets._protocol import to_uint8
from targets.crop import DEFAULT_ASPECT_RATIOS, crop_size, estimate_point

__all__ = ["Smartcrop", "smartcrop_version"]


def _port() -> Any:
    """The ``smartcrop`` module, or an ImportError that says how to install it."""
    try:
        import smartcrop
    except ImportError as error:
        raise ImportError(
            "target=smartcrop needs smartcrop.py: pip install 'smartcrop>=0.5' (a dependency of this "
            f"project: pip install -e .); the import said: {error}"
        ) from error
    return smartcrop


def smartcrop_version() -> str:
    """The installed smartcrop.py's version, e.g. ``"0.5.0"``."""
    import importlib.metadata

    return importlib.metadata.version("smartcrop")


class Smartcrop(Target):
    """smartcrop.js's scored crop windows (smartcrop.py); one crop per aspect ratio, crop-only.

    Args:
        step: the lattice of candidate windows, in pixels (smartcrop.js: 8).
        settings: the port's scoring constants by name (``SmartCrop``'s fields, e.g.
            ``{"skin_weight": 1.8, "edge_weight": -20}``); unknown names raise ``ValueError``
            listing the known ones.
        aspect_ratios: heights/widths of the crops.
    """

    name = "smartcrop"

    def __init__(
        self,
        *,
        step: int = 8,
        settings: Mapping[str, Any] | None = None,
        aspect_ratios: Sequence[float] = DEFAULT_ASPECT_RATIOS,
    ) -> None:
        super().__init__(aspect_ratios=aspect_ratios)
        if isinstance(step, bool) or not isinstance(step, int) or step < 1:
            raise ValueError(f"step must be a whole number of pixels >= 1, got {step!r}")
        self.step = step
        port = _port()
        known = [f.name for f in dataclasses.fields(port.SmartCrop)]
        unknown = sorted(set(settings or {}) - set(known))
        if unknown:
            raise ValueError(f"settings: unknown smartcrop setting(s) {unknown}; known: {', '.join(known)}")
        self.settings = dict(settings or {})
        self._scorer = port.SmartCrop(**self.settings)

    @property
    def outputs(self) -> frozenset[Output]:
        return frozenset({Output.CROPS})

    def answer(self, images: list[np.ndarray]) -> list[TargetOutput]:
        return [self._crop(image) for image in images]

    def _crop(self, image: np.ndarray) -> TargetOutput:
        height, width = image.shape[:2]
        picture = Image.fromarray(to_uint8(image), "RGB")
        sizes = [crop_size(width, height, ratio) for ratio in self.aspect_ratios]
        windows = self._windows(picture, sizes)
        crops = tuple(
            CropBox(int(w["x"]), int(w["y"]), int(w["width"]), int(w["height"]), ratio)
            for w, ratio in zip(windows, self.aspect_ratios, strict=True)
        )
        return TargetOutput(estimate_point(crops, width, height), crops)

    def _windows(self, picture: Image.Image, sizes: list[tuple[int, int]]) -> list[dict]:
        """The port's best window for each ``(width, height)``: ``SmartCrop.analyse`` with its features
        computed once for all sizes (they do not depend on the size)."""
        scorer = self._scorer
        features = scorer.prepare_features_image(picture)
        down = scorer.score_down_sample
        shrunk = features.resize(
            (math.ceil(picture.width / down), math.ceil(picture.height / down)), Image.Resampling.LANCZOS
        )
        scores = scorer.precompute_features(shrunk)
        prescore = np.sum(scores) * scorer.outside_importance
        best = []
        for crop_width, crop_height in sizes:
            windows = scorer.crops(
                picture, crop_width, crop_height, max_scale=1, min_scale=1, num_scale_steps=1, step=self.step
            )
            importance: dict[tuple[int, int], np.ndarray] = {}
            inverse = 1 / down  # as the port scales windows to the score map
            for window in windows:
                x, y, w, h = (int(window[k] * inverse) for k in ("x", "y", "width", "height"))
                if (w, h) not in importance:
                    importance[(w, h)] = scorer.get_importance(width=w, height=h) - scorer.outside_importance
                window["score"] = scorer.score(scores, prescore, (x, y, w, h), importance[(w, h)])
            best.append(max(windows, key=lambda window: window["score"]))
        return best
