"""``target=http`` against the reference server and a misbehaving test service, on 127.0.0.1 only.

Every server here binds a free loopback port and stops with its fixture; every loop is bounded.
"""

from __future__ import annotations

import base64
import io
import json
import socket
import threading
import time
from collections import deque
from collections.abc import Iterator
from dataclasses import replace
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

import numpy as np
import optuna
import pytest
import requests
from PIL import Image

from blackbox.attacks import AttackFailedError
from blackbox.experiment.storage import make_storage
from targets import Output, Target, TargetOutput, TargetQueryError, estimate_point
from targets.classic import ClassicSaliency
from targets.http import HttpTarget, MalformedAnswerError, RequestRejectedError, ServiceUnavailableError
from targets.serve import create_app, running_server
from targets.testing import TargetConformance, sample_images
from tests.test_patch_search import make_search, problem_for


def local_target() -> ClassicSaliency:
    """The model every server here runs, and its in-process twin (small scales: fast)."""
    return ClassicSaliency(scales=(32, 64))


class Singly(Target):
    """An in-process target asked one image at a time, as single HTTP requests ask the server."""

    def __init__(self, inner: Target, *, crop_only: bool = False) -> None:
        super().__init__(aspect_ratios=inner.aspect_ratios)
        self.inner, self.crop_only, self.name = inner, crop_only, inner.name

    @property
    def outputs(self) -> frozenset[Output]:
        return frozenset({Output.CROPS}) if self.crop_only else self.inner.outputs

    def answer(self, images):
        outputs = [self.inner.query([image])[0] for image in images]
        if self.crop_only:  # what a crop-only service lets a client know
            width, height = images[0].shape[1], images[0].shape[0]
            return [TargetOutput(estimate_point(o.crops, width, height), o.crops, None) for o in outputs]
        return outputs


@pytest.fixture(scope="module")
def servers() -> Iterator[dict[str, str]]:
    """Reference servers on loopback: one full (map, point, crops), one crop-only."""
    with (
        running_server(create_app(local_target())) as full,
        running_server(create_app(local_target(), response="crop")) as crop,
    ):
        yield {"full": full, "crop": crop}


def client(base: str, **kwargs) -> HttpTarget:
    kwargs.setdefault("read_timeout", 30.0)
    return HttpTarget(url=f"{base}/v1/saliency", **kwargs)


# -- the conformance suite, through HTTP ------------------------------------------------------


class TestHttpConformance(TargetConformance):
    @pytest.fixture
    def target(self, servers) -> Iterator[HttpTarget]:
        with client(servers["full"]) as target:
            yield target


class TestHttpBatchConformance(TargetConformance):
    @pytest.fixture
    def target(self, servers) -> Iterator[HttpTarget]:
        with client(servers["full"], batch_url=f"{servers['full']}/v1/saliency/batch", max_batch=2) as target:
            yield target


class TestHttpCropOnlyConformance(TargetConformance):
    @pytest.fixture
    def target(self, servers) -> Iterator[HttpTarget]:
        with client(servers["crop"], expect=["crops"]) as target:
            yield target


def test_outputs_follow_what_is_expected(servers) -> None:
    assert client(servers["full"]).outputs == frozenset(Output)
    assert client(servers["full"], expect=["point"]).outputs == {Output.POINT, Output.CROPS}
    assert client(servers["crop"], expect=["crops"]).outputs == {Output.CROPS}


def test_expecting_a_map_from_a_crop_only_service_is_a_clear_error(servers) -> None:
    with pytest.raises(MalformedAnswerError, match=r"no saliency / salient_point in the answer.*\[crops\]"):
        client(servers["crop"]).query([sample_images()[0]])


