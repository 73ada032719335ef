"""Query counting: the framework's, not the targets'. One image sent to a target is one query."""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np

from targets import Target, TargetOutput


class BudgetExhaustedError(RuntimeError):
    """A query was asked for beyond the budget."""


class QueryBudget:
    """Wraps a target; counts the images it is asked about and refuses to go past ``limit``."""

    def __init__(self, target: Target, *, limit: int, used: int = 0) -> None:
        if limit <= 0:
            raise ValueError(f"budget must be a positive number of queries, got {limit}")
        self.target = target
        self.limit = int(limit)
        self.used = int(used)

    @property
    def remaining(self) -> int:
        return max(0, self.limit - self.used)

    def query(self, images: Sequence[np.ndarray]) -> list[TargetOutput]:
        if len(images) > self.remaining:
            raise BudgetExhaustedError(
                f"{len(images)} queries asked for, {self.remaining} left of a budget of {self.limit}"
            )
        # Counted before the call: an answered-then-failed batch still spent the service's time.
        self.used += len(images)
        return self.target.query(images)
