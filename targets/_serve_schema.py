"""The reference server's schema: the answers and errors ``/openapi.json`` documents (``target=http``'s
protocol, README "HTTP protocol"). Answers themselves are built as plain dicts, for speed
(:func:`targets._protocol.build_answer`).
"""

from __future__ import annotations

from typing import Any, Literal

from pydantic import BaseModel, Field

from targets._protocol import MAP_DTYPES, MAP_KINDS


class SaliencyMap(BaseModel):
    kind: Literal[MAP_KINDS] = Field(description="log_density (natural log) or nonnegative (any map >= 0)")  # type: ignore[valid-type]
    shape: tuple[int, int] = Field(
        description="[height, width]: the image's, or smaller with its aspect ratio"
    )
    dtype: Literal[tuple(MAP_DTYPES)] | None = Field(None, description="of data")  # type: ignore[valid-type]
    data: str | None = Field(None, description="base64 of little-endian row-major values of dtype")
    values: list[list[float]] | None = Field(None, description="the same as nested lists, instead of data")


class Crop(BaseModel):
    aspect_ratio: float = Field(description="height / width of the crop")
    box: tuple[int, int, int, int] = Field(description="[left, top, width, height] in image pixels")


class Answer(BaseModel):
    width: int
    height: int
    saliency: SaliencyMap | None = None
    salient_point: tuple[float, float] | None = Field(None, description="[x, y] in image pixels")
    crops: list[Crop] | None = None


class BatchRequest(BaseModel):
    images: list[str] = Field(description="base64 PNG images")


class BatchAnswer(BaseModel):
    answers: list[Answer]


class Problem(BaseModel):
    detail: str


ERRORS: dict[int | str, dict[str, Any]] = {
    code: {"model": Problem, "description": text}
    for code, text in {
        400: "not a decodable image, too small, or bad aspect_ratios",
        401: "missing or wrong auth header",
        413: "body over max_body_bytes, or an image over max_pixels (decompression bomb)",
        415: "Content-Type is not an image type",
    }.items()
}