@pytest.mark.parametrize(
    ("kwargs", "match"),
    [
        ({"url": "ftp://x/y"}, "http"),
        ({"url": "http://user:secret@127.0.0.1/v1"}, "credentials"),
        ({"url": "http://127.0.0.1/v1", "expect": ["mask"]}, "unknown output 'mask'"),
        ({"url": "http://127.0.0.1/v1", "expect": []}, "at least one"),
        ({"url": "http://127.0.0.1/v1", "max_concurrency": 0}, "max_concurrency"),
        ({"url": "http://127.0.0.1/v1", "read_timeout": 0}, "read_timeout"),
        ({"url": "http://127.0.0.1/v1", "auth_env": "BLACKBOX_TEST_UNSET_VARIABLE"}, "not set"),
    ],
)
def test_bad_settings_are_clear_errors(kwargs, match) -> None:
    with pytest.raises(ValueError, match=match):
        HttpTarget(**kwargs)


# -- the attack through HTTP equals the attack in-process --------------------------------------


def _trials(result, storage) -> list[tuple]:
    study = optuna.load_study(study_name=result.extra["study"], storage=storage)
    return [(t.state, t.value, t.params) for t in study.trials]


def _same_result(http_result, local_result) -> None:
    assert http_result.adversarial.tobytes() == local_result.adversarial.tobytes()
    assert http_result.score == local_result.score
    assert http_result.success == local_result.success
    assert http_result.best_trial == local_result.best_trial
    assert http_result.queries == local_result.queries
    assert http_result.perturbation == local_result.perturbation


@pytest.mark.parametrize(
    ("mode", "server", "expect"),
    [
        ("batch", "full", ["saliency", "point", "crops"]),
        ("concurrent singles", "full", ["saliency", "point", "crops"]),
        ("concurrent singles", "crop", ["crops"]),
    ],
)
def test_attack_through_http_equals_in_process(servers, photo, mode, server, expect) -> None:
    base = servers[server]
    batch_url = f"{base}/v1/saliency/batch" if mode == "batch" else None
    local: Target = local_target() if mode == "batch" else Singly(local_target(), crop_only=server == "crop")
    budget = 9
    with client(base, expect=expect, batch_url=batch_url, max_concurrency=3) as remote:
        before = requests.get(f"{base}/health", timeout=10).json()["counts"].get("images", 0)
        results, problems = {}, {}
        for name, target in (("http", remote), ("local", local)):
            # One study name for both: the sampler's seed is derived from it.
            problems[name] = replace(problem_for(photo, target, eps=3.0), target_name="cropper")
            storage = optuna.storages.InMemoryStorage()
            result = make_search(budget, storage=storage).run(problems[name], target)
            results[name] = (result, _trials(result, storage))
        served = requests.get(f"{base}/health", timeout=10).json()["counts"]["images"] - before
        counters = remote.counters()
    (http_result, http_trials), (local_result, local_trials) = results["http"], results["local"]
    assert problems["http"] == problems["local"]  # same clean answer, same goal
    _same_result(http_result, local_result)
    assert http_trials == local_trials  # every trial: same parameters, same score
    if server == "crop":
        assert http_result.adversarial_output.log_density is None
        assert problems["http"].goal.source == "fallback"
    # Every query the budget counted was one image the server answered: the clean one, then the search's.
    assert served == counters["images"] == 1 + budget
    assert counters["retries"] == 0 and counters["failed"] == 0
    assert counters["requests"] == (1 + 3 if mode == "batch" else 1 + budget)


# -- fault injection ---------------------------------------------------------------------------


