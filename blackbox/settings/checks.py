"""Checks on a composed run config, made before any work so a bad run fails at once and clearly."""

from __future__ import annotations

from collections.abc import Mapping

from blackbox.core.objective import SUCCESS_SETTINGS
from blackbox.core.perturbation import PerturbationBudget, PerturbationBudgetError
from targets import ConfigError  # defined with the zoo, which raises it too; re-exported here

__all__ = ["ConfigError", "check_eps", "check_eps_inf", "check_run_config", "check_search"]


def check_eps(eps: float, norm: str, *, key: str = "eps") -> None:
    """``eps`` can change at least one pixel by one 8-bit level; raise :class:`ConfigError` if not."""
    try:
        PerturbationBudget(eps=eps, norm=norm).check_quantisable(key=key)  # type: ignore[arg-type]
    except PerturbationBudgetError as error:  # below one level; an unknown norm or eps <= 0 too
        raise ConfigError(str(error)) from None


def check_eps_inf(levels: object) -> None:
    """``eps_inf``: null, or the L-inf cap in whole 8-bit levels from 1 to 255; raise :class:`ConfigError`."""
    if levels is None:
        return
    if isinstance(levels, bool) or not isinstance(levels, int) or not 1 <= levels <= 255:
        raise ConfigError(
            f"eps_inf must be a whole number of 8-bit levels from 1 to 255 (the most any pixel channel "
            f"may change: 3 is 3/255), or null for no cap; got {levels!r}"
        )


def _number(cfg: Mapping, key: str) -> float:
    value = cfg.get(key)
    if isinstance(value, bool) or not isinstance(value, (int, float)):
        raise ConfigError(f"{key} must be a number, got {value!r}")
    return float(value)


def check_run_config(cfg: Mapping) -> None:
    eps = _number(cfg, "eps")
    if not eps > 0:
        raise ConfigError(f"eps must be > 0 (the perturbation budget in [0,1] pixel units), got {eps:g}")
    norm = cfg.get("norm")
    if norm not in ("l2", "linf"):
        raise ConfigError(f"norm must be l2 or linf, got {norm!r}")
    if norm == "linf" and eps > 1:
        raise ConfigError(f"with norm=linf, eps is a fraction of the pixel range (e.g. 0.03); got {eps:g}")
    check_eps(eps, norm)
    check_eps_inf(cfg.get("eps_inf"))
    budget = cfg.get("budget")
    if isinstance(budget, bool) or not isinstance(budget, int) or budget <= 0:
        raise ConfigError(f"budget must be a positive whole number of target queries, got {budget!r}")
    batch = cfg.get("batch_size")
    if isinstance(batch, bool) or not isinstance(batch, int) or batch <= 0:
        raise ConfigError(f"batch_size must be a positive whole number, got {batch!r}")
    threads = cfg.get("torch_threads")
    if threads is not None and (isinstance(threads, bool) or not isinstance(threads, int) or threads <= 0):
        raise ConfigError(f"torch_threads must be a positive whole number or null, got {threads!r}")
    width = cfg.get("working_width")
    if width is not None and (isinstance(width, bool) or not isinstance(width, int) or width < 32):
        raise ConfigError(f"working_width must be a whole number of pixels >= 32 (or null), got {width!r}")
    goal = cfg.get("goal") or {}
    if goal.get("box") is not None and goal.get("point") is not None:
        raise ConfigError("give goal.box or goal.point, not both")
    band = goal.get("band_width", 0.1)
    if not (isinstance(band, (int, float)) and 0 < band <= 1):
        raise ConfigError(f"goal.band_width must be a fraction of the width in (0, 1], got {band!r}")
    ratios = cfg.get("aspect_ratios") or []
    if not ratios or any(isinstance(r, bool) or not isinstance(r, (int, float)) or r <= 0 for r in ratios):
        raise ConfigError(f"aspect_ratios must be positive numbers (height/width), got {list(ratios)}")
    success = cfg.get("success", "auto")
    if success not in SUCCESS_SETTINGS:
        raise ConfigError(
            f"success must be one of {', '.join(SUCCESS_SETTINGS)}, got {success!r} (point: the salient "
            "point in the goal; crops: the goal in every crop that can hold it; any_crop: in one of them)"
        )
    _check_kinds(cfg)
    _check_goal_shape(goal)
    if "search" in cfg:
        check_search(cfg["search"], working_width=width, budget=budget)
        if cfg.get("warm_start") and cfg["search"].get("kind") == "grid":
            raise ConfigError("warm_start fits Gaussian patches: use it with search=blobs or search=patches")
    storage = cfg.get("storage") or {}
    if storage.get("kind") == "url" and not storage.get("url"):
        raise ConfigError(
            "storage=url needs storage.url=<an Optuna RDB URL, e.g. postgresql://user@host/db> "
            "(or BLACKBOX_STORAGE_URL in the environment)"
        )
    dataset = cfg.get("dataset") or {}
    if not cfg.get("image") and dataset.get("kind") != "bundled" and dataset.get("path") in (None, "", "???"):
        raise ConfigError(f"dataset={dataset.get('kind')} needs dataset.path=<folder with the images>")


