"""``attack=accumulate``: accumulated changes on a dense basis, then the decision-based L2 shrink."""

from __future__ import annotations

import subprocess
import sys

import numpy as np
import pytest
from hydra.utils import instantiate
from omegaconf import OmegaConf

from blackbox.core.goal import default_goal
from blackbox.search import AccumulateSearch
from blackbox.search.proposals import CellOffsets, LowFrequencyDCT, Proposal, make_proposal
from targets import Output
from targets._zoo import group_config
from targets.classic import ClassicSaliency
from tests.conftest import REPO
from tests.test_patch_search import CountingTarget, problem_for

ALL = [
    {"proposal": "cells"},
    {"proposal": "cells", "proposal_settings": {"region": "near", "max_block": 3}},
    {"proposal": "dct", "proposal_settings": {"order": 8}},
    {"proposal": "cells", "sampler": "random"},
    {"proposal": "cells", "shrink": False, "early_stop": False},
]


@pytest.mark.parametrize("settings", ALL)
def test_budget_and_eps_are_respected_after_quantisation(photo, settings) -> None:
    target = CountingTarget(ClassicSaliency())
    problem = problem_for(photo, target, eps=2.0)
    seen_before = target.seen
    result = AccumulateSearch(budget=25, seed=0, **settings).run(problem, target)
    # Every target call is counted, the shrink's too: the counter wraps the target itself.
    assert target.seen - seen_before == result.queries <= 25
    assert result.adversarial.dtype == np.uint8 and result.adversarial.shape == photo.shape
    delta = (result.adversarial.astype(np.float64) - photo) / 255.0
    assert np.sqrt(np.sum(delta**2)) <= 2.0 + 1e-9
    assert not np.array_equal(result.adversarial, photo)


def test_linf_budget_is_respected(photo) -> None:
    target = ClassicSaliency()
    problem = problem_for(photo, target, eps=4 / 255)
    problem = type(problem)(problem.image, problem.clean_output, problem.goal, 4 / 255, "linf", "classic")
    result = AccumulateSearch(budget=10, seed=0).run(problem, target)
    assert np.abs(result.adversarial.astype(int) - photo).max() <= 4


def test_same_seed_same_bytes_other_seed_other_search(photo) -> None:
    target = ClassicSaliency()
    problem = problem_for(photo, target, eps=2.0)
    first = AccumulateSearch(budget=20, seed=3).run(problem, target)
    again = AccumulateSearch(budget=20, seed=3).run(problem, target)
    other = AccumulateSearch(budget=20, seed=4).run(problem, target)
    assert np.array_equal(first.adversarial, again.adversarial)
    assert first.score == again.score and first.queries_to_success == again.queries_to_success
    assert not np.array_equal(first.adversarial, other.adversarial)


def test_shrink_reports_the_smallest_success_not_the_first(photo) -> None:
    target = ClassicSaliency()
    problem = problem_for(photo, target, eps=20.0)
    result = AccumulateSearch(budget=60, seed=0).run(problem, target)
    assert result.success, "classic at eps 20 on chelsea moves within 60 queries (it does at 160 px)"
    l2 = float(np.sqrt(np.sum(((result.adversarial.astype(float) - photo) / 255.0) ** 2)))
    assert result.extra["first_success_l2"] is not None
    assert l2 <= result.extra["first_success_l2"] + 1e-9
    # Every recorded success is smaller than the one before (what the shrink kept).
    sizes = [size for _, size in result.extra["successes"]]
    assert sizes == sorted(sizes, reverse=True) and abs(sizes[-1] - l2) < 1e-9
    assert result.queries_to_success is not None and result.queries_to_success <= result.queries


def test_crop_only_target_is_scored_on_crops(photo) -> None:
    target = CountingTarget(ClassicSaliency(), outputs=frozenset({Output.CROPS}))
    problem = problem_for(photo, ClassicSaliency(), eps=20.0)
    result = AccumulateSearch(budget=12, seed=0, accept_ties=True).run(problem, target)
    assert result.success_rule == "crops"
    assert result.queries == target.seen <= 12


