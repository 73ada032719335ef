"""``blackbox.evaluate.compare``: every method on the same images, resumable, with its report."""

from __future__ import annotations

import csv
import os
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
import torch
from filelock import FileLock
from hydra import compose, initialize_config_dir
from omegaconf import DictConfig

from blackbox.experiment.run import EXIT_BAD_CONFIG
from blackbox.experiment.run_folder import RUN_LOCK, RunFolderBusyError
from blackbox.report import main as report_main
from blackbox.settings.commands import compare, comparison
from targets import Output, Target, TargetOutput
from targets.classic import ClassicSaliency
from tests.conftest import REPO

TINY = [
    "working_width=128",
    "dataset.names=[chelsea,coffee]",
    "budget=6",
    "batch_size=3",
    "eps_list=[2,20]",
    "smallest_eps.bisection_steps=2",
    "progress=false",
    "examples.eps=20",
]


def compare_config(*overrides: str) -> DictConfig:
    with initialize_config_dir(config_dir=str(REPO / "conf"), version_base="1.3"):
        return compose(config_name="compare", overrides=[*TINY, *overrides])


def rows(run_dir: Path) -> list[dict]:
    with (run_dir / "results.csv").open(newline="") as handle:
        return list(csv.DictReader(handle))


class CropOnly(Target):
    """A crop-only service: classic's crops and nothing else (no map, no point, no gradients)."""

    name = "crop_only"

    def __init__(self) -> None:
        super().__init__()
        self.inner = ClassicSaliency()

    @property
    def outputs(self) -> frozenset[Output]:
        return frozenset({Output.CROPS})

    def answer(self, images: list[np.ndarray]) -> list[TargetOutput]:
        return [TargetOutput((0.0, 0.0), o.crops) for o in self.inner.query(images)]


def test_every_method_every_eps_then_resume(tmp_path: Path) -> None:
    cfg = compare_config("methods=[gaussian_noise,iterative_fgm,random]")
    assert comparison(cfg, tmp_path, target_name="classic").run() == 0
    first = rows(tmp_path)
    sweep = [r for r in first if r["bisection"] == "False"]
    assert len(sweep) == 2 * 3 * 2  # images x methods x eps
    assert {r["family"] for r in sweep} == {"white-box", "black-box"}
    for r in sweep:
        assert float(r["l2"]) <= float(r["eps"]) + 1e-6
        assert 0 < float(r["ssim"]) <= 1
        queries = int(float(r["queries"]))
        assert queries <= 6 if r["method"] == "random" else queries == 1
    # Bisection only ever runs below a successful sweep size, and only for white-box methods.
    assert all(r["family"] == "white-box" for r in first if r["bisection"] == "True")
    report = (tmp_path / "report.md").read_text()
    assert "the paper's Table 1" in report and "Smallest successful perturbation" in report
    for figure in ("shift_histogram.png", "success_vs_queries.png", "examples.png"):
        assert (tmp_path / "figures" / figure).stat().st_size > 1000
    # The same command again: nothing is attacked twice.
    assert comparison(cfg, tmp_path, target_name="classic").run() == 0
    assert rows(tmp_path) == first
    # The report rebuilds from results.csv alone.
    assert report_main([f"run={tmp_path}"]) == 0


def test_white_box_on_a_crop_only_target_needs_a_stand_in(tmp_path: Path) -> None:
    cfg = compare_config("methods=[iterative_fgm]", "eps_list=[20]")
    assert comparison(cfg, tmp_path / "a", target_name="crop_only", target=CropOnly()).run() == 4
    assert "whitebox_target" in (tmp_path / "a" / "selection.json").read_text()

    cfg = compare_config("methods=[iterative_fgm]", "eps_list=[20]", "whitebox_target=classic")
    assert comparison(cfg, tmp_path / "b", target_name="crop_only", target=CropOnly()).run() == 0
    crafted = rows(tmp_path / "b")
    assert {r["crafted_on"] for r in crafted} == {"classic"}
    assert {r["measure"] for r in crafted} == {"crop_only"}


