"""`python -m blackbox` end to end, as a user runs it (small images and budgets to stay fast)."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from tests.conftest import REPO

FAST = ["attack=blackbox", "working_width=160", "budget=4", "batch_size=2", "progress=false"]


def blackbox(
    tmp_path: Path, *overrides: str, module: str = "blackbox", env: dict[str, str] | None = None
) -> subprocess.CompletedProcess:
    env = {**os.environ, "OMP_NUM_THREADS": "1", "HYDRA_FULL_ERROR": "0", **(env or {})}
    args = [sys.executable, "-m", module, *overrides]
    if module == "blackbox":
        args.append(f"hydra.run.dir={tmp_path / 'run'}")
    return subprocess.run(args, cwd=REPO, env=env, capture_output=True, text=True, timeout=300)


def test_default_run_writes_every_output(tmp_path) -> None:
    done = blackbox(tmp_path, *FAST, "dataset.names=[chelsea,coffee]")
    assert done.returncode == 0, done.stderr
    run = tmp_path / "run"
    records = [json.loads(line) for line in (run / "results.jsonl").read_text().splitlines()]
    assert [r["image"] for r in records] == ["chelsea", "coffee"]
    for r in records:
        assert r["queries"] <= 4 and r["l2"] <= 20.0 + 1e-9
        assert {
            "success",
            "shift_pct_distance",
            "shift_pct_width",
            "linf",
            "psnr",
            "crop_contains_goal",
        } <= set(r)
        assert (run / "adversarial" / f"{r['image']}.png").exists()
        assert (run / "side_by_side" / f"{r['image']}.png").exists()
    assert (run / "optuna.journal").exists() and (run / "summary.md").exists()
    assert "| image |" in done.stdout and "mean (2)" in done.stdout

    replayed = subprocess.run(
        [
            sys.executable,
            "-m",
            "blackbox.replay",
            f"run={run}",
            "image=coffee",
            f"out={tmp_path / 'r.png'}",
        ],
        cwd=REPO,
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert replayed.returncode == 0, replayed.stderr
    assert (tmp_path / "r.png").read_bytes() == (run / "adversarial" / "coffee.png").read_bytes()


def test_the_default_attack_is_the_square_search_under_a_cap_of_4_levels(tmp_path) -> None:
    done = blackbox(tmp_path, "working_width=160", "budget=6", "progress=false", "dataset.names=[chelsea]")
    assert done.returncode == 0, done.stderr
    run = tmp_path / "run"
    [record] = [json.loads(line) for line in (run / "results.jsonl").read_text().splitlines()]
    assert record["method"] == "square" and record["eps_inf"] == 4 and record["queries"] <= 6
    assert 1 <= record["linf_levels"] <= 4 and record["l2"] <= 20.0 + 1e-9
    assert {"ssim", "ssimulacra2", "psnr"} <= set(record)
    for folder in ("adversarial", "side_by_side", "full_size"):
        assert (run / folder / "chelsea.png").exists()
    replayed = subprocess.run(
        [sys.executable, "-m", "blackbox.replay", f"run={run}", "image=chelsea", f"out={tmp_path / 'r.png'}"],
        cwd=REPO,
        capture_output=True,
        text=True,
        timeout=120,
    )
    # Every query is a stored trial; the result's trial replays to the bytes the cropper was shown.
    assert replayed.returncode == 0, replayed.stderr
    assert (tmp_path / "r.png").read_bytes() == (run / "adversarial" / "chelsea.png").read_bytes()


def test_rerun_in_the_same_folder_resumes(tmp_path) -> None:
    first = blackbox(tmp_path, *FAST, "dataset.names=[chelsea]", "early_stop=false")
    assert first.returncode == 0, first.stderr
    second = blackbox(tmp_path, *FAST, "dataset.names=[chelsea,rocket]", "early_stop=false")
    assert second.returncode == 0, second.stderr
    lines = (tmp_path / "run" / "results.jsonl").read_text().splitlines()
    assert [json.loads(line)["image"] for line in lines] == ["chelsea", "rocket"]


def test_single_image_and_random_sampler(tmp_path, photo) -> None:
    path = tmp_path / "cat.jpg"
    Image.fromarray(photo).save(path)
    done = blackbox(tmp_path, *FAST, f"image={path}", "sampler=random", "eps=5", "goal.point=[20,50]")
    assert done.returncode == 0, done.stderr
    record = json.loads((tmp_path / "run" / "results.jsonl").read_text())
    assert record["image"] == "cat" and record["goal"]["source"] == "user_point" and record["eps"] == 5.0


def test_folder_with_a_bad_file_skips_it_and_says_so(tmp_path, photo) -> None:
    folder = tmp_path / "images"
    folder.mkdir()
    Image.fromarray(photo).save(folder / "good.png")
    (folder / "broken.png").write_bytes(b"\x89PNG\r\n\x1a\n garbage")
    done = blackbox(tmp_path, *FAST, "dataset=folder", f"dataset.path={folder}")
    assert done.returncode == 3, done.stderr
    assert "broken.png" in done.stderr
    errors = [json.loads(line) for line in (tmp_path / "run" / "errors.jsonl").read_text().splitlines()]
    assert [e["image"] for e in errors] == ["broken"]
    assert json.loads((tmp_path / "run" / "results.jsonl").read_text())["image"] == "good"


@pytest.mark.parametrize(
    ("overrides", "message"),
    [
        (["eps=0"], "eps must be > 0"),
        (["eps=-3"], "eps must be > 0"),
        (["budget=0"], "budget must be a positive"),
        (["norm=l1"], "norm must be l2 or linf"),
        (["goal.box=[0,0,5000,10]"], "outside"),
        (["image=/nonexistent/file.png"], "no such file"),
        (["search.n_patches=0"], "n_patches"),
        (["torch_threads=0"], "torch_threads"),
        (["search.region=corner"], "search.region"),
    ],
)
def test_bad_settings_are_clear_errors(tmp_path, overrides, message) -> None:
    done = blackbox(tmp_path, *FAST, "dataset.names=[chelsea]", *overrides)
    assert done.returncode != 0
    assert message in done.stderr
    assert "Traceback" not in done.stderr


def test_a_missing_image_file_is_a_bad_setting_leaving_no_folder(tmp_path) -> None:
    done = blackbox(tmp_path, *FAST, f"image={tmp_path / 'absent.jpg'}")
    assert done.returncode == 2, done.stderr
    assert "absent.jpg: no such file" in done.stderr and "Traceback" not in done.stderr
    assert not (tmp_path / "run").exists()


def test_unknown_target_lists_the_zoo(tmp_path) -> None:
    done = blackbox(tmp_path, *FAST, "target=nosuchmodel")
    assert done.returncode != 0
    assert "classic" in done.stderr and "nosuchmodel" in done.stderr


def test_replay_of_an_unknown_image_is_a_clear_error(tmp_path) -> None:
    done = blackbox(tmp_path, *FAST, "dataset.names=[chelsea]")
    assert done.returncode == 0
    replayed = subprocess.run(
        [sys.executable, "-m", "blackbox.replay", f"run={tmp_path / 'run'}", "image=nope"],
        cwd=REPO,
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert replayed.returncode == 2 and "chelsea" in replayed.stderr


def test_adversarial_png_is_what_the_target_saw(tmp_path) -> None:
    done = blackbox(tmp_path, *FAST, "dataset.names=[rocket]")
    assert done.returncode == 0
    from targets.classic import ClassicSaliency

    run = tmp_path / "run"
    record = json.loads((run / "results.jsonl").read_text())
    pixels = np.asarray(Image.open(run / "adversarial" / "rocket.png"), dtype=np.float32) / 255
    again = ClassicSaliency().query([pixels])[0]
    assert list(again.salient_point) == record["salient_point_adversarial"]


def test_success_rate_leaves_out_images_already_in_the_goal() -> None:
    from blackbox.experiment.summary import success_rate, summary_table

    base = {
        "goal": {"source": "protocol"},
        "shift_pct_distance": 10.0,
        "shift_pct_width": 1.0,
        "queries": 4,
        "queries_to_success": None,
        "l2": 1.0,
        "linf": 0.1,
        "psnr": 40.0,
        "crop_contains_goal": {"1": True, "2": False},
        "clean_crop_contains_goal": {"1": False, "2": False},
    }
    records = [
        {**base, "image": "a", "clean_in_goal": True, "success": True},
        {**base, "image": "b", "clean_in_goal": False, "success": True},
        {**base, "image": "c", "clean_in_goal": False, "success": False},
    ]
    assert success_rate(records) == pytest.approx(0.5)
    assert np.isnan(success_rate(records[:1]))
    table = summary_table(records)
    assert "| **mean (3)** | | 1 | 50% |" in table
    assert "0→1/2" in table


@pytest.mark.parametrize("search", ["patches", "blobs"])
def test_every_search_space_runs_and_replays(tmp_path, search) -> None:
    """Each conf/search/*.yaml composes, searches, and stores trials that replay byte-identically."""
    from types import SimpleNamespace

    import optuna

    from blackbox.core.images import load_bundled
    from blackbox.experiment.storage import make_storage
    from blackbox.search import render_trial
    from targets._zoo import group_names

    assert search in group_names("search")
    done = blackbox(tmp_path, *FAST, "dataset.names=[rocket]", f"search={search}", "early_stop=false")
    assert done.returncode == 0, done.stderr
    storage = make_storage("journal", tmp_path / "run")
    name = optuna.get_all_study_summaries(storage)[0].study_name
    best = optuna.load_study(study_name=name, storage=storage).best_trial
    config = best.user_attrs["perturbation"]
    assert ("frequency" in config["space"]) == (search == "patches")
    clean = SimpleNamespace(image=SimpleNamespace(pixels=load_bundled("rocket", working_width=160).pixels))
    adversarial = np.asarray(Image.open(tmp_path / "run" / "adversarial" / "rocket.png"))
    assert render_trial(clean, config).tobytes() == adversarial.tobytes()


def test_the_verdict_line_counts_attacked_images_whose_crop_moved() -> None:
    from blackbox.experiment.summary import verdict

    records = [
        {"clean_in_goal": False, "success": True},
        {"clean_in_goal": False, "success": False},
        {"clean_in_goal": False, "success": True},
        {"clean_in_goal": True, "success": True},
    ]
    assert verdict(records, 2) == (
        "verdict: 2 of 3 images: crop moved to the goal (1 already in the goal; 2 skipped, see errors.jsonl)"
    )
    assert verdict(records[1:2]) == "verdict: 0 of 1 images: crop moved to the goal"
    assert verdict([], 1).startswith("verdict: no image attacked (1 skipped")


def test_a_run_ends_with_its_verdict_and_shows_the_jobs_progress(tmp_path) -> None:
    done = blackbox(tmp_path, "working_width=96", "budget=2", "dataset.names=[chelsea,coffee]")
    assert done.returncode == 0, done.stderr
    assert done.stdout.strip().splitlines()[-1].startswith("verdict: ")
    assert "images: 100%" in done.stderr and "2/2" in done.stderr  # the job's bar, beside each image's
    assert "verdict: " in (tmp_path / "run" / "summary.md").read_text()
