"""The second round of fault kinds users hit (issue 29), each on inputs made here, plus the shared
cases in ``../shared/cases2/`` when present.

1 colour profiles, 2 metadata bombs, 3 HTTP answers that never end, 4 HTTP redirects, 5 storage this
Optuna cannot read, 6 the Python API's resume, 7 a sweep's table, 8 run folders the system refuses,
9 a refused run leaves nothing; and the API's ``target.*`` settings.
"""

from __future__ import annotations

import contextlib
import io
import json
import os
import struct
import subprocess
import sys
import threading
import time
import zlib
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path

import numpy as np
import pytest
from PIL import Image, ImageCms, PngImagePlugin

from blackbox.core.images import ImageLoadError, load_image
from targets.http import HttpTarget, RequestRejectedError, ServiceUnavailableError
from targets.testing import sample_images
from tests.test_faults import SMALL, quiet_run
from tests.test_target_http import FaultyService

CASES2 = Path(__file__).resolve().parents[2] / "shared" / "cases2"


# --- Kind 1: colour profiles -----------------------------------------------------------------

# Adobe RGB (1998) and sRGB primaries adapted to D50 (the ICC connection space), and their curves.
ADOBE_RGB = np.array([[0.60974, 0.20528, 0.14919], [0.31111, 0.62567, 0.06322], [0.01947, 0.06087, 0.74457]])
SRGB = np.array([[0.43607, 0.38515, 0.14307], [0.22249, 0.71687, 0.06061], [0.01392, 0.09708, 0.71410]])
ADOBE_GAMMA = 563 / 256
D50 = (0.9642, 1.0, 0.8249)


def _s15(value: float) -> bytes:
    return struct.pack(">i", round(value * 65536))


def _xyz(x: float, y: float, z: float) -> bytes:
    return b"XYZ \0\0\0\0" + _s15(x) + _s15(y) + _s15(z)


def _curve(gamma: float) -> bytes:
    return b"curv\0\0\0\0" + struct.pack(">IH", 1, round(gamma * 256)) + b"\0\0"


def _desc(text: str) -> bytes:
    ascii_text = text.encode() + b"\0"
    return (
        b"desc\0\0\0\0" + struct.pack(">I", len(ascii_text)) + ascii_text + b"\0" * 8 + b"\0\0\0" + b"\0" * 67
    )


def icc_profile(space: str, tags: dict[bytes, bytes]) -> bytes:
    """A version 2 display ICC profile with ``tags`` (matrix and curves, or a gray curve)."""
    entries, data = [], b""
    offset = 128 + 4 + 12 * len(tags)
    for signature, body in tags.items():
        body += b"\0" * (-len(body) % 4)
        entries.append(struct.pack(">4sII", signature, offset + len(data), len(body)))
        data += body
    size = offset + len(data)
    header = (
        struct.pack(">I4sI4s4s4s", size, b"\0\0\0\0", 0x02100000, b"mntr", space.ljust(4).encode(), b"XYZ ")
        + b"\0" * 12
        + b"acsp"
        + b"\0" * 24
        + struct.pack(">I", 0)  # rendering intent: perceptual
        + _s15(D50[0])
        + _s15(D50[1])
        + _s15(D50[2])
        + b"\0" * 48
    )
    assert len(header) == 128
    return header + struct.pack(">I", len(tags)) + b"".join(entries) + data


def adobe_rgb_profile() -> bytes:
    columns = ADOBE_RGB.T
    return icc_profile(
        "RGB",
        {
            b"desc": _desc("Adobe RGB (1998) test profile"),
            b"wtpt": _xyz(*D50),
            b"rXYZ": _xyz(*columns[0]),
            b"gXYZ": _xyz(*columns[1]),
            b"bXYZ": _xyz(*columns[2]),
            b"rTRC": _curve(ADOBE_GAMMA),
            b"gTRC": _curve(ADOBE_GAMMA),
            b"bTRC": _curve(ADOBE_GAMMA),
        },
    )


def linear_gray_profile() -> bytes:
    return icc_profile("GRAY", {b"desc": _desc("linear gray"), b"wtpt": _xyz(*D50), b"kTRC": _curve(1.0)})


def srgb_encode(linear: np.ndarray) -> np.ndarray:
    linear = np.clip(linear, 0.0, 1.0)
    return np.where(linear <= 0.0031308, 12.92 * linear, 1.055 * linear ** (1 / 2.4) - 0.055)


def adobe_to_srgb(pixels: np.ndarray) -> np.ndarray:
    """What a colour-managed viewer shows for Adobe RGB numbers, computed here from the primaries."""
    linear = (pixels.astype(np.float64) / 255.0) ** ADOBE_GAMMA
    shown = srgb_encode(linear @ ADOBE_RGB.T @ np.linalg.inv(SRGB).T)
    return np.rint(shown * 255.0)


