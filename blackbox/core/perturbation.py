"""Patches, their rendering into one perturbation, and its projection onto the budget.

A patch is a Gabor-like texture: a Gaussian window of standard deviation ``size`` px centred at
pixel ``(x, y)``, times a cosine grating of ``frequency`` cycles/px at ``angle``, times an amplitude
per RGB channel. ``frequency = 0`` gives a plain colour blob. Patches are summed, the sum is
rescaled to the budget, added, clipped to [0, 1] and quantised to 8 bits.

The budget is one value, :class:`PerturbationBudget`, in the units of [0, 1] pixels at the working
resolution: ``eps`` in ``norm``, the L2 norm of the whole ``(H, W, 3)`` perturbation (the paper's
sizes 10, 20, 30 at 640 px wide) or its L-inf norm, and, beside an L2 ``eps``, an L-inf cap
``eps_inf`` that holds *together* with it. L2 alone lets an attack pour its whole budget into a few
pixels (a blob moving pixels by 100 levels stays within L2 20), which a person sees; the cap bounds
what any one pixel may change, which is what makes a dense perturbation invisible. The budget holds
all the norm arithmetic, for numpy arrays (the black-box search, quantisation) and torch tensors
(the white-box attacks) alike: size, rescale, projection onto both balls, steepest direction. The
*quantised* perturbation never exceeds either bound: it is clamped to the cap's whole levels, rounded
to the nearest 8-bit level, and if that rounding pushed the L2 over ``eps``, the perturbation is
scaled down (bisection) until its rounding fits. Rendering is numpy float64, so it is deterministic
and a replay is byte-identical.
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
# PerturbationBudget.apply scales a perturbation whose rounding is over budget by k / SCALE_STEPS: the
# grid of a 12-step bisection of [0, 1], kept so every stored trial re-renders to the same bytes.
SCALE_STEPS = 4096

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
    # exp(-(x^2 + y^2) / (2 sigma^2)), in place: the window is up to 481 px square, and temporaries
    # of that size cost more than the arithmetic. Same operations in the same order: same bits.
    window = xs**2 + ys**2
    np.negative(window, out=window)
    np.divide(window, 2.0 * patch.size**2, out=window)
    np.exp(window, out=window)
    if patch.frequency > 0:
        phase = 2.0 * math.pi * patch.frequency * (xs * math.cos(patch.angle) + ys * math.sin(patch.angle))
        window *= np.cos(phase, out=phase)
    region = out[y0:y1, x0:x1]
    for channel, amplitude in enumerate(patch.amplitude):
        region[..., channel] += window * float(amplitude)


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
    """How large a perturbation may be: ``eps`` in its ``norm``, and an L-inf cap, in [0, 1] pixel units.

    ``norm="l2"``: the L2 norm of the whole ``(H, W, 3)`` perturbation (the paper's sizes are 10, 20,
    30 at 640 px wide). ``norm="linf"``: the largest change of any channel, a fraction of the range.
    ``eps_inf`` (optional): an L-inf cap that holds together with ``eps`` (``3 / 255``: no channel of
    any pixel moves by more than 3 levels); :attr:`cap` is the L-inf bound in force (the smaller of
    ``eps`` and ``eps_inf`` under ``norm="linf"``). Every method takes a numpy array or a torch tensor
    and gives back the same kind, so the norm arithmetic is written once for the search and for the
    white-box attacks.

    Raises:
        PerturbationBudgetError: ``norm`` is not ``"l2"`` or ``"linf"``, or ``eps`` or ``eps_inf`` is
            not a finite number > 0. (An eps below one 8-bit level is allowed here, so an attack on it
            can say that its image did not change; :meth:`check_quantisable` refuses it, as the
            settings do.)
    """

    eps: float
    norm: Norm = "l2"
    eps_inf: float | None = None

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
        cap = self.eps_inf
        if cap is not None:
            if isinstance(cap, bool) or not isinstance(cap, (int, float, np.floating, np.integer)):
                raise PerturbationBudgetError(
                    f"eps_inf must be a number (the L-inf cap) or None, got {cap!r}"
                )
            if not (math.isfinite(cap) and cap > 0):
                raise PerturbationBudgetError(
                    f"eps_inf must be a finite number > 0 (the L-inf cap in [0,1] pixel units), got {cap!r}"
                )
            object.__setattr__(self, "eps_inf", float(cap))

    @classmethod
    def from_mapping(cls, values: Mapping) -> PerturbationBudget:
        """The budget of a stored trial config or record (its ``eps``, ``norm`` and ``eps_inf`` keys).

        A config stored before the cap existed has no ``eps_inf``: no cap, as it was made.
        """
        cap = values.get("eps_inf")
        return cls(eps=float(values["eps"]), norm=values["norm"], eps_inf=None if cap is None else float(cap))

    def as_dict(self) -> dict[str, Any]:
        """``{"eps": ..., "norm": ..., "eps_inf": ...}``, as trial configs and records store it."""
        return {"eps": self.eps, "norm": self.norm, "eps_inf": self.eps_inf}

    def __str__(self) -> str:
        text = f"{self.norm}={self.eps:g}"
        return text if self.eps_inf is None else f"{text},linf<={levels(self.eps_inf):g}/255"

    @property
    def cap(self) -> float | None:
        """The L-inf bound in force, in [0, 1] units: ``eps`` for ``norm="linf"`` (or ``eps_inf`` if
        smaller), else ``eps_inf``; ``None`` when nothing bounds a single pixel."""
        if self.norm == "linf":
            return self.eps if self.eps_inf is None else min(self.eps, self.eps_inf)
        return self.eps_inf

    @property
    def cap_levels(self) -> int | None:
        """The cap in whole 8-bit levels (what a quantised pixel may move at most); ``None``: no cap."""
        cap = self.cap
        return None if cap is None else math.floor(cap * 255.0 + 1e-6)

    def with_eps(self, eps: float) -> PerturbationBudget:
        """The same norm and cap with another ``eps`` (the shrink's smaller L2 budgets)."""
        return PerturbationBudget(eps=eps, norm=self.norm, eps_inf=self.eps_inf)

    def require_cap(self, *, by: str) -> int:
        """The cap in whole 8-bit levels, for an attack (``by``) that works only under one.

        Raises:
            UnusableBudgetError: no cap (``eps_inf`` unset and ``norm="l2"``), or one below one level.
        """
        if self.eps_inf is None and self.norm != "linf":
            raise UnusableBudgetError(
                f"{by} works under an L-inf cap: set eps_inf=<8-bit levels> (e.g. eps_inf=4) or norm=linf"
            )
        cap = self.cap_levels
        if not cap:
            raise UnusableBudgetError(
                f"the L-inf cap {self} is below one 8-bit level, so {by} cannot change a pixel: "
                "raise eps_inf to at least 1 level"
            )
        return cap

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
        if self.eps_inf is not None and self.cap_levels == 0:
            raise UnusableBudgetError(
                f"eps_inf={levels(self.eps_inf):g} levels is below one 8-bit level: every perturbation "
                "would round back to the clean image; use eps_inf >= 1 (in 8-bit levels)"
            )

    def size(self, delta: Array) -> float:
        """The norm of ``delta`` (any shape); numpy is summed in float64."""
        if _is_tensor(delta):
            return float(self._tensor_size(delta))
        if self.norm == "l2":
            return float(np.sqrt(np.sum(np.square(delta, dtype=np.float64))))
        return float(np.max(np.abs(delta))) if delta.size else 0.0

    def fits(self, delta: Array) -> bool:
        """Whether ``delta`` is within the budget: its norm at most ``eps``, no element over the cap."""
        if self.size(delta) > self.eps:
            return False
        cap = self.cap
        return cap is None or PerturbationBudget(eps=cap, norm="linf").size(delta) <= cap

    def clamp(self, delta: Array) -> Array:
        """``delta`` with every element clamped to the cap (unchanged without one)."""
        cap = self.cap
        if cap is None:
            return delta
        return delta.clamp(-cap, cap) if _is_tensor(delta) else np.clip(delta, -cap, cap)

    def rescale(self, delta: Array) -> Array:
        """``delta`` scaled so its norm is exactly ``eps``, then clamped to the cap; zero stays zero."""
        if _is_tensor(delta):
            size = self._tensor_size(delta)
            return self.clamp(delta * (self.eps / size)) if size > 0 else delta
        size = self.size(delta)
        return delta if size == 0 else self.clamp(delta * (self.eps / size))

    def project(self, delta: Array) -> Array:
        """A perturbation within both balls: clamped to the cap, then shrunk to the L2 ``eps``.

        For one norm it is the Euclidean projection (clamp for L-inf, shrink for L2). For L2 with a
        cap, shrinking a clamped ``delta`` keeps it inside the cap, so the result lies in both balls
        (the exact projection onto their intersection needs an iterative method; this one is what
        PGD under two norms commonly uses, e.g. Croce & Hein's "mixed" threat models).
        """
        delta = self.clamp(delta)
        if self.norm == "linf":
            return delta
        size = delta.norm() if _is_tensor(delta) else self.size(delta)
        return delta * (self.eps / size) if size > self.eps else delta

    def direction(self, gradient: Array) -> Array:
        """The steepest ascent step of unit norm: ``g / ||g||_2`` for L2, ``sign(g)`` for L-inf.

        Under L2 with a cap the L2 direction is kept; :meth:`project` then enforces the cap.
        """
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

        With ``eps_inf``, clamps every element to the cap's whole levels (:attr:`cap_levels`: a rounded
        element then never moves further); then rounds to the nearest level. If rounding pushed the norm
        over ``eps``,
        ``delta`` is scaled by the largest ``k / 4096`` (``k`` in 1..4095) whose rounding fits, the
        scale a 12-step bisection of [0, 1] finds; only if none fits is ``delta`` truncated toward
        ``clean`` (every element shrinks, so that always fits). Work is confined to the
        perturbation's bounding box, which for patches is a small part of the image.
        """
        # Rows and columns that move, read off one contiguous comparison: ``np.any(..., axis=2)`` over
        # a 3-long axis, or one comparison per channel, is several times slower.
        height, width = delta.shape[:2]
        moved = (delta != 0).reshape(height, -1)
        rows = np.flatnonzero(moved.any(axis=1))
        cols = np.flatnonzero(moved.any(axis=0).reshape(width, -1).any(axis=1))
        if rows.size == 0:
            return clean.copy()
        box = (slice(rows.min(), rows.max() + 1), slice(cols.min(), cols.max() + 1))
        step = (delta[box] * 255.0).reshape(-1)
        if self.eps_inf is not None:
            # Whole levels: |step| <= cap rounds to at most cap levels, at every scale <= 1. (A plain
            # norm=linf budget keeps the scale search alone, so its stored trials re-render as made.)
            cap = self.cap_levels
            step = np.clip(step, -cap, cap)
        # An element moved by less than half a level rounds back to its clean value at every scale
        # <= 1: only the others can change the image or its norm, so only they are searched over.
        active = np.flatnonzero(np.abs(step) >= 0.5)
        base_active, step_active = clean[box].reshape(-1)[active].astype(np.float64), step[active]

        best = np.rint(np.clip(base_active + step_active, 0.0, 255.0))  # scale 1
        fits, size = self._rounding_fits(best - base_active)
        if not fits:
            best = self._largest_fitting(base_active, step_active, size)
        window = clean[box].copy()
        window.reshape(-1)[active] = best.astype(np.uint8)
        out = clean.copy()
        out[box] = window
        return out

    def _largest_fitting(self, base: np.ndarray, step: np.ndarray, over: float) -> np.ndarray:
        """``rint(clip(base + k / SCALE_STEPS * step))`` for the largest ``k`` in 1..SCALE_STEPS - 1 that
        fits the budget (``base`` and ``step`` in 8-bit levels).

        At ``k = SCALE_STEPS`` (scale 1) the rounding's norm is ``over``, above ``eps``. Each element's
        distance from ``base`` never shrinks as the scale grows (clip and rint are monotone), so neither
        does the norm, in floating point too: whether a scale fits is monotone, and any search of it
        finds the ``k`` a 12-step bisection of [0, 1] does, with the same bytes. The norm is nearly
        linear in the scale, so interpolating between the bracket's ends, and probing both sides of
        the guess, closes the bracket in a few roundings instead of twelve; a bisection step whenever
        that fails to halve it bounds the cost. If no ``k`` fits, every element is truncated toward
        ``base`` instead (which always fits).
        """

        def rounded(scale: float) -> np.ndarray:
            return np.rint(np.clip(base + scale * step, 0.0, 255.0))

        low, high = 0, SCALE_STEPS  # rounded(low) fits (zero: base itself), rounded(high) does not
        low_size, high_size = 0.0, over
        best: np.ndarray | None = None
        interpolate = True
        while high - low > 1:
            if interpolate and high_size > low_size:
                guess = low + (high - low) * (self.eps - low_size) / (high_size - low_size)
                probes = [min(max(int(guess), low + 1), high - 1)]
                if probes[0] + 1 < high:
                    probes.append(probes[0] + 1)
            else:
                probes = [(low + high) // 2]
            width = high - low
            for k in probes:
                if not low < k < high:
                    continue
                candidate = rounded(k / SCALE_STEPS)
                fits, size = self._rounding_fits(candidate - base)
                if fits:
                    low, low_size, best = k, size, candidate
                else:
                    high, high_size = k, size
            interpolate = 2 * (high - low) <= width
        if best is None:
            return base + np.trunc(np.clip(base + step, 0.0, 255.0) - base)
        return best

    def _rounding_fits(self, levels: np.ndarray) -> tuple[bool, float]:
        """Whether a rounded perturbation (``levels``: whole 8-bit levels, as float64) fits, and its norm.

        The decision is :meth:`fits` on ``levels / 255``, bit for bit. For L2 the squares of whole
        levels add up exactly (integers below 2**53, in any order), so their sum's root is within
        1e-15 of what :meth:`size` computes; only a norm within 1e-9 of ``eps`` is left to
        :meth:`size` itself. This saves two passes and two temporaries on every rounding.
        """
        if self.norm == "l2":
            size = math.sqrt(float(np.dot(levels, levels))) / 255.0
            if abs(size - self.eps) > 1e-9 * self.eps:
                return size <= self.eps, size
        size = self.size(levels / 255.0)
        return size <= self.eps, size


def levels(value: float) -> float:
    """A size in [0, 1] units as 8-bit levels (``3 / 255`` is 3 levels)."""
    return round(value * 255.0, 6)


def perturb(clean: np.ndarray, patches: Sequence[Patch], budget: PerturbationBudget) -> np.ndarray:
    """Render ``patches`` on ``clean`` (``(H, W, 3)`` uint8), fill ``budget``, return the 8-bit image."""
    height, width = clean.shape[:2]
    delta = render(patches, height, width)
    size = budget.size(delta)
    if size > 0:
        delta *= budget.eps / size  # budget.rescale, in place: the same values without a copy
    return budget.apply(clean, delta)