class FaultyService:
    """A test service that answers with a real model, or misbehaves as scripted: one action a request.

    Actions: ``ok``, an HTTP status (``"500"``), ``("429", retry_after)``, ``"drop"`` (close the
    connection without answering), ``("slow", seconds)``, ``"garbage"`` (200, not JSON),
    ``("json", payload)`` (200, that JSON). When the script is empty, ``default`` is played.
    """

    def __init__(self, *actions: object, default: object = "ok", response: str = "full") -> None:
        self.actions: deque = deque(actions)
        self.default = default
        self.model = local_target()
        self.response = response
        self.played: list[object] = []
        self.lock = threading.Lock()

    def next_action(self) -> object:
        with self.lock:
            action = self.actions.popleft() if self.actions else self.default
            self.played.append(action)
            return action

    def answer(self, body: bytes, query: str) -> bytes:
        from targets._protocol import build_answer

        pixels = np.asarray(Image.open(io.BytesIO(body)).convert("RGB"))
        output = self.model.query([pixels.astype(np.float32) / 255.0])[0]
        height, width = pixels.shape[:2]
        return json.dumps(
            build_answer(output, width=width, height=height, crops=output.crops, response=self.response)
        ).encode()

    def handler(self) -> type[BaseHTTPRequestHandler]:
        service = self

        class Handler(BaseHTTPRequestHandler):
            protocol_version = "HTTP/1.1"  # keep-alive, as real services

            def log_message(self, *args) -> None:  # quiet
                pass

            def reply(self, status: int, body: bytes, headers: dict | None = None) -> None:
                self.send_response(status)
                for key, value in {"Content-Type": "application/json", **(headers or {})}.items():
                    self.send_header(key, value)
                self.send_header("Content-Length", str(len(body)))
                self.end_headers()
                self.wfile.write(body)

            def do_POST(self) -> None:
                body = self.rfile.read(int(self.headers.get("Content-Length", 0)))
                action = service.next_action()
                kind, arg = action if isinstance(action, tuple) else (action, None)
                try:
                    if kind == "ok":
                        self.reply(200, service.answer(body, self.path))
                    elif kind == "slow":
                        time.sleep(arg)
                        self.reply(200, service.answer(body, self.path))
                    elif kind == "drop":
                        self.close_connection = True
                        self.connection.shutdown(socket.SHUT_RDWR)
                    elif kind == "garbage":
                        self.reply(200, b"{not json")
                    elif kind == "json":
                        self.reply(200, json.dumps(arg).encode())
                    elif kind == "429":
                        self.reply(429, b'{"detail": "slow down"}', {"Retry-After": arg})
                    else:
                        self.reply(int(kind), json.dumps({"detail": f"scripted {kind}"}).encode())
                except OSError:  # the client gave up (timeout) before the answer
                    self.close_connection = True

        return Handler

    def __enter__(self) -> str:
        self.server = ThreadingHTTPServer(("127.0.0.1", 0), self.handler())
        self.server.daemon_threads = True
        self.thread = threading.Thread(target=self.server.serve_forever, kwargs={"poll_interval": 0.05})
        self.thread.start()
        return f"http://127.0.0.1:{self.server.server_address[1]}/v1/saliency"

    def __exit__(self, *exc: object) -> None:
        self.server.shutdown()
        self.server.server_close()
        self.thread.join(timeout=10)


def faulty_client(url: str, sleeps: list[float], **kwargs) -> HttpTarget:
    kwargs = {"max_retries": 3, "backoff": 0.2, "read_timeout": 10.0, "seed": 0, **kwargs}
    return HttpTarget(url=url, sleep=sleeps.append, **kwargs)


IMAGE = sample_images()[0]


def test_5xx_are_retried_with_exponential_backoff() -> None:
    sleeps: list[float] = []
    with FaultyService("500", "503", "502", "ok") as url:
        target = faulty_client(url, sleeps)
        output = target.query([IMAGE])[0]
    assert output == local_target().query([(np.rint(IMAGE * 255) / 255).astype(np.float32)])[0]
    assert target.counters() == {
        "requests": 4,
        "answered": 1,
        "images": 1,
        "retries": 3,
        "rejected": 0,
        "malformed": 0,
        "failed": 0,
    }
    assert target.retries == 3
    assert len(sleeps) == 3 and all(0 <= s <= 0.2 * 2**i for i, s in enumerate(sleeps))


def test_429_honours_retry_after() -> None:
    sleeps: list[float] = []
    with FaultyService(("429", "2"), ("429", "0"), "ok") as url:
        target = faulty_client(url, sleeps)
        target.query([IMAGE])
    assert sleeps[0] >= 2.0  # the service's wait, not the 0.2 s backoff
    assert target.retries == 2


def test_dropped_connections_and_timeouts_are_retried() -> None:
    sleeps: list[float] = []
    with FaultyService("drop", ("slow", 1.5), "ok") as url:
        target = faulty_client(url, sleeps, read_timeout=0.3)
        started = time.perf_counter()
        target.query([IMAGE])
        elapsed = time.perf_counter() - started
    assert target.counters()["retries"] == 2 and target.counters()["answered"] == 1
    assert elapsed < 1.5  # the slow answer was not waited for


