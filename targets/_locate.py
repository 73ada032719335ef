"""Where in the image sent a service's thumbnail was cut from: the crop box, recovered from pixels.

A thumbnail service answers the cropped, resized, re-encoded picture, not a box. The box is found
back in three steps, all on OpenCV (``cv2.resize``, ``cv2.GaussianBlur``, ``cv2.matchTemplate``):

1. **Scale, from the size asked for.** A service crops the largest window of the thumbnail's aspect
   ratio (one side of the image kept whole, as every cropper here) and resizes it, so the kept side
   gives the scale: ``s = W / thumbnail width`` when the whole width is kept, ``H / thumbnail
   height`` otherwise; the cut side is ``round(thumbnail side * s)`` pixels of the image.
2. **Position, by normalised cross-correlation at the image's resolution.** The thumbnail is resized
   back up to the window's size (bilinear), and the image blurred to the same detail (a Gaussian of
   sigma ``0.5 * s``: what the service's shrink removed, whatever its filter), so that neither
   resampling filter nor JPEG's loss moves the peak. ``matchTemplate`` (``TM_CCOEFF_NORMED``)
   scores every offset along the cut side; a parabola through the peak and its neighbours gives
   the sub-pixel maximum, rounded to the nearest pixel.
3. **Check, never guess.** The window found, shrunk to the thumbnail's size, must match it: a
   correlation of at least ``min_correlation`` (0.8), at most ``max_changed`` (0.5%) of the
   thumbnail's pixels off by more than ``changed_level`` (32 of 255) once both are smoothed over a
   thumbnail pixel, and no colour channel off by more than ``max_bias`` (3 of 255) on average. Clean
   thumbnails of the tests' pictures (every Pillow filter, scale 0.3-1, JPEG quality 60-95) stay
   within 0.3% and 1 level; a logo, a grey or sepia filter or a tone change beyond that raises
   :class:`ThumbnailNotFoundError`, and a thumbnail that fits two places alike (a flat or repeating
   picture) :class:`AmbiguousThumbnailError`, naming the figures. An overlay too small to pass the
   limits (a line of small text) does not move the box found: it is still the window's place.

Tested on thumbnails the tests make with every Pillow resampling filter and JPEG quality 60-95
(``tests/test_thumbnail_locate.py``): within 2 px of the true box at the image's resolution.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np

from targets._errors import TargetQueryError
from targets._opencv import load_cv2

__all__ = ["AmbiguousThumbnailError", "Located", "ThumbnailNotFoundError", "locate_thumbnail"]

MIN_CORRELATION = 0.8
CHANGED_LEVEL = 32.0  # of 255, after smoothing both over about a thumbnail pixel
MAX_CHANGED = 0.005
MAX_BIAS = 3.0  # of 255: the mean difference of any channel (a tone or colour filter shifts it)
# A second peak this close in correlation, further than this from the first, makes the place ambiguous.
AMBIGUOUS_MARGIN = 0.002
AMBIGUOUS_DISTANCE = 3  # pixels at the image's resolution, beyond the scale of a thumbnail pixel
SIZE_SLACK = 1  # pixels a service may round the thumbnail's sides by
# More offsets than this along the cut side: a coarse search on a COARSE-times smaller copy first.
COARSE_ABOVE = 24
COARSE = 4


class ThumbnailNotFoundError(TargetQueryError):
    """The thumbnail is not a window of the image sent: the service changed the picture (or the size)."""


class AmbiguousThumbnailError(ThumbnailNotFoundError):
    """The thumbnail fits two places of the image alike (a flat or repeating picture): no box is guessed."""


@dataclass(frozen=True)
class Located:
    """The window of the image the thumbnail shows, and how well it matched.

    ``left, top, width, height`` in the image's pixels; ``scale`` is image pixels per thumbnail pixel;
    ``correlation`` the normalised cross-correlation at the peak (1 is a perfect match); ``changed``
    the fraction of thumbnail pixels that differ by more than the level allowed; ``bias`` the largest
    mean difference of a colour channel (of 255).
    """

    left: int
    top: int
    width: int
    height: int
    scale: float
    correlation: float
    changed: float
    bias: float


def locate_thumbnail(
    image: np.ndarray,
    thumbnail: np.ndarray,
    *,
    requested: tuple[int, int] | None = None,
    min_correlation: float = MIN_CORRELATION,
    changed_level: float = CHANGED_LEVEL,
    max_changed: float = MAX_CHANGED,
    max_bias: float = MAX_BIAS,
    where: str = "thumbnail",
) -> Located:
    """The window of ``image`` that ``thumbnail`` shows.

    Args:
        image: ``(H, W, 3)`` uint8 RGB, the pixels the service received.
        thumbnail: ``(h, w, 3)`` uint8 RGB, what it answered.
        requested: ``(width, height)`` asked for; a thumbnail more than a pixel off it is refused
            (the service fitted or padded instead of cropping). ``None``: the thumbnail's own size.
        min_correlation, changed_level, max_changed, max_bias: the check of step 3 (module doc).
        where: names the thumbnail in error messages.

    Raises:
        ThumbnailNotFoundError: wrong size, or no window of the image matches (a changed picture).
        AmbiguousThumbnailError: two places match alike.
    """
    cv2 = load_cv2()
    height, width = image.shape[:2]
    t_height, t_width = thumbnail.shape[:2]
    if requested is not None:
        r_width, r_height = requested
        if abs(t_width - r_width) > SIZE_SLACK or abs(t_height - r_height) > SIZE_SLACK:
            raise ThumbnailNotFoundError(
                f"{where}: asked for {r_width}x{r_height}, the service answered {t_width}x{t_height}: "
                "it did not crop to the size asked (a fit-in or padded thumbnail?); use its crop mode"
            )
    # The kept side: the one whose scale leaves the other side inside the image.
    keeps_width = t_height / t_width <= height / width
    scale = width / t_width if keeps_width else height / t_height
    cut = (t_height if keeps_width else t_width) * scale
    full = height if keeps_width else width
    # A cut side within half a thumbnail pixel of the whole side is the whole side, rounded.
    cut_px = full if full - cut <= max(1.0, scale / 2) else max(1, min(full, round(cut)))
    win_w, win_h = (width, cut_px) if keeps_width else (cut_px, height)
    if float(thumbnail.std()) < 1.0:
        raise AmbiguousThumbnailError(
            f"{where}: the thumbnail is a single flat colour: it fits anywhere, so where the service "
            "cropped cannot be told; no box is guessed"
        )
    grown = cv2.resize(_luma(thumbnail), (win_w, win_h), interpolation=cv2.INTER_LINEAR)
    blurred = _blur(_luma(image), scale)
    if (win_w, win_h) == (width, height):
        offset, correlation = 0, _correlation(blurred, grown)
    else:
        offset, correlation = _search(blurred, grown, keeps_width, scale, where)
    left, top = (0, offset) if keeps_width else (offset, 0)
    if win_w == width and win_h == height:
        left = top = 0
    found = image[top : top + win_h, left : left + win_w]
    changed, bias = _differences(found, thumbnail, changed_level)
    located = Located(left, top, win_w, win_h, float(scale), float(correlation), changed, bias)
    if correlation < min_correlation or changed > max_changed or bias > max_bias:
        raise ThumbnailNotFoundError(
            f"{where}: the {t_width}x{t_height} thumbnail is not a window of the {width}x{height} image "
            f"(best at [{left}, {top}, {win_w}, {win_h}]: correlation {correlation:.3f}, needs >= "
            f"{min_correlation:g}; {100 * changed:.2f}% of its pixels off by > {changed_level:g}/255, at "
            f"most {100 * max_changed:g}% allowed; colours off by {bias:.1f}/255 on average, at most "
            f"{max_bias:g}): the service changed the picture (a filter, a watermark, an overlay?); ask "
            "for the thumbnail without them"
        )
    return located


def _luma(pixels: np.ndarray) -> np.ndarray:
    """``(H, W, 3)`` uint8 RGB to float32 luma (ITU-R 601): the position is found on one channel."""
    return pixels.astype(np.float32) @ np.array([0.299, 0.587, 0.114], dtype=np.float32)


def _search(blurred: np.ndarray, grown: np.ndarray, keeps_width: bool, scale: float, where: str):
    """The offset along the cut side, and its correlation: coarse on a 4x smaller copy when there are
    many offsets (and the ambiguity check there), then every offset near the coarse peak at full size."""
    cv2 = load_cv2()
    axis = 0 if keeps_width else 1
    offsets = blurred.shape[axis] - grown.shape[axis] + 1
    lo, hi = 0, offsets - 1
    if offsets > COARSE_ABOVE:

        def small(array: np.ndarray) -> np.ndarray:
            size = (max(1, round(array.shape[1] / COARSE)), max(1, round(array.shape[0] / COARSE)))
            return cv2.resize(array, size, interpolation=cv2.INTER_AREA)

        coarse = np.nan_to_num(
            cv2.matchTemplate(small(blurred), small(grown), cv2.TM_CCOEFF_NORMED).ravel(), nan=-1.0
        )
        rough, _ = _peak(coarse)
        _check_unique(coarse, rough, scale / COARSE, where, COARSE)
        lo, hi = max(0, rough * COARSE - 2 * COARSE), min(offsets - 1, rough * COARSE + 2 * COARSE)
    span = hi - lo + grown.shape[axis]
    part = blurred[lo : lo + span] if keeps_width else blurred[:, lo : lo + span]
    scores = np.nan_to_num(cv2.matchTemplate(part, grown, cv2.TM_CCOEFF_NORMED).ravel(), nan=-1.0)
    offset, correlation = _peak(scores)
    if offsets <= COARSE_ABOVE:
        _check_unique(scores, offset, scale, where, 1)
    return lo + offset, correlation


def _blur(pixels: np.ndarray, scale: float) -> np.ndarray:
    """``pixels`` smoothed to about the detail a thumbnail ``scale`` times smaller keeps."""
    cv2 = load_cv2()
    sigma = 0.5 * scale
    if sigma < 0.3:  # a thumbnail at full size: only JPEG's loss to smooth over
        sigma = 0.5
    return cv2.GaussianBlur(pixels, (0, 0), sigmaX=sigma, sigmaY=sigma)


def _correlation(a: np.ndarray, b: np.ndarray) -> float:
    cv2 = load_cv2()
    score = cv2.matchTemplate(a, b, cv2.TM_CCOEFF_NORMED)
    value = float(score.ravel()[0])
    return -1.0 if math.isnan(value) else value


def _peak(scores: np.ndarray) -> tuple[int, float]:
    """The best offset (sub-pixel peak, rounded) and the best score."""
    best = int(np.argmax(scores))
    value = float(scores[best])
    if 0 < best < len(scores) - 1:
        left, right = float(scores[best - 1]), float(scores[best + 1])
        curvature = left - 2 * value + right
        if curvature < 0:
            shift = 0.5 * (left - right) / curvature
            return round(best + max(-0.5, min(0.5, shift))), value
    return best, value


def _check_unique(scores: np.ndarray, offset: int, scale: float, where: str, step: int) -> None:
    """Raise if another peak (a local maximum away from the best) scores nearly as high; ``scores`` are
    every ``step``-th offset."""
    padded = np.concatenate([[-np.inf], scores, [-np.inf]])
    peaks = np.flatnonzero((scores >= padded[:-2]) & (scores >= padded[2:]))
    reach = (AMBIGUOUS_DISTANCE + scale * step) / step
    rivals = [int(p) for p in peaks if abs(int(p) - offset) > reach]
    best = float(scores.max())
    close = [p for p in rivals if float(scores[p]) >= best - AMBIGUOUS_MARGIN]
    if close:
        raise AmbiguousThumbnailError(
            f"{where}: the thumbnail fits offsets {offset * step} and {close[0] * step} alike (correlation "
            f"{best:.4f} and {float(scores[close[0]]):.4f}): the picture is too flat or repeats along the "
            "cut side to say where the service cropped; no box is guessed"
        )


def _differences(found: np.ndarray, thumbnail: np.ndarray, level: float) -> tuple[float, float]:
    """The share of thumbnail pixels off by more than ``level`` from the window (both shrunk to the
    thumbnail's size and smoothed over about a pixel), and the largest mean difference of a channel."""
    cv2 = load_cv2()
    t_height, t_width = thumbnail.shape[:2]
    shrunk = cv2.resize(found, (t_width, t_height), interpolation=cv2.INTER_AREA).astype(np.float32)
    difference = cv2.GaussianBlur(thumbnail.astype(np.float32), (0, 0), 1.0) - cv2.GaussianBlur(
        shrunk, (0, 0), 1.0
    )
    changed = float(np.mean(np.abs(difference).max(axis=2) > level))
    bias = float(np.abs(difference.reshape(-1, 3).mean(axis=0)).max())
    return changed, bias
