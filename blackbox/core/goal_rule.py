"""The goal rule: how an image's goal is chosen from the clean answer (``goal.*`` settings)."""

from __future__ import annotations

from dataclasses import dataclass

from blackbox.core.goal import Goal, GoalError, beyond_crop_goal, default_goal, goal_axis, peak_along, user_goal
from blackbox.core.images import LoadedImage
from targets import TargetOutput


@dataclass(frozen=True, kw_only=True)
class GoalRule:
    """Where the crop should move: the paper's protocol by default, or a box or point of the user's.

    Args:
        band_width: the default goal band's width, a fraction of the image side in (0, 1].
        fallback_distance: for a single-maximum profile, the goal's distance from the peak, a fraction
            of the side.
        box: ``(x0, y0, x1, y1)`` in working-resolution pixels (closed), or ``None``.
        point: ``(x, y)`` in working-resolution pixels, or ``None``; not together with ``box``.

    Raises:
        GoalError: ``box`` and ``point`` both given, or ``band_width`` outside (0, 1].
    """

    band_width: float = 0.1
    fallback_distance: float = 0.15
    box: tuple[float, float, float, float] | None = None
    point: tuple[float, float] | None = None

    def __post_init__(self) -> None:
        if self.box is not None and self.point is not None:
            raise GoalError("give goal.box or goal.point, not both")
        if not 0 < self.band_width <= 1:
            raise GoalError(
                f"goal.band_width must be a fraction of the width in (0, 1], got {self.band_width!r}"
            )

    def goal_for(self, image: LoadedImage, clean: TargetOutput) -> Goal:
        """The goal for ``image``, along the axis its clean crops cut (:func:`goal_axis`).

        ``clean`` is what the scoring target (the measure, when there is one) said of the clean image.
        A default goal that every clean crop already shows (the protocol's second maximum often lies
        inside every crop) is replaced by the band just beyond the narrowest clean crop
        (:func:`beyond_crop_goal`, source ``beyond_crop``): what that crop hides now. So every picture
        whose crops cut it gets a goal some clean crop leaves out.

        Raises:
            GoalError: every clean crop already shows the goal (a user's goal, or an image no clean
                crop cuts): no crop could move to it, so no result on it could be a success (the
                image is skipped with that reason).
        """
        axis = goal_axis(clean.crops, image.width, image.height)
        if self.box is not None or self.point is not None:
            goal = user_goal(
                width=image.width,
                height=image.height,
                peak_x=peak_along(clean.log_density, clean.salient_point, axis),
                box=tuple(self.box) if self.box is not None else None,  # type: ignore[arg-type]
                point=tuple(self.point) if self.point is not None else None,  # type: ignore[arg-type]
                band_width=self.band_width,
                axis=axis,
            )
        else:
            goal = default_goal(
                width=image.width,
                height=image.height,
                log_density=clean.log_density,
                salient_point=clean.salient_point,
                band_width=self.band_width,
                fallback_distance=self.fallback_distance,
                axis=axis,
                crops=clean.crops,
            )
            if clean.crops and all(goal.shown_by(c, image.height, image.width) for c in clean.crops):
                goal = beyond_crop_goal(
                    crops=clean.crops,
                    width=image.width,
                    height=image.height,
                    peak=goal.peak_x,
                    band_width=self.band_width,
                    axis=axis,
                ) or goal
        if clean.crops and all(goal.shown_by(c, image.height, image.width) for c in clean.crops):
            raise GoalError(
                f"every clean crop already shows the goal {[round(v) for v in goal.box]} ({goal.source}, "
                f"along {'columns' if axis == 'x' else 'rows'}): no crop can move to it, so it cannot be "
                "a success; give a goal some clean crop leaves out (goal.box=[x0,y0,x1,y1]), or a smaller "
                "goal.band_width"
            )
        return goal
