"""The wire format shared by ``target=http`` and ``python -m targets.serve`` (README: "HTTP protocol").

A client POSTs one 8-bit RGB PNG (``Content-Type: image/png``) and gets a JSON object with any of::

    {"width": 640, "height": 427,
     "saliency": {"kind": "log_density", "shape": [427, 640], "dtype": "float64", "data": "<base64>"},
     "salient_point": [x, y],
     "crops": [{"aspect_ratio": 0.56, "box": [left, top, width, height]}, ...]}

``saliency.kind`` is ``log_density`` (natural log; renormalised if its exp does not sum to 1) or
``nonnegative`` (any map >= 0 with a positive sum). Its values come either as ``data``, base64 of
little-endian row-major ``float32``/``float64``, or as ``values``, nested JSON lists; a map of
another size than the image (same aspect ratio) is resized to it. The batch form POSTs
``{"images": ["<base64 PNG>", ...]}`` as JSON and gets ``{"answers": [<answer>, ...]}`` in order.

This module is pure numpy and Pillow: the client needs no server stack.
"""

from __future__ import annotations

import base64
import binascii
import io
import math
from collections.abc import Collection, Sequence

import numpy as np
from PIL import Image
from scipy.special import logsumexp

from targets._base import Output
from targets._errors import TargetQueryError
from targets._output import CropBox, TargetOutput
from targets.crop import crop_boxes, estimate_point

PNG_TYPE = "image/png"
MAP_KINDS = ("log_density", "nonnegative")
MAP_DTYPES = {"float32": "<f4", "float64": "<f8"}
RESPONSES = ("full", "point", "crop")  # what a reference server puts in an answer
# A log-density whose exp sums to 1 within this is kept bit for bit (no float noise from renormalising).
NORMALISED_TOL = 1e-4


class MalformedAnswerError(TargetQueryError):
    """The service answered, but not what the protocol says; the message quotes the field."""


def _show(value: object, limit: int = 80) -> str:
    text = repr(value)
    return text if len(text) <= limit else text[: limit - 3] + "..."


def to_uint8(image: np.ndarray) -> np.ndarray:
    """``(H, W, 3)`` floats in [0, 1] to the 8-bit pixels a service receives."""
    # In the image's own float type: float32 k/255 * 255 rounds back to k exactly, 7x faster than float64.
    return np.clip(np.rint(np.asarray(image) * 255.0), 0, 255).astype(np.uint8)


def encode_png(image: np.ndarray, *, compress_level: int = 1) -> bytes:
    """One float RGB image as 8-bit PNG bytes. Level 1: loopback is faster than deflate."""
    buffer = io.BytesIO()
    Image.fromarray(to_uint8(image), "RGB").save(buffer, format="PNG", compress_level=compress_level)
    return buffer.getvalue()


def encode_map(log_density: np.ndarray, *, dtype: str = "float64") -> dict:
    """A log-density map in the protocol's compact form."""
    if dtype not in MAP_DTYPES:
        raise ValueError(f"map dtype must be one of {', '.join(MAP_DTYPES)}, got {dtype!r}")
    data = np.ascontiguousarray(log_density, dtype=MAP_DTYPES[dtype]).tobytes()
    return {
        "kind": "log_density",
        "shape": list(log_density.shape),
        "dtype": dtype,
        "data": base64.b64encode(data).decode("ascii"),
    }


def build_answer(
    output: TargetOutput,
    *,
    width: int,
    height: int,
    crops: Sequence[CropBox],
    response: str = "full",
    map_dtype: str = "float64",
) -> dict:
    """The JSON answer a server sends: ``full`` (map if any, point, crops), ``point`` or ``crop``."""
    if response not in RESPONSES:
        raise ValueError(f"response must be one of {', '.join(RESPONSES)}, got {response!r}")
    answer: dict = {"width": width, "height": height}
    if response == "full" and output.log_density is not None:
        answer["saliency"] = encode_map(output.log_density, dtype=map_dtype)
    if response in ("full", "point"):
        answer["salient_point"] = [float(output.salient_point[0]), float(output.salient_point[1])]
    answer["crops"] = [{"aspect_ratio": c.aspect_ratio, "box": c.as_list()} for c in crops]
    return answer


