"""The wire format of ``target=http`` and the retry policy, without a server."""

from __future__ import annotations

import base64
import email.utils
import random

import numpy as np
import pytest
from PIL import Image

from targets import Output, TargetOutput, TargetQueryError
from targets._protocol import MalformedAnswerError, build_answer, encode_png, parse_answer, to_uint8
from targets._retry import RetryPolicy, is_retryable_status, parse_retry_after
from targets.classic import ClassicSaliency
from targets.crop import crop_boxes, estimate_point
from targets.testing import sample_images

RATIOS = (0.56, 1.0, 2.0)
ALL = frozenset(Output)
W, H = 128, 96


@pytest.fixture(scope="module")
def output() -> TargetOutput:
    image = sample_images()[0]
    return ClassicSaliency(scales=(32,), aspect_ratios=RATIOS).query([image])[0]


def answer_of(output: TargetOutput, response: str = "full", **kwargs) -> dict:
    return build_answer(output, width=W, height=H, crops=output.crops, response=response, **kwargs)


def parse(answer: object, expect=ALL) -> TargetOutput:
    return parse_answer(answer, width=W, height=H, expect=expect, aspect_ratios=RATIOS)


def test_png_round_trip_is_the_8bit_image() -> None:
    image = sample_images()[0]
    import io

    decoded = np.asarray(Image.open(io.BytesIO(encode_png(image))))
    np.testing.assert_array_equal(decoded, to_uint8(image))
    assert np.abs(decoded / 255.0 - image).max() <= 0.5 / 255 + 1e-6


@pytest.mark.parametrize("dtype", ["float64", "float32"])
def test_full_answer_round_trip(output, dtype) -> None:
    parsed = parse(answer_of(output, map_dtype=dtype))
    assert parsed.salient_point == output.salient_point and parsed.crops == output.crops
    if dtype == "float64":
        np.testing.assert_array_equal(parsed.log_density, output.log_density)  # bit for bit
    else:
        np.testing.assert_allclose(parsed.log_density, output.log_density, atol=1e-5)


def test_crop_only_answer_derives_the_point_from_the_crops(output) -> None:
    answer = answer_of(output, response="crop")
    assert set(answer) == {"width", "height", "crops"}
    parsed = parse(answer, expect={Output.CROPS})
    assert parsed.log_density is None and parsed.crops == output.crops
    x, y = parsed.salient_point
    assert 0 <= x < W and 0 <= y < H
    # The estimate is what the attack's objective uses (core.objective): inside every crop's cut side.
    assert parsed.salient_point == estimate_point(output.crops, W, H)
    assert all(c.left <= x <= c.right for c in output.crops if c.width < W)


def test_point_only_answer_gets_the_policy_crops(output) -> None:
    answer = {"salient_point": list(output.salient_point)}
    parsed = parse(answer, expect={Output.POINT})
    assert parsed.crops == crop_boxes(W, H, output.salient_point, RATIOS)


def test_map_only_answer_gives_argmax_point(output) -> None:
    answer = answer_of(output)
    del answer["salient_point"], answer["crops"]
    parsed = parse(answer, expect={Output.SALIENCY})
    assert parsed.salient_point == output.salient_point  # classic's point is its argmax too


