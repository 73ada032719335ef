"""Checks on a composed run config, made before any work so a bad run fails at once and clearly."""

from __future__ import annotations

from collections.abc import Mapping


class ConfigError(ValueError):
    """A setting is out of range or of the wrong kind; the message names it and what to use."""


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
