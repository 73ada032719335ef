"""The reference server, ``python -m targets.serve``: what it refuses, logs and documents (loopback only)."""

from __future__ import annotations

import base64
import io
import json
import logging
import os
import re
import struct
import subprocess
import sys
import time
import zlib
from collections.abc import Iterator
from pathlib import Path

import numpy as np
import pytest
import requests
from PIL import Image

from targets._protocol import encode_png
from targets.classic import ClassicSaliency
from targets.serve import ServeConfig, create_app, main, running_server
from targets.testing import sample_images
from tests.conftest import REPO

TOKEN = "s3cret-token-for-tests"
PNG = {"Content-Type": "image/png"}


@pytest.fixture(scope="module")
def base() -> Iterator[str]:
    app = create_app(
        ClassicSaliency(scales=(32,)), max_body_bytes=60_000, max_pixels=200_000, max_batch=2, auth_token=None
    )
    with running_server(app) as url:
        yield url


def png_bytes(width: int, height: int) -> bytes:
    rng = np.random.default_rng(0)
    return encode_png(rng.random((height, width, 3)).astype(np.float32))


def bomb_png(width: int, height: int) -> bytes:
    """A valid PNG header declaring a huge image, and a tiny compressed body."""

    def chunk(kind: bytes, data: bytes) -> bytes:
        return struct.pack(">I", len(data)) + kind + data + struct.pack(">I", zlib.crc32(kind + data))

    header = struct.pack(">IIBBBBB", width, height, 8, 2, 0, 0, 0)
    return (
        b"\x89PNG\r\n\x1a\n"
        + chunk(b"IHDR", header)
        + chunk(b"IDAT", zlib.compress(b"\0" * 64))
        + chunk(b"IEND", b"")
    )


def post(base: str, body: bytes, headers: dict | None = None, path: str = "/v1/saliency", **params):
    headers = PNG if headers is None else headers
    return requests.post(f"{base}{path}", data=body, headers=headers, params=params, timeout=30)


def test_answers_a_png(base) -> None:
    reply = post(base, png_bytes(64, 48), aspect_ratios="1,2")
    assert reply.status_code == 200, reply.text
    answer = reply.json()
    assert answer["width"] == 64 and answer["height"] == 48
    assert [c["aspect_ratio"] for c in answer["crops"]] == [1.0, 2.0]
    assert answer["saliency"]["shape"] == [48, 64] and answer["saliency"]["kind"] == "log_density"


@pytest.mark.parametrize(
    ("body", "headers", "status", "message"),
    [
        (b"x" * 70_000, PNG, 413, "at most 60000 bytes"),
        (b"hello", {"Content-Type": "text/plain"}, 415, "send the image bytes as image/png"),
        (b"hello", {}, 415, "Content-Type is"),
        (b"not a png at all", PNG, 400, "not an image Pillow can read"),
        (b"", PNG, 400, "empty"),
        (png_bytes(64, 48)[:200], PNG, 400, "truncated or corrupt"),
        (bomb_png(1000, 1000), PNG, 413, r"1000x1000 image \(1000000 pixels\).*decompression-bomb"),
        (bomb_png(100_000, 100_000), PNG, 413, "decompression"),
        (png_bytes(16, 16), PNG, 400, "too small"),
    ],
    ids=["oversized", "text", "no-type", "garbage", "empty", "truncated", "bomb", "huge-bomb", "tiny"],
)
def test_refuses_bad_bodies_clearly(base, body, headers, status, message) -> None:
    reply = post(base, body, headers)
    assert reply.status_code == status
    assert re.search(message, reply.json()["detail"]), reply.json()


def test_refuses_an_oversized_chunked_body_while_streaming(base) -> None:
    chunks = iter([b"x" * 10_000] * 7)  # no Content-Length: the limit is checked as the body arrives
    reply = requests.post(f"{base}/v1/saliency", data=chunks, headers=PNG, timeout=30)
    assert reply.status_code == 413 and "over 60000 bytes" in reply.json()["detail"]


@pytest.mark.parametrize("ratios", ["", "a,b", "0,1", "-1", ",".join(["1"] * 17)])
def test_bad_aspect_ratios(base, ratios) -> None:
    reply = post(base, png_bytes(64, 48), aspect_ratios=ratios)
    assert reply.status_code == 400 and "aspect_ratios" in reply.json()["detail"]


def test_batch_form_and_its_limits(base) -> None:
    images = [base64.b64encode(png_bytes(64, 48)).decode()] * 2
    reply = requests.post(f"{base}/v1/saliency/batch", json={"images": images}, timeout=30)
    assert reply.status_code == 200 and len(reply.json()["answers"]) == 2
    too_many = requests.post(f"{base}/v1/saliency/batch", json={"images": images * 2}, timeout=30)
    assert too_many.status_code == 400 and "1 to 2 images" in too_many.json()["detail"]
    not_b64 = requests.post(f"{base}/v1/saliency/batch", json={"images": ["%%%"]}, timeout=30)
    assert not_b64.status_code == 400 and "images[0] is not base64" in not_b64.json()["detail"]
    bad_image = base64.b64encode(b"junk").decode()
    junk = requests.post(f"{base}/v1/saliency/batch", json={"images": [bad_image]}, timeout=30)
    assert junk.status_code == 400 and "images[0] is not an image" in junk.json()["detail"]
    not_json = requests.post(f"{base}/v1/saliency/batch", data=b"[1,", timeout=30)
    assert not_json.status_code == 400 and '{"images"' in not_json.json()["detail"]


def test_serves_its_openapi_schema(base) -> None:
    schema = requests.get(f"{base}/openapi.json", timeout=10).json()
    single = schema["paths"]["/v1/saliency"]["post"]
    assert "image/png" in single["requestBody"]["content"]
    assert {"200", "400", "413", "415"} <= set(single["responses"])
    assert {"Answer", "Crop", "SaliencyMap"} <= set(schema["components"]["schemas"])
    assert "/v1/saliency/batch" in schema["paths"]


