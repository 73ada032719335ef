"""``storage=postgres``: workers sharing one experiment, leases, a killed worker's trials retried."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
import uuid
from pathlib import Path

import optuna
import pytest
from omegaconf import OmegaConf

from blackbox.experiment.postgres import schema_for
from blackbox.experiment.study import open_for_reading
from blackbox.experiment.workers import PostgresExperiment
from blackbox.settings.build import experiment_name, stored_storage
from blackbox.settings.checks import ConfigError
from tests.conftest import REPO
from tests.services import postgres_url

# Not astronaut or hubble_deep_field: at 160 px every clean crop of theirs shows the goal, so they are
# skipped (exit 3), and this test is about workers, not skips.
IMAGES = ["chelsea", "coffee", "rocket"]
BUDGET = 10


def drop_schema(url: str, schema: str) -> None:
    import sqlalchemy

    engine = sqlalchemy.create_engine(url)
    with engine.begin() as connection:
        connection.execute(sqlalchemy.text(f'DROP SCHEMA IF EXISTS "{schema}" CASCADE'))
    engine.dispose()


@pytest.fixture
def experiment_id() -> str:
    return f"test_{uuid.uuid4().hex[:10]}"


@pytest.fixture
def url(experiment_id):
    url = postgres_url()
    yield url
    drop_schema(url, schema_for(experiment_id))


def worker(url: str, experiment_id: str, run_dir: Path, *extra: str) -> subprocess.Popen:
    env = {**os.environ, "OMP_NUM_THREADS": "1", "BLACKBOX_POSTGRES_URL": url}
    args = [
        sys.executable,
        "-m",
        "blackbox",
        "attack=blackbox",  # the patch search: its trials are what the workers share
        "eps_inf=null",
        "working_width=160",
        f"budget={BUDGET}",
        "batch_size=2",
        "early_stop=false",
        "progress=false",
        f"dataset.names=[{','.join(IMAGES)}]",
        "storage=postgres",
        f"storage.experiment={experiment_id}",
        "storage.heartbeat_interval=0.5",
        "storage.grace_period=1",
        f"storage.artifacts_dir={run_dir.parent / 'artifacts'}",
        f"hydra.run.dir={run_dir}",
        *extra,
    ]
    return subprocess.Popen(
        args, cwd=REPO, env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True
    )


def reader(url: str, experiment_id: str, run_dir: Path) -> PostgresExperiment:
    return PostgresExperiment(url=url, name=experiment_id, run_dir=run_dir, reading=True)


def studies_by_image(storage) -> dict[str, optuna.Study]:
    # A worker stopped between creating a study and tagging it leaves a study with no "image" yet.
    return {
        s.user_attrs["image"]: optuna.load_study(study_name=s.study_name, storage=storage)
        for s in optuna.get_all_study_summaries(storage)
        if "image" in s.user_attrs
    }


def kill_while_trials_run(
    process: subprocess.Popen, experiment: PostgresExperiment, timeout: float = 120
) -> str:
    """SIGKILL the worker at a moment it holds an image with trials running; return that image."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        assert process.poll() is None, process.communicate()
        os.kill(process.pid, signal.SIGSTOP)  # look at the database while it cannot move on
        held = [
            image
            for image, state, who, _ in experiment.claims()
            if state == "running" and f":{process.pid}" in who
        ]
        if held:
            study = studies_by_image(experiment.storage).get(held[0])
            running = study.get_trials(states=(optuna.trial.TrialState.RUNNING,)) if study else []
            completed = study.get_trials(states=(optuna.trial.TrialState.COMPLETE,)) if study else []
            if running and completed:
                os.kill(process.pid, signal.SIGKILL)
                process.wait(timeout=10)
                return held[0]
        os.kill(process.pid, signal.SIGCONT)
        time.sleep(0.05)
    pytest.fail("the worker never held an image with trials running")


@pytest.mark.slow
def test_two_workers_one_killed_every_image_and_budgeted_trial_done_once(
    tmp_path, url, experiment_id
) -> None:
    doomed = worker(url, experiment_id, tmp_path / "a")
    survivor = worker(url, experiment_id, tmp_path / "b")
    try:
        deadline = time.monotonic() + 120
        while not (tmp_path / "a" / "experiment.json").exists():  # the schema exists once it is written
            assert time.monotonic() < deadline and doomed.poll() is None, doomed.communicate()
            time.sleep(0.1)
        experiment = reader(url, experiment_id, tmp_path)
        killed_image = kill_while_trials_run(doomed, experiment)
        _, err = survivor.communicate(timeout=240)
    finally:
        for process in (doomed, survivor):
            if process.poll() is None:
                process.kill()
    assert survivor.returncode == 0, err

    # results.jsonl: every image exactly once, in dataset order, each within its budget.
    records = [json.loads(line) for line in (tmp_path / "b" / "results.jsonl").read_text().splitlines()]
    assert [r["image"] for r in records] == IMAGES
    assert all(r["queries"] == BUDGET for r in records)
    assert sorted(experiment.results()) == sorted(IMAGES)

    # Every budgeted trial completed exactly once: queries 1..budget, each once, in every study.
    studies = studies_by_image(experiment.storage)
    assert sorted(studies) == sorted(IMAGES)
    for image, study in studies.items():
        completed = study.get_trials(states=(optuna.trial.TrialState.COMPLETE,))
        assert sorted(t.user_attrs["queries"] for t in completed) == list(range(1, BUDGET + 1)), image
        assert not study.get_trials(states=(optuna.trial.TrialState.RUNNING,)), image

    # The killed worker's running trials were failed by their stale heartbeat and run again.
    study = studies[killed_image]
    failed = study.get_trials(states=(optuna.trial.TrialState.FAIL,))
    assert failed and all("fail_reason" not in t.user_attrs for t in failed)
    retried = [t for t in study.trials if "failed_trial" in t.system_attrs]
    assert {t.system_attrs["failed_trial"] for t in retried} == {t.number for t in failed}
    assert all(t.state == optuna.trial.TrialState.COMPLETE for t in retried)
    for trial in retried:
        # The retry keeps every parameter the killed trial had drawn. A kill between the trial's
        # creation and its draws leaves fewer (or none) to keep: the retry draws the rest.
        drawn = study.trials[trial.system_attrs["failed_trial"]].params
        assert {name: trial.params[name] for name in drawn} == drawn
    claims = {image: (state, attempts) for image, state, _, attempts in experiment.claims()}
    assert claims[killed_image] == ("done", 2)
    assert all(state == "done" for state, _ in claims.values())

    # The dashboard opens the survivor's run: the experiment's studies, with the shared artifacts.
    storage, artifacts, where = open_for_reading(tmp_path / "b", stored_storage(tmp_path / "b"))
    assert len(optuna.get_all_study_summaries(storage)) == len(IMAGES) and artifacts is not None
    assert schema_for(experiment_id) in where


