"""Bad settings: a clear error naming the key and what to do, exit code 2, before any work is done."""

from __future__ import annotations

import os
import subprocess
import sys

import pytest

from blackbox.__main__ import sweep_exit_code
from blackbox.experiment.run import EXIT_BAD_CONFIG, EXIT_NOTHING_DONE, EXIT_OK, EXIT_SKIPPED
from blackbox.settings.checks import ConfigError
from blackbox.settings.preflight import preflight, wants_preflight
from targets import UserError
from tests.conftest import REPO


@pytest.mark.parametrize(
    ("overrides", "says"),
    [
        # unknown keys and names
        (["budgit=5"], ["unknown setting 'budgit'", "did you mean budget?", "+budgit="]),
        (["goal.boxx=[0,0,5,5]"], ["unknown setting 'goal.boxx'", "did you mean goal.box?"]),
        (["search=blobs", "search.space.sise.low=1"], ["unknown setting 'search.space.sise.low'", "size"]),
        (["search.n_patches=8"], ["search.n_patches is a setting of a named search space", "search=blobs"]),
        (["target=nosuch"], ["unknown target 'nosuch'", "classic", "twitter"]),
        (["sampler=nosuch"], ["unknown sampler 'nosuch'", "tpe", "random"]),
        (["attack=nosuch"], ["unknown attack 'nosuch'", "iterative_fgm"]),
        (["storage=nosuch"], ["unknown storage 'nosuch'", "journal"]),
        (["measure=nosuch"], ["measure=nosuch is not a zoo target", "classic"]),
        (["warm_start=nosuch"], ["warm_start=nosuch is not a zoo target"]),
        # wrong types
        (["budget=abc"], ["budget must be a positive whole number"]),
        (["budget=2.5"], ["budget must be a positive whole number"]),
        (["eps=abc"], ["eps must be a number"]),
        (["seed=abc"], ["seed must be a whole number"]),
        (["early_stop=maybe"], ["early_stop must be true/false"]),
        (["batch_size=2.5"], ["batch_size must be a positive whole number"]),
        (["goal.box=[1,2]"], ["goal.box must be [x0, y0, x1, y1]"]),
        (["goal.point=oops"], ["goal.point must be [x, y]"]),
        (["search=blobs", "search.n_patches=two"], ["search.n_patches must be a whole number"]),
        (["eps=${nope}"], ["eps", "nope"]),
        (["budget=[1"], ["cannot read the settings", "key=value"]),
        # impossible ranges
        (["budget=-5"], ["budget must be a positive whole number"]),
        (["budget=0"], ["budget must be a positive whole number"]),
        (["eps=0"], ["eps must be > 0"]),
        (["eps=-1"], ["eps must be > 0"]),
        (["eps=0.001"], ["below one 8-bit level", "eps >= 0.0039"]),
        (["norm=linf", "eps=0.001"], ["below one 8-bit level", "norm=linf"]),
        (["norm=linf", "eps=8"], ["fraction of the pixel range"]),
        (["batch_size=0"], ["batch_size must be a positive whole number"]),
        (["working_width=8"], ["working_width must be a whole number of pixels >= 32"]),
        (["goal.box=[50,0,10,10]"], ["x0 < x1"]),
        (["goal.band_width=2"], ["goal.band_width"]),
        (["aspect_ratios=[0.5,-1]"], ["aspect_ratios must be positive"]),
        (["search=blobs", "search.n_patches=0"], ["search.n_patches must be at least 1"]),
        (
            ["search=blobs", "search.region=everywhere"],
            ["search.region must be one of goal, image, goal_and_peak"],
        ),
        (["search=blobs", "search.margin=-1"], ["search.margin must be a number >= 0"]),
        (
            ["search=blobs", "search.space.size.low=50", "search.space.size.high=10"],
            ["search.space.size", "low <= high"],
        ),
        (
            ["working_width=64", "search=blobs", "search.space.size.low=100", "search.space.size.high=200"],
            ["search.space.size.low=100 px is not smaller than working_width=64"],
        ),
        (
            ["attack=blackbox", "sampler=tpe", "+sampler.factory.n_startups=3"],
            ["sampler settings (sampler=tpe)", "n_startups"],
        ),
        (["attack=pgd", "attack.steps=0"], ["attack settings (attack=pgd)", "steps"]),
        # missing inputs
        (["storage=url", "storage.url=null"], ["storage=url needs storage.url="]),
        (["dataset=folder"], ["dataset=folder needs dataset.path="]),
        (["dataset=folder", "dataset.path=/nonexistent/photos"], ["/nonexistent/photos does not exist"]),
        # image= wins over dataset=; a missing file is a bad setting (exit 2 before any folder).
        (["image=/nonexistent/a.png", "dataset=folder"], ["image=/nonexistent/a.png: no such file"]),
        (["dataset.names=[nosuch]"], ["unknown bundled photos", "chelsea"]),
    ],
)
def test_bad_settings_are_refused_before_any_work(overrides, says) -> None:
    with pytest.raises(UserError) as caught:
        preflight(overrides)
    for words in says:
        assert words in str(caught.value)