def test_paper_selection_reports_what_each_rule_dropped(tmp_path: Path) -> None:
    cfg = compare_config(
        "methods=[gaussian_noise]",
        "eps_list=[20]",
        "dataset.names=[astronaut,chelsea]",
        "selection.enabled=true",
    )
    comparison(cfg, tmp_path, target_name="classic").run()
    report = (tmp_path / "report.md").read_text()
    assert "| horizontal | 1 |" in report  # astronaut is square
    assert "astronaut" not in {r["image"] for r in rows(tmp_path)}


@pytest.mark.parametrize(
    ("override", "message"),
    [("methods=[nope]", "unknown method 'nope'"), ("eps_list=[0]", "eps_list must be positive")],
)
def test_bad_settings_are_clear_errors(tmp_path: Path, override: str, message: str) -> None:
    with pytest.raises(ValueError, match=message):
        comparison(compare_config(override), tmp_path, target_name="classic")


def test_the_cli_checks_settings_first_and_leaves_no_folder(tmp_path: Path) -> None:
    for bad, says in (("budget=-5", "budget must be a positive whole number"), ("eps_list=[0.001]", "8-bit")):
        run_dir = tmp_path / bad.split("=")[0]
        done = subprocess.run(
            [sys.executable, "-m", "blackbox.compare", bad, f"hydra.run.dir={run_dir}"],
            cwd=REPO,
            env={**os.environ, "OMP_NUM_THREADS": "1"},
            capture_output=True,
            text=True,
            timeout=120,
        )
        assert done.returncode == EXIT_BAD_CONFIG, done.stderr
        assert done.stderr.startswith("error: ") and says in done.stderr and "Traceback" not in done.stderr
        assert not run_dir.exists()


def test_compare_holds_the_run_folder_lock(tmp_path: Path) -> None:
    cfg = compare_config("methods=[gaussian_noise]", "eps_list=[20]")
    with FileLock(str(tmp_path / RUN_LOCK)), pytest.raises(RunFolderBusyError, match="another blackbox"):
        compare(cfg, tmp_path, target_name="classic")
    assert not (tmp_path / "results.csv").exists()


def test_compare_honours_torch_threads(tmp_path: Path) -> None:
    before = torch.get_num_threads()
    cfg = compare_config(
        "methods=[gaussian_noise]", "eps_list=[20]", "dataset.names=[chelsea]", "torch_threads=1"
    )
    torch.set_num_threads(2)
    try:
        assert compare(cfg, tmp_path, target_name="classic") == 0
        assert torch.get_num_threads() == 1
    finally:
        torch.set_num_threads(before)