def parse_answer(
    answer: object,
    *,
    width: int,
    height: int,
    expect: Collection[Output],
    aspect_ratios: Sequence[float],
    where: str = "answer",
) -> TargetOutput:
    """Check one decoded JSON answer for a ``width`` x ``height`` image and turn it into a TargetOutput.

    Only the ``expect``-ed outputs are read (each must be present). What is not expected is derived
    as every target does: the point from the map's argmax or from the crops, the crops from the point
    by Twitter's policy.
    """
    if not isinstance(answer, dict):
        raise MalformedAnswerError(f"{where}: expected a JSON object, got {_show(answer)}")
    for key, size in (("width", width), ("height", height)):
        if key in answer and answer[key] != size:
            raise MalformedAnswerError(
                f"{where}.{key}: the image sent is {width}x{height}, the answer says {_show(answer[key])}"
            )
    fields = {Output.SALIENCY: "saliency", Output.POINT: "salient_point", Output.CROPS: "crops"}
    missing = [fields[o] for o in Output if o in expect and answer.get(fields[o]) is None]
    if missing:
        raise MalformedAnswerError(
            f"{where}: no {' / '.join(missing)} in the answer "
            f"(it has: {', '.join(sorted(answer)) or 'nothing'}); set target.expect to the outputs "
            "the service gives, e.g. [crops] for a crop-only service"
        )
    log_density = (
        parse_map(answer["saliency"], width, height, f"{where}.saliency")
        if Output.SALIENCY in expect
        else None
    )
    point = (
        parse_point(answer["salient_point"], width, height, f"{where}.salient_point")
        if Output.POINT in expect
        else None
    )
    crops = (
        parse_crops(answer["crops"], width, height, aspect_ratios, f"{where}.crops")
        if Output.CROPS in expect
        else None
    )
    if point is None:
        if log_density is not None:
            row, col = np.unravel_index(int(np.argmax(log_density)), log_density.shape)
            point = (float(col), float(row))
        else:
            assert crops is not None
            point = estimate_point(crops, width, height)
    if crops is None:
        crops = crop_boxes(width, height, point, aspect_ratios)
    return TargetOutput(point, crops, log_density)


def parse_point(value: object, width: int, height: int, where: str) -> tuple[float, float]:
    if (
        not isinstance(value, list)
        or len(value) != 2
        or not all(isinstance(v, (int, float)) and not isinstance(v, bool) for v in value)
    ):
        raise MalformedAnswerError(f"{where}: expected [x, y] in pixels, got {_show(value)}")
    x, y = float(value[0]), float(value[1])
    if not (math.isfinite(x) and math.isfinite(y) and 0 <= x < width and 0 <= y < height):
        raise MalformedAnswerError(
            f"{where}: {_show(value)} is outside the {width}x{height} image "
            f"(0 <= x < {width}, 0 <= y < {height})"
        )
    return x, y


def _whole(value: object) -> int | None:
    if isinstance(value, bool) or not isinstance(value, (int, float)):
        return None
    if isinstance(value, float) and not (math.isfinite(value) and value.is_integer()):
        return None
    return int(value)


def parse_crops(
    value: object, width: int, height: int, aspect_ratios: Sequence[float], where: str
) -> tuple[CropBox, ...]:
    """The service's crops, one per configured aspect ratio, in the configured order."""
    if not isinstance(value, list) or not value:
        raise MalformedAnswerError(f"{where}: expected a non-empty list of crops, got {_show(value)}")
    boxes: list[CropBox] = []
    for i, crop in enumerate(value):
        here = f"{where}[{i}]"
        if not isinstance(crop, dict):
            raise MalformedAnswerError(
                f"{here}: expected {{'aspect_ratio': r, 'box': [...]}}, got {_show(crop)}"
            )
        ratio = crop.get("aspect_ratio")
        if (
            isinstance(ratio, bool)
            or not isinstance(ratio, (int, float))
            or not (math.isfinite(ratio) and ratio > 0)
        ):
            raise MalformedAnswerError(f"{here}.aspect_ratio: expected a positive number, got {_show(ratio)}")
        box = crop.get("box")
        numbers = [_whole(v) for v in box] if isinstance(box, list) else []
        if len(numbers) != 4 or any(n is None for n in numbers):
            raise MalformedAnswerError(
                f"{here}.box: expected 4 whole numbers [left, top, width, height], got {_show(box)}"
            )
        left, top, w, h = (int(n) for n in numbers)  # type: ignore[arg-type]
        if left < 0 or top < 0 or w < 1 or h < 1 or left + w > width or top + h > height:
            raise MalformedAnswerError(
                f"{here}.box: {_show(box)} is not a box inside the {width}x{height} image "
                "(left, top >= 0; width, height >= 1; left + width <= image width; "
                "top + height <= image height)"
            )
        boxes.append(CropBox(left, top, w, h, float(ratio)))
    chosen = []
    for ratio in aspect_ratios:
        match = [b for b in boxes if math.isclose(b.aspect_ratio, ratio, rel_tol=1e-6)]
        if not match:
            given = ", ".join(f"{b.aspect_ratio:g}" for b in boxes)
            raise MalformedAnswerError(
                f"{where}: no crop for aspect ratio {ratio:g} (the service gave {given}); "
                "set aspect_ratios to the ratios the service crops to"
            )
        chosen.append(match[0])
    return tuple(chosen)


