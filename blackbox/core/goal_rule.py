"""The goal rule: how an image's goal is chosen from the clean answer (``goal.*`` settings)."""

from __future__ import annotations

from dataclasses import dataclass

from blackbox.core.goal import (
    Goal,
    GoalError,
    beyond_crop_goal,
    default_goal,
    goal_axis,
    peak_along,
    user_goal,
)
from blackbox.core.images import LoadedImage
from targets import TargetOutput


@dataclass(frozen=True, kw_only=True)
class GoalRule:
    """Where the crop should move: the paper's protocol by default, or a box or point of the user's.

    Args:
        band_width: the default goal band's width, a fraction of the image side in (0, 1].
        fallback_distance: for a single-maximum profile, the goal's distance from the peak, a fraction
            of the side.
        box: ``(x0, y0, x1, y1)`` in the original image's pixels (closed), or ``None``; scaled to the
            working copy with the image (:meth:`working_box`).
        point: ``(x, y)`` in the original image's pixels, or ``None``; not together with ``box``.

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
            box, point = self.working_box(image), self.working_point(image)
            goal = user_goal(
                width=image.width,
                height=image.height,
                peak_x=peak_along(clean.log_density, clean.salient_point, axis),
                box=box,
                point=point,
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
                goal = (
                    beyond_crop_goal(
                        crops=clean.crops,
                        width=image.width,
                        height=image.height,
                        peak=goal.peak_x,
                        band_width=self.band_width,
                        axis=axis,
                    )
                    or goal
                )
        if clean.crops and all(goal.shown_by(c, image.height, image.width) for c in clean.crops):
            raise GoalError(
                f"every clean crop already shows the goal {[round(v) for v in goal.box]} ({goal.source}, "
                f"along {'columns' if axis == 'x' else 'rows'}): no crop can move to it, so it cannot be "
                "a success; give a goal some clean crop leaves out (goal.box=[x0,y0,x1,y1]), or a smaller "
                "goal.band_width"
            )
        return goal

    def working_box(self, image: LoadedImage) -> tuple[float, float, float, float] | None:
        """``box`` (original pixels) in the working copy's pixels; ``None`` without a box.

        Raises:
            GoalError: the box is not ``[x0, y0, x1, y1]`` with ``x0 < x1``, ``y0 < y1``, inside the
                original image.
        """
        if self.box is None:
            return None
        width, height = image.original_size
        if len(self.box) != 4:
            raise GoalError(f"goal.box must be [x0, y0, x1, y1], got {list(self.box)}")
        x0, y0, x1, y1 = (float(v) for v in self.box)
        if not (x0 < x1 and y0 < y1):
            raise GoalError(f"goal.box must have x0 < x1 and y0 < y1, got {[x0, y0, x1, y1]}")
        if x0 < 0 or y0 < 0 or x1 > width or y1 > height:
            raise GoalError(
                f"goal.box {_rounded([x0, y0, x1, y1])} is outside the {width}x{height} image "
                "(coordinates are in the original image's pixels)"
            )
        sx, sy = image.scale
        return (x0 * sx, y0 * sy, min(x1 * sx, float(image.width)), min(y1 * sy, float(image.height)))

    def working_point(self, image: LoadedImage) -> tuple[float, float] | None:
        """``point`` (original pixels) in the working copy's pixels; ``None`` without a point.

        Raises:
            GoalError: the point is not ``[x, y]`` inside the original image.
        """
        if self.point is None:
            return None
        width, height = image.original_size
        if len(self.point) != 2:
            raise GoalError(f"goal.point must be [x, y], got {list(self.point)}")
        x, y = (float(v) for v in self.point)
        if not (0 <= x < width and 0 <= y < height):
            raise GoalError(
                f"goal.point {_rounded([x, y])} is outside the {width}x{height} image "
                "(coordinates are in the original image's pixels)"
            )
        sx, sy = image.scale
        return min(x * sx, image.width - 1e-6), min(y * sy, image.height - 1e-6)


def _rounded(values: list[float]) -> list[float | int]:
    return [int(v) if float(v).is_integer() else round(v, 2) for v in values]
