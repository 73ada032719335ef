"""``blackbox.evaluate.robustness``: croppers over one eps sweep, its table and plot, resume, bad settings."""

from __future__ import annotations

import contextlib
import csv
import io
import os
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
from hydra import compose, initialize_config_dir
from omegaconf import DictConfig
from PIL import Image

from blackbox.experiment.run import EXIT_BAD_CONFIG, EXIT_OK
from blackbox.settings.checks import ConfigError
from blackbox.settings.commands import robustness, robustness_sweep
from blackbox.settings.preflight import preflight
from targets import Output, Target, TargetOutput
from targets.classic import ClassicSaliency
from targets.serve import create_app, running_server
from targets.vips import VipsSmartcrop
from tests.conftest import REPO

TINY = [
    "working_width=160",
    "budget=4",
    "batch_size=2",
    "dataset.names=[chelsea,coffee]",
    "targets=[classic,vips_entropy]",
    "eps_list=[5,20,100]",
    "progress=false",
]


def robustness_config(*overrides: str) -> DictConfig:
    with initialize_config_dir(config_dir=str(REPO / "conf"), version_base="1.3"):
        return compose(config_name="robustness", overrides=[*TINY, *overrides])


def rows(run_dir: Path) -> list[dict]:
    with (run_dir / "results.csv").open(newline="") as handle:
        return list(csv.DictReader(handle))


class Counting(Target):
    """A zoo target that counts the images it is asked about (to see what a resume redoes)."""

    def __init__(self, inner: Target) -> None:
        super().__init__()
        self.inner = inner
        self.name = inner.name
        self.images = 0

    @property
    def outputs(self) -> frozenset[Output]:
        return self.inner.outputs

    def answer(self, images: list[np.ndarray]) -> list[TargetOutput]:
        self.images += len(images)
        return self.inner.query(images)


def quiet(cfg: DictConfig, run_dir: Path, targets: dict[str, Target] | None = None) -> int:
    with contextlib.redirect_stdout(io.StringIO()):
        return robustness(cfg, run_dir, targets=targets)


def test_the_table_and_the_plot_are_written(tmp_path: Path) -> None:
    assert quiet(robustness_config(), tmp_path) == EXIT_OK
    done = rows(tmp_path)
    by_pair: dict[tuple[str, str], list[dict]] = {}
    for row in done:
        by_pair.setdefault((row["target"], row["image"]), []).append(row)
    assert set(by_pair) == {(t, i) for t in ("classic", "vips_entropy") for i in ("chelsea", "coffee")}
    report = (tmp_path / "report.md").read_text()
    for (target, image), sweep in by_pair.items():
        eps = [float(r["eps"]) for r in sweep]
        successes = [r["success"] == "True" for r in sweep]
        # From the smallest eps up, ending at the first success (or after the largest).
        assert eps == [5.0, 20.0, 100.0][: len(eps)]
        assert not any(successes[:-1]) and (successes[-1] or len(eps) == 3)
        assert all(int(r["queries"]) <= 4 and float(r["l2"]) <= float(r["eps"]) + 1e-6 for r in sweep)
        # Each target judged by its own success=auto rule: classic has a point, vips_entropy only crops.
        assert {r["success_rule"] for r in sweep} == {"point" if target == "classic" else "crops"}
        smallest = f"{eps[-1]:g}" if successes[-1] else "> 100"
        line = next(x for x in report.splitlines() if x.startswith(f"| {image} |"))
        cells = [c.strip() for c in line.strip("|").split("|")]
        assert cells[1 + ("classic", "vips_entropy").index(target)] == smallest
    # The rate at each eps: the images moved by some eps at or below it.
    for target in ("classic", "vips_entropy"):
        firsts = [
            min([float(r["eps"]) for r in sweep if r["success"] == "True"], default=np.inf)
            for (t, _), sweep in by_pair.items()
            if t == target
        ]
        expected = [f"{100 * np.mean([f <= e for f in firsts]):.0f}" for e in (5, 20, 100)]
        line = next(x for x in report.splitlines() if x.startswith(f"| {target} |"))
        assert [c.strip() for c in line.strip("|").split("|")][3:] == expected
    assert "success=auto" in report and "smallest *of the sweep*" in report and "**median**" in report
    with Image.open(tmp_path / "robustness.png") as plot:
        assert plot.format == "PNG" and plot.width >= 600 and plot.height >= 400


