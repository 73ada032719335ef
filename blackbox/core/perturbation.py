"""Patches, their rendering into one perturbation, and its projection onto the budget.

A patch is a Gabor-like texture: a Gaussian window of standard deviation ``size`` px centred at
pixel ``(x, y)``, times a cosine grating of ``frequency`` cycles/px at ``angle``, times an amplitude
per RGB channel. ``frequency = 0`` gives a plain colour blob. Patches are summed, the sum is
rescaled to the budget, added, clipped to [0, 1] and quantised to 8 bits.

The budget is one value, :class:`PerturbationBudget` (``eps`` and ``norm``), in the units of [0, 1]
pixels at the working resolution: the L2 norm of the whole ``(H, W, 3)`` perturbation (the paper's
sizes 10, 20, 30 at 640 px wide), or its L-inf norm. It holds all the norm arithmetic, for numpy
arrays (the black-box search, quantisation) and torch tensors (the white-box attacks) alike: size,
rescale, projection, steepest direction. The *quantised* perturbation never exceeds ``eps``: it is
rounded to the nearest 8-bit level, and if that rounding pushed it over the budget, the perturbation
is scaled down (bisection) until its rounding fits. Rendering is numpy float64, so it is
deterministic and a replay is byte-identical.
"""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence
from dataclasses import asdict, dataclass
from typing import TYPE_CHECKING, Any, Literal, TypeVar

import numpy as np

from targets import UserError

if TYPE_CHECKING:
    import torch

Norm = Literal["l2", "linf"]
NORMS: tuple[Norm, ...] = ("l2", "linf")

# One 8-bit level in [0, 1] units: the smallest change a pixel can take. A perturbation whose norm is
# below it (L2 or L-inf alike) rounds back to the clean image everywhere.
ONE_LEVEL = 1.0 / 255.0

#: A perturbation: a numpy array or a torch tensor (the budget's methods keep the type).
Array = TypeVar("Array", np.ndarray, "torch.Tensor")


class PerturbationBudgetError(UserError, ValueError):
    """A perturbation budget that cannot exist: an unknown norm, or an eps that is not positive."""


class UnusableBudgetError(PerturbationBudgetError):
    """An eps below one 8-bit level: every perturbation would round back to the clean image."""


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


def _is_tensor(value: Any) -> bool:
    # Without importing torch: the search and replay never need it.
    return type(value).__module__.split(".")[0] == "torch"


