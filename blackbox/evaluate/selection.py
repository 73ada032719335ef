"""The paper's image selection protocol (Yoshida & Okuda, Sec. 4.1), each rule configurable.

On the measuring target's clean map, an image is kept only if:

* ``maxima``: its column-sum profile has between ``min_maxima`` and ``max_maxima`` local maxima
  (2 to 4: a single maximum leaves no second place to move the peak to);
* ``horizontal``: it is not vertical: height/width at most ``max_height_ratio`` (the paper kept
  images up to 4:3, i.e. 0.75; it attacked horizontal photos only);
* ``distance``: the peak and the target (second-highest maximum) are at most ``max_distance`` of the
  width apart (15%);
* ``balance``: the profile at the target differs from the peak's by at most ``max_drop`` of the
  peak's value (40%).

Rules are checked in that order and an image is dropped by the first it fails, so the report's
counts add up to the number of images dropped.
"""

from __future__ import annotations

from collections import Counter
from collections.abc import Mapping
from dataclasses import dataclass, field

import numpy as np

from blackbox.core.goal import column_profile, local_maxima

RULES = ("maxima", "horizontal", "distance", "balance")


@dataclass(frozen=True)
class SelectionRules:
    enabled: bool = True
    min_maxima: int = 2
    max_maxima: int = 4
    max_height_ratio: float = 0.75
    max_distance: float = 0.15
    max_drop: float = 0.40

    def __post_init__(self) -> None:
        if not 1 <= self.min_maxima <= self.max_maxima:
            raise ValueError(
                f"selection needs 1 <= min_maxima <= max_maxima, got {self.min_maxima}, {self.max_maxima}"
            )
        if not (self.max_height_ratio > 0 and self.max_distance > 0 and self.max_drop >= 0):
            raise ValueError("selection's max_height_ratio, max_distance must be > 0 and max_drop >= 0")

    @classmethod
    def from_config(cls, config: Mapping | None) -> SelectionRules:
        config = dict(config or {})
        unknown = set(config) - set(cls.__dataclass_fields__)
        if unknown:
            raise ValueError(
                f"unknown selection settings {sorted(unknown)}; known: {sorted(cls.__dataclass_fields__)}"
            )
        return cls(**config)


def rejection(log_density: np.ndarray | None, rules: SelectionRules) -> str | None:
    """The first rule this image fails, with the measured value, or ``None`` if it is kept."""
    if not rules.enabled:
        return None
    if log_density is None:
        return "maxima: the measuring target gives no saliency map (use measure=<a map-giving target>)"
    height, width = log_density.shape
    profile = column_profile(log_density)
    maxima = local_maxima(profile)
    if not rules.min_maxima <= len(maxima) <= rules.max_maxima:
        return f"maxima: {len(maxima)} local maxima, need {rules.min_maxima} to {rules.max_maxima}"
    if height / width > rules.max_height_ratio:
        return f"horizontal: height/width {height / width:.2f} > {rules.max_height_ratio}"
    peak, target = int(maxima[0]), int(maxima[1])
    distance = abs(target - peak) / width
    if distance > rules.max_distance:
        return f"distance: peak-to-target {100 * distance:.1f}% of width > {100 * rules.max_distance:g}%"
    drop = (profile[peak] - profile[target]) / profile[peak]
    if drop > rules.max_drop:
        return f"balance: target's profile {100 * drop:.1f}% below the peak's > {100 * rules.max_drop:g}%"
    return None


@dataclass
class SelectionReport:
    """How many images each rule dropped, and which."""

    enabled: bool = True
    kept: list[str] = field(default_factory=list)
    dropped: dict[str, str] = field(default_factory=dict)  # image id -> reason

    def add(self, image_id: str, reason: str | None) -> None:
        if reason is None:
            self.kept.append(image_id)
        else:
            self.dropped[image_id] = reason

    def counts(self) -> dict[str, int]:
        counter = Counter(reason.split(":", 1)[0] for reason in self.dropped.values())
        return {rule: counter.get(rule, 0) for rule in RULES}

    def as_dict(self) -> dict:
        return {"kept": self.kept, "dropped": self.dropped, "dropped_per_rule": self.counts()}

    def markdown(self) -> str:
        total = len(self.kept) + len(self.dropped)
        if not self.enabled:
            return f"Selection protocol off (dataset.paper_selection=false): all {total} images used."
        lines = [
            f"Selection: {len(self.kept)} of {total} images kept.",
            "",
            "| rule | dropped |",
            "|---|---|",
        ]
        lines += [f"| {rule} | {count} |" for rule, count in self.counts().items()]
        return "\n".join(lines)
