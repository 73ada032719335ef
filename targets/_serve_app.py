"""The reference server's FastAPI app: ``/v1/saliency`` (one raw image), ``/v1/saliency/batch`` (base64
images in JSON) and ``/health``, each request logged on one line; decoding and encoding run in a thread
pool, the model answers one call at a time (targets are not promised thread-safe). With
``response=thumbnail`` it also answers thumbnails, as image services do (:mod:`targets._serve_thumbnail`),
and its JSON routes give crops only (what such a service's metadata endpoint tells).
"""

from __future__ import annotations

import base64
import binascii
import hmac
import json
import logging
import threading
import time
from collections import Counter
from collections.abc import Sequence

import numpy as np
from fastapi import FastAPI, HTTPException, Query, Request
from fastapi.responses import Response
from pydantic import ValidationError
from starlette.concurrency import run_in_threadpool

from targets._base import Target
from targets._protocol import MAP_DTYPES, RESPONSES, build_answer
from targets._serve_request import decode_image, parse_ratios, read_body
from targets._serve_schema import ERRORS, Answer, BatchAnswer, BatchRequest
from targets._serve_thumbnail import add_thumbnail_routes

#: What the server answers: the JSON answers of the protocol, or thumbnails (and crops as JSON).
SERVER_RESPONSES = (*RESPONSES, "thumbnail")

LOG = logging.getLogger("targets.serve")


