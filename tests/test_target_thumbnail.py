"""``target=thumbnail`` against the reference thumbnail service (``python -m targets.serve
response=thumbnail``) and scripted misbehaviour, on 127.0.0.1 only."""

from __future__ import annotations

import io
from collections import deque
from collections.abc import Iterator
from dataclasses import replace

import numpy as np
import optuna
import pytest
import requests
import skimage.data
from fastapi import Request
from fastapi.responses import Response
from PIL import Image, ImageOps

from targets import ConfigError, Output, TargetQueryError, load
from targets._template import RateLimiter, RequestTemplate
from targets.http import RequestRejectedError
from targets.serve import create_app, running_server
from targets.smartcrop import Smartcrop
from targets.testing import TargetConformance
from targets.thumbnail import SpendingLimitError, ThumbnailNotFoundError, ThumbnailTarget
from tests.test_patch_search import make_search, problem_for

BY_URL = "/thumbnail/{width}x{height}/smart/{image_url_quoted}"
BY_BODY = "/thumbnail/{width}x{height}/smart"


class Script:
    """What the scripted service does to the next requests: ``ok``, ``("429", retry_after)``, ``grey``
    (a filter on the thumbnail), ``json`` (not an image), ``echo`` (a 400 quoting the request's headers)."""

    def __init__(self) -> None:
        self.actions: deque = deque()
        self.headers: list[dict] = []


def scripted_app(script: Script, **thumbnail):
    app = create_app(Smartcrop(), response="thumbnail", thumbnail={"jpeg_quality": 90, **thumbnail})

    @app.middleware("http")
    async def play(request: Request, call_next):  # type: ignore[no-untyped-def]
        script.headers.append(dict(request.headers))
        action = script.actions.popleft() if script.actions else "ok"
        kind, arg = action if isinstance(action, tuple) else (action, None)
        if kind == "429":
            return Response(b'{"detail": "slow down"}', status_code=429, headers={"Retry-After": arg})
        if kind == "json":
            return Response(b'{"crops": []}', media_type="application/json")
        if kind == "echo":
            return Response(f"bad key {request.headers.get('x-api-key')}".encode(), status_code=400)
        reply = await call_next(request)
        if kind == "grey":
            body = b"".join([chunk async for chunk in reply.body_iterator])
            grey = ImageOps.grayscale(Image.open(io.BytesIO(body))).convert("RGB")
            buffer = io.BytesIO()
            grey.save(buffer, format="JPEG", quality=90)
            return Response(buffer.getvalue(), media_type="image/jpeg")
        return reply

    return app


@pytest.fixture(scope="module")
def service() -> Iterator[tuple[str, Script]]:
    script = Script()
    with running_server(scripted_app(script)) as base:
        yield base, script


def thumbnails(base: str, path: str = BY_URL, **kwargs) -> ThumbnailTarget:
    kwargs.setdefault("read_timeout", 30.0)
    if path == BY_BODY:
        kwargs.setdefault("method", "POST")
        kwargs.setdefault("body", "raw")
    return ThumbnailTarget(url=base + path, **kwargs)


def photo(name: str, width: int = 320) -> np.ndarray:
    picture = Image.fromarray(getattr(skimage.data, name)()).convert("RGB")
    picture = picture.resize((width, round(picture.height * width / picture.width)))
    return (np.asarray(picture, dtype=np.float32) / 255).astype(np.float32)


# -- the conformance suite, through thumbnails --------------------------------------------------


class TestThumbnailByUrlConformance(TargetConformance):
    @pytest.fixture
    def target(self, service) -> Iterator[ThumbnailTarget]:
        with thumbnails(service[0]) as target:
            yield target


class TestThumbnailMultipartConformance(TargetConformance):
    @pytest.fixture
    def target(self, service) -> Iterator[ThumbnailTarget]:
        with thumbnails(service[0], BY_BODY, body="multipart", form_field="image") as target:
            yield target


@pytest.mark.parametrize(
    ("path", "body"),
    [(BY_URL, "none"), ("/thumbnail/{width}x{height}/smart/{image_url}", "none"), (BY_BODY, "raw")],
)
def test_the_same_crops_as_the_cropper_queried_directly(service, path, body) -> None:
    direct = Smartcrop()
    with thumbnails(service[0], path, body=body, thumbnail_scale=0.5) as target:
        for name in ("coffee", "astronaut", "chelsea"):
            image = photo(name)
            for near, exact in zip(
                target.query([image])[0].crops, direct.query([image])[0].crops, strict=True
            ):
                assert near.aspect_ratio == exact.aspect_ratio
                for a, b in zip(near.as_list(), exact.as_list(), strict=True):
                    assert abs(a - b) <= 2, (name, near, exact)
        counts = target.counters()
    assert counts["requests"] == counts["answered"] == 3 * len(direct.aspect_ratios)
    assert counts["images"] == 3 and counts["unlocated"] == 0


