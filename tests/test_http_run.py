"""Whole runs on ``target=http``: counters recorded, an outage resumed, the auth secret never stored."""

from __future__ import annotations

import contextlib
import io
import json
import os
import subprocess
import sys

import optuna

from benchmarks._compose import compose_run
from blackbox.experiment.run import EXIT_NOTHING_DONE, EXIT_OK
from blackbox.experiment.storage import make_storage
from blackbox.settings.commands import run
from targets.classic import ClassicSaliency
from targets.serve import create_app, running_server
from tests.conftest import REPO
from tests.test_target_http import FaultyService

FAST = [
    "attack=blackbox",
    "search=blobs",  # the counters below are of one study's batches
    "working_width=160",
    "batch_size=2",
    "progress=false",
    "dataset.names=[chelsea]",
    "early_stop=false",
]


def quiet_run(cfg, run_dir):
    with contextlib.redirect_stdout(io.StringIO()):
        return run(cfg, run_dir, target_name="http")


def test_a_run_records_counters_skips_on_outage_and_resumes(tmp_path) -> None:
    def config(url: str):
        return compose_run(
            [
                "target=http",
                f"target.url={url}",
                "target.max_retries=1",
                "target.backoff=0.01",
                "target.max_concurrency=1",
                "budget=12",
                *FAST,
            ]
        )

    run_dir = tmp_path / "run"
    # The clean image and one batch are answered, then the service is down.
    with FaultyService("ok", "ok", "ok", default="503") as url:
        summary = quiet_run(config(url), run_dir)
    assert summary.exit_code == EXIT_NOTHING_DONE
    error = json.loads((run_dir / "errors.jsonl").read_text())
    assert error["image"] == "chelsea" and "HTTP 503" in error["error"] and "resume" in error["error"]
    assert error["target_counters"]["retries"] == 3 and error["target_counters"]["failed"] == 3
    assert not (run_dir / "results.jsonl").exists()

    with FaultyService() as url:  # back up: the same command resumes the image's study
        summary = quiet_run(config(url), run_dir)
    assert summary.exit_code == EXIT_OK
    record = json.loads((run_dir / "results.jsonl").read_text())
    assert record["queries"] == 12 and record["target_counters"]["retries"] == 0
    assert record["target_counters"]["images"] >= 1 + 4  # the clean image and the 4 queries left
    storage = make_storage("journal", run_dir)
    study = optuna.load_study(study_name=record["study"], storage=storage)
    states = [t.state for t in study.trials]
    assert states.count(optuna.trial.TrialState.COMPLETE) == 2 + 4  # the first session's 2 are kept
    assert states.count(optuna.trial.TrialState.FAIL) == 6


def test_cli_run_through_http_never_stores_the_secret(tmp_path) -> None:
    secret = "Bearer do-not-store-7f3a9c"
    app = create_app(ClassicSaliency(scales=(32, 64)), response="crop", auth_token=secret)
    env = {**os.environ, "OMP_NUM_THREADS": "1", "HYDRA_FULL_ERROR": "0", "BLACKBOX_TEST_TOKEN": secret}
    with running_server(app) as base:
        done = subprocess.run(
            [
                sys.executable,
                "-m",
                "blackbox",
                "target=http",
                f"target.url={base}/v1/saliency",
                "target.expect=[crops]",
                "target.auth_env=BLACKBOX_TEST_TOKEN",
                "budget=4",
                *FAST,
                f"hydra.run.dir={tmp_path / 'run'}",
            ],
            cwd=REPO,
            env=env,
            capture_output=True,
            text=True,
            timeout=300,
        )
    assert done.returncode == 0, done.stderr
    record = json.loads((tmp_path / "run" / "results.jsonl").read_text())
    # Crop-only: the default goal is the band beyond the narrowest clean crop (blackbox/core/goal.py).
    assert record["target"] == "http" and record["goal"]["source"] == "beyond_crop"
    assert record["target_counters"]["answered"] == 1 + 4 and record["target_counters"]["rejected"] == 0
    assert "auth_env: BLACKBOX_TEST_TOKEN" in (tmp_path / "run" / ".hydra" / "config.yaml").read_text()
    files = [p for p in (tmp_path / "run").rglob("*") if p.is_file()]
    assert len(files) >= 5
    for path in files:
        assert b"do-not-store" not in path.read_bytes(), path
    assert "do-not-store" not in done.stdout + done.stderr