def test_a_lease_is_held_by_one_worker_until_it_expires(tmp_path, url, experiment_id) -> None:
    settings = {"url": url, "name": experiment_id, "heartbeat_interval": 0.2, "grace_period": 0.4}
    first = PostgresExperiment(run_dir=tmp_path / "a", worker="first", **settings)
    second = PostgresExperiment(run_dir=tmp_path / "b", worker="second", **settings)
    assert first.claim("img") == "claimed"
    assert second.claim("img") == "busy"
    assert first.renew("img")
    time.sleep(first.lease_seconds + 0.3)  # first stops renewing: as if it died
    assert second.claim("img") == "claimed"
    assert not first.renew("img")  # first finds out it lost the image ...
    first.record({"image": "img", "by": "first"})  # ... and its late result is dropped
    second.record({"image": "img", "by": "second"})
    assert first.results() == {"img": {"image": "img", "by": "second"}}
    assert first.claim("img") == second.claim("img") == "done"
    second.claim("other")
    second.release("other")  # a failed image is free for the next worker at once
    assert first.claim("other") == "claimed"


def test_the_experiment_is_named_by_what_is_attacked_not_where_it_is_kept() -> None:
    base = {"target": {"name": "classic"}, "eps": 20.0, "budget": 20, "progress": True, "worker": None}
    cfg = OmegaConf.create({**base, "storage": {"kind": "postgres", "experiment": None, "url": "a"}})
    same = OmegaConf.create(
        {**base, "progress": False, "worker": 3, "storage": {"kind": "postgres", "url": "b"}}
    )
    other = OmegaConf.create({**base, "eps": 10.0, "storage": {"kind": "postgres", "experiment": None}})
    assert experiment_name(cfg) == experiment_name(same) != experiment_name(other)
    assert experiment_name(cfg).startswith("classic_")
    named = OmegaConf.create({**base, "storage": {"kind": "postgres", "experiment": "My Sweep-1"}})
    assert schema_for(experiment_name(named)) == "bb_my_sweep_1"
    with pytest.raises(ConfigError, match="no letters or digits"):
        schema_for("--")


def test_postgres_without_a_url_is_a_clear_error(tmp_path) -> None:
    with pytest.raises(ConfigError, match="BLACKBOX_POSTGRES_URL"):
        PostgresExperiment(url="", name="x", run_dir=tmp_path)
    env = {k: v for k, v in os.environ.items() if k != "BLACKBOX_POSTGRES_URL"}
    done = subprocess.run(
        [sys.executable, "-m", "blackbox", "storage=postgres", f"hydra.run.dir={tmp_path / 'run'}"],
        cwd=REPO,
        env={**env, "OMP_NUM_THREADS": "1"},
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert done.returncode == 2 and "BLACKBOX_POSTGRES_URL" in done.stderr


def test_an_unreachable_database_is_a_clear_error(tmp_path) -> None:
    with pytest.raises(
        ConfigError, match=r"cannot reach PostgreSQL at postgresql://u:\*\*\*@127\.0\.0\.1:9/"
    ):
        PostgresExperiment(url="postgresql://u:secret@127.0.0.1:9/db", name="x", run_dir=tmp_path)


def test_a_worker_that_lost_its_lease_stops_and_fails_its_running_trials(
    tmp_path, url, experiment_id
) -> None:
    from types import SimpleNamespace

    from blackbox.experiment.workers import LeaseLostError

    first = PostgresExperiment(
        url=url, name=experiment_id, run_dir=tmp_path, heartbeat_interval=0.2, grace_period=0.4
    )
    study = optuna.create_study(storage=first.storage, study_name="img-study")
    trial = study.ask()  # running, with a heartbeat from its start
    assert first.storage._running == {trial._trial_id}
    guard = first.trial_callbacks("none")[0]
    record = SimpleNamespace(problem=SimpleNamespace(image=SimpleNamespace(image_id="img")))
    guard(record)  # lease held: nothing happens
    first._lost.set()  # as the lease thread does when another worker took the image over
    with pytest.raises(LeaseLostError, match="another worker took this image over"):
        guard(record)
    first.storage.fail_running()
    assert study.trials[0].state == optuna.trial.TrialState.FAIL and not first.storage._running