PATCHES = np.array(
    [[200, 60, 60], [60, 180, 90], [90, 90, 200], [128, 128, 128], [240, 220, 40], [30, 30, 30]], np.uint8
)


def patch_image() -> np.ndarray:
    """Six saturated and gray 16 x 16 patches in a 48 x 32 picture."""
    return np.kron(PATCHES.reshape(2, 3, 3), np.ones((16, 16, 1), np.uint8)).astype(np.uint8)


@pytest.mark.parametrize(
    ("suffix", "options"),
    [(".png", {}), (".tif", {}), (".webp", {"lossless": True}), (".jpg", {"quality": 95})],
)
def test_an_embedded_profile_becomes_the_srgb_a_viewer_shows(tmp_path, suffix, options) -> None:
    path = tmp_path / f"adobe{suffix}"
    Image.fromarray(patch_image()).save(path, icc_profile=adobe_rgb_profile(), **options)
    raw = np.asarray(Image.open(path).convert("RGB")).astype(np.float64)  # the file's own numbers
    loaded = load_image(path, working_width=None).pixels.astype(np.float64)
    assert np.abs(loaded - adobe_to_srgb(raw)).max() <= 2
    assert np.abs(loaded - raw).max() > 30  # the raw numbers are not what a viewer shows


def test_a_gray_profile_and_transparency_are_applied_before_compositing(tmp_path) -> None:
    gray = tmp_path / "gray.png"
    Image.new("L", (40, 40), 128).save(gray, icc_profile=linear_gray_profile())
    shown = round(float(srgb_encode(np.array(128 / 255))) * 255)  # linear 128 is sRGB 188
    assert np.abs(load_image(gray, working_width=None).pixels.astype(int) - shown).max() <= 1

    rgba = np.zeros((40, 40, 4), np.uint8)
    rgba[..., :3], rgba[..., 3] = (200, 60, 60), 128
    path = tmp_path / "half.png"
    Image.fromarray(rgba, "RGBA").save(path, icc_profile=adobe_rgb_profile())
    expected = adobe_to_srgb(np.array([[200, 60, 60]])) * 128 / 255 + 255 * (1 - 128 / 255)
    assert np.abs(load_image(path, working_width=None).pixels[0, 0] - expected[0]).max() <= 2


def test_a_profile_that_does_not_fit_the_pixels_is_ignored_and_a_damaged_one_refused(tmp_path) -> None:
    path = tmp_path / "mismatch.png"
    Image.fromarray(patch_image()).save(path, icc_profile=linear_gray_profile())  # gray profile, RGB data
    assert np.array_equal(load_image(path, working_width=None).pixels, patch_image())
    damaged = tmp_path / "damaged.png"
    Image.fromarray(patch_image()).save(damaged, icc_profile=adobe_rgb_profile()[:100])
    with pytest.raises(ImageLoadError, match=r"ICC colour profile cannot be read.*re-save it .*sRGB"):
        load_image(damaged)


def test_the_attacked_and_written_image_is_the_displayed_one_and_says_srgb(tmp_path) -> None:
    source = tmp_path / "adobe.png"
    Image.fromarray(np.kron(patch_image(), np.ones((4, 4, 1), np.uint8))).save(
        source, icc_profile=adobe_rgb_profile()
    )
    summary, _ = quiet_run(tmp_path / "run", f"image={source}", "budget=3", "working_width=192")
    (record,) = summary.records
    written = Image.open(tmp_path / "run" / "adversarial" / f"{record['image']}.png")
    assert written.info.get("srgb") == 0 and "icc_profile" not in written.info
    displayed = adobe_to_srgb(np.asarray(Image.open(source).convert("RGB")))
    l2 = np.linalg.norm((np.asarray(written, np.float64) - displayed) / 255.0)
    assert l2 <= record["eps"] + 0.05  # within eps of what a viewer shows (a level of rounding aside)


@pytest.mark.skipif(
    not (CASES2 / "adobergb_tagged.png").exists(), reason="../shared/cases2 not beside the clone"
)
def test_shared_case_adobe_rgb_is_read_as_displayed() -> None:
    path = CASES2 / "adobergb_tagged.png"
    with Image.open(path) as image:
        profile = ImageCms.ImageCmsProfile(io.BytesIO(image.info["icc_profile"]))
        shown = ImageCms.profileToProfile(image, profile, ImageCms.createProfile("sRGB"), outputMode="RGB")
    assert np.array_equal(load_image(path, working_width=None).pixels, np.asarray(shown))


# --- Kind 2: metadata bombs ------------------------------------------------------------------


def _png_with_chunk(pixels: np.ndarray, chunk_type: bytes, data: bytes) -> bytes:
    """A PNG of ``pixels`` with one extra chunk before its image data."""
    buffer = io.BytesIO()
    Image.fromarray(pixels).save(buffer, format="PNG")
    png = buffer.getvalue()
    chunk = struct.pack(">I", len(data)) + chunk_type + data
    chunk += struct.pack(">I", zlib.crc32(chunk_type + data))
    at = png.index(b"IDAT") - 4
    return png[:at] + chunk + png[at:]


