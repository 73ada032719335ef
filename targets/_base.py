"""The one interface every cropper in the zoo implements.

A :class:`Target` answers :meth:`Target.query` on a batch of RGB images. What it answers depends on
what the cropper exposes: a saliency map, a salient point, crops. :attr:`Target.outputs` declares
that, so an attack can check up front whether it can run (a crop-only service gives no map).

A :class:`DifferentiableTarget` also gives its log-density as a torch tensor with gradients, which
is what the white-box attacks need; it declares so with :attr:`Target.differentiable`.
:attr:`Target.capabilities` is both declarations in one set, which
:func:`targets.require` checks against what an attack needs. Query counting is the framework's job
(:class:`blackbox.search.budget.QueryBudget`), not the target's.
"""

from __future__ import annotations

import abc
from collections.abc import Sequence
from typing import NamedTuple

import numpy as np
import torch

from targets._capabilities import ALL_OUTPUTS, Capability, Output, capabilities_of
from targets._errors import NonFiniteOutputError
from targets._output import TargetOutput
from targets._validation import validate_images
from targets.crop import DEFAULT_ASPECT_RATIOS, crop_boxes

__all__ = ["ALL_OUTPUTS", "BestSearch", "DifferentiableTarget", "Output", "Target", "check_finite"]


class BestSearch(NamedTuple):
    """The black-box search a cropper is best attacked with (:attr:`Target.best_search`).

    ``attack`` names a ``conf/attack/`` file (``square``: L-inf squares at the cap; ``blackbox``: the
    patch search); ``search`` a ``conf/search/`` space, used when the patch search runs (also under
    ``attack=square`` when the run has no L-inf cap, which the square search needs).
    """

    attack: str
    search: str


def check_finite(output: TargetOutput, where: str) -> None:
    """Raise :class:`NonFiniteOutputError` if ``output`` holds NaN or infinite values.

    A map that overflowed (``+inf``) or went NaN would still give an argmax and a "success"; every
    target's answer is checked here, local or HTTP, before anything is scored.
    """
    if not all(np.isfinite(output.salient_point)):
        raise NonFiniteOutputError(f"{where}: the salient point {output.salient_point} is not finite")
    if output.log_density is not None:
        bad = int(np.count_nonzero(~np.isfinite(output.log_density)))
        if bad:
            raise NonFiniteOutputError(
                f"{where}: {bad} of {output.log_density.size} log-density values are NaN or infinite "
                "(the model overflowed or divided by zero on this image); it is not scored"
            )


