"""Where the images of a run come from: one file, a folder, or the bundled photos."""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

from blackbox.images import (
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
    """Image files under ``path``, sorted, with ids from their relative paths (stable across runs).

    Files with image suffixes are taken; anything else is ignored. Ids use ``__`` for ``/`` so an id
    is also a safe file name.
    """
    root = Path(path).expanduser()
    if not root.exists():
        raise ImageLoadError(f"dataset folder {root} does not exist")
    if not root.is_dir():
        raise ImageLoadError(f"dataset path {root} is not a folder (use image=PATH for one file)")
    pattern = "**/*" if recursive else "*"
    files = sorted(p for p in root.glob(pattern) if p.is_file() and p.suffix.lower() in IMAGE_SUFFIXES)
    if not files:
        raise ImageLoadError(
            f"no image files ({', '.join(sorted(IMAGE_SUFFIXES))}) found in {root}"
            + ("" if recursive else " (recursive=false)")
        )
    sources = []
    for file in files:
        relative = file.relative_to(root).with_suffix("")
        sources.append(ImageSource("__".join(relative.parts), str(file)))
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
        return [ImageSource(path.stem, str(path))]
    kind = dataset.get("kind")
    if kind == "bundled":
        return bundled_sources(tuple(dataset.get("names") or BUNDLED_PHOTOS))
    if kind == "folder":
        if not dataset.get("path"):
            raise ImageLoadError("dataset=folder needs dataset.path=DIR")
        return folder_sources(dataset["path"], recursive=bool(dataset.get("recursive", True)))
    raise ImageLoadError(f"unknown dataset kind {kind!r}; use dataset=bundled or dataset=folder")


def iterate(
    sources: list[ImageSource], working_width: int | None
) -> Iterator[tuple[ImageSource, LoadedImage | ImageLoadError]]:
    """Each source with its image, or with the error that stopped it loading."""
    for source in sources:
        try:
            yield source, source.load(working_width)
        except ImageLoadError as error:
            yield source, error