def test_good_settings_pass() -> None:
    preflight([])
    preflight(
        ["target=twitter", "attack=blackbox", "sampler=random", "eps=10", "budget=200", "goal.point=[3,4]"]
    )
    preflight(["attack=iterative_fgm", "norm=linf", "eps=0.03", "working_width=null"])


def test_only_a_plain_run_is_checked_up_front() -> None:
    assert wants_preflight(["budget=3", "hydra.run.dir=/tmp/x"])
    assert not wants_preflight(["-m", "eps=10,20"]) and not wants_preflight(["--cfg", "job"])


def test_the_cli_exits_2_and_leaves_no_run_folder(tmp_path) -> None:
    run_dir = tmp_path / "run"
    done = subprocess.run(
        [sys.executable, "-m", "blackbox", "budget=-5", f"hydra.run.dir={run_dir}"],
        cwd=REPO,
        env={**os.environ, "OMP_NUM_THREADS": "1"},
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert done.returncode == EXIT_BAD_CONFIG
    assert (
        done.stderr.startswith("error: budget must be a positive whole number")
        and "Traceback" not in done.stderr
    )
    assert not run_dir.exists()  # not even Hydra's .hydra/ folder


def test_a_sweep_runs_every_job_and_exits_with_the_worst_code(tmp_path) -> None:
    done = subprocess.run(
        [
            sys.executable,
            "-m",
            "blackbox",
            "-m",
            "eps=nope,10",
            "dataset.names=[chelsea]",
            "working_width=64",
            "budget=2",
            "progress=false",
            f"hydra.sweep.dir={tmp_path}",
        ],
        cwd=REPO,
        env={**os.environ, "OMP_NUM_THREADS": "1"},
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert done.returncode == EXIT_BAD_CONFIG
    assert "eps must be a number, got 'nope'" in done.stderr
    assert (tmp_path / "1" / "results.jsonl").exists()  # the job after the bad one still ran


def test_sweep_exit_code_order() -> None:
    assert sweep_exit_code([]) == EXIT_OK == sweep_exit_code([EXIT_OK, EXIT_OK])
    assert sweep_exit_code([EXIT_OK, EXIT_SKIPPED]) == EXIT_SKIPPED
    assert sweep_exit_code([EXIT_SKIPPED, EXIT_NOTHING_DONE]) == EXIT_NOTHING_DONE
    assert sweep_exit_code([EXIT_NOTHING_DONE, EXIT_BAD_CONFIG, EXIT_OK]) == EXIT_BAD_CONFIG
    assert issubclass(ConfigError, UserError)


def test_a_value_with_equals_gets_a_hint_to_quote_it() -> None:
    url = "http://127.0.0.1:8732/crop?algo=attention"
    with pytest.raises(ConfigError) as caught:
        preflight(["target=http", f"target.url={url}"])
    assert "quote it" in str(caught.value)
    assert f"'target.url=\"{url}\"'" in str(caught.value)  # the exact way to write it


def test_goal_and_peak_region_is_accepted() -> None:
    preflight(["search=blobs", "search.region=goal_and_peak"])


def test_a_home_folder_tilde_in_any_path_setting_is_expanded(monkeypatch, tmp_path) -> None:
    from pathlib import Path

    from blackbox.settings.preflight import expand_home

    monkeypatch.setenv("HOME", str(tmp_path))
    argv = ["dataset.path=~/photos", "hydra.run.dir=~", "image=a~b.png", "-m", "eps=~x"]
    assert expand_home(argv) == [
        f"dataset.path={tmp_path / 'photos'}",
        f"hydra.run.dir={Path(tmp_path)}",
        "image=a~b.png",
        "-m",
        "eps=~x",  # not a path: left for Hydra to refuse
    ]
    (tmp_path / "photos").mkdir()
    with pytest.raises(
        UserError, match=f"no image files .* found in {tmp_path / 'photos'}"
    ):  # read, not refused
        preflight(expand_home(["dataset=folder", "dataset.path=~/photos"]))


def test_the_cli_reads_a_tilde_path_as_the_readme_writes_it(tmp_path) -> None:
    home = tmp_path / "home"
    (home / "photos").mkdir(parents=True)
    done = subprocess.run(
        [sys.executable, "-m", "blackbox", "dataset=folder", "dataset.path=~/photos", "budget=-1"],
        cwd=REPO,
        env={**os.environ, "OMP_NUM_THREADS": "1", "HOME": str(home)},
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert done.returncode == EXIT_BAD_CONFIG and "budget must be" in done.stderr  # got past the path
