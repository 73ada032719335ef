"""The same seed gives the same trials and byte-identical adversarial images, also across a resume."""

from __future__ import annotations

import contextlib
import io
from pathlib import Path

import optuna
import pytest

from blackbox.experiment.run import EXIT_OK
from blackbox.experiment.storage import make_storage
from blackbox.settings.commands import run
from blackbox.settings.preflight import compose_overrides

IMAGES = ("chelsea",)
SMALL = [
    "attack=blackbox",
    "search=blobs",  # one study per image (search=auto gives a map target two stages)
    "working_width=96",
    "budget=9",
    "batch_size=3",
    "early_stop=false",
    "progress=false",
]


@pytest.fixture(autouse=True)
def no_journal_fsync(monkeypatch) -> None:
    """Durability is not under test here (see test_resume.py); Optuna's fsync per write would be 80%."""
    monkeypatch.setattr(optuna.storages.journal._file.os, "fsync", lambda fd: None)


def attack(run_dir: Path, *overrides: str) -> int:
    cfg = compose_overrides([*SMALL, f"dataset.names=[{','.join(IMAGES)}]", *overrides])
    with contextlib.redirect_stdout(io.StringIO()):
        return run(cfg, run_dir, target_name="classic").exit_code


def trials(run_dir: Path) -> dict[str, list[tuple]]:
    storage = make_storage("journal", run_dir)
    return {
        s.study_name: [
            (t.number, t.state.name, t.params, t.value, t.user_attrs.get("queries"))
            for t in optuna.load_study(study_name=s.study_name, storage=storage).trials
        ]
        for s in optuna.get_all_study_summaries(storage)
    }


def images(run_dir: Path) -> dict[str, bytes]:
    return {p.name: p.read_bytes() for p in sorted((run_dir / "adversarial").glob("*.png"))}


@pytest.mark.parametrize("sampler", ["tpe", "random"])
def test_the_same_seed_gives_the_same_trials_and_images(tmp_path, sampler) -> None:
    assert attack(tmp_path / "a", f"sampler={sampler}") == EXIT_OK
    assert attack(tmp_path / "b", f"sampler={sampler}") == EXIT_OK
    assert trials(tmp_path / "a") == trials(tmp_path / "b")
    assert len(images(tmp_path / "a")) == len(IMAGES)
    assert images(tmp_path / "a") == images(tmp_path / "b")
    # A different seed searches elsewhere (so the comparison above can fail).
    assert attack(tmp_path / "c", f"sampler={sampler}", "seed=1") == EXIT_OK
    assert trials(tmp_path / "c") != trials(tmp_path / "a")


@pytest.mark.parametrize("sampler", ["tpe", "random"])
def test_a_run_stopped_between_batches_resumes_to_the_same_trials(tmp_path, sampler, monkeypatch) -> None:
    # With ask_ahead, batch k+1 is asked before batch k is answered, so no moment lies between two
    # batches; a resumed run then asks its first batch knowing more than the uninterrupted one did.
    settings = [f"sampler={sampler}", "ask_ahead=false"]
    assert attack(tmp_path / "whole", *settings) == EXIT_OK

    # Stop the search after two of its three batches (3 asks each), between batches.
    asks = {"n": 0}
    ask = optuna.Study.ask

    def stopping_ask(self, *args, **kwargs):
        asks["n"] += 1
        if asks["n"] == 2 * 3 + 1:
            raise KeyboardInterrupt
        return ask(self, *args, **kwargs)

    monkeypatch.setattr(optuna.Study, "ask", stopping_ask)
    with pytest.raises(KeyboardInterrupt):
        attack(tmp_path / "resumed", *settings)
    monkeypatch.setattr(optuna.Study, "ask", ask)
    stopped = trials(tmp_path / "resumed")
    assert [len(t) for t in stopped.values()] == [6]

    assert attack(tmp_path / "resumed", *settings) == EXIT_OK
    # Not a trial redrawn or lost: the resumed study is the uninterrupted one, trial for trial.
    assert trials(tmp_path / "resumed") == trials(tmp_path / "whole")
    assert images(tmp_path / "resumed") == images(tmp_path / "whole")
