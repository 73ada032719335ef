"""What one accumulated change is: a few searched parameters that render a dense, unit-L2 change.

:class:`blackbox.search.accumulate.AccumulateSearch` adds one change at a time to the perturbation
it has accepted so far. A :class:`Proposal` says which changes exist: its :meth:`Proposal.space`
declares the parameters (Optuna distributions, which TPE or random search fill in), and
:meth:`Proposal.change` renders one set of values to an ``(H, W, 3)`` float64 array of L2 norm 1
(pixel units of [0, 1]). New kinds of change (e.g. for crop-only croppers) subclass
:class:`Proposal`; the accumulation loop does not change.

Both proposals here are dense and low-dimensional, aligned with how saliency networks read an
image: ``twitter`` sees a copy 320 px on its long side through a grid of 16 px cells, 20 cells
along the long side, so a change that is constant over a cell (or a few cells) carries its whole
norm into the cells the model scores, where a Gaussian blob spends it on a few pixels.

* :class:`CellOffsets`: one RGB colour offset over a block of ``size x size`` grid cells.
* :class:`LowFrequencyDCT`: one 2-D DCT-II basis function of low order, with an RGB colour.
"""

from __future__ import annotations

import abc
import math
from collections.abc import Mapping

import numpy as np
from optuna.distributions import BaseDistribution, FloatDistribution

from blackbox.core.goal import Goal

COLOURS = ("red", "green", "blue")


class Proposal(abc.ABC):
    """One kind of accumulated change. Call :meth:`setup` once per image before the others."""

    height: int = 0
    width: int = 0

    def setup(self, height: int, width: int, goal: Goal, peak: tuple[float, float]) -> None:
        """Prepare for an image of ``height x width`` px with ``goal`` and the clean salient ``peak``.

        Raises:
            ValueError: the image is too small for this proposal.
        """
        if height < 1 or width < 1:
            raise ValueError(f"image must be at least 1 x 1 px, got {width} x {height}")
        self.height, self.width = int(height), int(width)

    @abc.abstractmethod
    def space(self) -> dict[str, BaseDistribution]:
        """The searched parameters of one change (fixed for the image: TPE asks them jointly)."""

    @abc.abstractmethod
    def change(self, params: Mapping[str, float]) -> np.ndarray:
        """The ``(H, W, 3)`` float64 change for ``params``, of L2 norm 1 (zero if it is empty)."""

    def _colour(self, params: Mapping[str, float]) -> np.ndarray:
        return np.array([params[c] for c in COLOURS], dtype=np.float64)


def _unit(delta: np.ndarray) -> np.ndarray:
    size = float(np.sqrt(np.sum(np.square(delta))))
    return delta / size if size > 0 else delta


def _colour_space() -> dict[str, BaseDistribution]:
    return {c: FloatDistribution(-1.0, 1.0) for c in COLOURS}


