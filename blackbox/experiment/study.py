"""Where a run keeps its trials, results and artifacts, and which images this process attacks.

:class:`LocalExperiment` (``storage=journal|sqlite|memory|url``): one process, results appended to
the run folder's ``results.jsonl`` as each image ends, images taken in dataset order, artifacts in
``<run>/artifacts``. :class:`~blackbox.experiment.workers.PostgresExperiment`
(``storage=postgres``): any number of worker processes share one experiment in PostgreSQL; each
image is claimed by one worker at a time and results are kept in the database.
"""

from __future__ import annotations

import abc
import sys
from collections.abc import Iterator, Sequence
from pathlib import Path

import optuna
from omegaconf import DictConfig, OmegaConf

from blackbox.core.datasets import ImageSource, iterate
from blackbox.core.images import ImageLoadError, LoadedImage
from blackbox.experiment.artifacts import TrialArtifacts, artifact_store
from blackbox.experiment.jsonl import append_record, read_records
from blackbox.experiment.storage import make_storage

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


def open_experiment(cfg: DictConfig, run_dir: Path) -> Experiment:
    kind = str(cfg.storage.kind)
    if kind == "postgres":
        from blackbox.experiment.workers import PostgresExperiment

        return PostgresExperiment.from_config(cfg, run_dir)
    return LocalExperiment(storage=make_storage(kind, run_dir, url=cfg.storage.get("url")), run_dir=run_dir)


def open_for_reading(run_dir: Path) -> tuple[optuna.storages.BaseStorage | str | None, object | None, str]:
    """A finished or running run's storage, its artifact store (``None`` if it has none), and a description.

    The storage is ``None`` for a ``storage=memory`` run, whose trials were not kept.
    """
    config_path = run_dir / ".hydra" / "config.yaml"
    if not config_path.exists() or "storage" not in run_config(run_dir):  # from Python, or a compare run
        storage = make_storage("journal", run_dir)
        return storage, _store_if_present(run_dir / "artifacts"), "optuna.journal"
    cfg = run_config(run_dir)
    kind = str(cfg.storage.kind)
    if kind == "postgres":
        from blackbox.experiment.workers import PostgresExperiment

        experiment = PostgresExperiment.from_config(cfg, run_dir, reading=True)
        return experiment.storage, _store_if_present(experiment.artifact_dir), experiment.describe()
    if kind == "journal" and not (run_dir / "optuna.journal").exists():
        raise FileNotFoundError(f"{run_dir}/optuna.journal is missing: that run kept no trials")
    storage = make_storage(kind, run_dir, url=cfg.storage.get("url"))
    return storage, _store_if_present(run_dir / "artifacts"), f"storage={kind}"


def _store_if_present(directory: Path | None):
    return artifact_store(directory) if directory is not None and directory.is_dir() else None


def run_config(run_dir: Path) -> DictConfig:
    """The composed config Hydra saved in a run folder."""
    path = run_dir / ".hydra" / "config.yaml"
    if not path.exists():
        raise FileNotFoundError(f"{run_dir} is not a run folder of python -m blackbox: {path} is missing")
    cfg = OmegaConf.load(path)
    assert isinstance(cfg, DictConfig)
    return cfg
