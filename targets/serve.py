"""``python -m targets.serve target=<name>``: a reference server exposing any zoo target over HTTP.

It speaks the protocol of ``target=http`` (README "HTTP protocol"; the OpenAPI schema is served at
``/openapi.json``, an interactive page at ``/docs``)::

    python -m targets.serve target=classic                  # http://127.0.0.1:8000/v1/saliency
    python -m targets.serve target=classic response=crop    # behaves like a crop-only service
    python -m targets.serve target=classic port=9000 params.scales=[64]   # params: the target's settings

It binds to 127.0.0.1 unless told otherwise (``host=0.0.0.0`` exposes it). It refuses bodies over
``max_body_bytes`` (413), bodies that are not images (415 for another Content-Type, 400 for bytes
that do not decode) and decompression bombs (413: more than ``max_pixels`` pixels declared), each
with a message saying what to send instead. Requests are served concurrently (decoding and encoding
in a thread pool; the model itself answers one call at a time, since targets are not promised
thread-safe) and each is logged on one line.

Needs the ``serve`` extra (FastAPI, uvicorn).
"""

from __future__ import annotations

import base64
import binascii
import contextlib
import hmac
import io
import json
import logging
import math
import os
import socket
import sys
import threading
import time
import warnings
from collections import Counter
from collections.abc import Iterator, Sequence
from dataclasses import dataclass, field
from typing import Any, Literal

import numpy as np
import uvicorn
from fastapi import FastAPI, HTTPException, Query, Request
from fastapi.responses import Response
from omegaconf import MISSING, OmegaConf
from omegaconf.errors import OmegaConfBaseException
from PIL import Image, UnidentifiedImageError
from pydantic import BaseModel, Field, ValidationError
from starlette.concurrency import run_in_threadpool

from targets._base import Target
from targets._errors import UserError
from targets._image_modes import to_rgb
from targets._protocol import MAP_DTYPES, MAP_KINDS, RESPONSES, build_answer
from targets._zoo import load

LOG = logging.getLogger("targets.serve")
MAX_ASPECT_RATIOS = 16


# -- the schema (what /openapi.json documents; answers are built as plain dicts for speed) -------


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


# -- the app ----------------------------------------------------------------------------------


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
) -> FastAPI:
    """A FastAPI app answering for ``target``. ``auth_token``: required value of ``auth_header``."""
    if response not in RESPONSES:
        raise ValueError(f"response must be one of {', '.join(RESPONSES)}, got {response!r}")
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
            "response": response,
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


def parse_ratios(text: str | None) -> list[float]:
    if text is None:
        return []
    try:
        ratios = [float(part) for part in text.split(",")]
    except ValueError:
        ratios = []
    if not ratios or len(ratios) > MAX_ASPECT_RATIOS or any(not (math.isfinite(r) and r > 0) for r in ratios):
        raise HTTPException(
            400, f"aspect_ratios={text!r}: give 1 to {MAX_ASPECT_RATIOS} positive numbers, e.g. 0.56,1,1.14,2"
        )
    return ratios


async def read_body(request: Request, limit: int) -> bytes:
    """The body, refused with 413 as soon as it passes ``limit`` bytes (declared or streamed)."""
    declared = request.headers.get("content-length")
    too_big = f"this server takes at most {limit} bytes per image (max_body_bytes)"
    if declared and declared.isdigit() and int(declared) > limit:
        raise HTTPException(413, f"the body is {declared} bytes; {too_big}")
    chunks, size = [], 0
    async for chunk in request.stream():
        size += len(chunk)
        if size > limit:
            raise HTTPException(413, f"the body is over {limit} bytes; {too_big}")
        chunks.append(chunk)
    if not size:
        raise HTTPException(400, "the body is empty: send the image bytes")
    return b"".join(chunks)


def decode_image(data: bytes, max_pixels: int, *, where: str = "the body") -> np.ndarray:
    """Bytes to ``(H, W, 3)`` uint8 RGB; bombs are refused from the header, before decoding."""
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("error", Image.DecompressionBombWarning)
            image = Image.open(io.BytesIO(data))
            width, height = image.size
            if width * height > max_pixels:
                raise HTTPException(
                    413,
                    f"{where} declares a {width}x{height} image ({width * height} pixels); this server "
                    f"decodes at most {max_pixels} pixels (a decompression-bomb guard)",
                )
            image.load()
            rgb = to_rgb(image)
    except (Image.DecompressionBombError, Image.DecompressionBombWarning) as error:
        raise HTTPException(413, f"{where} is a decompression bomb: {error}") from None
    except UnidentifiedImageError:
        raise HTTPException(400, f"{where} is not an image Pillow can read: send PNG bytes") from None
    except (OSError, SyntaxError, ValueError, EOFError) as error:
        raise HTTPException(400, f"{where} is a truncated or corrupt image: {error}") from None
    return np.asarray(rgb, dtype=np.uint8)