def create_app(
    target: Target,
    *,
    name: str | None = None,
    response: str = "full",
    max_body_bytes: int = 16 << 20,
    max_pixels: int = 40_000_000,
    max_batch: int = 16,
    map_dtype: str = "float64",
    auth_header: str = "Authorization",
    auth_token: str | None = None,
    thumbnail: dict | None = None,
) -> FastAPI:
    """A FastAPI app answering for ``target``. ``auth_token``: required value of ``auth_header``.

    ``response=thumbnail`` adds the thumbnail routes, with ``thumbnail`` the settings of
    :func:`targets._serve_thumbnail.add_thumbnail_routes` (``image_format``, ``jpeg_quality``,
    ``resample``, ``rate_limit``, ``fetch_hosts``).
    """
    if response not in SERVER_RESPONSES:
        raise ValueError(f"response must be one of {', '.join(SERVER_RESPONSES)}, got {response!r}")
    thumbnails, shown = response == "thumbnail", response
    if thumbnails:
        response = "crop"
    if map_dtype not in MAP_DTYPES:
        raise ValueError(f"map_dtype must be one of {', '.join(MAP_DTYPES)}, got {map_dtype!r}")
    name = name or target.name
    app = FastAPI(
        title=f"blackbox reference cropper: {name}",
        version="1",
        description=(
            "POST one 8-bit RGB PNG (Content-Type: image/png) to /v1/saliency; the JSON answer has the "
            f"outputs of response={response}. Optional ?aspect_ratios=0.56,1,1.14,2 (height/width)."
        ),
    )
    model_lock = threading.Lock()  # targets are not promised thread-safe
    stats: Counter[str] = Counter()
    stats_lock = threading.Lock()
    app.state.stats = stats

    def count(key: str, n: int = 1) -> None:
        with stats_lock:
            stats[key] += n

    @app.middleware("http")
    async def log_one_line(request: Request, call_next):  # type: ignore[no-untyped-def]
        started = time.perf_counter()
        status, size = 500, "-"
        try:
            reply = await call_next(request)
            status, size = reply.status_code, reply.headers.get("content-length", "-")
            return reply
        finally:
            client = f"{request.client.host}:{request.client.port}" if request.client else "-"
            LOG.info(
                '%s "%s %s" %d in=%sB out=%sB %.1fms',
                client,
                request.method,
                request.url.path,
                status,
                request.headers.get("content-length", "-"),
                size,
                (time.perf_counter() - started) * 1e3,
            )
            count(f"status_{status}")

    def check_auth(request: Request) -> None:
        if auth_token is None:
            return
        given = request.headers.get(auth_header, "")
        if not hmac.compare_digest(given.encode(), auth_token.encode()):
            raise HTTPException(401, f"missing or wrong {auth_header} header")

    def answer(bodies: list[bytes], ratios: Sequence[float], where: list[str]) -> bytes:
        """Decode, ask the target, build the answers: runs in the thread pool, off the event loop."""
        images = [decode_image(body, max_pixels, where=w) for body, w in zip(bodies, where, strict=True)]
        floats = [image.astype(np.float32) / 255.0 for image in images]
        try:
            with model_lock:
                outputs = query_with_ratios(target, floats, ratios)
        except ValueError as error:  # the target's own input checks (e.g. too small)
            raise HTTPException(400, str(error)) from None
        answers = []
        for image, output in zip(images, outputs, strict=True):
            height, width = image.shape[:2]
            crops = output.crops
            answers.append(
                build_answer(
                    output, width=width, height=height, crops=crops, response=response, map_dtype=map_dtype
                )
            )
        count("images", len(answers))
        return json.dumps(answers[0] if where == ["the body"] else {"answers": answers}).encode()

    @app.get("/health")
    def health() -> dict:
        """What this server answers, and how many images it has answered."""
        with stats_lock:
            counts = dict(stats)
        return {
            "status": "ok",
            "target": name,
            "response": shown,
            "outputs": sorted(o.value for o in target.outputs),
            "aspect_ratios": list(target.aspect_ratios),
            "counts": counts,
        }

    ratios_query = Query(None, description="comma-separated crop aspect ratios (height/width), e.g. 0.56,1,2")

    @app.post(
        "/v1/saliency",
        response_model=Answer,
        response_model_exclude_none=True,
        responses=ERRORS,
        openapi_extra={
            "requestBody": {
                "required": True,
                "content": {"image/png": {"schema": {"type": "string", "format": "binary"}}},
            }
        },
    )
    async def saliency(request: Request, aspect_ratios: str | None = ratios_query) -> Response:
        """Answer for one image sent as the raw body."""
        check_auth(request)
        ratios = parse_ratios(aspect_ratios)
        content_type = request.headers.get("content-type", "").split(";")[0].strip().lower()
        if not content_type.startswith("image/"):
            raise HTTPException(
                415, f"Content-Type is {content_type or 'missing'}: send the image bytes as image/png"
            )
        body = await read_body(request, max_body_bytes)
        content = await run_in_threadpool(answer, [body], ratios, ["the body"])
        return Response(content, media_type="application/json")

    @app.post(
        "/v1/saliency/batch",
        response_model=BatchAnswer,
        response_model_exclude_none=True,
        responses=ERRORS,
        openapi_extra={
            "requestBody": {
                "required": True,
                "content": {"application/json": {"schema": BatchRequest.model_json_schema()}},
            }
        },
    )
    async def saliency_batch(request: Request, aspect_ratios: str | None = ratios_query) -> Response:
        """Answer for 1 to ``max_batch`` base64 PNG images, in order."""
        check_auth(request)
        ratios = parse_ratios(aspect_ratios)
        # base64 is 4/3 of the bytes, plus a little JSON.
        raw = await read_body(request, max_batch * (max_body_bytes * 4 // 3 + 64))
        try:
            images = BatchRequest.model_validate_json(raw).images
        except ValidationError as error:
            raise HTTPException(
                400, f'the body must be {{"images": ["<base64 PNG>", ...]}}: {error}'
            ) from None
        if not images or len(images) > max_batch:
            raise HTTPException(400, f"send 1 to {max_batch} images per batch request, got {len(images)}")
        bodies = []
        for i, text in enumerate(images):
            try:
                bodies.append(base64.b64decode(text, validate=True))
            except (binascii.Error, ValueError):
                raise HTTPException(400, f"images[{i}] is not base64") from None
            if len(bodies[-1]) > max_body_bytes:
                raise HTTPException(413, f"images[{i}] is over {max_body_bytes} bytes (max_body_bytes)")
        where = [f"images[{i}]" for i in range(len(bodies))]
        content = await run_in_threadpool(answer, bodies, ratios, where)
        return Response(content, media_type="application/json")

    if thumbnails:
        add_thumbnail_routes(
            app,
            target,
            model_lock=model_lock,
            count=count,
            check_auth=check_auth,
            crop_for=query_with_ratios,
            max_body_bytes=max_body_bytes,
            max_pixels=max_pixels,
            **(thumbnail or {}),
        )
    return app


def query_with_ratios(target: Target, images: list[np.ndarray], ratios: Sequence[float]) -> list:
    """``target.query(images)`` with the request's aspect ratios (none given: the target's own).

    Each target places its own crops (libvips' smartcrop does not follow Twitter's policy from a
    point), so the target itself is asked for those ratios; the caller holds the model lock.
    """
    if not ratios or tuple(ratios) == tuple(target.aspect_ratios):
        return target.query(images)
    kept = target.aspect_ratios
    target.aspect_ratios = tuple(float(r) for r in ratios)
    try:
        return target.query(images)
    finally:
        target.aspect_ratios = kept
