"""Where model files come from: one resolution order for every model in the zoo.

1. an explicit path (``target.weights=PATH``);
2. the models directory named by ``BLACKBOX_MODELS``;
3. the user cache, ``$XDG_CACHE_HOME/blackbox/models`` (``~/.cache/blackbox/models``);
4. a download from the file's pinned public URL into the user cache, checked against its sha256.

Tests and CI never reach step 4: they point ``BLACKBOX_MODELS`` at ``../shared/models`` or pass
files they made. Offline with a file missing, the error lists every place looked and the URL.
"""

from __future__ import annotations

import hashlib
import os
import tempfile
from dataclasses import dataclass
from pathlib import Path

MODELS_ENV = "BLACKBOX_MODELS"
OFFLINE_ENV = "BLACKBOX_OFFLINE"


@dataclass(frozen=True)
class ModelFile:
    """A model file the zoo knows: its file name, public URL and sha256 (``None``: unchecked)."""

    filename: str
    url: str | None = None
    sha256: str | None = None


class MissingModelFileError(FileNotFoundError):
    """A model file was found nowhere and could not be downloaded."""


def cache_dir() -> Path:
    base = os.environ.get("XDG_CACHE_HOME") or str(Path.home() / ".cache")
    return Path(base) / "blackbox" / "models"


def sha256_of(path: Path) -> str:
    digest = hashlib.sha256()
    with path.open("rb") as handle:
        for chunk in iter(lambda: handle.read(1 << 20), b""):
            digest.update(chunk)
    return digest.hexdigest()


def candidates(model: ModelFile) -> list[Path]:
    """The places looked, in order (the explicit path is not among them)."""
    places = []
    if os.environ.get(MODELS_ENV):
        places.append(Path(os.environ[MODELS_ENV]).expanduser() / model.filename)
    places.append(cache_dir() / model.filename)
    return places


def resolve(
    model: ModelFile, explicit: str | os.PathLike[str] | None = None, *, download: bool = True
) -> Path:
    """Find ``model`` (see module doc) and return its path, or raise with what to do."""
    if explicit is not None and str(explicit) != "":
        path = Path(explicit).expanduser()
        if not path.is_file():
            raise MissingModelFileError(f"{model.filename}: no file at the given path {path}")
        return path
    for path in candidates(model):
        if path.is_file():
            return path
    if download and model.url and not os.environ.get(OFFLINE_ENV):
        try:
            return _download(model)
        except OSError as error:
            raise MissingModelFileError(_missing_message(model, f"download failed: {error}")) from error
    raise MissingModelFileError(_missing_message(model, "no download attempted"))


def _missing_message(model: ModelFile, why: str) -> str:
    looked = "\n".join(f"  - {p}" for p in candidates(model))
    unset = "" if os.environ.get(MODELS_ENV) else f" ({MODELS_ENV} is not set)"
    return (
        f"model file {model.filename!r} not found{unset}; looked in:\n{looked}\n"
        f"{why}. Fix it by one of: pass its path (target.weights=PATH), put it in the directory "
        f"named by {MODELS_ENV}, or into {cache_dir()}"
        + (f"; its public URL is {model.url}" if model.url else "")
    )


def _download(model: ModelFile) -> Path:
    import requests  # imported here: only users with internet ever reach this

    destination = cache_dir() / model.filename
    destination.parent.mkdir(parents=True, exist_ok=True)
    assert model.url is not None
    response = requests.get(model.url, timeout=60, stream=True)
    response.raise_for_status()
    # Write to a temporary file first: an interrupted download never leaves a bad file behind.
    with tempfile.NamedTemporaryFile(dir=destination.parent, delete=False) as handle:
        for chunk in response.iter_content(1 << 20):
            handle.write(chunk)
        temporary = Path(handle.name)
    if model.sha256 and sha256_of(temporary) != model.sha256:
        temporary.unlink(missing_ok=True)
        raise OSError(f"{model.url} did not match the pinned sha256 {model.sha256}")
    temporary.replace(destination)
    return destination