@pytest.mark.parametrize(
    ("chunk_type", "data"),
    [
        (b"zTXt", b"Comment\0\0" + zlib.compress(b"x" * (16 << 20))),
        (b"iTXt", b"Comment\0\x01\0\0\0" + zlib.compress(b"x" * (16 << 20))),
        (b"iCCP", b"ICC Profile\0\0" + zlib.compress(b"\0" * (16 << 20))),
    ],
    ids=["zTXt", "iTXt", "iCCP"],
)
def test_an_oversized_metadata_chunk_is_named_not_called_damaged(tmp_path, photo, chunk_type, data) -> None:
    path = tmp_path / "bomb.png"
    path.write_bytes(_png_with_chunk(photo, chunk_type, data))
    with pytest.raises(ImageLoadError) as info:
        load_image(path)
    message = str(info.value)
    assert f"its {chunk_type.decode()} chunk" in message and "metadata decompression bomb" in message
    assert "re-save the pixels without" in message and "damaged" not in message


def test_text_chunks_over_the_total_limit_are_named(tmp_path, photo, monkeypatch) -> None:
    monkeypatch.setattr(PngImagePlugin, "MAX_TEXT_MEMORY", 1 << 16)
    info = PngImagePlugin.PngInfo()
    for number in range(3):
        info.add_text(f"note{number}", "y" * 30_000)
    path = tmp_path / "notes.png"
    Image.fromarray(photo).save(path, pnginfo=info)
    with pytest.raises(ImageLoadError, match=r"its text chunks together would expand past .*0.0625 MiB"):
        load_image(path)


@pytest.mark.skipif(not (CASES2 / "ztxt_bomb.png").exists(), reason="../shared/cases2 not beside the clone")
def test_shared_case_ztxt_bomb_is_named() -> None:
    with pytest.raises(ImageLoadError, match=r"its zTXt chunk .*metadata decompression bomb"):
        load_image(CASES2 / "ztxt_bomb.png")


# --- Kinds 3 and 4: HTTP answers that never end, and redirects -----------------------------------


class MisbehavingService:
    """A loopback service whose paths misbehave as named; ``/ok`` paths answer with a real model.

    ``/trickle``: 200, then a byte every 0.2 s; ``/endless``: 200, a chunked body without end;
    ``/huge``: declares 10 GiB; ``/moved``: 301 to ``/ok/v2``; ``/kept``: 307 to ``/ok/v2``;
    ``/away``: 307 to another host name; ``/loop``: 307 to itself.
    """

    def __init__(self) -> None:
        self.model = FaultyService()  # for its answers
        self.seen: list[tuple[str, str]] = []  # (method, path) of every request

    def handler(self) -> type[BaseHTTPRequestHandler]:
        service = self

        class Handler(BaseHTTPRequestHandler):
            protocol_version = "HTTP/1.1"

            def log_message(self, *args) -> None:
                pass

            def head(self, status: int, headers: dict[str, str]) -> None:
                self.send_response(status)
                for key, value in headers.items():
                    self.send_header(key, value)
                self.end_headers()

            def do_GET(self) -> None:
                service.seen.append(("GET", self.path))
                self.head(405, {"Content-Length": "0"})

            def do_POST(self) -> None:
                body = self.rfile.read(int(self.headers.get("Content-Length", 0)))
                service.seen.append(("POST", self.path))
                path = self.path.split("?")[0]
                port = self.server.server_address[1]
                try:
                    if path.startswith("/ok"):
                        answer = service.model.answer(body, self.path)
                        self.head(
                            200, {"Content-Type": "application/json", "Content-Length": str(len(answer))}
                        )
                        self.wfile.write(answer)
                    elif path == "/trickle":
                        self.head(200, {"Content-Type": "application/json", "Content-Length": "1000"})
                        for _ in range(100):  # at most 20 s, long after the client gave up
                            self.wfile.write(b" ")
                            self.wfile.flush()
                            time.sleep(0.2)
                    elif path == "/endless":
                        self.head(200, {"Content-Type": "application/json", "Transfer-Encoding": "chunked"})
                        chunk = b"[" * 65536
                        for _ in range(2000):  # 128 MiB at most
                            self.wfile.write(b"%x\r\n%s\r\n" % (len(chunk), chunk))
                    elif path == "/huge":
                        self.head(200, {"Content-Type": "application/json", "Content-Length": str(10 << 30)})
                    else:
                        location = {
                            "/moved": "/ok/v2/saliency",
                            "/kept": "/ok/v2/saliency",
                            "/away": f"http://localhost:{port}/ok/v2/saliency",
                            "/loop": "/loop",
                        }[path]
                        status = 301 if path == "/moved" else 307
                        self.head(status, {"Location": location, "Content-Length": "0"})
                except OSError:  # the client gave up
                    self.close_connection = True

        return Handler

    def __enter__(self) -> str:
        self.server = ThreadingHTTPServer(("127.0.0.1", 0), self.handler())
        self.server.daemon_threads = True
        self.thread = threading.Thread(target=self.server.serve_forever, kwargs={"poll_interval": 0.05})
        self.thread.start()
        return f"http://127.0.0.1:{self.server.server_address[1]}"

    def __exit__(self, *exc: object) -> None:
        self.server.shutdown()
        self.server.server_close()
        self.thread.join(timeout=10)


