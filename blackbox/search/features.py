"""Feature-aware search space for feature-scoring croppers (libvips ``attention`` / ``entropy``).

libvips' ``attention`` shrinks the image to a ``grid`` x ``grid`` copy (32 x 32; each axis on its
own) and scores edges (a Laplacian on its luminance), skin tones and colour there; ``entropy`` trims
the end of the cut side whose slice has the lower histogram entropy (``targets/vips.py``). Smooth
Gaussian blobs (``search=blobs``) spread their L2 budget below what either measure sees. A *grid
feature* instead is a rectangle of whole cells of that shrink grid, filled with one of:

* ``checker``: +-1 grey, alternating sign from cell to cell. After the shrink every cell is a pixel
  and every neighbour differs: the largest Laplacian (``attention``'s edge term) a budget can buy.
* ``noise``: +-1 grey per pixel, a fixed pseudo-random pattern (seeded by the feature's index). It
  fills the histogram of the slices it covers: ``entropy`` keeps that end.
* ``colour``: one RGB colour (amplitudes ``r``, ``g``, ``b``) on every pixel: colour and skin terms.
* ``texture``: a fine +-1 grey checkerboard, ``squares`` squares along a cell's side, counted from
  the image's corner. For a saliency *network* (``twitter``, which reads a copy 320 px long through
  cells of 16 px) it is the strongest change per unit of L2 measured in one cell: on the goal's cell
  the clean map finds most salient, 4 squares per side moved twitter's point at L2 10 on 5 of the 8
  README pictures with a goal (``python -m benchmarks.texture_probes``; ``search=texture``).

``cells: square`` makes the grid's cells square, ``grid`` along the image's long side (a network's
cells); the default ``stretched`` divides each axis into ``grid`` (libvips' shrink).

Measured by hand on the 13 offline pictures (``python -m benchmarks.vips_probes``; README, "Search
design on libvips' croppers"): at L2 40 one ``checker`` band on the goal moved ``attention``'s
crops to the goal on 13 of 13 pictures, a flat colour on 5 to 12, and grey ``noise`` from the goal
to the image's edge moved ``entropy``'s on 7.

Parameters of feature ``k`` (Optuna names ``p{k}_...`` as for patches, so ``sampler=sparse_rs``
mutates them): ``x``, ``y``: its centre in grid cells (within the goal grown by ``margin``, in
cells); ``w``, ``h``: its size in cells (rounded, at least 1); ``kind``: one of ``kinds``;
``weight``: its share of the budget (signed: a ``checker`` or ``texture`` of weight -1 has the
opposite phase); ``r``, ``g``, ``b``: the colour of a ``colour`` feature; ``squares``: a
``texture``'s squares per cell side (rounded to whole pixels when rendered). The features are
summed (an ``(H, W, 3)`` float64 delta in [0, 1] pixel units), the sum rescaled to ``eps`` and
quantised as every perturbation (:meth:`blackbox.core.perturbation.PerturbationBudget.apply`), so
the budget holds exactly as for patches.

A trial's config (``kind: grid``, the declared space, ``eps``, ``norm`` and the drawn ``features``)
is all :func:`render_features` needs: a replay is byte-identical (numpy float64, seeded noise).

The same features are also one accumulated change of ``attack=accumulate``
(:class:`GridFeatureProposal`, ``attack.proposal=grid``): one feature at a time, kept if the
crops score rose.
"""

from __future__ import annotations

import copy
import functools
import math
from collections.abc import Callable, Mapping

import numpy as np
from optuna.distributions import BaseDistribution, CategoricalDistribution, FloatDistribution

from blackbox.core.goal import Goal
from blackbox.core.perturbation import Norm, PerturbationBudget
from blackbox.search.proposals import Proposal
from blackbox.search.search_space import SearchSpaceError, param_name

