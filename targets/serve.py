"""``python -m targets.serve target=<name>``: a reference server exposing any zoo target over HTTP.

It speaks the protocol of ``target=http`` (README "HTTP protocol"; the OpenAPI schema is served at
``/openapi.json``, an interactive page at ``/docs``)::

    python -m targets.serve target=classic                  # http://127.0.0.1:8000/v1/saliency
    python -m targets.serve target=classic response=crop    # behaves like a crop-only service
    python -m targets.serve target=classic port=9000 params.scales=[64]   # params: the target's settings
    python -m targets.serve target=smartcrop response=thumbnail jpeg_quality=75 rate_limit=20
        # an image service: GET /thumbnail/<w>x<h>/smart/<image URL>, POST /thumbnail/<w>x<h>/smart

It binds to 127.0.0.1 unless told otherwise (``host=0.0.0.0`` exposes it). It refuses bodies over
``max_body_bytes`` (413), bodies that are not images (415 for another Content-Type, 400 for bytes
that do not decode) and decompression bombs (413: more than ``max_pixels`` pixels declared), each
with a message saying what to send instead. Requests are served concurrently (decoding and encoding
in a thread pool; the model itself answers one call at a time, since targets are not promised
thread-safe) and each is logged on one line.

Needs the ``serve`` extra (FastAPI, uvicorn).
"""

from __future__ import annotations

import contextlib
import logging
import os
import socket
import sys
import threading
import time
from collections.abc import Iterator, Sequence
from dataclasses import dataclass, field
from typing import Any

import uvicorn
from fastapi import FastAPI
from omegaconf import MISSING, OmegaConf
from omegaconf.errors import OmegaConfBaseException

from targets._errors import UserError
from targets._serve_app import LOG, create_app
from targets._zoo import load

# The app (targets._serve_app, with its schema and request decoding) is served from here.
__all__ = ["ServeConfig", "create_app", "main", "running_server"]


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
    # response=thumbnail: how thumbnails are made and how many requests a second are answered
    thumbnail_format: str = "jpeg"  # jpeg | png
    jpeg_quality: int = 75
    resample: str = "lanczos"  # nearest | box | bilinear | hamming | bicubic | lanczos (Pillow's filters)
    rate_limit: float | None = None  # requests a second; beyond: 429 with Retry-After
    fetch_hosts: list[str] = field(default_factory=lambda: ["127.0.0.1", "localhost", "::1"])


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
            thumbnail={
                "image_format": cfg.thumbnail_format,
                "jpeg_quality": cfg.jpeg_quality,
                "resample": cfg.resample,
                "rate_limit": cfg.rate_limit,
                "fetch_hosts": list(cfg.fetch_hosts),
            },
        )
    except (UserError, ValueError) as error:
        print(f"error: {error}", file=sys.stderr)
        return 2
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(levelname)s %(name)s: %(message)s")
    if cfg.host not in ("127.0.0.1", "localhost", "::1"):
        LOG.warning("binding %s: the server is reachable from other machines", cfg.host)
    LOG.info(
        "serving target=%s response=%s on http://%s:%s%s",
        target_name,
        cfg.response,
        cfg.host,
        cfg.port,
        "/thumbnail/<w>x<h>/smart/<image URL>" if cfg.response == "thumbnail" else "/v1/saliency",
    )
    uvicorn.run(app, host=cfg.host, port=cfg.port, access_log=False, log_level="info")
    return 0


if __name__ == "__main__":
    sys.exit(main())