def test_logs_one_line_per_request(base, caplog) -> None:
    caplog.set_level(logging.INFO, logger="targets.serve")
    post(base, png_bytes(64, 48))
    post(base, b"junk")
    requests.get(f"{base}/health", timeout=10)
    time.sleep(0.05)  # the server thread logs after it has sent the answer
    lines = [r.getMessage() for r in caplog.records if r.name == "targets.serve"]
    assert len(lines) == 3
    assert re.match(r'127\.0\.0\.1:\d+ "POST /v1/saliency" 200 in=\d+B out=\d+B [\d.]+ms', lines[0])
    assert '"POST /v1/saliency" 400' in lines[1] and '"GET /health" 200' in lines[2]


def test_auth_header_is_required_when_configured() -> None:
    app = create_app(ClassicSaliency(scales=(32,)), auth_token=TOKEN)
    with running_server(app) as url:
        assert post(url, png_bytes(64, 48)).status_code == 401
        assert post(url, png_bytes(64, 48), {**PNG, "Authorization": "wrong"}).status_code == 401
        assert post(url, png_bytes(64, 48), {**PNG, "Authorization": TOKEN}).status_code == 200


def test_binds_loopback_by_default() -> None:
    assert ServeConfig().host == "127.0.0.1"


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (["target=nosuchmodel"], "classic"),
        (["target=classic", "colour=red"], "keys: target, response"),
        (["target=classic", "response=mask"], "response must be one of full, point, crop"),
        (["target=classic", "auth_env=BLACKBOX_TEST_UNSET_VARIABLE"], "not set"),
    ],
)
def test_cli_bad_settings(args, message, capsys) -> None:
    assert main(args) == 2
    assert message in capsys.readouterr().err


def test_cli_serves_a_zoo_target(tmp_path) -> None:
    """The real command, on a free port: it starts, answers, logs, and stops when told."""
    env = {**os.environ, "OMP_NUM_THREADS": "1"}
    args = [
        sys.executable,
        "-m",
        "targets.serve",
        "target=classic",
        "port=0",
        "response=crop",
        "params.scales=[32]",
    ]
    log = tmp_path / "serve.log"
    with log.open("w") as sink:
        server = subprocess.Popen(args, cwd=REPO, env=env, stdout=sink, stderr=subprocess.STDOUT)
    try:
        port = _wait_for_port(log, server)
        reply = post(f"http://127.0.0.1:{port}", png_bytes(64, 48))
        assert reply.status_code == 200 and set(reply.json()) == {"width", "height", "crops"}
        health = requests.get(f"http://127.0.0.1:{port}/health", timeout=10).json()
        assert health["target"] == "classic" and health["response"] == "crop"
    finally:
        server.terminate()
        server.wait(timeout=30)
    text = log.read_text()
    assert '"POST /v1/saliency" 200' in text and "serving target=classic response=crop" in text


def _wait_for_port(log: Path, server: subprocess.Popen) -> int:
    deadline = time.monotonic() + 60
    while time.monotonic() < deadline:
        found = re.search(r"Uvicorn running on http://127\.0\.0\.1:(\d+)", log.read_text())
        if found:
            return int(found.group(1))
        if server.poll() is not None:
            raise AssertionError(f"the server exited: {log.read_text()}")
        time.sleep(0.1)
    raise AssertionError(f"the server did not start in 60 s: {log.read_text()}")


def test_concurrent_requests_are_all_answered(base) -> None:
    from concurrent.futures import ThreadPoolExecutor

    body = png_bytes(64, 48)
    with ThreadPoolExecutor(8) as pool:
        replies = list(pool.map(lambda _: post(base, body), range(32)))
    assert [r.status_code for r in replies] == [200] * 32
    assert len({json.dumps(r.json(), sort_keys=True) for r in replies}) == 1


def test_decoded_image_is_what_was_sent(base) -> None:
    image = sample_images()[1]
    reply = post(base, encode_png(image)).json()
    local = ClassicSaliency(scales=(32,)).query(
        [np.asarray(Image.open(io.BytesIO(encode_png(image)))) / 255.0]
    )
    assert reply["salient_point"] == list(local[0].salient_point)


@pytest.mark.parametrize(
    ("response", "keys"),
    [
        ("full", {"width", "height", "saliency", "salient_point", "crops"}),
        ("point", {"width", "height", "salient_point", "crops"}),
        ("crop", {"width", "height", "crops"}),
    ],
)
def test_response_modes(response, keys) -> None:
    with running_server(create_app(ClassicSaliency(scales=(32,)), response=response)) as url:
        assert set(post(url, png_bytes(64, 48)).json()) == keys


def test_a_crop_only_target_places_the_requested_ratios_itself() -> None:
    # libvips' crops for ?aspect_ratios=2,1 are libvips' own, not Twitter's policy around a point.
    from targets.vips import VipsSmartcrop

    image = sample_images()[0]
    app = create_app(VipsSmartcrop(interesting="entropy"), max_batch=2, auth_token=None)
    with running_server(app) as url:
        reply = post(url, encode_png(image), aspect_ratios="2,1")
        health = requests.get(f"{url}/health", timeout=30).json()
    assert reply.status_code == 200, reply.text
    expected = VipsSmartcrop(interesting="entropy", aspect_ratios=(2.0, 1.0)).query([image])[0].crops
    assert [c["box"] for c in reply.json()["crops"]] == [c.as_list() for c in expected]
    assert health["aspect_ratios"] == [0.56, 1.0, 1.14, 2.0]  # the target's own are kept