def test_crop_only_and_one_request_per_aspect_ratio(service) -> None:
    base, script = service
    target = thumbnails(base, aspect_ratios=(0.56, 2.0))
    assert target.outputs == {Output.CROPS}
    before = len(script.headers)
    target.query([photo("coffee")] * 3)
    assert len(script.headers) - before == 3 * 2
    assert target.thumbnail_size(640, 480, 0.56) == (320, 179)  # the 640 x 358 crop, halved
    assert target.thumbnail_size(640, 480, 1.0) == (240, 240)
    assert target.thumbnail_size(320, 213, 0.56) == (320, 179)  # 320 and 179 share no factor: whole
    target.close()


def test_headers_come_from_the_environment_and_never_leak(service, monkeypatch) -> None:
    base, script = service
    monkeypatch.setenv("BLACKBOX_TEST_THUMB_KEY", "key-xyzzy-secret")
    target = thumbnails(base, headers={"X-Api-Key": "BLACKBOX_TEST_THUMB_KEY"})
    assert "xyzzy" not in repr(target.template)  # the template holds the variable's name only
    target.query([photo("coffee")])
    assert script.headers[-1]["x-api-key"] == "key-xyzzy-secret"
    script.actions.append("echo")  # a service quoting the key back in its error
    with pytest.raises(RequestRejectedError) as caught:
        target.query([photo("coffee")])
    assert "xyzzy" not in str(caught.value) and "<header value>" in str(caught.value)
    target.close()


def test_429_honours_retry_after_and_loses_no_query(service) -> None:
    base, script = service
    sleeps: list[float] = []
    target = thumbnails(base, max_concurrency=1, seed=0, sleep=sleeps.append, aspect_ratios=(1.0,))
    script.actions.extend([("429", "2"), ("429", "1")])
    output = target.query([photo("coffee")])[0]
    assert output.crops[0].width == 213
    counts = target.counters()
    assert counts["throttled"] == 2 and counts["retries"] == 2 and counts["failed"] == 0
    assert counts["requests"] == 3 and counts["answered"] == 1
    assert max(sleeps[:2]) >= 2.0  # the service's wait (held for every thread), not the 0.5 s backoff
    target.close()


def test_a_changed_thumbnail_is_a_named_failure(service) -> None:
    base, script = service
    target = thumbnails(base, aspect_ratios=(1.0,))
    script.actions.append("grey")
    with pytest.raises(ThumbnailNotFoundError, match=r"aspect ratio 1 .*the service changed the picture"):
        target.query([photo("coffee")])
    assert target.counters()["unlocated"] == 1
    script.actions.append("json")
    with pytest.raises(TargetQueryError, match="not an image Pillow reads"):
        target.query([photo("coffee")])
    target.close()


def test_cost_is_counted_and_max_cost_refuses_to_send(service) -> None:
    base, _ = service
    target = thumbnails(base, cost_per_request=0.002, max_cost=0.0125)
    target.query([photo("coffee")])  # 4 requests
    assert target.counters()["cost"] == pytest.approx(0.008)
    with pytest.raises(SpendingLimitError, match=r"max_cost=0.0125"):
        target.query([photo("coffee")])
    assert target.counters()["requests"] <= 6
    target.close()


def test_the_budget_is_every_query_the_service_answered(service) -> None:
    # The black-box search through thumbnails: the clean image, then exactly the budget.
    base, _ = service
    target = thumbnails(base, max_concurrency=3)
    image = (photo("chelsea", 160) * 255).astype(np.uint8)
    before = requests.get(f"{base}/health", timeout=10).json()["counts"].get("images", 0)
    problem = replace(problem_for(image, target, eps=3.0), target_name="thumbnail")
    storage = optuna.storages.InMemoryStorage()
    result = make_search(6, storage=storage).run(problem, target)
    served = requests.get(f"{base}/health", timeout=10).json()["counts"]["images"] - before
    assert result.queries == 6 and result.failed_queries == 0
    assert target.counters()["images"] == 1 + 6
    assert served == 4 * target.counters()["images"]
    target.close()


def test_rate_limiter_spaces_requests_and_holds_on_retry_after() -> None:
    now = [0.0]
    slept: list[float] = []

    def sleep(seconds: float) -> None:
        slept.append(seconds)
        now[0] += seconds

    limiter = RateLimiter(4.0, clock=lambda: now[0], sleep=sleep)
    for _ in range(5):
        limiter.wait()
    assert slept == [0.25, 0.25, 0.25, 0.25]
    limiter.hold(3.0)
    limiter.wait()
    assert slept[-1] == pytest.approx(3.0)