def http_client(url: str, **kwargs) -> HttpTarget:
    settings = {"max_retries": 1, "backoff": 0.0, "seed": 0, "sleep": lambda _: None, **kwargs}
    return HttpTarget(url=url, **settings)


IMAGE = sample_images()[0]


@pytest.fixture(scope="module")
def service():
    misbehaving = MisbehavingService()
    with misbehaving as base:
        yield base, misbehaving


def test_an_answer_that_trickles_in_ends_at_the_deadline_and_is_retried(service) -> None:
    base, _ = service
    target = http_client(f"{base}/trickle", read_timeout=5.0, answer_timeout=0.6)
    started = time.perf_counter()
    with pytest.raises(
        ServiceUnavailableError, match=r"longer than target.answer_timeout=0.6 s .*bytes of it"
    ):
        target.query([IMAGE])
    assert time.perf_counter() - started < 2 * 0.6 + 1.0  # two attempts, each cut at the deadline
    assert target.counters()["retries"] == 1 and target.counters()["failed"] == 1


@pytest.mark.parametrize(
    ("path", "match"),
    [("endless", r"grew past target.max_answer_mb=1 "), ("huge", r"declares 10,737,418,240 bytes, over")],
)
def test_an_answer_past_the_size_cap_fails_and_is_retried(service, path, match) -> None:
    base, _ = service
    target = http_client(f"{base}/{path}", max_answer_mb=1)
    with pytest.raises(ServiceUnavailableError, match=match):
        target.query([IMAGE])
    assert target.counters()["retries"] == 1


def test_the_limits_are_settings_with_defaults_and_checked() -> None:
    from targets import load

    target = load("http")
    assert isinstance(target, HttpTarget)
    assert target.answer_timeout == 300.0 and target.max_answer_bytes == 256 << 20
    for key in ("answer_timeout", "max_answer_mb"):
        with pytest.raises(ValueError, match=key):
            HttpTarget(url="http://127.0.0.1:1/x", **{key: 0})


def test_a_run_skips_an_image_whose_answer_never_ends_with_the_reason(service, tmp_path) -> None:
    base, _ = service
    target = http_client(f"{base}/trickle", answer_timeout=0.3, max_retries=0)
    summary, _ = quiet_run(tmp_path, "dataset.names=[chelsea]", target=target, name="http")
    assert not summary.records and "answer_timeout=0.3" in summary.skipped[0]["error"]


def test_a_redirect_that_would_drop_the_image_is_refused_saying_where_the_service_moved(service) -> None:
    base, misbehaving = service
    target = http_client(f"{base}/moved")
    with pytest.raises(RequestRejectedError) as info:
        target.query([IMAGE])
    message = str(info.value)
    assert "HTTP 301 Moved Permanently" in message and f"set target.url={base}/ok/v2/saliency" in message
    assert "aspect_ratios" not in message.split("to ", 1)[1]  # the address to use, not ours with our query
    assert target.counters()["requests"] == 1 and target.retries == 0
    assert ("GET", "/ok/v2/saliency") not in [(m, p.split("?")[0]) for m, p in misbehaving.seen]


def test_a_redirect_that_keeps_the_image_is_followed_and_said_once(service) -> None:
    base, misbehaving = service
    target = http_client(f"{base}/kept")
    with pytest.warns(
        UserWarning, match=rf"redirected \(HTTP 307 .*\) to {base}/ok/v2/saliency.*target.url="
    ):
        first = target.query([IMAGE])
    with warnings_as_errors():  # said once: the second query follows quietly
        second = target.query([IMAGE])
    assert first == second and target.counters()["answered"] == 2
    followed = [p for m, p in misbehaving.seen if m == "POST" and p.startswith("/ok/v2/saliency")]
    assert len(followed) >= 2 and all("aspect_ratios=" in p for p in followed)  # the query kept


@pytest.mark.filterwarnings("ignore:POST .* is redirected")  # the loop's first hop is followed
@pytest.mark.parametrize(("path", "match"), [("away", "another host"), ("loop", "more than 5 redirects")])
def test_a_redirect_to_another_host_or_a_loop_is_refused(service, path, match) -> None:
    base, _ = service
    with pytest.raises(RequestRejectedError, match=match):
        http_client(f"{base}/{path}").query([IMAGE])


class warnings_as_errors:
    def __enter__(self) -> None:
        import warnings

        self.context = warnings.catch_warnings()
        self.context.__enter__()
        warnings.simplefilter("error")

    def __exit__(self, *exc: object) -> None:
        self.context.__exit__(*exc)