@dataclass(frozen=True, kw_only=True)
class PerturbationBudget:
    """How large a perturbation may be: ``eps`` in its ``norm``, in [0, 1] pixel units.

    ``norm="l2"``: the L2 norm of the whole ``(H, W, 3)`` perturbation (the paper's sizes are 10, 20,
    30 at 640 px wide). ``norm="linf"``: the largest change of any channel, a fraction of the range.
    Every method takes a numpy array or a torch tensor and gives back the same kind, so the norm
    arithmetic is written once for the search and for the white-box attacks.

    Raises:
        PerturbationBudgetError: ``norm`` is not ``"l2"`` or ``"linf"``, or ``eps`` is not a finite
            number > 0. (An eps below one 8-bit level is allowed here, so an attack on it can say that
            its image did not change; :meth:`check_quantisable` refuses it, as the settings do.)
    """

    eps: float
    norm: Norm = "l2"

    def __post_init__(self) -> None:
        if self.norm not in NORMS:
            raise PerturbationBudgetError(f"norm must be 'l2' or 'linf', got {self.norm!r}")
        eps = self.eps
        if isinstance(eps, bool) or not isinstance(eps, (int, float, np.floating, np.integer)):
            raise PerturbationBudgetError(f"eps must be a number (the perturbation's size), got {eps!r}")
        if not (math.isfinite(eps) and eps > 0):
            raise PerturbationBudgetError(
                f"eps must be a finite number > 0 (the perturbation budget in [0,1] pixel units), got {eps!r}"
            )
        object.__setattr__(self, "eps", float(eps))

    @classmethod
    def from_mapping(cls, values: Mapping) -> PerturbationBudget:
        """The budget of a stored trial config or record (its ``eps`` and ``norm`` keys)."""
        return cls(eps=float(values["eps"]), norm=values["norm"])

    def as_dict(self) -> dict[str, Any]:
        """``{"eps": ..., "norm": ...}``, as trial configs and records store it."""
        return {"eps": self.eps, "norm": self.norm}

    def __str__(self) -> str:
        return f"{self.norm}={self.eps:g}"

    def check_quantisable(self, *, key: str = "eps") -> None:
        """Refuse an ``eps`` below one 8-bit level, naming ``key`` and the smallest usable value.

        Raises:
            UnusableBudgetError: ``eps < 1/255``.
        """
        if self.eps < ONE_LEVEL:
            raise UnusableBudgetError(
                f"{key}={self.eps:g} (norm={self.norm}) is below one 8-bit level (1/255 = {ONE_LEVEL:.5f}): "
                f"every perturbation would round back to the clean image; use {key} >= {ONE_LEVEL:.4f} "
                "(the paper's L2 sizes are 10 to 30)"
            )

    def size(self, delta: Array) -> float:
        """The norm of ``delta`` (any shape); numpy is summed in float64."""
        if _is_tensor(delta):
            return float(self._tensor_size(delta))
        if self.norm == "l2":
            return float(np.sqrt(np.sum(np.square(delta, dtype=np.float64))))
        return float(np.max(np.abs(delta))) if delta.size else 0.0

    def fits(self, delta: Array) -> bool:
        """Whether ``delta`` is within the budget (its norm at most ``eps``)."""
        return self.size(delta) <= self.eps

    def rescale(self, delta: Array) -> Array:
        """``delta`` scaled so its norm is exactly ``eps``; a zero perturbation stays zero."""
        if _is_tensor(delta):
            size = self._tensor_size(delta)
            return delta * (self.eps / size) if size > 0 else delta
        size = self.size(delta)
        return delta if size == 0 else delta * (self.eps / size)

    def project(self, delta: Array) -> Array:
        """The nearest perturbation within the ``eps`` ball (clamp for L-inf, shrink for L2)."""
        if self.norm == "linf":
            return (
                delta.clamp(-self.eps, self.eps) if _is_tensor(delta) else np.clip(delta, -self.eps, self.eps)
            )
        size = delta.norm() if _is_tensor(delta) else self.size(delta)
        return delta * (self.eps / size) if size > self.eps else delta

    def direction(self, gradient: Array) -> Array:
        """The steepest ascent step of unit norm: ``g / ||g||_2`` for L2, ``sign(g)`` for L-inf."""
        if self.norm == "linf":
            return gradient.sign() if _is_tensor(gradient) else np.sign(gradient)
        size = gradient.norm() if _is_tensor(gradient) else self.size(gradient)
        return gradient / size if size > 0 else gradient

    def rescale_clipped(self, delta: Array, image: Array) -> Array:
        """``delta`` scaled so that what survives clipping ``image + delta`` to [0, 1] has norm ``eps``.

        A gradient concentrated on a few pixels loses most of its size to the clip at 0 and 1;
        scaling the direction up until the *clipped* perturbation fills the budget spends it
        elsewhere instead. The clipped norm grows monotonically with the scale, so bisection finds
        it (or as near as it gets: a scale of 1e4 at most). ``image`` is in [0, 1], shaped as ``delta``.
        """
        delta = self.rescale(delta)

        def clipped(scale: float) -> Array:
            moved = image + scale * delta
            return (moved.clamp(0, 1) if _is_tensor(moved) else np.clip(moved, 0, 1)) - image

        eps = self.eps
        if self.size(clipped(1.0)) >= eps * (1 - 1e-6):
            return clipped(1.0)
        low, high = 1.0, 2.0
        while self.size(clipped(high)) < eps and high < 1e4:
            low, high = high, high * 2
        for _ in range(30):
            middle = (low + high) / 2
            if self.size(clipped(middle)) < eps:
                low = middle
            else:
                high = middle
        return clipped(low)

    def _tensor_size(self, delta: torch.Tensor) -> torch.Tensor:
        return delta.abs().max() if self.norm == "linf" else delta.norm()

    def apply(self, clean: np.ndarray, delta: np.ndarray) -> np.ndarray:
        """The 8-bit adversarial image: ``clean`` (``(H, W, 3)`` uint8) plus ``delta`` (float, [0, 1] units).

        Rounds to the nearest level. If rounding pushed the norm over ``eps``, the largest scale of
        ``delta`` whose rounding fits is found by bisection; only if none fits is ``delta``
        truncated toward ``clean`` (every element shrinks, so that always fits). Work is confined to
        the perturbation's bounding box, which for patches is a small part of the image.
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
            return self.fits((candidate - base_active) / 255.0)

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


def perturb(clean: np.ndarray, patches: Sequence[Patch], budget: PerturbationBudget) -> np.ndarray:
    """Render ``patches`` on ``clean`` (``(H, W, 3)`` uint8), fill ``budget``, return the 8-bit image."""
    height, width = clean.shape[:2]
    return budget.apply(clean, budget.rescale(render(patches, height, width)))
