"""The black-box search space, declared in config (``conf/search/*.yaml``), as Optuna distributions.

Each of ``n_patches`` patches has integer pixel coordinates ``x``, ``y`` inside the search region
and the pattern parameters the config declares (``size``, ``amplitude`` per channel, ``frequency``,
``angle``). The region is the goal box grown by ``margin`` x its size on each side (``region:
goal``), or the whole image (``region: image``): a patch that adds saliency inside the goal is what
pulls the salient point there, so searching near the goal spends the budget where it matters.
``region: goal_and_peak`` sends some patches near the clean salient point instead, to take
saliency away there (:func:`patch_regions`).

Parameter names are declared here and only here: patch ``k``'s parameter ``key`` is named
``p{k}_{key}`` (:func:`param_name`, read back by :meth:`PatchParam.parse`), with ``key`` one of
:data:`PARAM_KEYS`. Samplers (``sparse_rs``), warm starts and stored studies use these names; a
sampler that needs to know which parameters move a patch asks :attr:`PatchParam.is_location`.

Each trial's *perturbation config* is the declared space merged (OmegaConf, as Hydra composes) with
the sampled values; it is stored with the trial and is all :func:`render_config` needs to
re-render the adversarial image.
"""

from __future__ import annotations

import copy
import math
import re
from collections.abc import Mapping
from dataclasses import dataclass

import numpy as np
import optuna
from omegaconf import DictConfig, OmegaConf

from blackbox.core.goal import Goal
from blackbox.core.perturbation import Patch, PerturbationBudget, perturb
from targets import UserError

CHANNELS = ("r", "g", "b")
PATTERN_KEYS = ("size", "frequency", "angle")


class SearchSpaceError(UserError, ValueError):
    """The declared search space is unusable."""


CHANNELS = ("r", "g", "b")  # one amplitude per RGB channel
LOCATION_KEYS = ("x", "y")  # the patch's centre, in pixels
PATTERN_KEYS = ("size", "frequency", "angle")
#: A grid feature's own parameters (``search=grid``, :mod:`blackbox.search.features`): its size in
#: grid cells, its fill (checker, noise, colour, texture), signed weight and a texture's ``squares``
#: per cell; it shares ``x``, ``y`` and the channels.
FEATURE_KEYS = ("w", "h", "kind", "weight", "squares")
#: Every parameter a patch (or a grid feature) can have, in the order the search declares them.
PARAM_KEYS = LOCATION_KEYS + PATTERN_KEYS + CHANNELS + FEATURE_KEYS
_PARAM_NAME = re.compile(rf"^p(\d+)_({'|'.join(PARAM_KEYS)})$")


def param_name(patch: int, key: str) -> str:
    """The name of patch ``patch``'s parameter ``key`` (``p{patch}_{key}``, e.g. ``p0_x``).

    Raises:
        SearchSpaceError: ``patch`` is negative or ``key`` is not one of :data:`PARAM_KEYS`.
    """
    if key not in PARAM_KEYS or isinstance(patch, bool) or not isinstance(patch, int) or patch < 0:
        raise SearchSpaceError(
            f"a patch parameter is a patch number >= 0 and one of {', '.join(PARAM_KEYS)}; "
            f"got {patch!r}, {key!r}"
        )
    return f"p{patch}_{key}"


@dataclass(frozen=True)
class PatchParam:
    """A search parameter's name read back: which patch (from 0) and which of :data:`PARAM_KEYS`."""

    patch: int
    key: str

    @classmethod
    def parse(cls, name: str) -> PatchParam | None:
        """The patch and key named by ``name``; ``None`` if it is not a patch parameter's name."""
        match = _PARAM_NAME.match(name)
        return cls(int(match.group(1)), match.group(2)) if match else None

    @property
    def name(self) -> str:
        return param_name(self.patch, self.key)

    @property
    def is_location(self) -> bool:
        """Whether the parameter moves the patch (``x``, ``y``) rather than changing its content."""
        return self.key in LOCATION_KEYS