class Target(abc.ABC):
    """A cropper queried only through its outputs.

    To bring your own cropper, subclass it and write :meth:`answer` (or pass a plain function to
    :class:`targets.FunctionTarget`); override :attr:`outputs` when it gives less than a map::

        class MyCropper(targets.Target):
            name = "mine"

            @property
            def outputs(self):
                return frozenset({targets.Output.CROPS})

            def answer(self, images):
                return [targets.TargetOutput((0.0, 0.0), targets.crop_boxes(...)) for image in images]

    Callers use :meth:`query`, which checks the images, calls :meth:`answer` and checks its answers.
    """

    #: The name the zoo knows this target by (``target=<name>``).
    name: str = "target"

    def __init__(self, *, aspect_ratios: Sequence[float] = DEFAULT_ASPECT_RATIOS) -> None:
        ratios = tuple(float(r) for r in aspect_ratios)
        if not ratios or any(not r > 0 for r in ratios):
            raise ValueError(f"aspect_ratios must be positive numbers (height/width), got {ratios}")
        self.aspect_ratios = ratios

    @property
    def outputs(self) -> frozenset[Output]:
        """The outputs this target gives. Saliency-map targets give all three.

        Declared by each target: a target that gives less overrides this (a crop-only cropper gives
        ``{Output.CROPS}``; ``http`` reads it from its ``expect`` setting). A map implies the point
        (its argmax) and a point the crops (Twitter's policy), so every answer holds crops.
        """
        return ALL_OUTPUTS

    @property
    def differentiable(self) -> bool:
        """Whether :meth:`DifferentiableTarget.log_density` gives gradients: ``True`` exactly for those."""
        return False

    @property
    def capabilities(self) -> frozenset[Capability]:
        """What this target can do for an attack: its :attr:`outputs`, and gradients if differentiable.

        Derived from the two declarations above; :func:`targets.require` checks it.
        """
        return capabilities_of(self.outputs, gradients=self.differentiable)

    @property
    def best_search(self) -> BestSearch:
        """What ``attack=auto`` and ``search=auto`` (the defaults) run on this target.

        Derived from :attr:`outputs`, as measured in docs/invisible.md: a saliency map guides the
        square search (``square``; ``texture_blobs`` for the patch search under L2 alone); a cropper
        without a map (a point or crops: libvips, smartcrop, faces, thumbnail services) is moved by
        features on its own shrink grid (``blackbox`` with ``grid``). A target whose measurements say
        otherwise overrides this.
        """
        if Output.SALIENCY in self.outputs:
            return BestSearch(attack="square", search="texture_blobs")
        return BestSearch(attack="blackbox", search="grid")

    @property
    def gives_point(self) -> bool:
        """Whether the answer's salient point is the target's own (given, or its map's argmax).

        ``False`` for a crop-only target: its point is a placeholder, and the point that counts is the
        one its crops imply (:func:`targets.estimate_point`).
        """
        return bool(self.outputs & {Output.POINT, Output.SALIENCY})

    def query(self, images: Sequence[np.ndarray] | np.ndarray) -> list[TargetOutput]:
        """Answer a batch of ``(H, W, 3)`` float RGB images in [0, 1]; one output per image."""
        checked = validate_images(images)
        results = self.answer(checked)
        if len(results) != len(checked):
            raise RuntimeError(
                f"{type(self).__name__} answered {len(results)} outputs for {len(checked)} images"
            )
        for index, output in enumerate(results):
            check_finite(output, f"target {self.name!r}, image {index} of the batch")
        return results

    @abc.abstractmethod
    def answer(self, images: list[np.ndarray]) -> list[TargetOutput]:
        """What the cropper says of each image: the one method a new target writes.

        Args:
            images: a list of ``(H, W, 3)`` float32 RGB images in [0, 1], already checked by
                :meth:`query` (sizes may differ within a batch).

        Returns:
            One :class:`TargetOutput` per image, in order: the salient point ``(x, y)`` in pixels, a
            :class:`CropBox` per aspect ratio of :attr:`aspect_ratios` (:func:`targets.crop_boxes`
            places them around a point by Twitter's policy), and an ``(H, W)`` log-density or ``None``.
            :meth:`query` rejects a wrong count and NaN or infinite values.

        Raises:
            TargetQueryError: the cropper could not answer (the attack marks the query failed).
        """

    def counters(self) -> dict[str, float]:
        """Counts a target keeps of its own work (e.g. HTTP requests and retries, a service's cost); a run
        records them."""
        return {}

    def close(self) -> None:  # noqa: B027 - optional hook, most targets hold nothing
        """Release sessions, files or servers the target holds."""

    def __enter__(self) -> Target:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()


class DifferentiableTarget(Target):
    """A saliency model with a torch path: white-box attacks can take its gradients.

    Subclasses implement :meth:`log_density`; :meth:`query` is derived from it: the salient point
    is the argmax of the log-density and the crops follow Twitter's policy.
    """

    @property
    def differentiable(self) -> bool:
        return True

    @abc.abstractmethod
    def log_density(self, images: torch.Tensor) -> torch.Tensor:
        """``(B, 3, H, W)`` float in [0, 1] to ``(B, H, W)`` log-density at image resolution.

        ``logsumexp`` over each image's pixels is zero. Gradients flow to ``images``.
        """

    def feature_layer(self) -> torch.nn.Module | None:
        """The module whose output Grad-CAM weighs, or ``None`` if the target has none."""
        return None

    def salient_point(self, log_density: np.ndarray) -> tuple[float, float]:
        """``(x, y)`` of the most salient pixel (the first one, in row-major order, on ties)."""
        row, col = np.unravel_index(int(np.argmax(log_density)), log_density.shape)
        return float(col), float(row)

    def answer(self, images: list[np.ndarray]) -> list[TargetOutput]:
        maps: list[np.ndarray | None] = [None] * len(images)
        # Images of one size share a forward pass; others go on their own.
        by_size: dict[tuple[int, int], list[int]] = {}
        for i, image in enumerate(images):
            by_size.setdefault(image.shape[:2], []).append(i)
        with torch.inference_mode():
            for indices in by_size.values():
                batch = np.stack([images[i] for i in indices]).astype(np.float32, copy=False)
                tensor = torch.from_numpy(batch).permute(0, 3, 1, 2)
                log_density = self.log_density(tensor).double().cpu().numpy()
                for row, i in enumerate(indices):
                    maps[i] = log_density[row]
        results = []
        for image, log_density in zip(images, maps, strict=True):
            assert log_density is not None
            height, width = image.shape[:2]
            point = self.salient_point(log_density)
            crops = crop_boxes(width, height, point, self.aspect_ratios)
            results.append(TargetOutput(point, crops, log_density))
        return results
