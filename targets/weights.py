"""Where model files come from: one resolution order for every model in the zoo.

1. an explicit path (``target.weights=PATH``);
2. the models directory named by ``BLACKBOX_MODELS``; unset, ``../shared/models`` beside the
   repository (if it exists), wherever the command is started from (not only under ``make``);
3. the user cache, ``$XDG_CACHE_HOME/blackbox/models`` (``~/.cache/blackbox/models``);
4. a download from the file's pinned public URL into the user cache, checked against its sha256
   (pooch's ``retrieve``: a temporary file, hash-checked, then moved into place).

Tests and CI never reach step 4: they point ``BLACKBOX_MODELS`` at ``../shared/models`` or pass
files they made. Offline with a file missing, the error lists every place looked and the URL.
A model made of several files resolves them together (:func:`resolve_all`): one error then lists
every missing file, its URL (or how to obtain it) and where to put it, before anything is downloaded.
"""

from __future__ import annotations

import hashlib
import os
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

from targets._errors import UserError

MODELS_ENV = "BLACKBOX_MODELS"
OFFLINE_ENV = "BLACKBOX_OFFLINE"


@dataclass(frozen=True)
class ModelFile:
    """A model file the zoo knows: its file name, public URL and sha256 (``None``: unchecked).

    ``sha256`` may be a leading prefix of the digest: torchvision names its files after the first
    hex digits of theirs (``vgg19-dcbb9e9d.pth``) and publishes no more. ``how_to_get`` says what to do
    for a file that has no public URL (or besides downloading it).
    """

    filename: str
    url: str | None = None
    sha256: str | None = None
    how_to_get: str | None = None


@dataclass(frozen=True)
class FileRequest:
    """One file of a model to resolve: the file, an explicit path if the user gave one, and the
    name of the setting that takes that path (so the error can say which to set)."""

    model: ModelFile
    explicit: str | os.PathLike[str] | None = None
    setting: str | None = None

    @property
    def given_path(self) -> Path | None:
        """The explicit path, if one was given (an empty string counts as none)."""
        given = self.explicit
        return Path(given).expanduser() if given is not None and str(given) != "" else None


class MissingModelFileError(UserError, FileNotFoundError):
    """A model file was found nowhere and could not be downloaded."""


class BadModelFileError(UserError, ValueError):
    """A model file was found but does not hold the layout its model needs (the message says why)."""


def cache_dir() -> Path:
    base = os.environ.get("XDG_CACHE_HOME") or str(Path.home() / ".cache")
    return Path(base) / "blackbox" / "models"


def sha256_of(path: Path) -> str:
    digest = hashlib.sha256()
    with path.open("rb") as handle:
        for chunk in iter(lambda: handle.read(1 << 20), b""):
            digest.update(chunk)
    return digest.hexdigest()


# The default models folder: ``../shared/models`` beside the repository this file is part of.
SHARED_MODELS = Path(__file__).resolve().parents[2] / "shared" / "models"


def models_dir() -> Path | None:
    """``BLACKBOX_MODELS`` (``~`` expanded), else ``../shared/models`` beside the repo if it exists."""
    if os.environ.get(MODELS_ENV):
        return Path(os.environ[MODELS_ENV]).expanduser()
    return SHARED_MODELS if SHARED_MODELS.is_dir() else None


def candidates(model: ModelFile) -> list[Path]:
    """The places looked, in order (the explicit path is not among them)."""
    places = []
    if (folder := models_dir()) is not None:
        places.append(folder / model.filename)
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


def locate(request: FileRequest) -> Path | None:
    """The file if it is already here (the explicit path, else the first candidate place); no download."""
    given = request.given_path
    if given is not None:
        return given if given.is_file() else None
    return next((p for p in candidates(request.model) if p.is_file()), None)


def resolve_all(requests: Sequence[FileRequest], *, download: bool = True) -> list[Path]:
    """Resolve several files of one model, in order.

    Files found locally are used. Nothing is downloaded unless every missing file can be (a large
    download before failing on a file that has no URL helps no one), and whatever fails, one error
    lists every missing file with its URL and where to put it.
    """
    found: list[Path | None] = []
    missing: dict[int, str] = {}  # request index -> why it is missing
    for index, request in enumerate(requests):
        path = locate(request)
        if path is None:
            given = request.given_path
            missing[index] = f"no file at the given path {given}" if given else "not found"
        found.append(path)
    downloadable = all(requests[i].model.url and why == "not found" for i, why in missing.items())
    if missing and downloadable and download and not os.environ.get(OFFLINE_ENV):
        for index in list(missing):
            try:
                found[index] = _download(requests[index].model)
                del missing[index]
            except OSError as error:
                missing[index] = f"download failed: {error}"
    if missing:
        raise MissingModelFileError(_missing_many_message([(requests[i], why) for i, why in missing.items()]))
    return [path for path in found if path is not None]


def _missing_many_message(missing: Sequence[tuple[FileRequest, str]]) -> str:
    unset = "" if os.environ.get(MODELS_ENV) else f" ({MODELS_ENV} is not set)"
    places = [str(p.parent) for p in candidates(missing[0][0].model)]
    offline = " Downloads are off (BLACKBOX_OFFLINE is set)." if os.environ.get(OFFLINE_ENV) else ""
    where = ", ".join(places)
    lines = [f"{len(missing)} model file(s) missing.{offline} Put each into one of: {where}{unset}"]
    for request, why in missing:
        model = request.model
        source = f"public URL {model.url}" if model.url else "no public download"
        setting = f"; or pass its path as {request.setting}=PATH" if request.setting else ""
        lines.append(f"  - {model.filename}: {why}; {source}{setting}")
        if model.how_to_get:
            lines.append(f"      {model.how_to_get}")
    return "\n".join(lines)


def _missing_message(model: ModelFile, why: str) -> str:
    looked = "\n".join(f"  - {p}" for p in candidates(model))
    unset = "" if os.environ.get(MODELS_ENV) else f" ({MODELS_ENV} is not set)"
    return (
        f"model file {model.filename!r} not found{unset}; looked in:\n{looked}\n"
        f"{why}. Fix it by one of: pass its path (target.weights=PATH), put it in the directory "
        f"named by {MODELS_ENV}, or into {cache_dir()}"
        + (f"; its public URL is {model.url}" if model.url else "")
        + (f". {model.how_to_get}" if model.how_to_get else "")
    )


def _download(model: ModelFile) -> Path:
    """Fetch ``model`` into the user cache with pooch (a temporary file, checked, then moved: an
    interrupted or wrong download never leaves a file behind); ``OSError`` if its sha256 differs."""
    import pooch  # imported here: only users with internet ever reach this

    assert model.url is not None
    digest = (model.sha256 or "").lower()
    try:
        path = Path(
            pooch.retrieve(
                model.url,
                known_hash=f"sha256:{digest}" if len(digest) == 64 else None,
                fname=model.filename,
                path=cache_dir(),
                progressbar=False,
            )
        )
    except ValueError as error:  # pooch's hash mismatch (the file is already removed)
        raise OSError(f"{model.url} did not match the pinned sha256 {model.sha256}: {error}") from None
    if digest and len(digest) < 64 and not sha256_of(path).startswith(digest):  # a torchvision-style prefix
        path.unlink(missing_ok=True)
        raise OSError(f"{model.url} did not match the pinned sha256 {model.sha256}")
    return path