def parse_map(value: object, width: int, height: int, where: str) -> np.ndarray:
    """A saliency map from the wire to an ``(height, width)`` float64 log-density."""
    if not isinstance(value, dict):
        raise MalformedAnswerError(
            f"{where}: expected an object with kind, shape and data, got {_show(value)}"
        )
    kind = value.get("kind")
    if kind not in MAP_KINDS:
        raise MalformedAnswerError(f"{where}.kind: expected one of {', '.join(MAP_KINDS)}, got {_show(kind)}")
    shape = value.get("shape")
    dims = [_whole(v) for v in shape] if isinstance(shape, list) else []
    if len(dims) != 2 or any(d is None or d < 1 for d in dims):
        raise MalformedAnswerError(f"{where}.shape: expected [height, width] (positive), got {_show(shape)}")
    rows, cols = int(dims[0]), int(dims[1])  # type: ignore[arg-type]
    if rows > height or cols > width or abs(rows * width - cols * height) > max(width, height):
        raise MalformedAnswerError(
            f"{where}.shape: {_show(shape)} does not fit the {width}x{height} image "
            f"(expected [{height}, {width}] or a smaller map of the same aspect ratio)"
        )
    values = _map_values(value, rows, cols, where)
    if kind == "log_density":
        bad = int(np.count_nonzero(~np.isfinite(values)))
        if bad:
            raise MalformedAnswerError(f"{where}.data: {bad} log-density values are NaN or infinite")
        log_map = values
    else:
        bad = int(np.count_nonzero(~np.isfinite(values) | (values < 0)))
        if bad:
            raise MalformedAnswerError(
                f"{where}.data: {bad} values of a nonnegative map are negative, NaN or inf"
            )
        total = float(values.sum())
        if not total > 0:
            raise MalformedAnswerError(
                f"{where}.data: a nonnegative map must have a positive sum, got {total:g}"
            )
        log_map = np.log(np.maximum(values / total, np.finfo(np.float64).tiny))
    if log_map.shape != (height, width):
        log_map = _resize_log_map(log_map, height, width)
    total = float(logsumexp(log_map))
    return log_map - total if abs(total) > NORMALISED_TOL else log_map


def _map_values(value: dict, rows: int, cols: int, where: str) -> np.ndarray:
    if value.get("data") is not None:
        dtype = value.get("dtype", "float32")
        if dtype not in MAP_DTYPES:
            raise MalformedAnswerError(
                f"{where}.dtype: expected one of {', '.join(MAP_DTYPES)}, got {_show(dtype)}"
            )
        data = value["data"]
        if not isinstance(data, str):
            raise MalformedAnswerError(f"{where}.data: expected a base64 string, got {_show(data)}")
        try:
            raw = base64.b64decode(data, validate=True)
        except (binascii.Error, ValueError) as error:
            raise MalformedAnswerError(f"{where}.data: not valid base64 ({error})") from None
        item = np.dtype(MAP_DTYPES[dtype]).itemsize
        if len(raw) != rows * cols * item:
            raise MalformedAnswerError(
                f"{where}.data: {len(raw)} bytes of {dtype}, "
                f"but shape [{rows}, {cols}] needs {rows * cols * item}"
            )
        return np.frombuffer(raw, dtype=MAP_DTYPES[dtype]).astype(np.float64).reshape(rows, cols)
    if value.get("values") is not None:
        try:
            values = np.asarray(value["values"], dtype=np.float64)
        except (TypeError, ValueError):
            raise MalformedAnswerError(
                f"{where}.values: expected {rows} rows of {cols} numbers, got a ragged or non-numeric list"
            ) from None
        if values.shape != (rows, cols):
            raise MalformedAnswerError(
                f"{where}.values: has shape {list(values.shape)}, but {where}.shape says [{rows}, {cols}]"
            )
        return values
    raise MalformedAnswerError(f"{where}: has neither data (base64) nor values (nested lists)")


def _resize_log_map(log_map: np.ndarray, height: int, width: int) -> np.ndarray:
    """A coarser map to image size: bilinear on the log map and renormalised, as the zoo's models do."""
    import torch

    from targets._functional import upsample_log_density

    tensor = torch.from_numpy(np.ascontiguousarray(log_map))[None]
    return upsample_log_density(tensor, height, width)[0].numpy()