def test_the_cli_is_quiet_keeps_no_empty_logs_and_a_small_examples_picture(tmp_path: Path) -> None:
    run_dir = tmp_path / "run"
    done = subprocess.run(
        [
            sys.executable,
            "-m",
            "blackbox.compare",
            *TINY,
            "methods=[random,tpe]",
            "eps_list=[20]",
            "dataset.names=[chelsea]",
            f"hydra.run.dir={run_dir}",
        ],
        cwd=REPO,
        env={**os.environ, "OMP_NUM_THREADS": "1"},
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert done.returncode == 0, done.stderr
    assert "A new study created" not in done.stderr + done.stdout  # Optuna's line per in-memory study
    assert not list(run_dir.glob("*.log"))  # Hydra's job log stayed empty: none is made
    assert (run_dir / "figures" / "examples.png").stat().st_size < 1_000_000


def test_a_comparison_split_over_processes_merges_into_one_report(tmp_path: Path) -> None:
    from omegaconf import OmegaConf

    parts = []
    for image in ("chelsea", "coffee"):
        cfg = compare_config("methods=[gaussian_noise]", "eps_list=[20]", f"dataset.names=[{image}]")
        part = tmp_path / image
        assert comparison(cfg, part, target_name="classic").run() == 0
        (part / ".hydra").mkdir()  # what Hydra writes beside a CLI run
        OmegaConf.save(cfg, part / ".hydra" / "config.yaml")
        parts.append(part)
    out = tmp_path / "merged"
    assert report_main([f"run={out}", f"merge=[{','.join(map(str, parts))}]"]) == 0
    assert sorted(r["image"] for r in rows(out) if r["bisection"] == "False") == ["chelsea", "coffee"]
    assert "Smallest successful perturbation" in (out / "report.md").read_text()
    assert (out / "clean" / "chelsea.png").exists() and (out / "clean" / "coffee.png").exists()
    # The same image in two parts, a non-empty output, or other settings: refused, nothing overwritten.
    assert report_main([f"run={tmp_path / 'twice'}", f"merge=[{parts[0]},{parts[0]}]"]) == 2
    assert report_main([f"run={out}", f"merge=[{','.join(map(str, parts))}]"]) == 2
    other = compare_config("methods=[gaussian_noise]", "eps_list=[10]", "dataset.names=[rocket]")
    OmegaConf.save(other, parts[1] / ".hydra" / "config.yaml")
    assert report_main([f"run={tmp_path / 'mixed'}", f"merge=[{','.join(map(str, parts))}]"]) == 2
    assert not (tmp_path / "mixed").exists() and not (tmp_path / "twice").exists()


def test_an_input_left_out_of_a_comparison_is_exit_3(tmp_path: Path) -> None:
    folder = tmp_path / "images"
    folder.mkdir()
    import skimage.data
    from PIL import Image

    Image.fromarray(skimage.data.chelsea()).save(folder / "cat.png")
    (folder / "clip.avif").write_bytes(b"\0\0\0\x1cftypavif" + bytes(64))  # unreadable here: skipped
    overrides = [o for o in TINY if not o.startswith("dataset.")]
    overrides += ["methods=[gaussian_noise]", "eps_list=[20]", "dataset=folder", f"dataset.path={folder}"]
    with initialize_config_dir(config_dir=str(REPO / "conf"), version_base="1.3"):
        cfg = compose(config_name="compare", overrides=overrides)
    assert comparison(cfg, tmp_path / "run", target_name="classic").run() == 3
    assert "clip" in (tmp_path / "run" / "selection.json").read_text()


def test_the_report_says_what_the_bisection_floor_is_and_counts_its_queries(tmp_path: Path) -> None:
    from blackbox.evaluate.compare import COLUMNS
    from blackbox.evaluate.report import write_report

    def row(eps: float, success: bool, bisection: bool, method: str = "iterative_fgm") -> dict:
        family = "black-box" if method == "random" else "white-box"
        values = {"image": "chelsea", "method": method, "family": family, "eps": eps, "success": success}
        values |= {"bisection": bisection, "clean_in_goal": False, "queries": 6 if method == "random" else 1}
        values |= {"l2": eps * 0.98, "shift_pct_distance": 50.0, "shift_pct_width": 5.0, "ssim": 0.99}
        return {k: str(values.get(k, "")) for k in COLUMNS}

    # Sweep 10 succeeds; the bisection tries 5 (no), 7.5 (yes), 6.25 (no): the floor is 7.5, to 1.25.
    raw = [row(10, True, False), row(5, False, True), row(7.5, True, True), row(6.25, False, True)]
    raw.append(row(10, True, False, method="random"))
    report = write_report(tmp_path, raw, None, {}, {"smallest_eps": {"bisection_steps": 3}, "budget": 6})
    assert "| chelsea | 7.35 | 9.80 |" in report
    assert "not a measured minimum" in report and "3 bisection steps" in report
    assert "iterative_fgm 1.25" in report
    # Per image: 1 sweep query and 3 bisection checks for the white-box method; 6 for the search.
    assert "| iterative_fgm | 1.0 | 3.0 | 4.0 |" in report and "| random | 6.0 | 0.0 | 6.0 |" in report