#: ``search.kind`` of this space (``conf/search/grid.yaml``).
KIND = "grid"
FEATURE_KINDS = ("checker", "noise", "colour", "texture")
CELL_SHAPES = ("stretched", "square")
PRIORS = ("none", "salient_cells")  # search.prior: the first trials (blackbox/search/prior.py)
NOISE_SEED = 1_000_003  # noise of feature k is drawn from default_rng(NOISE_SEED + k)
RANGE_KEYS = ("w", "h", "weight", "colour", "squares")
_DEFAULTS = {
    "w": (1.0, 8.0),
    "h": (1.0, 32.0),
    "weight": (-1.0, 1.0),
    "colour": (-1.0, 1.0),
    "squares": (2.0, 8.0),
}


class FeatureSpaceError(SearchSpaceError):
    """The declared grid-feature space is unusable; the message names the key and what to use."""


def is_feature_space(search: Mapping) -> bool:
    """Whether ``search`` declares grid features (``kind: grid``) rather than patches."""
    return search.get("kind") == KIND


def _int_setting(search: Mapping, key: str, default: int, low: int) -> int:
    value = search.get(key, default)
    if isinstance(value, bool) or not isinstance(value, int) or value < low:
        raise FeatureSpaceError(f"search.{key} must be a whole number >= {low}, got {value!r}")
    return value


def feature_range(search: Mapping, key: str) -> tuple[float, float]:
    """``(low, high)`` of ``search.space.<key>``, or its default; :class:`FeatureSpaceError` if unusable."""
    spec = (search.get("space") or {}).get(key)
    if spec is None:
        return _DEFAULTS[key]
    try:
        low, high = float(spec["low"]), float(spec["high"])
    except (KeyError, TypeError, ValueError) as error:
        raise FeatureSpaceError(f"search.space.{key} needs numeric low and high, got {spec!r}") from error
    if not low <= high:
        raise FeatureSpaceError(f"search.space.{key}: need low <= high, got {low}, {high}")
    if key in ("w", "h") and low < 1:
        raise FeatureSpaceError(f"search.space.{key} is in grid cells: low must be >= 1, got {low}")
    if key == "squares" and low < 1:
        raise FeatureSpaceError(f"search.space.squares is squares per cell side: low must be >= 1, got {low}")
    return low, high


def check_feature_space(search: Mapping) -> None:
    """Raise :class:`FeatureSpaceError` naming the first unusable key of a ``kind: grid`` space."""
    _int_setting(search, "n_features", 4, 1)
    _int_setting(search, "grid", 32, 2)
    if search.get("cells", "stretched") not in CELL_SHAPES:
        raise FeatureSpaceError(
            f"search.cells must be one of {', '.join(CELL_SHAPES)}, got {search.get('cells')!r}"
        )
    margin = search.get("margin", 0.5)
    if isinstance(margin, bool) or not isinstance(margin, (int, float)) or margin < 0:
        raise FeatureSpaceError(f"search.margin must be a number >= 0 (goal sizes), got {margin!r}")
    kinds = list(search.get("kinds", FEATURE_KINDS))
    bad = [k for k in kinds if k not in FEATURE_KINDS]
    if not kinds or bad:
        raise FeatureSpaceError(
            f"search.kinds must be a non-empty list of {', '.join(FEATURE_KINDS)}, got {kinds!r}"
        )
    unknown = set(search.get("space") or {}) - set(RANGE_KEYS)
    if unknown:
        raise FeatureSpaceError(
            f"search.space has unknown keys {sorted(unknown)}; use {', '.join(RANGE_KEYS)}"
        )
    for key in RANGE_KEYS:
        feature_range(search, key)
    if search.get("prior", "none") not in PRIORS:
        raise FeatureSpaceError(
            f"search.prior must be one of {', '.join(PRIORS)}, got {search.get('prior')!r}"
        )
    _int_setting(search, "prior_cells", 4, 1)