# --- Kind 6: the Python API's resume; and its target.* settings -------------------------------


@pytest.fixture(scope="module")
def chelsea() -> np.ndarray:
    from skimage.data import chelsea

    return chelsea()


@pytest.mark.parametrize(
    ("changed", "named"),
    [
        ({"settings": ["early_stop=false", "search=patches"]}, "search.space.angle.high: - there"),
        (
            {"settings": ["early_stop=false", "search=blobs", "search.n_patches=5"]},
            "search.n_patches: 4 there, 5 now",
        ),
        ({"budget": 4}, "budget: 3 there, 4 now"),
        ({"seed": 7}, "seed: 0 there, 7 now"),
        ({"settings": ["early_stop=true"]}, "early_stop: false there, true now"),
        ({"settings": ["early_stop=false", "aspect_ratios=[0.56,1.0,2.0]"]}, "aspect_ratios"),
    ],
)
def test_the_api_refuses_to_resume_a_study_made_with_other_settings(
    chelsea, tmp_path, changed, named
) -> None:
    import blackbox
    from blackbox.settings.checks import ConfigError

    journal = tmp_path / "trials.journal"
    first = {
        "budget": 3,
        "working_width": 160,
        "storage": journal,
        "method": "tpe",
        "settings": ["early_stop=false"],
    }
    done = blackbox.attack(chelsea, **first)
    with pytest.raises(ConfigError, match=rf"made with other settings \(.*{named}.*another storage="):
        blackbox.attack(chelsea, **{**first, **changed})
    again = blackbox.attack(chelsea, **first, progress=False)  # the same settings still resume it
    assert again.queries == done.queries == 3 and np.array_equal(again.adversarial, done.adversarial)
    # the batch size is not a result-deciding setting, as for run folders
    assert (
        blackbox.attack(chelsea, **{**first, "settings": ["early_stop=false", "batch_size=2"]}).queries == 3
    )


def test_the_api_honours_target_settings(chelsea, service) -> None:
    import blackbox

    base, misbehaving = service
    before = len(misbehaving.seen)
    outcome = blackbox.attack(
        chelsea,
        target="http",
        budget=2,
        working_width=160,
        settings=[f"target.url={base}/ok/api", "target.expect=[crops]", "target.max_retries=0"],
    )
    assert outcome.queries == 2 and outcome.adversarial_output.log_density is None  # crops only, as set
    assert [p.split("?")[0] for _, p in misbehaving.seen[before:]] == ["/ok/api"] * 3  # clean + 2


# --- Kind 5: storage this Optuna cannot read ---------------------------------------------------

ONE_IMAGE = ("dataset.names=[chelsea]", "budget=3")


def _insert_line(path: Path, number: int, line: str) -> None:
    lines = path.read_text().splitlines(keepends=True)
    lines.insert(number - 1, line + "\n")
    path.write_text("".join(lines))


@pytest.mark.parametrize(
    ("record", "match"),
    [
        (
            '{"op_code": 42, "worker_id": "w"}',
            r"line 4 holds an operation this Optuna \(.*\) does not know \(op_code 42\)",
        ),
        ('{"op_code": 4, "worker_id": "w"}', r"line 4 is JSON but not an Optuna journal record .*KeyError"),
        ("[1, 2]", r"line 4 is JSON but not an Optuna journal record .*TypeError"),
    ],
    ids=["unknown operation", "missing field", "not an object"],
)
def test_a_journal_record_optuna_cannot_apply_is_named_with_its_line(tmp_path, record, match) -> None:
    from blackbox.experiment.jsonl import JsonlError
    from blackbox.settings.dashboard import main as dashboard_main

    quiet_run(tmp_path, *ONE_IMAGE, "dataset.names=[chelsea,coffee]")
    _insert_line(tmp_path / "optuna.journal", 4, record)
    with pytest.raises(JsonlError, match=rf"optuna.journal, {match}.*mv .*optuna.journal "):
        quiet_run(tmp_path, *ONE_IMAGE, "dataset.names=[chelsea,coffee]")
    with contextlib.redirect_stderr(io.StringIO()) as err:
        assert dashboard_main([f"run={tmp_path}", "port=0"]) == 2  # the dashboard says the same
    assert "line 4" in err.getvalue()


def _schema_from(path: Path, revision: str, version: str) -> None:
    """Make an Optuna SQLite file look as if Optuna ``version`` (schema ``revision``) made it."""
    import sqlite3

    with contextlib.closing(sqlite3.connect(path)) as database:
        database.execute("UPDATE alembic_version SET version_num = ?", (revision,))
        database.execute("UPDATE version_info SET library_version = ?", (version,))
        database.commit()