@pytest.mark.parametrize(
    ("kwargs", "match"),
    [
        ({"url": "ftp://x/{width}x{height}/{image_url}"}, "http"),
        ({"url": "http://h/{width}x{height}/{nosuch}/{image_url}"}, r"unknown placeholder.*\{nosuch\}"),
        ({"url": "http://h/{width}x{height}"}, "sends the image by URL"),
        ({"url": "http://h/{width}/{image_url}"}, r"\{height\}"),
        ({"url": "http://h/{width}x{height}", "body": "raw"}, "needs target.method=POST"),
        (
            {"url": "http://h/{width}x{height}/{image_url}", "body": "raw", "method": "POST"},
            "drop the image URL",
        ),
        ({"url": "http://h/{width}x{height}/{image_url}", "method": "PATCH"}, "method"),
        ({"url": "http://h/{width}x{height}/{image_url}", "body": "form"}, "body"),
        ({"url": "http://u:p@h/{width}x{height}/{image_url}"}, "credentials"),
        (
            {"url": "http://h/{width}x{height}/{image_url}", "headers": {"X-Key": "BLACKBOX_UNSET_VAR"}},
            "not set",
        ),
    ],
)
def test_bad_templates_are_clear_errors(kwargs, match) -> None:
    with pytest.raises(ValueError, match=match):
        RequestTemplate(**kwargs)


@pytest.mark.parametrize(
    ("kwargs", "match"),
    [
        ({"thumbnail_scale": 0}, "thumbnail_scale"),
        ({"rate_limit": -1}, "rate_limit"),
        ({"cost_per_request": -0.1}, "cost_per_request"),
        ({"max_concurrency": 0}, "max_concurrency"),
    ],
)
def test_bad_settings_are_clear_errors(kwargs, match) -> None:
    with pytest.raises(ValueError, match=match):
        ThumbnailTarget(url="http://127.0.0.1:1/t/{width}x{height}/smart/{image_url}", **kwargs)
    with pytest.raises(ConfigError, match=match):
        load("thumbnail", **kwargs)


def test_in_the_zoo() -> None:
    target = load("thumbnail", aspect_ratios=(0.56, 2.0))
    assert isinstance(target, ThumbnailTarget) and target.name == "thumbnail"
    assert target.template.body == "none" and "{image_url_quoted}" in target.template.url


# -- the reference thumbnail service -------------------------------------------------------------


def _png(image: np.ndarray) -> bytes:
    from targets._protocol import encode_png

    return encode_png(image)


def test_the_service_refuses_what_it_should(service) -> None:
    base, _ = service
    image = _png(photo("coffee"))
    reply = requests.get(f"{base}/thumbnail/100x100/smart/http%3A%2F%2Fexample.com%2Fa.png", timeout=10)
    assert reply.status_code == 400 and "fetch_hosts" in reply.json()["detail"]
    reply = requests.post(
        f"{base}/thumbnail/0x100/smart", data=image, headers={"Content-Type": "image/png"}, timeout=10
    )
    assert reply.status_code == 400 and "each side" in reply.json()["detail"]
    reply = requests.post(f"{base}/thumbnail/100x100/smart", files={"picture": ("a.png", image)}, timeout=10)
    assert reply.status_code == 400 and "no field 'image'" in reply.json()["detail"]
    reply = requests.post(
        f"{base}/thumbnail/100x100/smart",
        data=b"{}",
        headers={"Content-Type": "application/json"},
        timeout=10,
    )
    assert reply.status_code == 415
    reply = requests.post(
        f"{base}/thumbnail/100x60/smart", data=image, headers={"Content-Type": "image/png"}, timeout=10
    )
    assert reply.status_code == 200 and reply.headers["content-type"] == "image/jpeg"
    assert Image.open(io.BytesIO(reply.content)).size == (100, 60)
    assert requests.get(f"{base}/health", timeout=10).json()["response"] == "thumbnail"


def test_the_services_rate_limit_answers_429_with_retry_after() -> None:
    with running_server(create_app(Smartcrop(), response="thumbnail", thumbnail={"rate_limit": 2})) as base:
        image = _png(photo("coffee", 160))
        codes, waits = [], []
        for _ in range(4):
            reply = requests.post(
                f"{base}/thumbnail/50x50/smart", data=image, headers={"Content-Type": "image/png"}, timeout=10
            )
            codes.append(reply.status_code)
            waits.append(reply.headers.get("retry-after"))
    assert codes[:2] == [200, 200] and 429 in codes[2:]
    assert all(w == "1" for w, c in zip(waits, codes, strict=True) if c == 429)


def test_bad_thumbnail_settings_are_clear_errors() -> None:
    with pytest.raises(ValueError, match="resample"):
        create_app(Smartcrop(), response="thumbnail", thumbnail={"resample": "cubic"})
    with pytest.raises(ValueError, match="jpeg_quality"):
        create_app(Smartcrop(), response="thumbnail", thumbnail={"jpeg_quality": 100})


def test_the_service_crops_the_window_a_thumbnail_size_implies() -> None:
    # h / w of whole pixels can floor a pixel short in crop_size (480 / (480 / 421) < 421): nudged back.
    from targets._serve_thumbnail import ratio_for
    from targets.crop import crop_size

    for width, height in ((640, 480), (640, 427), (480, 640)):
        for crop_w, crop_h in [(w, height) for w in range(2, width)] + [(width, h) for h in range(2, height)]:
            assert crop_size(width, height, ratio_for(width, height, crop_w, crop_h)) == (crop_w, crop_h)