def grid_shape(search: Mapping, height: int, width: int) -> tuple[int, int, float, float]:
    """``(cols, rows, cell width, cell height)`` of the grid on an ``height x width`` px image.

    ``cells: stretched``: ``grid`` cells along each axis. ``cells: square``: square cells,
    ``grid`` along the long side, as many as cover the short side.
    """
    grid = _int_setting(search, "grid", 32, 2)
    if search.get("cells", "stretched") != "square":
        return grid, grid, width / grid, height / grid
    side = max(height, width) / grid
    return math.ceil(width / side - 1e-9), math.ceil(height / side - 1e-9), side, side


def cell_region(search: Mapping, goal: Goal, width: int, height: int) -> tuple[float, float, float, float]:
    """Where feature centres go, in grid cells ``(x0, y0, x1, y1)``: the goal grown by ``margin``."""
    cols, rows, cell_w, cell_h = grid_shape(search, height, width)
    margin = float(search.get("margin", 0.5))
    grow_x, grow_y = margin * (goal.x1 - goal.x0), margin * (goal.y1 - goal.y0)
    x0, x1 = max(0.0, goal.x0 - grow_x), min(float(width), goal.x1 + grow_x)
    y0, y1 = max(0.0, goal.y0 - grow_y), min(float(height), goal.y1 + grow_y)
    return x0 / cell_w, y0 / cell_h, min(cols - 1e-9, x1 / cell_w), min(rows - 1e-9, y1 / cell_h)


def feature_distributions(
    search: Mapping, goal: Goal, width: int, height: int
) -> dict[str, BaseDistribution]:
    """Optuna distributions of every feature's parameters (module doc), in a fixed order."""
    check_feature_space(search)
    n_features = int(search.get("n_features", 4))
    x0, y0, x1, y1 = cell_region(search, goal, width, height)
    kinds = tuple(search.get("kinds", FEATURE_KINDS))
    result: dict[str, BaseDistribution] = {}
    for k in range(n_features):
        result[param_name(k, "x")] = FloatDistribution(x0, x1)
        result[param_name(k, "y")] = FloatDistribution(y0, y1)
        result[param_name(k, "w")] = FloatDistribution(*feature_range(search, "w"))
        result[param_name(k, "h")] = FloatDistribution(*feature_range(search, "h"))
        result[param_name(k, "kind")] = CategoricalDistribution(kinds)
        result[param_name(k, "weight")] = FloatDistribution(*feature_range(search, "weight"))
        if "colour" in kinds:
            for channel in "rgb":
                result[param_name(k, channel)] = FloatDistribution(*feature_range(search, "colour"))
        if "texture" in kinds:
            result[param_name(k, "squares")] = FloatDistribution(*feature_range(search, "squares"))
    return result


def features_from_params(params: Mapping[str, object], n_features: int) -> list[dict]:
    """Sampled flat parameters to one dict per feature (cells rounded, sizes at least one cell)."""
    features = []
    for k in range(n_features):
        features.append(
            {
                "x": float(params[param_name(k, "x")]),  # type: ignore[arg-type]
                "y": float(params[param_name(k, "y")]),  # type: ignore[arg-type]
                "w": max(1, round(float(params[param_name(k, "w")]))),  # type: ignore[arg-type]
                "h": max(1, round(float(params[param_name(k, "h")]))),  # type: ignore[arg-type]
                "kind": str(params[param_name(k, "kind")]),
                "weight": float(params[param_name(k, "weight")]),  # type: ignore[arg-type]
                "colour": [float(params.get(param_name(k, c), 0.0)) for c in "rgb"],  # type: ignore[arg-type]
                "squares": float(params.get(param_name(k, "squares"), 4.0)),  # type: ignore[arg-type]
            }
        )
    return features


def feature_config(
    search: Mapping, *, params: Mapping[str, object], eps: float, norm: str, eps_inf: float | None = None
) -> dict:
    """The declared space with the drawn features, ``eps``, ``norm`` and the cap ``eps_inf`` ([0, 1]
    units, or ``None``): all a replay needs."""
    config = copy.deepcopy(dict(search))
    config.update(
        eps=float(eps), norm=norm, features=features_from_params(params, int(search.get("n_features", 4)))
    )
    if eps_inf is not None:  # a config made without a cap keeps its old keys (and its replay)
        config["eps_inf"] = float(eps_inf)
    return config