@pytest.mark.parametrize(
    ("revision", "version", "match"),
    [
        (
            "v3.0.0.d",
            "3.0.0",
            r"made by Optuna 3.0.0, whose schema this Optuna \(.*\) reads only once upgraded.*"
            r"optuna storage upgrade --storage sqlite:///",
        ),
        (
            "v9.9.9.a",
            "9.9.9",
            r"made by Optuna 9.9.9, newer than this Optuna \(.*\).*pip install 'optuna>=9.9.9'",
        ),
    ],
    ids=["older", "newer"],
)
def test_an_sqlite_schema_of_another_optuna_names_both_versions(tmp_path, revision, version, match) -> None:
    from blackbox.experiment.storage import StorageVersionError

    quiet_run(tmp_path, *ONE_IMAGE, "storage=sqlite")
    _schema_from(tmp_path / "optuna.sqlite3", revision, version)
    with pytest.raises(StorageVersionError, match=rf"optuna.sqlite3 was {match}"):
        quiet_run(tmp_path, *ONE_IMAGE, "storage=sqlite")


def test_an_sqlite_file_that_is_no_database_is_named_and_reading_makes_no_file(tmp_path) -> None:
    from blackbox.experiment.storage import StorageVersionError
    from blackbox.experiment.study import open_for_reading
    from blackbox.settings.build import storage_settings
    from blackbox.settings.preflight import compose_overrides

    quiet_run(tmp_path, *ONE_IMAGE, "storage=sqlite")
    (tmp_path / "optuna.sqlite3").write_bytes(b"not a database, whatever its name says\n" * 100)
    with pytest.raises(StorageVersionError, match=r"optuna.sqlite3 is not an SQLite database .*mv "):
        quiet_run(tmp_path, *ONE_IMAGE, "storage=sqlite")
    (tmp_path / "optuna.sqlite3").unlink()
    with pytest.raises(FileNotFoundError, match=r"optuna\.sqlite3 is missing"):
        open_for_reading(tmp_path, storage_settings(compose_overrides(["storage=sqlite"])))
    assert not (tmp_path / "optuna.sqlite3").exists()


@pytest.mark.parametrize("storage", ["journal", "sqlite"])
def test_the_cli_exits_2_without_a_traceback_on_storage_of_another_optuna(tmp_path, storage) -> None:
    run_dir = tmp_path / "run"
    assert cli(run_dir, *ONE_IMAGE, f"storage={storage}").returncode == 0
    if storage == "journal":
        _insert_line(run_dir / "optuna.journal", 2, '{"op_code": 99, "worker_id": "w"}')
    else:
        _schema_from(run_dir / "optuna.sqlite3", "v9.9.9.a", "9.9.9")
    done = cli(run_dir, *ONE_IMAGE, f"storage={storage}", "dataset.names=[chelsea,coffee]")
    assert done.returncode == 2 and "Traceback" not in done.stderr
    assert ("line 2 holds an operation" if storage == "journal" else "made by Optuna 9.9.9") in done.stderr


def cli(run_dir: Path, *overrides: str, **kwargs) -> subprocess.CompletedProcess:
    """``python -m blackbox`` as a user runs it, small and quiet."""
    from tests.conftest import REPO

    return subprocess.run(
        [sys.executable, "-m", "blackbox", "attack=blackbox", *SMALL, *overrides, f"hydra.run.dir={run_dir}"],
        cwd=REPO,
        env={**os.environ, "OMP_NUM_THREADS": "1"},
        capture_output=True,
        text=True,
        timeout=300,
        **kwargs,
    )


# --- Kind 7: a sweep's table -----------------------------------------------------------------


def test_the_sweep_table_has_a_row_per_job_numbered_by_its_folder_with_exit_code_and_skips(tmp_path) -> None:
    from blackbox.experiment.jsonl import append_record
    from blackbox.experiment.summary import sweep_table
    from blackbox.settings.sweep_table import JOBS, sweep_jobs

    def job(number: int, code: int, image: str) -> None:
        append_record(
            tmp_path / JOBS, {"job": number, "folder": str(number), "overrides": [image], "exit_code": code}
        )

    quiet_run(tmp_path / "0", "dataset.names=[chelsea]", "budget=3")
    job(0, 0, "image=a.png")
    (tmp_path / "1").mkdir()  # every input refused: no results, its skip in errors.jsonl
    append_record(tmp_path / "1" / "errors.jsonl", {"image": "b", "source": "b.png", "error": "not an image"})
    job(1, 4, "image=b.png")
    job(2, 2, "image=missing.png")  # a bad setting: its folder was removed
    quiet_run(tmp_path / "3", "dataset.names=[coffee]", "budget=3")
    job(3, 1, "image=c.png")
    job(3, 0, "image=c.png")  # the same job run again: its latest record counts
    rows = sweep_table(sweep_jobs(tmp_path)).splitlines()[2:]
    cells = [[cell.strip() for cell in row.strip("|").split("|")] for row in rows]
    assert [(c[0], c[1], c[2], c[3], c[-1]) for c in cells] == [
        ("0", "image=a.png", "0", "1", "0"),
        ("1", "image=b.png", "4", "0", "1"),
        ("2", "image=missing.png", "2", "0", "-"),
        ("3", "image=c.png", "0", "1", "0"),
    ]


