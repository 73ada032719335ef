"""Patches, their rendering into one perturbation, and its projection onto the budget.

A patch is a Gabor-like texture: a Gaussian window of standard deviation ``size`` px centred at
pixel ``(x, y)``, times a cosine grating of ``frequency`` cycles/px at ``angle``, times an amplitude
per RGB channel. ``frequency = 0`` gives a plain colour blob. Patches are summed, the sum is
rescaled to the budget, added, clipped to [0, 1] and quantised to 8 bits.

The budget ``eps`` is in the units of [0, 1] pixels at the working resolution: the L2 norm of the
whole ``(H, W, 3)`` perturbation (the paper's sizes 10, 20, 30 at 640 px wide), or its L-inf norm.
The *quantised* perturbation never exceeds ``eps``: it is rounded to the nearest 8-bit level, and
if that rounding pushed it over the budget, the perturbation is scaled down (bisection) until its
rounding fits. All of this is numpy float64, so rendering is deterministic and a replay
is byte-identical.
"""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence
from dataclasses import asdict, dataclass
from typing import Literal

import numpy as np

Norm = Literal["l2", "linf"]


@dataclass(frozen=True)
class Patch:
    x: int
    y: int
    size: float
    amplitude: tuple[float, float, float]
    frequency: float = 0.0
    angle: float = 0.0

    @classmethod
    def from_mapping(cls, values: Mapping) -> Patch:
        return cls(
            x=int(values["x"]),
            y=int(values["y"]),
            size=float(values["size"]),
            amplitude=tuple(float(a) for a in values["amplitude"]),  # type: ignore[arg-type]
            frequency=float(values.get("frequency", 0.0)),
            angle=float(values.get("angle", 0.0)),
        )

    def as_dict(self) -> dict:
        values = asdict(self)
        values["amplitude"] = list(self.amplitude)
        return values


def render_patch(patch: Patch, height: int, width: int, out: np.ndarray) -> None:
    """Add one patch to ``out`` (``(H, W, 3)`` float64), only within 3 sigma of its centre."""
    radius = math.ceil(3 * patch.size)
    y0, y1 = max(0, patch.y - radius), min(height, patch.y + radius + 1)
    x0, x1 = max(0, patch.x - radius), min(width, patch.x + radius + 1)
    if y0 >= y1 or x0 >= x1:
        return
    ys = np.arange(y0, y1, dtype=np.float64)[:, None] - patch.y
    xs = np.arange(x0, x1, dtype=np.float64)[None, :] - patch.x
    window = np.exp(-(xs**2 + ys**2) / (2.0 * patch.size**2))
    if patch.frequency > 0:
        phase = 2.0 * math.pi * patch.frequency * (xs * math.cos(patch.angle) + ys * math.sin(patch.angle))
        window = window * np.cos(phase)
    out[y0:y1, x0:x1] += window[:, :, None] * np.asarray(patch.amplitude, dtype=np.float64)


def render(patches: Sequence[Patch], height: int, width: int) -> np.ndarray:
    """The unscaled sum of ``patches`` as an ``(H, W, 3)`` float64 array."""
    out = np.zeros((height, width, 3), dtype=np.float64)
    for patch in patches:
        render_patch(patch, height, width, out)
    return out


def norm_of(delta: np.ndarray, norm: Norm) -> float:
    if norm == "l2":
        return float(np.sqrt(np.sum(np.square(delta, dtype=np.float64))))
    if norm == "linf":
        return float(np.max(np.abs(delta))) if delta.size else 0.0
    raise ValueError(f"norm must be 'l2' or 'linf', got {norm!r}")


def scale_to_budget(delta: np.ndarray, eps: float, norm: Norm) -> np.ndarray:
    """``delta`` rescaled so its norm is ``eps`` (a zero perturbation stays zero)."""
    size = norm_of(delta, norm)
    return delta if size == 0 else delta * (eps / size)


def apply(clean: np.ndarray, delta: np.ndarray, eps: float, norm: Norm) -> np.ndarray:
    """The 8-bit adversarial image: ``clean`` (uint8) plus ``delta`` (in [0,1] units), within budget.

    Rounds to the nearest level. If rounding pushed the norm over ``eps``, the largest scale of
    ``delta`` whose rounding fits is found by bisection; only if none fits is ``delta`` truncated
    toward ``clean`` (every element shrinks, so that always fits). Work is confined to the
    perturbation's bounding box, which for patches is a small part of the image.
    """
    # Per-channel comparisons: ``np.any(..., axis=2)`` over a 3-long axis is ten times slower.
    moved = (delta[..., 0] != 0) | (delta[..., 1] != 0) | (delta[..., 2] != 0)
    rows, cols = np.flatnonzero(moved.any(axis=1)), np.flatnonzero(moved.any(axis=0))
    if rows.size == 0:
        return clean.copy()
    box = (slice(rows.min(), rows.max() + 1), slice(cols.min(), cols.max() + 1))
    base = clean[box].astype(np.float64)
    step = delta[box] * 255.0
    # An element moved by less than half a level rounds back to its clean value at every scale
    # <= 1: only the others can change the image or its norm, so only they are searched over.
    active = np.flatnonzero(np.abs(step) >= 0.5)
    base_active, step_active = base.reshape(-1)[active], step.reshape(-1)[active]

    def rounded(scale: float) -> np.ndarray:
        return np.rint(np.clip(base_active + scale * step_active, 0.0, 255.0))

    def fits(candidate: np.ndarray) -> bool:
        return norm_of((candidate - base_active) / 255.0, norm) <= eps

    best = rounded(1.0)
    if not fits(best):
        low, high, best = 0.0, 1.0, None
        for _ in range(12):
            middle = (low + high) / 2
            candidate = rounded(middle)
            if fits(candidate):
                low, best = middle, candidate
            else:
                high = middle
        if best is None:
            best = base_active + np.trunc(np.clip(base_active + step_active, 0.0, 255.0) - base_active)
    window = clean[box].copy()
    window.reshape(-1)[active] = best.astype(np.uint8)
    out = clean.copy()
    out[box] = window
    return out


def perturb(clean: np.ndarray, patches: Sequence[Patch], *, eps: float, norm: Norm) -> np.ndarray:
    """Render ``patches``, fill the budget, and return the 8-bit adversarial image."""
    height, width = clean.shape[:2]
    delta = scale_to_budget(render(patches, height, width), eps, norm)
    return apply(clean, delta, eps, norm)
