"""Trial artifacts, ``python -m blackbox.dashboard``, and the dashboard in a real browser."""

from __future__ import annotations

import hashlib
import os
import re
import shutil
import subprocess
import sys
import time
import urllib.request
from pathlib import Path

import numpy as np
import optuna
import pytest
from optuna.artifacts import get_all_artifact_meta
from PIL import Image

from blackbox.core.metrics import perturbation_norms
from blackbox.experiment.artifacts import TrialArtifacts, artifact_store
from blackbox.experiment.study import LocalExperiment
from blackbox.search import render_trial
from blackbox.settings.dashboard import DashboardError, latest_run, main, resolve_run
from targets.classic import ClassicSaliency
from tests.browser import headless_chromium, loaded_images
from tests.conftest import REPO
from tests.services import chromium
from tests.test_cli import FAST, blackbox
from tests.test_patch_search import make_search, problem_for

# Where the browser test leaves its screenshot for people and CI to look at.
TEST_ARTIFACTS = REPO / "runs" / "test-artifacts"


def search_with_artifacts(tmp_path: Path, photo: np.ndarray, mode: str, budget: int = 9):
    storage = optuna.storages.JournalStorage(
        optuna.storages.journal.JournalFileBackend(str(tmp_path / "optuna.journal"))
    )
    callback = TrialArtifacts(store=artifact_store(tmp_path / "artifacts"), mode=mode)
    search = make_search(budget, storage=storage)
    search.trial_callbacks = (callback,)
    target = ClassicSaliency()
    problem = problem_for(photo, target, eps=4.0)
    result = search.run(problem, target)
    study = optuna.load_study(study_name=result.extra["study"], storage=storage)
    return study, callback, result, problem


@pytest.mark.parametrize("mode", ["best", "all", "none"])
def test_trials_carry_attributes_and_the_kept_ones_their_images(tmp_path, photo, mode) -> None:
    study, callback, result, problem = search_with_artifacts(tmp_path, photo, mode)
    trials = study.get_trials(states=(optuna.trial.TrialState.COMPLETE,))
    assert len(trials) == 9
    for trial in trials:
        assert {"queries", "success", "l2", "shift_pct_distance"} <= set(trial.user_attrs)
        adversarial = render_trial(problem, trial.user_attrs["perturbation"])
        expected = perturbation_norms(problem.image.pixels, adversarial)["l2"]
        assert trial.user_attrs["l2"] == pytest.approx(expected, rel=1e-12) and 0 < expected <= 4.0 + 1e-9
    with_images = []
    for trial in trials:
        metas = get_all_artifact_meta(trial, storage=study._storage)
        if metas:
            assert sorted(m.filename for m in metas) == [
                f"trial-{trial.number}-adversarial.png",
                f"trial-{trial.number}-overlay.png",
            ]
            with_images.append(trial.number)
    if mode == "all":
        assert with_images == [t.number for t in trials]
    elif mode == "none":
        assert with_images == []
    else:
        # Exactly the trials that beat every earlier one (success first, then score); the best among them.
        running: tuple[bool, float] = (False, -np.inf)
        improving = []
        for trial in sorted(trials, key=lambda t: t.number):
            key = (bool(trial.user_attrs["success"]), float(trial.value))
            if key > running:
                running, improving = key, [*improving, trial.number]
        assert with_images == improving and result.best_trial in with_images
        assert len(with_images) < len(trials)
    assert callback.uploaded == len(with_images)


def test_the_adversarial_artifact_is_the_image_the_target_saw(tmp_path, photo) -> None:
    study, _, result, _ = search_with_artifacts(tmp_path, photo, "best")
    best = study.trials[result.best_trial]
    metas = {m.filename: m for m in get_all_artifact_meta(best, storage=study._storage)}
    stored = tmp_path / "artifacts" / metas[f"trial-{best.number}-adversarial.png"].artifact_id
    np.testing.assert_array_equal(np.asarray(Image.open(stored)), result.adversarial)
    overlay = Image.open(tmp_path / "artifacts" / metas[f"trial-{best.number}-overlay.png"].artifact_id)
    assert overlay.width == photo.shape[1] and overlay.height > photo.shape[0]  # the legend below it