def test_a_sweep_over_images_one_refused_shows_every_job(tmp_path, photo) -> None:
    from tests.conftest import REPO

    for name in ("a", "c"):
        Image.fromarray(photo).save(tmp_path / f"{name}.png")
    (tmp_path / "b.png").write_text("not an image\n" * 10)
    images = ",".join(str(tmp_path / f"{name}.png") for name in "abc")
    done = subprocess.run(
        [
            sys.executable,
            "-m",
            "blackbox",
            "-m",
            *SMALL,
            "budget=3",
            f"image={images}",
            f"hydra.sweep.dir={tmp_path / 's'}",
        ],
        cwd=REPO,
        env={**os.environ, "OMP_NUM_THREADS": "1"},
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert done.returncode == 4, done.stderr  # the worst of the jobs' codes: nothing attacked in one
    table = done.stdout.split("all 3 jobs of the sweep")[1]
    rows = [
        [c.strip() for c in row.strip("|").split("|")] for row in table.splitlines() if row.startswith("| ")
    ]
    assert [(r[0], r[1].rsplit("/", 1)[1], r[2], r[-1]) for r in rows[1:]] == [
        ("0", "a.png", "0", "0"),
        ("1", "b.png", "4", "1"),
        ("2", "c.png", "0", "0"),
    ]


# --- Kinds 8 and 9: run folders the system refuses, and a refused run leaves nothing ------------


def snapshot(folder: Path) -> dict[str, tuple[bytes, int]]:
    """Every file under ``folder``: its bytes and modification time (ns)."""
    return {
        str(path.relative_to(folder)): (path.read_bytes(), path.stat().st_mtime_ns)
        for path in sorted(folder.rglob("*"))
        if path.is_file()
    }


@contextlib.contextmanager
def read_only(folder: Path):
    """``folder`` made read-only for this process: by its mode, or, for root (whom modes do not
    stop), by the immutable attribute. Skips the test where neither holds."""
    if os.geteuid() != 0:
        folder.chmod(0o555)
        undo = [lambda: folder.chmod(0o755)]
    else:
        made = subprocess.run(["chattr", "+i", str(folder)], capture_output=True)
        if made.returncode != 0:
            pytest.skip("running as root where chattr +i is refused: no way to make a read-only folder")
        undo = [lambda: subprocess.run(["chattr", "-i", str(folder)], check=True)]
    try:
        try:
            (folder / ".probe").touch()
        except OSError:
            pass
        else:
            (folder / ".probe").unlink()
            pytest.skip("this file system lets the test write in a read-only folder")
        yield
    finally:
        undo[0]()


def test_a_read_only_run_folder_is_refused_before_any_work_and_resumes_after(tmp_path) -> None:
    run_dir = tmp_path / "run"
    assert cli(run_dir, *ONE_IMAGE).returncode == 0
    before = snapshot(run_dir)
    two = (*ONE_IMAGE, "dataset.names=[chelsea,coffee]")
    with read_only(run_dir):
        done = cli(run_dir, *two)
        new = cli(run_dir / "new", *ONE_IMAGE)  # a new folder under the read-only one
    assert done.returncode == 2 and "Traceback" not in done.stderr
    assert f"write in {run_dir} (" in done.stderr and "re-run the same command to resume" in done.stderr
    assert new.returncode == 2 and f"{run_dir / 'new'}" in new.stderr and "Traceback" not in new.stderr
    assert snapshot(run_dir) == before and not (run_dir / "new").exists()
    resumed = cli(run_dir, *two)  # the cause gone, the same command resumes
    assert resumed.returncode == 0, resumed.stderr
    images = [json.loads(line)["image"] for line in (run_dir / "results.jsonl").read_text().splitlines()]
    assert images == ["chelsea", "coffee"]


def test_a_disk_that_fills_up_mid_run_stops_with_what_to_do_and_loses_nothing(tmp_path) -> None:
    from blackbox.experiment.folder_access import RunFolderError
    from targets.classic import ClassicSaliency
    from tests.test_patch_search import CountingTarget

    if not Path("/dev/full").exists():
        pytest.skip("no /dev/full to stand for a full disk")
    two = (*ONE_IMAGE, "dataset.names=[chelsea,coffee]", "early_stop=false")
    (tmp_path / "side_by_side").mkdir()
    (tmp_path / "side_by_side" / "chelsea.png").symlink_to("/dev/full")  # writing there: ENOSPC
    with pytest.raises(
        RunFolderError, match=rf"no space left on the device of {tmp_path} .*free space and re-run"
    ):
        quiet_run(tmp_path, *two)
    (tmp_path / "side_by_side" / "chelsea.png").unlink()  # space freed
    target = CountingTarget(ClassicSaliency())
    summary, _ = quiet_run(tmp_path, *two, target=target)
    assert [r["image"] for r in summary.records] == ["chelsea", "coffee"]
    assert all(r["queries"] == 3 for r in summary.records)
    # chelsea's 3 queries were kept: this session asked its clean image (and its best trial) only
    assert target.seen <= (1 + 1) + (1 + 3)


def test_a_path_through_a_file_is_refused_by_name(tmp_path) -> None:
    from blackbox.experiment.folder_access import RunFolderError, check_writable

    (tmp_path / "notes.txt").write_text("x")
    with pytest.raises(RunFolderError, match=r"notes.txt is a file, not a folder"):
        check_writable(tmp_path / "notes.txt" / "run")


def test_a_refused_rerun_changes_nothing_in_a_finished_folder_and_the_dashboard_reads_its_record(
    tmp_path,
) -> None:
    from filelock import FileLock

    from blackbox.experiment.run_folder import RUN_LOCK
    from blackbox.settings.build import stored_storage

    run_dir = tmp_path / "run"
    assert cli(run_dir, *ONE_IMAGE).returncode == 0
    assert (run_dir / ".hydra" / "config.yaml").is_file() and (
        run_dir / ".hydra" / "overrides.yaml"
    ).is_file()
    before = snapshot(run_dir)
    other = cli(run_dir, *ONE_IMAGE, "budget=4", "storage=sqlite")
    assert (
        other.returncode == 2 and "other settings (budget: 3 there, 4 now, storage: 'journal'" in other.stderr
    )
    assert snapshot(run_dir) == before  # not even .hydra/ was rewritten
    with FileLock(str(run_dir / RUN_LOCK)):
        held = snapshot(run_dir)
        busy = cli(run_dir, *ONE_IMAGE)
        assert busy.returncode == 2 and "another blackbox process is running in" in busy.stderr
        assert snapshot(run_dir) == held
    storage = stored_storage(run_dir)
    assert storage is not None and storage.kind == "journal" and not (run_dir / "optuna.sqlite3").exists()


def test_a_refused_sweep_job_changes_nothing_in_its_finished_folder(tmp_path) -> None:
    from tests.conftest import REPO

    sweep_dir = f"hydra.sweep.dir={tmp_path}"

    def sweep(*overrides: str) -> subprocess.CompletedProcess:
        return subprocess.run(
            [sys.executable, "-m", "blackbox", "-m", *SMALL, *ONE_IMAGE, "eps=20,10", *overrides, sweep_dir],
            cwd=REPO,
            env={**os.environ, "OMP_NUM_THREADS": "1"},
            capture_output=True,
            text=True,
            timeout=300,
        )

    assert sweep().returncode == 0
    before = snapshot(tmp_path / "0")
    refused = sweep("budget=4")
    assert refused.returncode == 2 and "other settings (budget: 3 there, 4 now)" in refused.stderr
    assert snapshot(tmp_path / "0") == before


def test_a_run_writes_its_record_only_once_the_folder_accepts_it(tmp_path) -> None:
    from omegaconf import OmegaConf

    from blackbox.experiment.run_folder import record_settings, stored_config
    from blackbox.settings.checks import ConfigError
    from blackbox.settings.commands import run
    from blackbox.settings.preflight import compose_overrides

    recorded: list[str] = []

    def record(cfg) -> object:
        return lambda config: (
            recorded.append("written"),
            record_settings(tmp_path, config, overrides=["budget=3"]),
        )

    cfg = compose_overrides([*SMALL, *ONE_IMAGE])
    with contextlib.redirect_stdout(io.StringIO()), contextlib.redirect_stderr(io.StringIO()):
        run(cfg, tmp_path, target_name="classic", record=record(cfg))
        assert recorded == ["written"] and stored_config(tmp_path).budget == 3
        assert OmegaConf.load(tmp_path / ".hydra" / "overrides.yaml") == ["budget=3"]
        other = compose_overrides([*SMALL, *ONE_IMAGE, "budget=4"])
        with pytest.raises(ConfigError, match="other settings"):
            run(other, tmp_path, target_name="classic", record=record(other))
    assert recorded == ["written"] and stored_config(tmp_path).budget == 3


def test_a_folder_made_before_the_storage_kind_was_recorded_resumes_with_any(tmp_path) -> None:
    from blackbox.experiment.run_folder import check_resume_settings
    from blackbox.settings.checks import ConfigError

    (tmp_path / "resume.json").write_text(json.dumps({"budget": 3, "success": "point"}))
    check_resume_settings(tmp_path, {"budget": 3, "success": "point", "storage": "sqlite"})  # unknown: kept
    (tmp_path / "resume.json").write_text(json.dumps({"budget": 3, "success": "point", "storage": "journal"}))
    with pytest.raises(ConfigError, match="storage: 'journal' there, 'sqlite' now"):
        check_resume_settings(tmp_path, {"budget": 3, "success": "point", "storage": "sqlite"})