@pytest.mark.parametrize(
    ("status", "hint"),
    [("400", "request itself"), ("401", "auth_env"), ("404", "target.url"), ("413", "smaller")],
)
def test_other_4xx_fail_at_once(status, hint) -> None:
    sleeps: list[float] = []
    with FaultyService(status) as url:
        target = faulty_client(url, sleeps)
        with pytest.raises(RequestRejectedError, match=rf"HTTP {status} .*scripted {status}.*{hint}"):
            target.query([IMAGE])
    assert target.counters()["requests"] == 1 and target.retries == 0 and sleeps == []


def test_gives_up_after_the_retries_with_an_error_the_attack_handles() -> None:
    sleeps: list[float] = []
    with FaultyService(default="503") as url:
        target = faulty_client(url, sleeps, max_retries=2)
        match = r"after 3 attempts \(2 retries\); last: HTTP 503"
        with pytest.raises(ServiceUnavailableError, match=match) as info:
            target.query([IMAGE])
    assert isinstance(info.value, TargetQueryError) and isinstance(info.value, RuntimeError)
    assert target.counters()["requests"] == 3 and target.counters()["failed"] == 1


def test_retry_after_longer_than_allowed_fails_without_waiting() -> None:
    sleeps: list[float] = []
    with FaultyService(("429", "3600")) as url:
        target = faulty_client(url, sleeps, retry_after_max=60)
        with pytest.raises(ServiceUnavailableError, match=r"3600 s .*retry_after_max=60"):
            target.query([IMAGE])
    assert sleeps == [] and target.counters()["requests"] == 1


@pytest.mark.parametrize(
    ("action", "match"),
    [
        ("garbage", r"answer from .* is not JSON .*'\{not json'"),
        (("json", {"crops": [{"aspect_ratio": 0.56, "box": [0, 0, 999, 10]}]}), r"answer\.crops\[0\]\.box"),
        (("json", {"salient_point": [1, 2]}), r"no saliency / crops in the answer"),
    ],
)
def test_malformed_answers_are_rejected_not_retried(action, match) -> None:
    sleeps: list[float] = []
    with FaultyService(action) as url:
        target = faulty_client(url, sleeps, expect=["crops"] if "box" in match else ["saliency", "crops"])
        with pytest.raises(MalformedAnswerError, match=match):
            target.query([IMAGE])
    assert target.counters()["malformed"] == 1 and target.retries == 0


def test_a_failed_request_fails_its_concurrent_batch_and_the_others_finish() -> None:
    sleeps: list[float] = []
    with FaultyService("ok", "400", "ok", "ok") as url:
        target = faulty_client(url, sleeps, max_concurrency=2)
        with pytest.raises(RequestRejectedError):
            target.query(sample_images()[:1] * 4)
        assert target.query([IMAGE])  # the target is still usable
    counts = target.counters()
    assert counts["rejected"] == 1 and counts["requests"] <= 5