def test_a_resume_does_not_redo_finished_rows(tmp_path: Path) -> None:
    cfg = robustness_config("eps_list=[5,10]", "stop_at_first_success=false")
    classic, entropy = Counting(ClassicSaliency()), Counting(VipsSmartcrop(interesting="entropy"))
    targets: dict[str, Target] = {"classic": classic, "vips_entropy": entropy}
    assert quiet(cfg, tmp_path, targets) == EXIT_OK
    first = rows(tmp_path)
    assert len(first) == 2 * 2 * 2  # targets x images x eps: every eps attacked
    asked = classic.images + entropy.images

    assert quiet(cfg, tmp_path, targets) == EXIT_OK  # all done: nothing asked, nothing added
    assert rows(tmp_path) == first and classic.images + entropy.images == asked

    # An interruption after the first six rows: the re-run attacks only the last two again.
    lines = (tmp_path / "results.csv").read_text().splitlines(keepends=True)
    (tmp_path / "results.csv").write_text("".join(lines[:7]))
    classic.images = entropy.images = 0
    assert quiet(cfg, tmp_path, targets) == EXIT_OK
    assert classic.images == 0  # every classic row was kept
    again = rows(tmp_path)
    assert again[:6] == first[:6] and len(again) == 8
    assert {(r["target"], r["image"], r["eps"]) for r in again[6:]} == {
        (r["target"], r["image"], r["eps"]) for r in first[6:]
    }
    assert 0 < entropy.images <= 1 + 2 * 4  # its clean image and two attacks' queries, no more


def test_a_resume_does_not_reach_past_an_images_first_success(tmp_path: Path) -> None:
    cfg = robustness_config(
        "targets=[vips_entropy]",
        "dataset.names=[chelsea]",
        "eps_list=[5,10,20,40,70,100]",
        "batch_size=4",
        "search=blobs",  # a sweep that succeeds at its second eps (grid, vips' own, moves it at the first)
    )
    entropy = Counting(VipsSmartcrop(interesting="entropy"))
    assert quiet(cfg, tmp_path, {"vips_entropy": entropy}) == EXIT_OK
    first = rows(tmp_path)
    # Seeded: chelsea's crops move at eps 10 here; the sweep stops there.
    assert [r["success"] for r in first] == ["False", "True"], first
    entropy.images = 0
    assert quiet(cfg, tmp_path, {"vips_entropy": entropy}) == EXIT_OK
    assert rows(tmp_path) == first and entropy.images == 0  # not even the clean image is asked again


def test_an_http_target_runs_through_the_zoo(tmp_path: Path) -> None:
    app = create_app(VipsSmartcrop(interesting="entropy"), response="crop")
    with running_server(app) as base:
        cfg = robustness_config(
            "targets=[http]",
            f"target_settings.http.url={base}/v1/saliency",
            "target_settings.http.expect=[crops]",
            "dataset.names=[chelsea]",
        )
        assert quiet(cfg, tmp_path) == EXIT_OK
    done = rows(tmp_path)
    assert {r["target"] for r in done} == {"http"} and {r["success_rule"] for r in done} == {"crops"}
    assert "| http | crops | 1 |" in (tmp_path / "report.md").read_text()


@pytest.mark.parametrize(
    ("bad", "says"),
    [
        ("targets=[classic,nope]", "unknown target(s) nope"),
        ("targets=[]", "targets must be a list of zoo names"),
        ("targets=[classic,classic]", "name each once"),
        ("eps_list=[0]", "eps_list must be positive"),
        ("+target_settings.http.nope=1", "not a setting of target http"),
        ("target_settings.http.nope=1", "unknown setting"),
        ("+target_settings.nope.url=x", "nope is not a zoo target"),
        ("stop_at_first_success=maybe", "stop_at_first_success must be true or false"),
        ("attack=pgd", "runs the black-box attack"),
        ("budget=0", "budget must be a positive whole number"),
    ],
)
def test_bad_settings_are_clear_errors(bad: str, says: str) -> None:
    with pytest.raises(ConfigError, match=None) as error:
        preflight([*TINY, bad], config_name="robustness")
    assert says in str(error.value)


def test_the_cli_exits_2_on_bad_settings_and_leaves_no_folder(tmp_path: Path) -> None:
    run_dir = tmp_path / "run"
    done = subprocess.run(
        [sys.executable, "-m", "blackbox.robustness", "targets=[classic,nope]", f"hydra.run.dir={run_dir}"],
        cwd=REPO,
        env={**os.environ, "OMP_NUM_THREADS": "1"},
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert done.returncode == EXIT_BAD_CONFIG, done.stderr
    assert done.stderr.startswith("error: ") and "nope" in done.stderr and "Traceback" not in done.stderr
    assert not run_dir.exists()


def test_robustness_reads_no_rows_it_did_not_write(tmp_path: Path) -> None:
    (tmp_path / "results.csv").write_text("target,image,eps,success\nclassic,chelsea,five,True\n")
    with pytest.raises(ConfigError, match="line 2 is not a whole results row"):
        robustness_sweep(robustness_config(), tmp_path)