# -- running it -------------------------------------------------------------------------------


@contextlib.contextmanager
def running_server(app: FastAPI, *, host: str = "127.0.0.1", port: int = 0) -> Iterator[str]:
    """Serve ``app`` in a background thread (tests, benchmarks); yields its base URL, e.g. for port 0."""
    # proto=IPPROTO_TCP: asyncio sets TCP_NODELAY only on such sockets; without it, keep-alive
    # requests wait ~40 ms each for a delayed ACK (Nagle).
    sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM, socket.IPPROTO_TCP)
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    sock.bind((host, port))
    server = uvicorn.Server(uvicorn.Config(app, log_level="warning", access_log=False, lifespan="off"))
    thread = threading.Thread(target=server.run, kwargs={"sockets": [sock]}, daemon=True, name="serve")
    thread.start()
    deadline = time.monotonic() + 30
    while not server.started:
        if not thread.is_alive() or time.monotonic() > deadline:
            server.should_exit = True
            sock.close()
            raise RuntimeError("the server did not start")
        time.sleep(0.01)
    try:
        yield f"http://{host}:{sock.getsockname()[1]}"
    finally:
        server.should_exit = True
        thread.join(timeout=30)
        sock.close()


@dataclass
class ServeConfig:
    target: str = MISSING  # a zoo name: conf/target/<name>.yaml
    response: str = "full"  # full | point | crop
    host: str = "127.0.0.1"
    port: int = 8000
    params: dict[str, Any] = field(default_factory=dict)  # the target's settings, e.g. params.scales=[64]
    aspect_ratios: list[float] = field(default_factory=lambda: [0.56, 1.0, 1.14, 2.0])
    max_body_bytes: int = 16 << 20
    max_pixels: int = 40_000_000
    max_batch: int = 16
    map_dtype: str = "float64"  # float64 keeps answers bit-identical to the in-process target
    auth_header: str = "Authorization"
    auth_env: str | None = None  # name of an environment variable: its value is the required header


def main(argv: Sequence[str] | None = None) -> int:

    args = list(sys.argv[1:] if argv is None else argv)
    if any(a in ("-h", "--help") for a in args):
        print(__doc__)
        return 0
    try:
        cfg = OmegaConf.merge(OmegaConf.structured(ServeConfig), OmegaConf.from_dotlist(args))
        target_name = cfg.target
    except OmegaConfBaseException as error:
        keys = ", ".join(ServeConfig.__dataclass_fields__)
        print(f"error: {str(error).splitlines()[0]}\nsettings are key=value, keys: {keys}", file=sys.stderr)
        return 2
    token = None
    if cfg.auth_env:
        token = os.environ.get(cfg.auth_env)
        if not token:
            print(
                f"error: auth_env={cfg.auth_env} names an environment variable that is not set",
                file=sys.stderr,
            )
            return 2
    try:
        target = load(
            target_name, aspect_ratios=list(cfg.aspect_ratios), **OmegaConf.to_container(cfg.params)
        )
        app = create_app(
            target,
            name=target_name,
            response=cfg.response,
            max_body_bytes=cfg.max_body_bytes,
            max_pixels=cfg.max_pixels,
            max_batch=cfg.max_batch,
            map_dtype=cfg.map_dtype,
            auth_header=cfg.auth_header,
            auth_token=token,
        )
    except (UserError, ValueError) as error:
        print(f"error: {error}", file=sys.stderr)
        return 2
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(levelname)s %(name)s: %(message)s")
    if cfg.host not in ("127.0.0.1", "localhost", "::1"):
        LOG.warning("binding %s: the server is reachable from other machines", cfg.host)
    LOG.info(
        "serving target=%s response=%s on http://%s:%s/v1/saliency",
        target_name,
        cfg.response,
        cfg.host,
        cfg.port,
    )
    uvicorn.run(app, host=cfg.host, port=cfg.port, access_log=False, log_level="info")
    return 0


if __name__ == "__main__":
    sys.exit(main())