def test_a_failing_service_loses_no_completed_trial_and_the_study_resumes(photo, tmp_path) -> None:
    sleeps: list[float] = []
    problem = problem_for(photo, Singly(local_target()))
    search = dict(budget=14, storage=make_storage("journal", tmp_path))
    # One batch (3 trials) answered, then the service is down: 3 calls in a row fail (2 attempts
    # each, the first request of each batch) and the attack stops, budget left.
    with FaultyService("ok", "ok", "ok", default="503") as url:
        target = faulty_client(url, sleeps, max_retries=1, max_concurrency=1)
        with pytest.raises(AttackFailedError, match=r"3 completed trials kept .*HTTP 503.*resume"):
            make_search(**search).run(problem, target)
    assert target.counters() == {
        "requests": 3 + 3 * 2,
        "answered": 3,
        "images": 3,
        "retries": 3,
        "rejected": 0,
        "malformed": 0,
        "failed": 3,
    }
    storage = make_storage("journal", tmp_path)
    study = optuna.load_study(study_name=optuna.get_all_study_names(storage)[0], storage=storage)
    complete = optuna.trial.TrialState.COMPLETE
    first = {t.number: (t.value, t.params) for t in study.trials if t.state == complete}
    failed = [t for t in study.trials if t.state == optuna.trial.TrialState.FAIL]
    assert len(first) == 3 and len(failed) == 9  # the failed calls' trials, with the reason
    assert all("ServiceUnavailableError" in t.user_attrs["fail_reason"] for t in failed)

    # The service is back: the same command resumes; completed trials are kept, not redone.
    with FaultyService() as url:
        target = faulty_client(url, sleeps, max_concurrency=1)
        result = make_search(budget=14, storage=make_storage("journal", tmp_path)).run(problem, target)
    study = optuna.load_study(study_name=result.extra["study"], storage=make_storage("journal", tmp_path))
    kept = {t.number: (t.value, t.params) for t in study.trials if t.number in first}
    assert kept == first
    # Only what the budget had left was asked (and, when the best trial is an old one, its image
    # again: PatchSearch re-queries it outside the budget to report its output).
    assert target.counters()["images"] == 14 - 3 - 9 + (result.best_trial in first)
    assert result.queries == 14 and result.failed_queries == 0


# -- load ------------------------------------------------------------------------------------


@pytest.mark.slow  # ~5-10 s on 2 shared cores; kept in the default run
def test_load_8_clients_x_100_requests_without_errors(servers) -> None:
    base = servers["full"]
    rng = np.random.default_rng(0)
    images = [(rng.integers(0, 256, (48, 64, 3)) / 255.0).astype(np.float32) for _ in range(8)]
    expected = [local_target().query([image])[0] for image in images]
    errors: list[BaseException] = []
    clients = [client(base, max_concurrency=1) for _ in range(8)]
    mismatches = [0] * 8

    def work(i: int) -> None:
        try:
            for _ in range(100):
                if clients[i].query([images[i]])[0] != expected[i]:
                    mismatches[i] += 1
        except BaseException as error:  # any failure is what the test counts
            errors.append(error)

    threads = [threading.Thread(target=work, args=(i,)) for i in range(8)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(timeout=120)
    assert not any(t.is_alive() for t in threads)
    assert errors == [] and mismatches == [0] * 8
    for c in clients:
        assert c.counters()["answered"] == 100 and c.retries == 0
        c.close()


def test_batch_request_carries_the_images_in_order(servers) -> None:
    images = sample_images()
    body = {"images": [base64.b64encode(_png(i)).decode() for i in images]}
    reply = requests.post(f"{servers['full']}/v1/saliency/batch", json=body, timeout=30)
    assert reply.status_code == 200
    sizes = [(a["width"], a["height"]) for a in reply.json()["answers"]]
    assert sizes == [(i.shape[1], i.shape[0]) for i in images]


def _png(image: np.ndarray) -> bytes:
    from targets._protocol import encode_png

    return encode_png(image)


def test_an_echoed_auth_secret_is_redacted_from_errors(monkeypatch) -> None:
    monkeypatch.setenv("BLACKBOX_TEST_TOKEN", "Bearer xyzzy-secret")
    echo = {"crops": "Bearer xyzzy-secret"}  # a service quoting the header back in a bad answer
    with FaultyService(("json", echo)) as url:
        target = faulty_client(url, [], expect=["crops"], auth_env="BLACKBOX_TEST_TOKEN")
        with pytest.raises(MalformedAnswerError) as info:
            target.query([IMAGE])
    assert "xyzzy" not in str(info.value) and "<auth header value>" in str(info.value)


def test_a_point_only_reading_gets_the_policy_crops(servers) -> None:
    image = (np.rint(IMAGE * 255) / 255).astype(np.float32)
    local = local_target().query([image])[0]
    remote = client(servers["full"], expect=["point"]).query([image])[0]
    assert remote.salient_point == local.salient_point and remote.crops == local.crops
    assert remote.log_density is None
