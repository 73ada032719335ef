"""The first trials of a grid-feature search: the goal's cells most likely to win (``search.prior``).

A saliency network's salient point is its map's maximum, so the cheapest way to pull it into the
goal is to raise the goal's cell that is already the most salient: it needs the least added to
beat the current peak. ``prior: salient_cells`` asks, before the sampler's own draws, one trial per
goal cell for the ``prior_cells`` best cells: one feature, one cell, of the space's first kind, at
full weight (``squares`` 4, the best texture measured). The cells are ranked by the clean map's
log-density maximum over the cell's part of the goal box. Without a map (a crop-only target) the
crops score stays flat until a crop jumps, so nothing tells the goal's cells apart: the prior then
sweeps the goal's middle line of cells along its long side, one cell per row of a column band,
nearest the salient point the clean crops imply first (``prior_cells`` does not cap it).

Measured on twitter (README, "Search design on saliency networks"): at L2 10 the goal's most
salient cell alone moved the point on 5 of the 8 README pictures that have a goal.

The trials are ordinary trials (enqueued in the study, told to the sampler), so a search with a
prior replays and resumes as any other.
"""

from __future__ import annotations

import math
from collections.abc import Mapping

import numpy as np

from blackbox.core.goal import Goal, goal_slices
from blackbox.search.features import (
    FEATURE_KINDS,
    check_feature_space,
    feature_distributions,
    feature_range,
    grid_shape,
)
from blackbox.search.search_space import param_name
from targets import TargetOutput

#: A texture prior's squares per cell side (on twitter's 32 px cells at 640 px: 8 px squares).
PRIOR_SQUARES = 4.0


def goal_cells(search: Mapping, goal: Goal, width: int, height: int) -> list[tuple[int, int]]:
    """The ``(col, row)`` grid cells that overlap the goal box, row by row."""
    cols, rows, cell_w, cell_h = grid_shape(search, height, width)
    x0, y0, x1, y1 = goal.box
    first_col, last_col = int(max(0, x0) // cell_w), min(cols - 1, int(min(x1, width - 1) // cell_w))
    first_row, last_row = int(max(0, y0) // cell_h), min(rows - 1, int(min(y1, height - 1) // cell_h))
    return [(c, r) for r in range(first_row, last_row + 1) for c in range(first_col, last_col + 1)]


def rank_cells(
    search: Mapping, goal: Goal, width: int, height: int, clean: TargetOutput
) -> list[tuple[int, int]]:
    """The goal's cells, most promising first (module doc); ties keep the row-by-row order."""
    _, _, cell_w, cell_h = grid_shape(search, height, width)
    cells = goal_cells(search, goal, width, height)
    if clean.log_density is not None:
        density = clean.log_density
        rows, cols = goal_slices(goal, *density.shape)
        scale_y, scale_x = density.shape[0] / height, density.shape[1] / width

        def key(cell: tuple[int, int]) -> float:
            c, r = cell
            y0 = max(rows.start, math.floor(r * cell_h * scale_y))
            y1 = min(rows.stop, max(y0 + 1, math.ceil((r + 1) * cell_h * scale_y)))
            x0 = max(cols.start, math.floor(c * cell_w * scale_x))
            x1 = min(cols.stop, max(x0 + 1, math.ceil((c + 1) * cell_w * scale_x)))
            part = density[y0:y1, x0:x1]
            return -float(part.max()) if part.size else math.inf

    else:
        # Crops only: every cell of the goal's middle line along its long side, nearest the point
        # the crops imply first. Until a crop jumps the score cannot tell the cells apart, so one
        # try per line is the cheapest sweep.
        x0, y0, x1, y1 = goal.box
        column_band = x1 - x0 <= y1 - y0  # (the protocol's): one cell per row, else one per column
        across, along = (0, 1) if column_band else (1, 0)  # index into (col, row)
        centre = int(((x0 + x1) / 2) // cell_w) if column_band else int(((y0 + y1) / 2) // cell_h)
        lines = sorted({cell[across] for cell in cells})
        middle = centre if centre in lines else lines[(len(lines) - 1) // 2]
        cells = [cell for cell in cells if cell[across] == middle]
        point, side = (clean.salient_point[1], cell_h) if column_band else (clean.salient_point[0], cell_w)

        def key(cell: tuple[int, int]) -> float:
            return abs((cell[along] + 0.5) * side - point)

    return sorted(cells, key=key)


def prior_trials(
    search: Mapping, goal: Goal, width: int, height: int, clean: TargetOutput
) -> list[dict[str, object]]:
    """The params of the first trials ``search.prior`` asks for (``[]`` for ``prior: none``).

    ``clean`` is the clean image's output (``log_density`` ``(H, W)`` float, or ``None``: crops
    only). With a map, ``prior_cells`` trials; without, one per cell of the goal's middle line.
    Every value lies inside the space's distributions.

    Raises:
        FeatureSpaceError: an unusable space, e.g. an unknown ``prior``, or ``prior_cells`` not a
            whole number >= 1 (:func:`blackbox.search.features.check_feature_space`).
    """
    check_feature_space(search)  # prior and prior_cells among the rest
    if search.get("prior", "none") == "none":
        return []
    count = int(search.get("prior_cells", 4))
    space = feature_distributions(search, goal, width, height)
    kinds = list(search.get("kinds", FEATURE_KINDS))
    trials = []
    ranked = rank_cells(search, goal, width, height, clean)
    for col, row in ranked[:count] if clean.log_density is not None else ranked:
        params: dict[str, object] = {
            param_name(0, "x"): col + 0.5,
            param_name(0, "y"): row + 0.5,
            param_name(0, "w"): feature_range(search, "w")[0],
            param_name(0, "h"): feature_range(search, "h")[0],
            param_name(0, "kind"): kinds[0],
            param_name(0, "weight"): feature_range(search, "weight")[1],
        }
        if "texture" in kinds:
            params[param_name(0, "squares")] = PRIOR_SQUARES
        if "colour" in kinds:
            params.update({param_name(0, c): feature_range(search, "colour")[1] for c in "rgb"})
        # Inside the space's bounds (the goal grown by margin holds the goal's own cells).
        trials.append(
            {
                name: float(np.clip(v, space[name].low, space[name].high))  # type: ignore[attr-defined]
                if isinstance(v, float)
                else v
                for name, v in params.items()
            }
        )
    return trials
