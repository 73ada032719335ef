"""The run's bookkeeping: which images are done, where trials and artifacts go (:class:`Experiment`),
and the one-process kind (:class:`LocalExperiment`).

:class:`LocalExperiment` (``storage=journal|sqlite|memory|url``): one process, results appended to
the run folder's ``results.jsonl`` as each image ends, images taken in dataset order, artifacts in
``<run>/artifacts``. :class:`~blackbox.experiment.workers.PostgresExperiment` (``storage=postgres``)
builds on the same base; :mod:`blackbox.experiment.study` opens either.
"""

from __future__ import annotations

import abc
import sys
from collections.abc import Iterator, Sequence
from pathlib import Path

import optuna

from blackbox.core.datasets import ImageSource, iterate
from blackbox.core.images import ImageLoadError, LoadedImage
from blackbox.experiment.artifacts import TrialArtifacts, artifact_store
from blackbox.experiment.jsonl import append_record, read_records

Scheduled = tuple[ImageSource, LoadedImage | ImageLoadError | None]


class Experiment(abc.ABC):
    """The run's storage, artifact folder, and the bookkeeping of which images are done."""

    storage: optuna.storages.BaseStorage | str | None
    artifact_dir: Path | None

    @abc.abstractmethod
    def is_done(self, image_id: str) -> bool:
        """Whether the image already has a result (from an earlier session or another worker)."""

    @abc.abstractmethod
    def schedule(self, sources: Sequence[ImageSource], working_width: int | None) -> Iterator[Scheduled]:
        """The images this process handles, loaded (``None`` for an image that is already done)."""

    @abc.abstractmethod
    def record(self, record: dict) -> None:
        """Keep an image's result (``results.jsonl``'s line)."""

    def close(self) -> None:
        """End of the run: the run folder's ``results.jsonl`` holds every result."""
        return None

    def trial_callbacks(self, mode: str) -> list[TrialArtifacts]:
        """Per-trial attributes and artifacts; no images where the storage keeps no trials."""
        if self.artifact_dir is None:
            if mode != "none":
                print(
                    f"note: artifacts={mode} ignored: storage=memory keeps no trials, so there is nothing "
                    "for optuna-dashboard to show; use storage=journal to inspect trials",
                    file=sys.stderr,
                )
            return [TrialArtifacts(store=None, mode="none")]
        store = artifact_store(self.artifact_dir) if mode != "none" else None
        return [TrialArtifacts(store=store, mode=mode)]


class LocalExperiment(Experiment):
    """One process; ``results.jsonl`` in the run folder is the record of what is done."""

    def __init__(self, *, storage, run_dir: Path) -> None:
        self.storage = storage
        self.run_dir = run_dir
        self.results_path = run_dir / "results.jsonl"
        self.artifact_dir = None if storage is None else run_dir / "artifacts"
        self._done = {record["image"] for record in read_records(self.results_path)}

    def is_done(self, image_id: str) -> bool:
        return image_id in self._done

    def schedule(self, sources: Sequence[ImageSource], working_width: int | None) -> Iterator[Scheduled]:
        for source in sources:
            if source.image_id in self._done:
                yield source, None
            else:
                yield from iterate([source], working_width)

    def record(self, record: dict) -> None:
        append_record(self.results_path, record)
        self._done.add(record["image"])