@pytest.mark.parametrize(
    ("settings", "message"),
    [
        ({"budget": 0}, "budget must be a positive"),
        ({"budget": 5, "sampler": "cmaes"}, "sampler must be one of tpe, random"),
        ({"budget": 5, "step": 0.0}, "step must be in"),
        ({"budget": 5, "step": 1.5}, "step must be in"),
        ({"budget": 5, "n_startup": 0}, "n_startup must be"),
        ({"budget": 5, "shrink_steps": -1}, "shrink_steps must be"),
        ({"budget": 5, "shrink_factor": 1.0}, "shrink_factor must be in"),
        ({"budget": 5, "proposal": "blobs"}, "unknown proposal 'blobs'; use one of cells, dct"),
        ({"budget": 5, "proposal_settings": {"cells": 3}}, "bad settings for proposal 'cells'"),
        ({"budget": 5, "proposal_settings": {"region": "goal"}}, "region must be 'image' or 'near'"),
        ({"budget": 5, "proposal_settings": {"cells_long": 0}}, "cells_long must be at least 1"),
        ({"budget": 5, "proposal": "dct", "proposal_settings": {"order": 0}}, "order must be at least 1"),
    ],
)
def test_bad_settings_say_what_to_use(settings, message) -> None:
    with pytest.raises(ValueError, match=message.replace("(", r"\(")):
        AccumulateSearch(**settings)


def test_a_budget_below_one_level_is_refused_with_a_reason(photo) -> None:
    target = CountingTarget(ClassicSaliency())
    problem = problem_for(photo, target, eps=1e-4)
    seen = target.seen
    with pytest.raises(Exception, match="rounded to the clean image"):
        AccumulateSearch(budget=5, seed=0).run(problem, target)
    assert target.seen == seen  # nothing was sent


@pytest.mark.parametrize(
    "proposal", [CellOffsets(), CellOffsets(region="near", max_block=3), LowFrequencyDCT()]
)
def test_proposals_render_unit_changes_inside_their_space(photo, proposal: Proposal) -> None:
    clean = ClassicSaliency().query([photo / 255.0])[0]
    goal = default_goal(
        width=160, height=106, log_density=clean.log_density, salient_point=clean.salient_point
    )
    proposal.setup(106, 160, goal, clean.salient_point)
    rng = np.random.default_rng(0)
    for _ in range(20):
        params = {k: float(rng.uniform(d.low, d.high)) for k, d in proposal.space().items()}
        change = proposal.change(params)
        assert change.shape == (106, 160, 3) and change.dtype == np.float64
        assert abs(np.sqrt(np.sum(change**2)) - 1.0) < 1e-9 or not change.any()
    # The upper edge of every range is still a valid change (floors are clamped).
    top = {k: float(d.high) for k, d in proposal.space().items()}
    assert np.isfinite(proposal.change(top)).all()


def test_cells_follow_the_model_grid() -> None:
    proposal = make_proposal("cells", {"cells_long": 20, "max_block": 1})
    goal = default_goal(width=640, height=480, log_density=None, salient_point=(100.0, 100.0))
    proposal.setup(480, 640, goal, (100.0, 100.0))
    change = proposal.change({"row": 2.5, "col": 3.9, "size": 1.0, "red": 1.0, "green": 0.0, "blue": -1.0})
    rows, cols = np.nonzero(change[..., 0])
    # twitter at 640 px: a cell is 32 px (its 320 px copy's 16 px cells).
    assert (rows.min(), rows.max(), cols.min(), cols.max()) == (64, 95, 96, 127)
    assert (change[..., 1] == 0).all() and (change[..., 2] < 0).sum() == 32 * 32


def test_conf_builds_the_attack_and_compare_counts_it_black_box() -> None:
    root = OmegaConf.create(
        {"budget": 30, "early_stop": True, "seed": 2, "attack": group_config("attack", "accumulate")}
    )
    settings = {k: v for k, v in OmegaConf.to_container(root.attack, resolve=True).items() if k != "name"}
    attack = instantiate(settings)
    assert isinstance(attack, AccumulateSearch) and attack.budget == 30 and attack.seed == 2
    from blackbox.settings.build import attack_family

    families = {
        name: attack_family(group_config("attack", name)) for name in ("accumulate", "pgd", "gaussian_noise")
    }
    assert families == {"accumulate": "black-box", "pgd": "white-box", "gaussian_noise": "white-box"}


@pytest.mark.slow
def test_cli_runs_attack_accumulate(tmp_path) -> None:
    run = subprocess.run(
        [
            sys.executable,
            "-m",
            "blackbox",
            "attack=accumulate",
            "budget=6",
            "working_width=96",
            "dataset.names=[chelsea]",
            "progress=false",
            f"hydra.run.dir={tmp_path}",
        ],
        cwd=REPO,
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert run.returncode == 0, run.stderr[-2000:]
    assert (tmp_path / "results.jsonl").read_text().count('"method": "accumulate"') == 1
