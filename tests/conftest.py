from __future__ import annotations

import os
from pathlib import Path

import numpy as np
import pytest

REPO = Path(__file__).resolve().parents[1]
SHARED_MODELS = REPO.parent / "shared" / "models"

# Tests read model files only from ../shared/models (or BLACKBOX_MODELS) and never download.
os.environ.setdefault("BLACKBOX_MODELS", str(SHARED_MODELS))
os.environ["BLACKBOX_OFFLINE"] = "1"


@pytest.fixture
def photo() -> np.ndarray:
    """A small real photograph (scikit-image's chelsea), uint8, 160 px wide."""
    import skimage.data
    from PIL import Image

    image = Image.fromarray(skimage.data.chelsea()).resize((160, 106), Image.Resampling.BICUBIC)
    return np.asarray(image, dtype=np.uint8).copy()


# The slowest tests (measured with --durations on 2 cores: each takes 2.5 s or more, most start
# `python -m ...` as a user would; together about 80% of the suite's time), marked here in one
# place so the test files stay as they are. `pytest -m "not slow"` is the fast command in README.md;
# CI runs the whole suite. Parametrised tests are named without their parameters (all are slow).
SLOW = frozenset(
    {
        "test_bad_config.py::test_a_sweep_runs_every_job_and_exits_with_the_worst_code",
        "test_bad_config.py::test_the_cli_exits_2_and_leaves_no_run_folder",
        "test_bad_config.py::test_the_cli_reads_a_tilde_path_as_the_readme_writes_it",
        "test_cli.py::test_adversarial_png_is_what_the_target_saw",
        "test_cli.py::test_a_run_ends_with_its_verdict_and_shows_the_jobs_progress",
        "test_cli.py::test_bad_settings_are_clear_errors",
        "test_cli.py::test_default_run_writes_every_output",
        "test_cli.py::test_every_search_space_runs_and_replays",
        "test_cli.py::test_folder_with_a_bad_file_skips_it_and_says_so",
        "test_cli.py::test_replay_of_an_unknown_image_is_a_clear_error",
        "test_cli.py::test_rerun_in_the_same_folder_resumes",
        "test_cli.py::test_single_image_and_random_sampler",
        "test_cli.py::test_unknown_target_lists_the_zoo",
        "test_compare.py::test_a_comparison_split_over_processes_merges_into_one_report",
        "test_compare.py::test_every_method_every_eps_then_resume",
        "test_compare.py::test_the_cli_checks_settings_first_and_leaves_no_folder",
        "test_compare.py::test_the_cli_is_quiet_keeps_no_empty_logs_and_a_small_examples_picture",
        "test_dashboard.py::test_a_run_that_never_started_leaves_no_folder",
        "test_dashboard.py::test_a_trial_page_shows_its_artifact_images_in_chromium",
        "test_dashboard.py::test_the_dashboard_module_reports_errors_on_the_command_line",
        "test_distill.py::test_cli_tiny_run_and_clear_errors",
        "test_distill.py::test_tiny_run_writes_checkpoint_log_and_fidelity",
        "test_faults.py::test_shared_case_torn_journal_is_exit_2_naming_the_line",
        "test_faults_round2.py::test_a_sweep_over_images_one_refused_shows_every_job",
        "test_faults_round2.py::test_the_cli_exits_2_without_a_traceback_on_storage_of_another_optuna",
        "test_faults_round2.py::test_a_read_only_run_folder_is_refused_before_any_work_and_resumes_after",
        "test_faults_round2.py::test_a_refused_rerun_changes_nothing_in_a_finished_folder_and_the_dashboard_reads_its_record",
        "test_faults_round2.py::test_a_refused_sweep_job_changes_nothing_in_its_finished_folder",
        "test_http_run.py::test_cli_run_through_http_never_stores_the_secret",
        "test_multirun.py::test_a_sweep_runs_every_job",
        "test_multirun.py::test_joblib_launched_workers_share_one_postgres_experiment",
        "test_resume.py::test_leftovers_of_a_kill_are_repaired_with_a_warning",
        "test_resume.py::test_sigkill_mid_image_then_the_same_command_resumes_and_loses_nothing",
        "test_robustness.py::test_the_cli_exits_2_on_bad_settings_and_leaves_no_folder",
        "test_serve.py::test_cli_serves_a_zoo_target",
        "test_target_deepgaze.py::test_cli_runs_with_fixture_weights_given_by_path",
        "test_thumbnail_run.py::test_cli_run_through_thumbnails_counts_requests_and_cost",
        "test_thumbnail_locate.py::test_found_within_2_px_for_every_filter_and_jpeg_quality",
        "test_target_deepgaze.py::test_cli_without_model_files_fails_clearly",
        "test_target_twitter.py::test_attack_runs_end_to_end",
        "test_target_twitter.py::test_cli_corrupt_weights_is_one_clear_line",
        "test_target_twitter.py::test_cli_missing_weights_is_one_clear_line",
        "test_target_twitter.py::test_white_box_attack_runs_end_to_end",
        "test_workers.py::test_postgres_without_a_url_is_a_clear_error",
    }
)


def pytest_collection_modifyitems(config: pytest.Config, items: list[pytest.Item]) -> None:
    for item in items:
        if f"{item.path.name}::{item.originalname}" in SLOW:
            item.add_marker(pytest.mark.slow)