def test_nonnegative_values_map_and_a_coarser_map() -> None:
    density = np.ones((H // 2, W // 2))
    density[10, 40] = 50.0
    answer = {"saliency": {"kind": "nonnegative", "shape": [H // 2, W // 2], "values": density.tolist()}}
    parsed = parse(answer, expect={Output.SALIENCY})
    assert parsed.log_density.shape == (H, W)
    assert np.exp(parsed.log_density).sum() == pytest.approx(1.0)
    x, y = parsed.salient_point
    assert abs(x - 81) <= 2 and abs(y - 21) <= 2


def test_unnormalised_log_map_is_renormalised() -> None:
    values = np.log(np.arange(1, H * W + 1, dtype=np.float64).reshape(H, W)) + 7.0
    raw = base64.b64encode(values.astype("<f8").tobytes()).decode()
    answer = {"saliency": {"kind": "log_density", "shape": [H, W], "dtype": "float64", "data": raw}}
    parsed = parse(answer, expect={Output.SALIENCY})
    assert np.exp(parsed.log_density).sum() == pytest.approx(1.0)
    assert parsed.salient_point == (W - 1, H - 1)


def _with(answer: dict, path: tuple, value: object) -> dict:
    import copy

    changed = copy.deepcopy(answer)
    node = changed
    for key in path[:-1]:
        node = node[key]
    if value is _DELETE:
        del node[path[-1]]
    else:
        node[path[-1]] = value
    return changed


_DELETE = object()


@pytest.mark.parametrize(
    ("path", "value", "match"),
    [
        (("crops", 0, "box"), [0, 0, 200, 10], r"answer\.crops\[0\]\.box: \[0, 0, 200, 10\] is not a box"),
        (("crops", 1, "box"), [-1, 0, 10, 10], r"crops\[1\]\.box"),
        (("crops", 1, "box"), [0, 0, 10], r"crops\[1\]\.box: expected 4 whole numbers"),
        (("crops", 1, "box"), [0.5, 0, 10, 10], r"crops\[1\]\.box: expected 4 whole numbers"),
        (("crops", 0, "aspect_ratio"), -1, r"crops\[0\]\.aspect_ratio: expected a positive number"),
        (("crops", 0, "aspect_ratio"), 0.75, r"no crop for aspect ratio 0.56 \(the service gave 0.75, 1, 2"),
        (("crops",), [], r"answer\.crops: expected a non-empty list"),
        (("salient_point",), [W, 5], r"answer\.salient_point: \[128, 5\] is outside the 128x96 image"),
        (("salient_point",), [1, "a"], r"answer\.salient_point: expected \[x, y\]"),
        (("salient_point",), [float("nan"), 1], r"answer\.salient_point"),
        (("saliency", "kind"), "probability", r"saliency\.kind: expected one of log_density, nonnegative"),
        (("saliency", "shape"), [W, H], r"saliency\.shape: \[128, 96\] does not fit the 128x96 image"),
        (("saliency", "shape"), [H], r"answer\.saliency\.shape: expected \[height, width\]"),
        (("saliency", "dtype"), "int8", r"answer\.saliency\.dtype"),
        (("saliency", "data"), "not base64!", r"answer\.saliency\.data: not valid base64"),
        (("saliency", "data"), base64.b64encode(b"\0" * 16).decode(), r"saliency\.data: 16 bytes of float64"),
        (("saliency", "data"), _DELETE, r"answer\.saliency: has neither data"),
        (("saliency",), _DELETE, r"no saliency in the answer .*target\.expect"),
        (("crops",), _DELETE, r"no crops in the answer"),
        (("width",), 64, r"answer\.width: the image sent is 128x96"),
    ],
)
def test_malformed_answer_quotes_the_field(output, path, value, match) -> None:
    with pytest.raises(MalformedAnswerError, match=match):
        parse(_with(answer_of(output), path, value))


@pytest.mark.parametrize(
    ("saliency", "match"),
    [
        ({"kind": "log_density", "shape": [2, 2], "values": [[0, 1], [2]]}, r"values: expected 2 rows"),
        ({"kind": "log_density", "shape": [2, 3], "values": [[0, 1], [2, 3]]}, r"values: has shape \[2, 2\]"),
        (
            {"kind": "log_density", "shape": [1, 1], "values": [[float("nan")]]},
            r"1 log-density values are NaN",
        ),
        ({"kind": "nonnegative", "shape": [1, 1], "values": [[-1.0]]}, r"nonnegative map are negative"),
        ({"kind": "nonnegative", "shape": [1, 1], "values": [[0.0]]}, r"must have a positive sum"),
    ],
)
def test_bad_maps(saliency, match) -> None:
    with pytest.raises(MalformedAnswerError, match=match):
        parse_answer(
            {"saliency": saliency},
            width=3,
            height=2,
            expect=ALL - {Output.CROPS, Output.POINT},
            aspect_ratios=RATIOS,
        )


def test_malformed_is_a_target_query_error_the_attack_handles() -> None:
    with pytest.raises(TargetQueryError, match="expected a JSON object"):
        parse([1, 2, 3])
    assert issubclass(MalformedAnswerError, RuntimeError)


# -- retries ---------------------------------------------------------------------------------


@pytest.mark.parametrize(("status", "retry"), [(429, True), (500, True), (503, True), (599, True)])
def test_retryable_statuses(status, retry) -> None:
    assert is_retryable_status(status) is retry


@pytest.mark.parametrize("status", [400, 401, 403, 404, 408, 413, 415, 422])
def test_other_4xx_are_never_retried(status) -> None:
    assert not is_retryable_status(status)


def test_backoff_is_exponential_capped_and_jittered() -> None:
    policy = RetryPolicy(max_retries=8, backoff=0.5, backoff_max=4.0)
    rng = random.Random(0)
    for retry in range(8):
        cap = min(4.0, 0.5 * 2**retry)
        delays = [policy.delay(retry, rng) for _ in range(200)]
        assert all(0 <= d <= cap for d in delays)
        assert max(delays) > 0.8 * cap and min(delays) < 0.2 * cap  # spread over the whole window
    assert policy.delay(0, rng, retry_after=3.0) >= 3.0  # Retry-After is a floor


def test_parse_retry_after() -> None:
    assert parse_retry_after("7") == 7.0
    assert parse_retry_after("0.25") == 0.25
    assert parse_retry_after(None) is None and parse_retry_after("soon") is None
    now = 1_700_000_000.0
    date = email.utils.formatdate(now + 30, usegmt=True)
    assert parse_retry_after(date, now=now) == pytest.approx(30.0)
    assert parse_retry_after(email.utils.formatdate(now - 30, usegmt=True), now=now) == 0.0


@pytest.mark.parametrize("kwargs", [{"max_retries": -1}, {"max_retries": 1.5}, {"backoff": -1.0}])
def test_bad_retry_settings(kwargs) -> None:
    with pytest.raises(ValueError):
        RetryPolicy(**kwargs)