@dataclass(frozen=True)
class Region:
    x0: int
    y0: int
    x1: int  # inclusive
    y1: int

    def as_dict(self) -> dict:
        return {"x0": self.x0, "y0": self.y0, "x1": self.x1, "y1": self.y1}


REGION_KINDS = ("goal", "image", "goal_and_peak")


def _grown(box: tuple[float, float, float, float], margin: float, width: int, height: int) -> Region:
    x0, y0, x1, y1 = box
    grow_x, grow_y = margin * (x1 - x0), margin * (y1 - y0)
    return Region(
        int(max(0, x0 - grow_x)),
        int(max(0, y0 - grow_y)),
        int(min(width - 1, x1 + grow_x)),
        int(min(height - 1, y1 + grow_y)),
    )


def search_region(space: Mapping, goal: Goal, width: int, height: int) -> Region:
    """Where goal patches go: the goal grown by ``margin`` (``region: goal``), or the whole image."""
    kind = space.get("region", "goal")
    if kind not in REGION_KINDS:
        raise SearchSpaceError(f"search.region must be one of {', '.join(REGION_KINDS)}, got {kind!r}")
    if kind == "image":
        return Region(0, 0, width - 1, height - 1)
    return _grown((goal.x0, goal.y0, goal.x1, goal.y1), float(space.get("margin", 0.5)), width, height)