class CellOffsets(Proposal):
    """A constant RGB offset over a square block of the model's grid cells.

    The grid has ``cells_long`` cells along the image's long side (``twitter``: 20 cells of 16 px on
    its 320 px copy; at 640 px wide a cell is 32 px). Searched: the block's top-left cell ``row``,
    ``col`` (continuous, floored to the cell, which TPE handles more cheaply than integers), its
    side ``size`` in cells (1 to ``max_block``), and the colour ``red``, ``green``, ``blue`` in
    [-1, 1]. ``region="near"`` keeps blocks within ``margin`` cells of the bounding box of the goal
    and the clean salient point, where the model's score is decided; ``"image"`` allows every cell.
    """

    def __init__(
        self, *, cells_long: int = 20, max_block: int = 2, region: str = "image", margin: int = 3
    ) -> None:
        if cells_long < 1:
            raise ValueError(f"cells_long must be at least 1 (cells along the long side), got {cells_long}")
        if max_block < 1:
            raise ValueError(f"max_block must be at least 1 cell, got {max_block}")
        if region not in ("image", "near"):
            raise ValueError(
                f"region must be 'image' or 'near' (the goal and the clean peak), got {region!r}"
            )
        if margin < 0:
            raise ValueError(f"margin must be >= 0 cells, got {margin}")
        self.cells_long = int(cells_long)
        self.max_block = int(max_block)
        self.region = region
        self.margin = int(margin)

    def setup(self, height: int, width: int, goal: Goal, peak: tuple[float, float]) -> None:
        super().setup(height, width, goal, peak)
        self.cell = max(height, width) / self.cells_long
        self.rows = max(1, math.ceil(height / self.cell))
        self.cols = max(1, math.ceil(width / self.cell))
        self.row_range: tuple[int, int] = (0, self.rows)
        self.col_range: tuple[int, int] = (0, self.cols)
        if self.region == "near":
            x0, x1 = min(goal.x0, peak[0]), max(goal.x1, peak[0])
            y0, y1 = min(goal.y0, peak[1]), max(goal.y1, peak[1])
            self.col_range = self._cells(x0, x1, self.cols)
            self.row_range = self._cells(y0, y1, self.rows)

    def _cells(self, low: float, high: float, count: int) -> tuple[int, int]:
        first = max(0, int(low // self.cell) - self.margin)
        last = min(count, int(high // self.cell) + 1 + self.margin)
        return first, max(last, first + 1)

    def space(self) -> dict[str, BaseDistribution]:
        return {
            "row": FloatDistribution(float(self.row_range[0]), float(self.row_range[1])),
            "col": FloatDistribution(float(self.col_range[0]), float(self.col_range[1])),
            "size": FloatDistribution(1.0, float(self.max_block + 1)),
            **_colour_space(),
        }

    def change(self, params: Mapping[str, float]) -> np.ndarray:
        size = min(int(params["size"]), self.max_block)
        row = min(int(params["row"]), self.row_range[1] - 1)
        col = min(int(params["col"]), self.col_range[1] - 1)
        y0, y1 = round(row * self.cell), min(self.height, round((row + size) * self.cell))
        x0, x1 = round(col * self.cell), min(self.width, round((col + size) * self.cell))
        out = np.zeros((self.height, self.width, 3), dtype=np.float64)
        out[y0:y1, x0:x1] = self._colour(params)
        return _unit(out)


class LowFrequencyDCT(Proposal):
    """One 2-D DCT-II basis function ``cos(pi u (x + 1/2) / W) cos(pi v (y + 1/2) / H)`` in colour.

    Searched: the orders ``u`` and ``v`` (continuous, floored, in ``[0, order)``) and the colour
    ``red``, ``green``, ``blue`` in [-1, 1]. ``order`` 16 reaches down to half a ``twitter`` cell on
    a 640 px side (a period of 80 px at ``u = 16``); Guo et al. (SimBA-DCT, ICML 2019) search this
    low-frequency corner.
    """

    def __init__(self, *, order: int = 16) -> None:
        if order < 1:
            raise ValueError(f"order must be at least 1 (DCT frequencies per axis), got {order}")
        self.order = int(order)

    def setup(self, height: int, width: int, goal: Goal, peak: tuple[float, float]) -> None:
        super().setup(height, width, goal, peak)
        # Cached 1-D bases: a change is then one outer product.
        self._cols = np.cos(np.pi * np.arange(self.order)[:, None] * (np.arange(width) + 0.5) / width)
        self._rows = np.cos(np.pi * np.arange(self.order)[:, None] * (np.arange(height) + 0.5) / height)

    def space(self) -> dict[str, BaseDistribution]:
        return {
            "u": FloatDistribution(0.0, float(self.order)),
            "v": FloatDistribution(0.0, float(self.order)),
            **_colour_space(),
        }

    def change(self, params: Mapping[str, float]) -> np.ndarray:
        u = min(int(params["u"]), self.order - 1)
        v = min(int(params["v"]), self.order - 1)
        plane = np.outer(self._rows[v], self._cols[u])
        return _unit(plane[:, :, None] * self._colour(params))


def make_proposal(name: str, settings: Mapping | None = None) -> Proposal:
    """The proposal called ``name`` (``cells``, ``dct`` or ``grid``) built with ``settings``.

    Raises:
        ValueError: an unknown name, or a bad setting (the message says which).
    """
    from blackbox.search.features import GridFeatureProposal  # libvips' shrink grid; imports this module

    kinds: dict[str, type[Proposal]] = {
        "cells": CellOffsets,
        "dct": LowFrequencyDCT,
        "grid": GridFeatureProposal,
    }
    if name not in kinds:
        raise ValueError(f"unknown proposal {name!r}; use one of {', '.join(sorted(kinds))}")
    try:
        return kinds[name](**dict(settings or {}))
    except TypeError as error:
        raise ValueError(f"bad settings for proposal {name!r}: {error}") from None