def test_memory_storage_keeps_no_images_and_says_so(tmp_path, capsys) -> None:
    callbacks = LocalExperiment(storage=None, run_dir=tmp_path).trial_callbacks("best")
    assert [c.mode for c in callbacks] == ["none"]
    assert "storage=memory keeps no trials" in capsys.readouterr().err
    LocalExperiment(storage=None, run_dir=tmp_path).trial_callbacks("none")
    assert capsys.readouterr().err == ""


def fake_run(folder: Path, kind: str, *, attacked: bool = True) -> Path:
    (folder / ".hydra").mkdir(parents=True)
    (folder / ".hydra" / "config.yaml").write_text(f"budget: 4\nstorage:\n  kind: {kind}\n")
    if attacked:  # a run that got as far as one result
        (folder / "results.jsonl").write_text('{"image": "x"}\n')
    return folder


def test_the_latest_run_is_opened_by_default(tmp_path) -> None:
    older = fake_run(tmp_path / "runs" / "2024-01-01" / "10-00-00", "journal")
    newer = fake_run(tmp_path / "runs" / "2024-01-02" / "09-00-00", "journal")
    os.utime(older / ".hydra" / "config.yaml", (time.time(), time.time()))
    os.utime(newer / ".hydra" / "config.yaml", (time.time() - 60, time.time() - 60))
    (tmp_path / "runs" / "compare" / "x" / ".hydra").mkdir(parents=True)  # not an attack run
    (tmp_path / "runs" / "compare" / "x" / ".hydra" / "config.yaml").write_text("methods: [tpe]\n")
    assert latest_run(tmp_path / "runs") == older
    assert resolve_run(None, tmp_path / "runs") == older
    assert resolve_run(newer, tmp_path / "runs") == newer


def test_the_latest_run_with_trials_is_picked_not_an_empty_or_compare_one(tmp_path) -> None:
    runs = tmp_path / "runs"
    attacked = fake_run(runs / "2024-01-01" / "10-00-00", "journal")
    empty = fake_run(runs / "2024-01-02" / "10-00-00", "journal", attacked=False)  # ended before attacking
    compare = runs / "compare" / "2024-01-03" / "10-00-00"
    fake_run(compare, "journal")
    (compare / ".hydra" / "config.yaml").write_text("methods: [tpe]\nstorage:\n  kind: journal\n")
    for age, folder in enumerate((compare, empty, attacked)):
        os.utime(folder / ".hydra" / "config.yaml", (time.time() - 60 * age, time.time() - 60 * age))
    assert latest_run(runs) == attacked
    (attacked / "results.jsonl").unlink()
    with pytest.raises(DashboardError, match=r"no run under .* has trials yet"):
        latest_run(runs)


def test_a_run_that_never_started_leaves_no_folder(tmp_path) -> None:
    done = blackbox(tmp_path, *FAST, "target=surrogate", "target.weights=/nonexistent/head.pth")
    assert done.returncode == 2 and "no file at the given path" in done.stderr
    assert not (tmp_path / "run").exists()
    kept = tmp_path / "kept"
    kept.mkdir()
    (kept / "notes.txt").write_text("the user's")  # a folder holding anything else is left whole
    from blackbox.experiment.run_folder import discard_if_unused

    assert not discard_if_unused(kept) and (kept / "notes.txt").exists()
    # A folder another run holds (it may just be starting, with nothing written yet) is left alone.
    from filelock import FileLock

    from blackbox.experiment.run_folder import RUN_LOCK

    busy = tmp_path / "busy"
    (busy / ".hydra").mkdir(parents=True)
    with FileLock(str(busy / RUN_LOCK)):
        assert not discard_if_unused(busy) and (busy / ".hydra").is_dir()
    assert discard_if_unused(busy) and not busy.exists()


@pytest.mark.parametrize(
    ("setup", "message"),
    [
        ("no runs folder", "no runs yet"),
        ("empty runs folder", "no runs yet"),
        ("missing run dir", "does not exist"),
        ("not a run", "is not a run folder"),
        ("memory run", "storage=memory"),
        ("journal lost", "optuna.journal is missing"),
    ],
)
def test_clear_errors(tmp_path, capsys, setup, message) -> None:
    runs = tmp_path / "runs"
    args: list[str] = [f"runs={runs}"]
    if setup == "empty runs folder":
        runs.mkdir()
    elif setup == "missing run dir":
        args.insert(0, f"run={runs / 'nope'}")
    elif setup == "not a run":
        (runs / "x").mkdir(parents=True)
        args.insert(0, f"run={runs / 'x'}")
    elif setup == "memory run":
        fake_run(runs / "d" / "t", "memory")
    elif setup == "journal lost":
        fake_run(runs / "d" / "t", "journal")
    assert main(args) == 2
    assert message in capsys.readouterr().err