# Settings whose type is fixed: a wrong one is caught here, not deep inside a run.
_KINDS: dict[str, tuple[type, ...]] = {"seed": (int,), "early_stop": (bool,), "progress": (bool,)}


def _check_kinds(cfg: Mapping) -> None:
    for key, kinds in _KINDS.items():
        value = cfg.get(key)
        if key in cfg and (not isinstance(value, kinds) or (bool not in kinds and isinstance(value, bool))):
            names = " or ".join("true/false" if k is bool else "a whole number" for k in kinds)
            raise ConfigError(f"{key} must be {names}, got {value!r}")
    for key in ("measure", "warm_start"):
        value = cfg.get(key)
        if value is not None and not isinstance(value, str):
            raise ConfigError(f"{key} must be a zoo target name (or null), got {value!r}")


def _coordinates(value: object) -> bool:
    return isinstance(value, (list, tuple)) and all(
        isinstance(v, (int, float)) and not isinstance(v, bool) and v >= 0 for v in value
    )


def _check_goal_shape(goal: Mapping) -> None:
    box, point = goal.get("box"), goal.get("point")
    if box is not None and not (_coordinates(box) and len(box) == 4 and box[0] < box[2] and box[1] < box[3]):
        raise ConfigError(
            f"goal.box must be [x0, y0, x1, y1] in the original image's pixels with x0 < x1 and y0 < y1, "
            f"got {box!r}"
        )
    if point is not None and not (_coordinates(point) and len(point) == 2):
        raise ConfigError(f"goal.point must be [x, y] in the original image's pixels, got {point!r}")


def check_search(search: Mapping, *, working_width: int | None, budget: int | None = None) -> None:
    """The declared search space is usable: the same checks a run makes, before any work.

    ``budget`` (target queries per image), when given, must leave a staged search's second stage
    some queries. ``search=auto`` passes: the target's own space is one of ``conf/search/``.
    """
    if search.get("kind") == "auto":  # blackbox/settings/auto.py puts the target's space in its place
        return
    from blackbox.search.features import FeatureSpaceError, check_feature_space, is_feature_space
    from blackbox.search.search_space import REGION_KINDS, Region, SearchSpaceError, distributions
    from blackbox.search.staged import STAGES, check_staged, is_staged

    if is_staged(search):  # two spaces on one budget (blackbox/search/staged.py)
        try:
            check_staged(search, budget)
        except SearchSpaceError as error:
            raise ConfigError(str(error)) from None
        for stage in STAGES:
            try:
                check_search(search[stage], working_width=working_width)
            except ConfigError as error:  # name the key as the user writes it: search.first.space...
                raise ConfigError(str(error).replace("search.", f"search.{stage}.")) from None
        return
    if is_feature_space(search):  # grid features (blackbox/search/features.py)
        try:
            check_feature_space(search)
        except FeatureSpaceError as error:
            raise ConfigError(str(error)) from None
        return
    region = search.get("region", "goal")
    if region not in REGION_KINDS:
        raise ConfigError(f"search.region must be one of {', '.join(REGION_KINDS)}, got {region!r}")
    margin = search.get("margin", 0.5)
    if isinstance(margin, bool) or not isinstance(margin, (int, float)) or margin < 0:
        raise ConfigError(
            f"search.margin must be a number >= 0 (a fraction of the goal's size), got {margin!r}"
        )
    n_patches = search.get("n_patches")
    if isinstance(n_patches, bool) or not isinstance(n_patches, int):
        raise ConfigError(f"search.n_patches must be a whole number >= 1, got {n_patches!r}")
    distributions(search, Region(0, 0, 1, 1))  # ranges and keys (SearchSpaceError says which)
    size = (search.get("space") or {}).get("size") or {}
    low = size.get("low")
    if working_width is not None and isinstance(low, (int, float)) and low >= working_width:
        raise ConfigError(
            f"search.space.size.low={low:g} px is not smaller than working_width={working_width}: every "
            "patch would be larger than the image; lower search.space.size.low/high"
        )
