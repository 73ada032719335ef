"""Typed settings of a run, built once at the edge (:mod:`blackbox.settings.build`, :func:`blackbox.attack`).

The core (``experiment/``, ``evaluate/``) takes these objects and never reads a Hydra config.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path

from blackbox.core.goal_rule import GoalRule
from blackbox.core.objective import SUCCESS_SETTINGS
from targets import DEFAULT_ASPECT_RATIOS

STORAGE_CHOICES = ("journal", "sqlite", "memory", "url", "postgres")
ARTIFACT_MODES = ("best", "all", "none")


@dataclass(frozen=True, kw_only=True)
class StorageSettings:
    """Where trials are kept (``storage=``).

    Args:
        kind: ``journal`` (a file in the run folder) | ``sqlite`` | ``memory`` (nothing kept) | ``url``
            (an Optuna RDB URL) | ``postgres`` (many workers share one experiment).
        url: the database URL for ``url`` and ``postgres``.
        write_behind: search in memory, write each answered batch at once.
        experiment: ``postgres``: the experiment's name (its schema ``bb_<name>``), resolved at the edge.
        heartbeat_interval, grace_period, max_retry, poll_interval: ``postgres`` worker timing, in seconds
            and retries (:mod:`blackbox.experiment.workers`).
        artifacts_dir: ``postgres``: the trial artifacts' shared folder (default under ``runs/experiments``).
        worker: ``postgres``: this worker's label.

    Raises:
        ValueError: an unknown ``kind``, or ``url`` without a URL.
    """

    kind: str = "journal"
    url: str | None = None
    write_behind: bool = True
    experiment: str | None = None
    heartbeat_interval: float = 10.0
    grace_period: float = 30.0
    max_retry: int = 3
    poll_interval: float | None = None
    artifacts_dir: Path | None = None
    worker: str | None = None

    def __post_init__(self) -> None:
        if self.kind not in STORAGE_CHOICES:
            raise ValueError(f"unknown storage {self.kind!r}; choose from {', '.join(STORAGE_CHOICES)}")
        if self.kind == "url" and not self.url:
            raise ValueError("storage=url needs a URL (storage.url=postgresql://user@host/db)")


@dataclass(frozen=True, kw_only=True)
class RunOptions:
    """What every image of a run shares besides the target and the attack.

    Args:
        eps: the perturbation's size: its L2 norm in [0, 1] pixel units at the working resolution, or
            the L-inf bound as a fraction of the range (``norm="linf"``).
        norm: ``l2`` | ``linf``.
        eps_inf: the L-inf cap beside ``eps``, in [0, 1] units (the ``eps_inf`` setting is in 8-bit
            levels: ``eps_inf=3`` is ``3 / 255`` here); ``None``: no cap.
        success: ``auto`` | ``point`` | ``crops`` | ``any_crop`` (:mod:`blackbox.core.objective`).
        goal: the goal rule (``goal.*``).
        working_width: images are resized to this width (pixels) first; ``None`` keeps their size.
        aspect_ratios: crop aspect ratios (height / width), for zoo targets loaded by name.
        progress: show progress bars.
        artifacts: ``best`` | ``all`` | ``none``: trial images for optuna-dashboard.
        torch_threads: torch's intra-op threads, or ``None`` for torch's default.
        measure: a zoo name to score results on instead of the target, or ``None``.

    Raises:
        ValueError: ``eps`` not positive, or an unknown ``norm``, ``success`` or ``artifacts``.
    """

    eps: float
    norm: str = "l2"
    eps_inf: float | None = None
    success: str = "auto"
    goal: GoalRule = field(default_factory=GoalRule)
    working_width: int | None = 640
    aspect_ratios: Sequence[float] = tuple(DEFAULT_ASPECT_RATIOS)
    progress: bool = True
    artifacts: str = "best"
    torch_threads: int | None = None
    measure: str | None = None

    def __post_init__(self) -> None:
        if not self.eps > 0:
            raise ValueError(
                f"eps must be > 0 (the perturbation's size in [0, 1] pixel units), got {self.eps!r}"
            )
        if self.norm not in ("l2", "linf"):
            raise ValueError(f"norm must be l2 or linf, got {self.norm!r}")
        if self.success not in SUCCESS_SETTINGS:
            raise ValueError(f"success must be one of {', '.join(SUCCESS_SETTINGS)}, got {self.success!r}")
        if self.artifacts not in ARTIFACT_MODES:
            raise ValueError(f"artifacts must be one of {', '.join(ARTIFACT_MODES)}, got {self.artifacts!r}")
