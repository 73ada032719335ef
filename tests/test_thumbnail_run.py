"""A whole run on ``target=thumbnail`` through the reference thumbnail service: requests and cost in the
summary, the key header's value nowhere in the run folder."""

from __future__ import annotations

import json
import os
import subprocess
import sys

import pytest

from targets.serve import create_app, running_server
from targets.smartcrop import Smartcrop
from tests.conftest import REPO


def test_cli_run_through_thumbnails_counts_requests_and_cost(tmp_path) -> None:
    secret = "key-do-not-store-91c2"
    env = {**os.environ, "OMP_NUM_THREADS": "1", "HYDRA_FULL_ERROR": "0", "BLACKBOX_TEST_THUMB_KEY": secret}
    with running_server(create_app(Smartcrop(), response="thumbnail")) as base:
        done = subprocess.run(
            [
                sys.executable,
                "-m",
                "blackbox",
                "target=thumbnail",
                f'target.url="{base}/thumbnail/{{width}}x{{height}}/smart/{{image_url_quoted}}"',
                "+target.headers.X-Api-Key=BLACKBOX_TEST_THUMB_KEY",
                "target.cost_per_request=0.001",
                "target.rate_limit=200",
                "search=grid",
                "budget=8",
                "early_stop=false",
                "working_width=320",
                "dataset.names=[chelsea]",
                "progress=false",
                f"hydra.run.dir={tmp_path}",
            ],
            cwd=REPO,
            env=env,
            capture_output=True,
            text=True,
            timeout=300,
        )
    assert done.returncode == 0, done.stderr[-2000:]
    record = json.loads((tmp_path / "results.jsonl").read_text())
    counters = record["target_counters"]
    # The clean image and 8 queries (the best one maybe asked again), 4 aspect ratios each.
    assert counters["images"] >= 1 + 8 and counters["requests"] == 4 * counters["images"]
    assert counters["cost"] == pytest.approx(counters["requests"] * 0.001)
    assert f"target service: {counters['requests']:.0f} requests" in done.stdout
    assert "target service:" in (tmp_path / "summary.md").read_text()
    for path in tmp_path.rglob("*"):
        if path.is_file():
            assert secret.encode() not in path.read_bytes(), path
    assert secret not in done.stdout + done.stderr
