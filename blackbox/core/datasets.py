"""Where the images of a run come from: one file, a folder, or the bundled photos."""

from __future__ import annotations

from collections import Counter
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

from blackbox.core.extras import import_pysaliency
from blackbox.core.images import (
    BUNDLED_PHOTOS,
    IMAGE_SUFFIXES,
    ImageLoadError,
    LoadedImage,
    load_bundled,
    load_image,
)


@dataclass(frozen=True)
class ImageSource:
    """One entry of a dataset, not yet read: reading may fail, and the run goes on without it."""

    image_id: str
    location: str
    bundled: bool = False

    def load(self, working_width: int | None) -> LoadedImage:
        if self.bundled:
            return load_bundled(self.location, working_width=working_width)
        return load_image(self.location, working_width=working_width, image_id=self.image_id)


def folder_sources(path: str | Path, *, recursive: bool = True) -> list[ImageSource]:
    """Every file under ``path``, sorted, with ids from their relative paths (stable across runs).

    Nothing is left out unseen: a file whatever its suffix (an ``.avif``, a ``.txt``) is a source, and
    one that cannot be read as an image is skipped with its reason in ``errors.jsonl`` (exit code 3).
    Only hidden files and folders (``.DS_Store``, ``.git/``) are passed over. Ids use ``__`` for ``/``
    so an id is also a safe file name. Raises :class:`ImageLoadError` if the folder is missing or
    holds no file with an image suffix.
    """
    root = Path(path).expanduser()
    if not root.exists():
        raise ImageLoadError(f"dataset folder {root} does not exist")
    if not root.is_dir():
        raise ImageLoadError(f"dataset path {root} is not a folder (use image=PATH for one file)")
    pattern = "**/*" if recursive else "*"
    files = sorted(
        p
        for p in root.glob(pattern)
        if p.is_file() and not any(part.startswith(".") for part in p.relative_to(root).parts)
    )
    if not any(p.suffix.lower() in IMAGE_SUFFIXES for p in files):
        raise ImageLoadError(
            f"no image files ({', '.join(sorted(IMAGE_SUFFIXES))}) found in {root}"
            + ("" if recursive else " (recursive=false)")
        )
    ids = ["__".join(file.relative_to(root).with_suffix("").parts) for file in files]
    # a.png beside a.avif: one id each (with the suffix), so neither is taken for the other as done.
    clashing = {i for i, n in Counter(ids).items() if n > 1}
    return [
        ImageSource(f"{i}{file.suffix}" if i in clashing else i, str(file))
        for i, file in zip(ids, files, strict=True)
    ]


def cat2000_sources(path: str | Path) -> list[ImageSource]:
    """CAT2000 in its published layout: ``trainSet/Stimuli/<Category>/<name>.jpg``.

    ``path`` may be the folder that holds ``trainSet``, ``trainSet`` itself, or its ``Stimuli``.
    The ``Output`` folders some copies carry hold saliency maps, not stimuli, and are left out.
    Ids are ``<Category>__<name>``.
    """
    root = Path(path).expanduser()
    for candidate in (root / "trainSet" / "Stimuli", root / "Stimuli", root):
        if candidate.is_dir() and any(child.is_dir() for child in candidate.iterdir()):
            stimuli = candidate
            break
    else:
        raise ImageLoadError(
            f"{root} is not CAT2000 in its published layout (trainSet/Stimuli/<Category>/*.jpg); "
            "point dataset.path at the folder holding trainSet, or use dataset=folder"
        )
    return [s for s in folder_sources(stimuli) if "Output" not in Path(s.location).relative_to(stimuli).parts]


def pysaliency_cat2000_sources(location: str | Path, *, version: str = "1.1") -> list[ImageSource]:
    """CAT2000 (train) through pysaliency's own loader, from a location it has already prepared.

    ``pysaliency.get_cat2000_train(location=...)`` downloads the whole dataset when its cache folder
    is missing; this loader refuses instead, so nothing is ever downloaded by accident. ``version``
    is pysaliency's (1.1 fixes fixation details; the stimuli are the same).
    """
    if version not in ("1", "1.1"):
        raise ImageLoadError(
            f"dataset.version must be '1' or '1.1' (pysaliency's CAT2000 versions), got {version!r}"
        )
    root = Path(location).expanduser()
    prepared = root / ("CAT2000_train" if version == "1" else "CAT2000_train_v1.1")
    if not (prepared / "stimuli.hdf5").is_file():
        raise ImageLoadError(
            f"no pysaliency CAT2000 cache at {prepared} (stimuli.hdf5 missing). Prepare it once with "
            'internet: python -c "import pysaliency; '
            f"pysaliency.get_cat2000_train(location='{root}', version='{version}')\", "
            "or use dataset=cat2000 with the published layout"
        )
    pysaliency = import_pysaliency("dataset=cat2000_pysaliency")
    stimuli, _ = pysaliency.get_cat2000_train(location=str(root), version=version)
    sources = []
    for filename in stimuli.filenames:
        file = Path(filename)
        sources.append(ImageSource(f"{file.parent.name}__{file.stem}", str(file)))
    return sources


def bundled_sources(names: list[str] | tuple[str, ...] = BUNDLED_PHOTOS) -> list[ImageSource]:
    unknown = [n for n in names if n not in BUNDLED_PHOTOS]
    if unknown:
        raise ImageLoadError(f"unknown bundled photos {unknown}; choose from {', '.join(BUNDLED_PHOTOS)}")
    return [ImageSource(n, n, bundled=True) for n in names]


def sources_from_config(*, image: str | None, dataset: dict) -> list[ImageSource]:
    """``image=PATH`` wins over the dataset group; else the dataset's ``kind`` decides."""
    if image:
        path = Path(image).expanduser()
        if path.is_dir():
            return folder_sources(path)
        if not path.exists():
            # A single named file that is not there is a bad setting, not an input to skip.
            raise ImageLoadError(f"image={image}: no such file or folder")
        return [ImageSource(path.stem, str(path))]
    kind = dataset.get("kind")
    if kind == "bundled":
        return bundled_sources(tuple(dataset.get("names") or BUNDLED_PHOTOS))
    if kind == "folder":
        if not dataset.get("path"):
            raise ImageLoadError("dataset=folder needs dataset.path=DIR")
        return folder_sources(dataset["path"], recursive=bool(dataset.get("recursive", True)))
    if kind in ("cat2000", "cat2000_pysaliency"):
        if not dataset.get("path"):
            raise ImageLoadError(f"dataset={kind} needs dataset.path=DIR")
        if kind == "cat2000":
            return cat2000_sources(dataset["path"])
        return pysaliency_cat2000_sources(dataset["path"], version=str(dataset.get("version", "1.1")))
    raise ImageLoadError(
        f"unknown dataset kind {kind!r}; use dataset=bundled, folder, cat2000 or cat2000_pysaliency"
    )


def iterate(
    sources: list[ImageSource], working_width: int | None
) -> Iterator[tuple[ImageSource, LoadedImage | ImageLoadError]]:
    """Each source with its image, or with the error that stopped it loading."""
    for source in sources:
        try:
            yield source, source.load(working_width)
        except ImageLoadError as error:
            yield source, error