def test_the_dashboard_module_reports_errors_on_the_command_line(tmp_path) -> None:
    done = subprocess.run(
        [sys.executable, "-m", "blackbox.dashboard", f"runs={tmp_path / 'none'}"],
        cwd=REPO,
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert done.returncode == 2 and "no runs yet" in done.stderr
    with pytest.raises(DashboardError, match="does not exist"):
        resolve_run(tmp_path / "gone", tmp_path)


@pytest.fixture(scope="module")
def attacked_run(tmp_path_factory) -> Path:
    """A real ``python -m blackbox`` run (journal storage, artifacts of the improving trials)."""
    tmp = tmp_path_factory.mktemp("dashboard-run")
    # search=blobs: one study (search=auto gives a map target two stages)
    done = blackbox(tmp, *FAST, "search=blobs", "budget=6", "early_stop=false", "dataset.names=[chelsea]")
    assert done.returncode == 0, done.stderr
    return tmp / "run"


def start_dashboard(run_dir: Path) -> tuple[subprocess.Popen, str]:
    server = subprocess.Popen(
        [sys.executable, "-m", "blackbox.dashboard", f"run={run_dir}", "port=0"],
        cwd=REPO,
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
    )
    assert server.stdout is not None
    line = server.stdout.readline()
    found = re.search(r"(http://127\.0\.0\.1:\d+)/dashboard/", line)
    if not found:
        server.kill()
        pytest.fail(f"the dashboard did not start: {line}{server.stdout.read()}")
    return server, found.group(1)


def test_a_trial_page_shows_its_artifact_images_in_chromium(attacked_run) -> None:
    binary, driver = chromium()
    storage = optuna.storages.JournalStorage(
        optuna.storages.journal.JournalFileBackend(str(attacked_run / "optuna.journal"))
    )
    (summary,) = optuna.get_all_study_summaries(storage)
    study = optuna.load_study(study_name=summary.study_name, storage=storage)
    trial = max(
        (t for t in study.trials if get_all_artifact_meta(t, storage=storage)), key=lambda t: t.number
    )
    metas = {m.filename: m for m in get_all_artifact_meta(trial, storage=storage)}
    adversarial = metas[f"trial-{trial.number}-adversarial.png"]
    stored = (attacked_run / "artifacts" / adversarial.artifact_id).read_bytes()

    server, base = start_dashboard(attacked_run)
    try:
        with headless_chromium(binary, driver) as browser:
            browser.get(f"{base}/dashboard/studies/{study._study_id}/trials?numbers={trial.number}")
            images = loaded_images(browser, count=2)
            shown = {image.get_attribute("alt"): image for image in images}
            assert f"trial-{trial.number}-adversarial.png" in shown, browser.page_source[:2000]
            image = shown[f"trial-{trial.number}-adversarial.png"]
            browser.execute_script("arguments[0].scrollIntoView({block: 'center'})", image)
            assert image.is_displayed()
            assert (
                image.get_property("naturalWidth")
                == Image.open(attacked_run / "adversarial" / "chelsea.png").width
            )
            # The browser shows the bytes of this trial's artifact, not some other picture.
            with urllib.request.urlopen(image.get_attribute("src"), timeout=10) as response:
                assert hashlib.sha256(response.read()).digest() == hashlib.sha256(stored).digest()
            assert f"Trial {trial.number}" in browser.page_source
            screenshot = attacked_run / "dashboard-trial.png"
            browser.save_screenshot(str(screenshot))
    finally:
        server.terminate()
        server.wait(timeout=10)
    TEST_ARTIFACTS.mkdir(parents=True, exist_ok=True)
    shutil.copy(screenshot, TEST_ARTIFACTS / "dashboard-trial.png")
    assert Image.open(TEST_ARTIFACTS / "dashboard-trial.png").size[0] > 0