def config_maker(
    search: Mapping,
    goal: Goal,
    width: int,
    height: int,
    *,
    eps: float,
    norm: str,
    eps_inf: float | None = None,
) -> tuple[dict[str, BaseDistribution], Callable[[Mapping[str, object]], dict]]:
    """The search's distributions and the function turning a trial's params into its config."""
    space = feature_distributions(search, goal, width, height)
    return space, lambda params: feature_config(search, params=params, eps=eps, norm=norm, eps_inf=eps_inf)


def _cell_edges(n: int, size: int, cell: float | None = None) -> np.ndarray:
    """Pixel edges of ``n`` cells over ``size`` pixels (cell i spans edges[i] .. edges[i+1]).

    Cells are ``size / n`` px, or ``cell`` px (the last one cut at the image's edge).
    """
    step = size / n if cell is None else cell
    return np.minimum(np.floor(np.arange(n + 1) * step + 1e-9), size).astype(int)


@functools.lru_cache(maxsize=16)
def _noise(index: int, height: int, width: int) -> np.ndarray:
    """Feature ``index``'s +-1 pattern over the whole image (cached: drawing it cost 5 ms a render)."""
    pattern = np.random.default_rng(NOISE_SEED + index).choice(np.array([-1.0, 1.0]), size=(height, width))
    pattern.flags.writeable = False
    return pattern


