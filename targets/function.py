"""A cropper written as a plain Python function: :class:`FunctionTarget`.

The function takes one ``(H, W, 3)`` float32 RGB image in [0, 1] and returns a dict with the keys of
the HTTP protocol's answer (README of ``target=http``, :mod:`targets._protocol`), any of:

* ``saliency``: an ``(H, W)`` array of non-negative saliency (any scale; a smaller map of the same
  aspect ratio is resized), or the protocol's object ``{"kind": "log_density", "values": array}``
  for a log-density;
* ``salient_point``: ``(x, y)`` in pixels;
* ``crops``: a list of ``{"aspect_ratio": r, "box": [left, top, width, height]}``, one per aspect
  ratio of the target (``aspect_ratios``).

Each answer is checked as an HTTP answer is, by the same code (:func:`targets._protocol.parse_answer`),
and what it lacks is derived as for every target: the point from the map's argmax or from the crops,
the crops from the point by Twitter's policy. Which keys count is ``outputs=`` if given, else the keys
of the function's first answer; every later answer must give them too. Give ``outputs=`` for a
cropper without a map: the default search (:attr:`Target.best_search`) is chosen before the first
answer, from what the target declares.
"""

from __future__ import annotations

from collections.abc import Callable, Collection, Mapping, Sequence
from typing import Any

import numpy as np

from targets._base import ALL_OUTPUTS, Output, Target
from targets._errors import ConfigError
from targets._output import TargetOutput
from targets._protocol import MalformedAnswerError, parse_answer
from targets.crop import DEFAULT_ASPECT_RATIOS

__all__ = ["CropperFunction", "FunctionTarget"]

#: A cropper function: one ``(H, W, 3)`` float image in [0, 1] in, a dict of the protocol's keys out.
CropperFunction = Callable[[np.ndarray], Mapping[str, Any]]

_FIELDS = {"saliency": Output.SALIENCY, "salient_point": Output.POINT, "crops": Output.CROPS}


class FunctionTarget(Target):
    """A :class:`Target` that asks ``function`` about one image at a time (see the module docstring).

    Args:
        function: the cropper, ``function(image) -> dict``; ``image`` is ``(H, W, 3)`` float32 in [0, 1]
            (a copy, float32 whatever the caller passed: the function may change it).
        name: the target's name in records (default: the function's ``__name__``).
        outputs: what the function gives (``["crops"]``, ``["saliency", "crops"]``...); default: the
            keys of its first answer.
        aspect_ratios: the crops' aspect ratios (height / width) the function answers for.

    Raises:
        ConfigError: ``function`` is not callable, or ``outputs`` names something else than
            ``saliency``, ``point`` or ``crops``.
    """

    def __init__(
        self,
        function: CropperFunction,
        *,
        name: str | None = None,
        outputs: Collection[str | Output] | None = None,
        aspect_ratios: Sequence[float] = DEFAULT_ASPECT_RATIOS,
    ) -> None:
        super().__init__(aspect_ratios=aspect_ratios)
        if not callable(function):
            raise ConfigError(f"a cropper function must be callable, got {type(function).__name__}")
        self.function = function
        self.name = name or str(getattr(function, "__name__", type(function).__name__))
        self._declared: frozenset[Output] | None = None
        if outputs is not None:
            try:
                self._declared = frozenset(Output(o) for o in outputs)
            except ValueError:
                raise ConfigError(
                    f"outputs must name saliency, point or crops, got {list(outputs)}"
                ) from None
            if not self._declared:
                raise ConfigError("outputs must name at least one of saliency, point, crops")
        self._learned: frozenset[Output] | None = None

    @property
    def outputs(self) -> frozenset[Output]:
        """``outputs=`` if given, else what the first answer held (every output before any answer)."""
        return self._declared or self._learned or ALL_OUTPUTS

    def answer(self, images: list[np.ndarray]) -> list[TargetOutput]:
        return [self._ask(image, index) for index, image in enumerate(images)]

    def _ask(self, image: np.ndarray, index: int) -> TargetOutput:
        where = f"{self.name}(image)" if index == 0 else f"{self.name}(image {index} of the batch)"
        answer = self.function(np.array(image, dtype=np.float32))  # a float32 copy, whatever came in
        if not isinstance(answer, Mapping):
            raise MalformedAnswerError(
                f"{where} returned a {type(answer).__name__}; a cropper function returns a dict with any "
                "of saliency ((H, W) array), salient_point ((x, y)) and crops (list of "
                "{'aspect_ratio': r, 'box': [left, top, width, height]})"
            )
        given = frozenset(output for key, output in _FIELDS.items() if answer.get(key) is not None)
        if not given:
            raise MalformedAnswerError(
                f"{where} returned none of saliency, salient_point, crops (it has: "
                f"{', '.join(map(str, answer)) or 'nothing'})"
            )
        expect = self._declared or self._learned or given
        if self._declared is None and self._learned is None:
            self._learned = given
        height, width = image.shape[:2]
        return parse_answer(
            _wire(answer, where),
            width=width,
            height=height,
            expect=expect,
            aspect_ratios=self.aspect_ratios,
            where=where,
        )


def _wire(answer: Mapping[str, Any], where: str) -> dict:
    """The function's answer in the protocol's JSON form (numpy values as plain numbers and lists)."""
    wire: dict = {key: _plain(value) for key, value in answer.items() if key != "saliency"}
    saliency = answer.get("saliency")
    if saliency is None:
        return wire
    if isinstance(saliency, Mapping):
        mapped = dict(saliency)
        values = mapped.get("values")
        if values is not None and "shape" not in mapped:
            mapped["shape"] = list(np.shape(values))
        wire["saliency"] = mapped
        return wire
    values = np.asarray(saliency, dtype=np.float64)
    if values.ndim != 2:
        raise MalformedAnswerError(
            f"{where}.saliency: expected an (H, W) array, got shape {list(values.shape)}"
        )
    if np.isfinite(values).all() and (values < 0).any():
        raise MalformedAnswerError(
            f"{where}.saliency: a plain array must be non-negative saliency (any scale); it has negative "
            "values. For a log-density pass {'kind': 'log_density', 'values': array}"
        )
    wire["saliency"] = {"kind": "nonnegative", "shape": list(values.shape), "values": values}
    return wire


def _plain(value: Any) -> Any:
    """numpy scalars and arrays, and tuples, as the JSON numbers and lists the protocol's parser reads."""
    if isinstance(value, np.ndarray):
        return value.tolist()
    if isinstance(value, np.generic):
        return value.item()
    if isinstance(value, (list, tuple)):
        return [_plain(v) for v in value]
    if isinstance(value, Mapping):
        return {k: _plain(v) for k, v in value.items()}
    return value
