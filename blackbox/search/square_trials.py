"""The square search's trials in the run's Optuna storage: every query one trial, the result replayable.

:class:`~blackbox.search.square_search.SquareSearch` asks an in-memory study while it searches (each
square is one trial: anchor, offset, side, colour signs, pattern) and adds the pruning queries after
it as trials without parameters. When the image is done, all of them are written to the run's storage
in one call (``Study.add_trials``: about 0.7 ms a trial in a journal file, measured for 200 trials),
as one study per image named and tagged as the patch search's are, so ``optuna-dashboard``,
``blackbox.replay`` and worker progress read them alike. An image interrupted before its end wrote
nothing: it is attacked again from the start (the search is seeded, so it sends the same queries).

The result's trial holds ``perturbation``: the squares as sent (position, and the signs packed 8 to a
byte, base64) with the level and the budget; :func:`render_squares` turns it back into the bytes the
target was shown, which is what ``blackbox.replay`` does.
"""

from __future__ import annotations

import base64
from collections.abc import Mapping, Sequence

import numpy as np
import optuna

from blackbox.core.perturbation import PerturbationBudget

#: ``kind`` of a square search's trial config (:func:`render_squares`).
KIND = "squares"


def encode_square(y0: int, x0: int, signs: np.ndarray) -> dict[str, object]:
    """A square as JSON: ``y0``, ``x0``, ``side`` and its ``(side, side, 3)`` signs in {-1, 1}, packed."""
    bits = np.packbits((np.asarray(signs) > 0).reshape(-1))
    return {
        "y0": int(y0),
        "x0": int(x0),
        "side": int(signs.shape[0]),
        "bits": base64.b64encode(bits).decode(),
    }


def decode_square(values: Mapping) -> tuple[int, int, np.ndarray]:
    """``(y0, x0, signs)`` of :func:`encode_square`'s form; ``signs`` is ``(side, side, 3)`` int16."""
    side = int(values["side"])
    bits = np.unpackbits(np.frombuffer(base64.b64decode(str(values["bits"])), dtype=np.uint8))
    signs = np.where(bits[: side * side * 3] > 0, 1, -1).astype(np.int16).reshape(side, side, 3)
    return int(values["y0"]), int(values["x0"]), signs


def squares_delta(
    squares: Sequence[tuple[int, int, np.ndarray]], height: int, width: int, levels: int
) -> np.ndarray:
    """The ``(height, width, 3)`` int16 perturbation in 8-bit levels; later squares overwrite earlier ones."""
    delta = np.zeros((height, width, 3), dtype=np.int16)
    for y0, x0, signs in squares:
        side = signs.shape[0]
        delta[y0 : y0 + side, x0 : x0 + side] = signs * levels
    return delta


def quantise(clean: np.ndarray, delta: np.ndarray, budget: PerturbationBudget) -> np.ndarray:
    """``clean + delta`` (int16 levels, within the cap) as the uint8 image sent: added and clipped when
    it lies in the L2 ball too (what ``budget.apply`` gives, without its work), else ``budget.apply``."""
    inside = (
        budget.norm == "linf"
        or float(np.sqrt(np.sum(np.square(delta, dtype=np.float64)))) <= 255.0 * budget.eps
    )
    if inside:
        return np.clip(clean.astype(np.int16) + delta, 0, 255).astype(np.uint8)
    return budget.apply(clean, delta.astype(np.float64) / 255.0)


def squares_config(squares: Sequence[dict], levels: int, budget: PerturbationBudget) -> dict[str, object]:
    """The trial config of an image made of ``squares`` (:func:`encode_square`) at ``levels``."""
    return {"kind": KIND, "squares": list(squares), "levels": int(levels), **budget.as_dict()}


def is_squares_config(config: Mapping) -> bool:
    return config.get("kind") == KIND


def render_squares(clean: np.ndarray, config: Mapping) -> np.ndarray:
    """The ``(H, W, 3)`` uint8 image a :func:`squares_config` describes on ``clean`` (uint8), byte for
    byte what the search sent."""
    height, width = clean.shape[:2]
    squares = [decode_square(s) for s in config["squares"]]
    delta = squares_delta(squares, height, width, int(config["levels"]))
    return quantise(clean, delta, PerturbationBudget.from_mapping(config))


def write_study(
    storage: optuna.storages.BaseStorage | str,
    *,
    name: str,
    attrs: Mapping[str, object],
    trials: Sequence[optuna.trial.FrozenTrial],
) -> None:
    """Study ``name`` in ``storage`` with ``attrs`` and ``trials`` (an earlier one of that name, left by
    a run that ended between this write and its record, is replaced: the seeded search made the same)."""
    if name in {s.study_name for s in optuna.get_all_study_summaries(storage)}:
        optuna.delete_study(study_name=name, storage=storage)
    study = optuna.create_study(storage=storage, study_name=name, direction="maximize")
    for key, value in attrs.items():
        study.set_user_attr(key, value)
    study.add_trials(trials)