def render_delta(
    features: list[Mapping], height: int, width: int, grid: int = 32, cells: str = "stretched"
) -> np.ndarray:
    """The unscaled sum of ``features`` as an ``(H, W, 3)`` float64 array (module doc)."""
    out = np.zeros((height, width, 3), dtype=np.float64)
    n_cols, n_rows, cell_w, cell_h = grid_shape({"grid": grid, "cells": cells}, height, width)
    square = cells == "square"
    cols = _cell_edges(n_cols, width, cell_w if square else None)
    rows = _cell_edges(n_rows, height, cell_h if square else None)
    for index, feature in enumerate(features):
        w, h = int(feature["w"]), int(feature["h"])
        c0 = int(np.clip(math.floor(float(feature["x"]) - w / 2 + 0.5), 0, n_cols - 1))
        r0 = int(np.clip(math.floor(float(feature["y"]) - h / 2 + 0.5), 0, n_rows - 1))
        c1, r1 = min(n_cols, c0 + w), min(n_rows, r0 + h)
        x0, x1, y0, y1 = cols[c0], cols[c1], rows[r0], rows[r1]
        if x0 >= x1 or y0 >= y1:
            continue
        weight = float(feature["weight"])
        kind = feature["kind"]
        if kind == "checker":
            # Cell parity over the whole grid, so neighbouring features keep one phase.
            col_of = np.repeat(np.arange(c0, c1), np.diff(cols[c0 : c1 + 1]))
            row_of = np.repeat(np.arange(r0, r1), np.diff(rows[r0 : r1 + 1]))
            sign = ((row_of[:, None] + col_of[None, :]) % 2) * 2.0 - 1.0
            out[y0:y1, x0:x1] += (weight * sign)[:, :, None]
        elif kind == "noise":
            out[y0:y1, x0:x1] += (weight * _noise(index, height, width)[y0:y1, x0:x1])[:, :, None]
        elif kind == "colour":
            out[y0:y1, x0:x1] += weight * np.asarray(feature["colour"], dtype=np.float64)
        elif kind == "texture":
            # Squares counted from the image's corner, so neighbouring features keep one phase.
            side = max(1, round(min(cell_w, cell_h) / float(feature.get("squares", 4.0))))
            parity = (np.arange(y0, y1)[:, None] // side + np.arange(x0, x1)[None, :] // side) % 2
            out[y0:y1, x0:x1] += (weight * (parity * 2.0 - 1.0))[:, :, None]
        else:
            raise FeatureSpaceError(f"feature kind must be one of {', '.join(FEATURE_KINDS)}, got {kind!r}")
    return out


def render_features(clean: np.ndarray, config: Mapping) -> np.ndarray:
    """The 8-bit adversarial image a ``kind: grid`` trial config describes (``clean``: (H, W, 3) uint8)."""
    height, width = clean.shape[:2]
    norm: Norm = config["norm"]
    eps = float(config["eps"])
    delta = render_delta(
        config["features"], height, width, int(config.get("grid", 32)), str(config.get("cells", "stretched"))
    )
    cap = config.get("eps_inf")
    budget = PerturbationBudget(eps=eps, norm=norm, eps_inf=None if cap is None else float(cap))
    return budget.apply(clean, budget.rescale(delta))


class GridFeatureProposal(Proposal):
    """One grid feature as the accumulated change of ``attack=accumulate`` (``proposal: grid``).

    Searched as in ``search=grid`` (module doc), for one feature: its centre ``x``, ``y`` and size
    ``w`` (1 to ``max_w``), ``h`` (1 to ``max_h``) in cells of the ``grid`` x ``grid`` shrink grid,
    its ``kind`` and, for ``colour``, ``r``, ``g``, ``b``. ``region="goal"`` keeps centres within the
    goal grown by ``margin`` x its size; ``"image"`` allows every cell. The change has L2 norm 1.

    Raises:
        ValueError: a setting out of range (:class:`FeatureSpaceError` names it).
    """

    def __init__(
        self,
        *,
        grid: int = 32,
        kinds: tuple[str, ...] | list[str] = FEATURE_KINDS,
        max_w: float = 8.0,
        max_h: float = 32.0,
        margin: float = 0.5,
        region: str = "goal",
    ) -> None:
        if region not in ("goal", "image"):
            raise FeatureSpaceError(f"region must be 'goal' or 'image', got {region!r}")
        for key, value in (("max_w", max_w), ("max_h", max_h)):
            if isinstance(value, bool) or not isinstance(value, (int, float)) or value < 1:
                raise FeatureSpaceError(
                    f"{key} must be >= 1 grid cell (a feature's largest side), got {value!r}"
                )
        self.search = {
            "kind": KIND,
            "n_features": 1,
            "grid": grid,
            "margin": margin,
            "kinds": list(kinds),
            "space": {"w": {"low": 1.0, "high": max_w}, "h": {"low": 1.0, "high": max_h}},
        }
        try:
            check_feature_space(self.search)
        except FeatureSpaceError as error:  # named as the proposal's settings, not search.*
            raise FeatureSpaceError(str(error).replace("search.", "proposal_settings.")) from None
        self.region = region

    def setup(self, height: int, width: int, goal: Goal, peak: tuple[float, float]) -> None:
        super().setup(height, width, goal, peak)
        space = feature_distributions(self.search, goal, width, height)
        if self.region == "image":
            grid = float(self.search["grid"])
            space["p0_x"] = FloatDistribution(0.0, grid - 1e-9)
            space["p0_y"] = FloatDistribution(0.0, grid - 1e-9)
        space.pop("p0_weight")  # the accumulation sets each change's size; a sign flips the checker
        space["p0_sign"] = CategoricalDistribution((-1.0, 1.0))
        self._space = space

    def space(self) -> dict[str, BaseDistribution]:
        return dict(self._space)

    def change(self, params: Mapping[str, float]) -> np.ndarray:
        feature = features_from_params({**params, "p0_weight": float(params["p0_sign"])}, 1)[0]
        delta = render_delta([feature], self.height, self.width, int(self.search["grid"]))
        size = float(np.sqrt(np.sum(np.square(delta))))
        return delta / size if size > 0 else delta


__all__ = [
    "FEATURE_KINDS",
    "KIND",
    "PRIORS",
    "FeatureSpaceError",
    "GridFeatureProposal",
    "cell_region",
    "check_feature_space",
    "config_maker",
    "feature_config",
    "feature_distributions",
    "features_from_params",
    "grid_shape",
    "is_feature_space",
    "render_delta",
    "render_features",
]