def patch_regions(
    space: Mapping, goal: Goal, width: int, height: int, peak: tuple[float, float]
) -> list[Region]:
    """One region per patch.

    ``region: goal_and_peak`` sends ``peak_patches`` patches (half, by default) to a goal-sized box
    around the clean salient point ``peak``: the crop moves when the goal gains saliency *or* the
    current peak loses it, and a patch there can do the second.
    """
    n_patches = int(space.get("n_patches", 0))
    if n_patches < 1:
        raise SearchSpaceError(f"search.n_patches must be at least 1, got {n_patches}")
    goal_region = search_region(space, goal, width, height)
    if space.get("region", "goal") != "goal_and_peak":
        return [goal_region] * n_patches
    n_peak = int(space.get("peak_patches", n_patches // 2))
    if not 0 <= n_peak <= n_patches:
        raise SearchSpaceError(
            f"search.peak_patches must be between 0 and n_patches ({n_patches}), got {n_peak}"
        )
    half_w, half_h = (goal.x1 - goal.x0) / 2, (goal.y1 - goal.y0) / 2
    x, y = peak
    # A full-height (full-width) goal band gives a full-height (full-width) peak band; otherwise a
    # box centred on the peak.
    y0, y1 = (goal.y0, goal.y1) if half_h * 2 >= height - 1 else (y - half_h, y + half_h)
    x0, x1 = (goal.x0, goal.x1) if half_w * 2 >= width - 1 else (x - half_w, x + half_w)
    peak_region = _grown((x0, y0, x1, y1), float(space.get("margin", 0.5)), width, height)
    return [peak_region] * n_peak + [goal_region] * (n_patches - n_peak)


def _float_distribution(name: str, spec: Mapping) -> optuna.distributions.FloatDistribution:
    try:
        low, high = float(spec["low"]), float(spec["high"])
    except (KeyError, TypeError, ValueError) as error:
        raise SearchSpaceError(f"search.space.{name} needs numeric low and high, got {dict(spec)}") from error
    log = bool(spec.get("log", False))
    if not low <= high or (log and low <= 0):
        raise SearchSpaceError(
            f"search.space.{name}: need low <= high{' and low > 0 for log' if log else ''}, got {low}, {high}"
        )
    return optuna.distributions.FloatDistribution(low, high, log=log)


def distributions(
    space: Mapping, region: Region | list[Region]
) -> dict[str, optuna.distributions.BaseDistribution]:
    """Optuna distributions for every parameter of every patch, in a fixed order.

    ``region`` bounds every patch's centre, or is one region per patch (:func:`patch_regions`).
    """
    n_patches = int(space.get("n_patches", 0))
    if n_patches < 1:
        raise SearchSpaceError(f"search.n_patches must be at least 1, got {n_patches}")
    regions = region if isinstance(region, list) else [region] * n_patches
    declared = space.get("space") or {}
    unknown = set(declared) - {"size", "amplitude", "frequency", "angle"}
    if unknown:
        raise SearchSpaceError(
            f"search.space has unknown keys {sorted(unknown)}; use size, amplitude, frequency, angle"
        )
    if "size" not in declared or "amplitude" not in declared:
        raise SearchSpaceError("search.space must declare at least size and amplitude")
    result: dict[str, optuna.distributions.BaseDistribution] = {}
    for k in range(n_patches):
        # Continuous pixel coordinates, rounded when rendered: TPE scores integer parameters by
        # the Gaussian mass of every (candidate, kernel) pair, which made each ask 2.5x slower.
        result[param_name(k, "x")] = optuna.distributions.FloatDistribution(regions[k].x0, regions[k].x1)
        result[param_name(k, "y")] = optuna.distributions.FloatDistribution(regions[k].y0, regions[k].y1)
        for key in PATTERN_KEYS:
            if key in declared:
                result[param_name(k, key)] = _float_distribution(key, declared[key])
        for channel in CHANNELS:
            result[param_name(k, channel)] = _float_distribution("amplitude", declared["amplitude"])
    return result


def pixel(coordinate: float) -> int:
    """A sampled coordinate's pixel: the nearest one, halves rounded up (not to even)."""
    return math.floor(float(coordinate) + 0.5)


def patches_from_params(params: Mapping[str, float], n_patches: int) -> list[dict]:
    """Sampled flat parameters to one dict per patch."""
    patches = []
    for k in range(n_patches):
        patches.append(
            {
                "x": pixel(params[param_name(k, "x")]),
                "y": pixel(params[param_name(k, "y")]),
                "size": float(params[param_name(k, "size")]),
                "amplitude": [float(params[param_name(k, c)]) for c in CHANNELS],
                "frequency": float(params.get(param_name(k, "frequency"), 0.0)),
                "angle": float(params.get(param_name(k, "angle"), 0.0)),
            }
        )
    return patches


def trial_config(
    space: Mapping, *, params: Mapping[str, float], region: Region | list[Region], budget: PerturbationBudget
) -> dict:
    """The declared space composed with the sampled values and the budget: everything a replay needs.

    A plain dict (JSON-ready for the trial's user attributes): composing it with OmegaConf cost
    about 20 ms a trial, more than a ``classic`` query.
    """
    config = copy.deepcopy(_plain(space))
    config.update(
        region_bounds=[r.as_dict() for r in region] if isinstance(region, list) else region.as_dict(),
        **budget.as_dict(),  # eps, norm
        patches=patches_from_params(params, int(space["n_patches"])),
    )
    return config


def _plain(space: Mapping) -> dict:
    """``space`` as plain containers, resolving interpolations if it is still an OmegaConf node."""
    if isinstance(space, DictConfig):
        return OmegaConf.to_container(space, resolve=True)  # type: ignore[return-value]
    return dict(space)


def patches_from_config(config: Mapping) -> list[Patch]:
    """The patches of a stored trial config (:func:`trial_config`)."""
    return [Patch.from_mapping(p) for p in config["patches"]]


def render_config(clean: np.ndarray, config: Mapping) -> np.ndarray:
    """The 8-bit adversarial image (``(H, W, 3)`` uint8) a trial config describes on ``clean`` (uint8).

    What the search sent to the target, and what replay re-does byte for byte: patches, grid
    features (``kind: grid``, :mod:`blackbox.search.features`) or the square search's squares
    (``kind: squares``, :mod:`blackbox.search.square_trials`).
    """
    # grid features and squares build on this module: imported here, not at its top
    from blackbox.search import features, square_trials

    if features.is_feature_space(config):
        return features.render_features(clean, config)
    if square_trials.is_squares_config(config):
        return square_trials.render_squares(clean, config)
    return perturb(clean, patches_from_config(config), PerturbationBudget.from_mapping(config))
