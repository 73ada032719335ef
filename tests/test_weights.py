"""Model-file resolution (``targets.weights``): where files are found, one error for all, downloads."""

from __future__ import annotations

import hashlib
from pathlib import Path

import pytest

from targets import weights
from targets.weights import FileRequest, MissingModelFileError, ModelFile, resolve_all

WITH_URL = ModelFile("big.pth", url="https://example.org/big.pth")
WITHOUT_URL = ModelFile("head.pth", how_to_get="train one first.")


@pytest.fixture
def places(tmp_path, monkeypatch) -> dict[str, Path]:
    models, cache = tmp_path / "models", tmp_path / "cache"
    monkeypatch.setenv("BLACKBOX_MODELS", str(models))
    monkeypatch.setenv("XDG_CACHE_HOME", str(cache))
    monkeypatch.setenv("BLACKBOX_OFFLINE", "1")
    models.mkdir()
    (cache / "blackbox" / "models").mkdir(parents=True)
    return {"models": models, "cache": cache / "blackbox" / "models", "tmp": tmp_path}


@pytest.fixture
def downloads(monkeypatch) -> list[str]:
    """Record downloads instead of making them; downloaded files land in the cache."""
    made: list[str] = []

    def fake_download(model: ModelFile) -> Path:
        made.append(model.filename)
        path = weights.cache_dir() / model.filename
        path.write_bytes(b"downloaded")
        return path

    monkeypatch.setattr(weights, "_download", fake_download)
    monkeypatch.delenv("BLACKBOX_OFFLINE")
    return made


def test_found_in_order_explicit_then_models_folder_then_cache(places) -> None:
    (places["cache"] / "big.pth").write_bytes(b"c")
    assert resolve_all([FileRequest(WITH_URL)]) == [places["cache"] / "big.pth"]
    (places["models"] / "big.pth").write_bytes(b"m")
    assert resolve_all([FileRequest(WITH_URL)]) == [places["models"] / "big.pth"]
    (places["tmp"] / "mine.pth").write_bytes(b"e")
    assert resolve_all([FileRequest(WITH_URL, places["tmp"] / "mine.pth")]) == [places["tmp"] / "mine.pth"]


def test_all_missing_files_in_one_error(places) -> None:
    requests = [
        FileRequest(WITHOUT_URL, setting="target.weights"),
        FileRequest(WITH_URL, setting="target.big"),
    ]
    with pytest.raises(MissingModelFileError) as raised:
        resolve_all(requests)
    lines = str(raised.value).splitlines()
    assert lines[0].startswith("2 model file(s) missing. Downloads are off")
    assert str(places["models"]) in lines[0] and str(places["cache"]) in lines[0]
    assert "head.pth: not found; no public download; or pass its path as target.weights=PATH" in lines[1]
    assert "train one first." in lines[2]
    assert (
        "big.pth: not found; public URL https://example.org/big.pth; or pass its path as target.big"
        in lines[3]
    )


def test_a_wrong_explicit_path_is_reported_as_such(places) -> None:
    with pytest.raises(MissingModelFileError, match="no file at the given path"):
        resolve_all([FileRequest(WITH_URL, places["tmp"] / "typo.pth")])


def test_nothing_is_downloaded_while_a_file_without_url_is_missing(places, downloads) -> None:
    with pytest.raises(MissingModelFileError, match=r"head\.pth") as raised:
        resolve_all([FileRequest(WITHOUT_URL), FileRequest(WITH_URL)])
    assert downloads == [] and "big.pth" in str(raised.value)


def test_missing_files_with_urls_are_downloaded(places, downloads) -> None:
    (places["models"] / "head.pth").write_bytes(b"h")
    paths = resolve_all([FileRequest(WITHOUT_URL), FileRequest(WITH_URL)])
    assert downloads == ["big.pth"]
    assert paths == [places["models"] / "head.pth", places["cache"] / "big.pth"]


@pytest.fixture
def served(tmp_path):
    """A file server on loopback (the download's real path, through pooch and requests)."""
    import functools
    import http.server
    import threading

    root = tmp_path / "served"
    root.mkdir()
    handler = functools.partial(http.server.SimpleHTTPRequestHandler, directory=str(root))
    server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), handler)
    handler.log_message = lambda *a, **k: None  # type: ignore[attr-defined]
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    yield root, f"http://127.0.0.1:{server.server_address[1]}"
    server.shutdown()
    server.server_close()


def test_download_keeps_a_file_only_when_its_sha256_matches(places, served) -> None:
    root, url = served
    payload = b"weights" * 1000
    (root / "w.pth").write_bytes(payload)
    digest = hashlib.sha256(payload).hexdigest()
    good = ModelFile("w-good.pth", url=f"{url}/w.pth", sha256=digest)
    assert weights._download(good).read_bytes() == payload
    prefix = ModelFile("w-prefix.pth", url=f"{url}/w.pth", sha256=digest[:8])  # torchvision's naming
    assert weights._download(prefix).read_bytes() == payload
    for bad in (
        ModelFile("w-bad.pth", url=f"{url}/w.pth", sha256="0" * 64),
        ModelFile("w-bad-prefix.pth", url=f"{url}/w.pth", sha256="00000000"),
    ):
        with pytest.raises(OSError, match="sha256"):
            weights._download(bad)
    assert sorted(p.name for p in places["cache"].iterdir()) == ["w-good.pth", "w-prefix.pth"]


def test_models_default_to_shared_models_beside_the_repo_outside_make(places, monkeypatch) -> None:
    shared = places["tmp"] / "shared" / "models"
    shared.mkdir(parents=True)
    (shared / "big.pth").write_bytes(b"weights")
    monkeypatch.setattr(weights, "SHARED_MODELS", shared)
    monkeypatch.delenv("BLACKBOX_MODELS")  # a shell where make did not set it
    assert weights.resolve(WITH_URL) == shared / "big.pth"
    monkeypatch.setattr(weights, "SHARED_MODELS", places["tmp"] / "nowhere")
    assert shared not in [p.parent for p in weights.candidates(WITH_URL)]


def test_the_default_is_the_repos_own_sibling_not_the_working_directory() -> None:
    repo = Path(__file__).resolve().parents[1]
    assert repo.parent / "shared" / "models" == weights.SHARED_MODELS


def test_models_env_expands_the_home_folder(places, monkeypatch) -> None:
    monkeypatch.setenv("HOME", str(places["tmp"]))
    monkeypatch.setenv("BLACKBOX_MODELS", "~/models")
    (places["models"] / "big.pth").write_bytes(b"weights")
    assert weights.resolve(WITH_URL) == places["models"] / "big.pth"
