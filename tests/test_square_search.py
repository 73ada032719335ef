"""``attack=square``: accumulated L-inf squares at the cap, placed near the salient point, then pruned."""

from __future__ import annotations

import numpy as np
import pytest
from hydra.utils import instantiate
from omegaconf import OmegaConf

from blackbox.attacks.testing import AttackConformance, counting, sample_problem
from blackbox.core.goal import Goal
from blackbox.core.perturbation import UnusableBudgetError
from blackbox.search import BanditsTD, Parsimonious, SimBADCT, SquareAttack, SquareSearch
from blackbox.search.square_search import PATTERNS, Square, anchors, pattern_signs, render
from targets import TargetOutput
from targets._zoo import group_config
from targets.classic import ClassicSaliency

CAP = 4 / 255


class TestSquareSearchConformance(AttackConformance):
    query_budget = 12
    eps_inf = CAP

    @pytest.fixture
    def attack(self):
        return lambda: SquareSearch(budget=self.query_budget, seed=3)


@pytest.mark.parametrize("settings", [{}, {"sampler": "tpe", "n_startup": 2}, {"placement": "uniform"}])
def test_every_pixel_stays_within_the_cap_and_l2(settings) -> None:
    target = counting(ClassicSaliency())
    problem = sample_problem(target, eps=0.5, eps_inf=CAP)
    result = SquareSearch(budget=15, **settings).run(problem, target)
    delta = result.adversarial.astype(np.int16) - problem.image.pixels.astype(np.int16)
    assert np.abs(delta).max() <= 4 and np.abs(delta).max() >= 1
    assert problem.budget.size(delta / 255.0) <= 0.5 + 1e-9
    assert result.eps_inf == CAP and result.queries <= 15


def test_a_problem_without_a_cap_is_refused_saying_what_to_set() -> None:
    target = ClassicSaliency()
    problem = sample_problem(target, eps=2.0)
    with pytest.raises(UnusableBudgetError, match="eps_inf="):
        SquareSearch(budget=5).run(problem, target)


@pytest.mark.parametrize(
    ("settings", "message"),
    [
        ({"budget": 0}, "budget"),
        ({"sampler": "cmaes"}, "sampler"),
        ({"placement": "centre"}, "placement"),
        ({"patterns": ["flat", "stripes"]}, "patterns"),
        ({"patterns": []}, "patterns"),
        ({"reach": 0}, "reach"),
        ({"min_side": 10, "max_side": 4}, "min_side"),
        ({"n_startup": 0}, "n_startup"),
    ],
)
def test_bad_settings_say_what_to_use(settings, message) -> None:
    with pytest.raises(ValueError, match=message):
        SquareSearch(**{"budget": 5, **settings})


@pytest.mark.parametrize("pattern", PATTERNS)
def test_patterns_are_signs_on_blocks(pattern) -> None:
    signs = pattern_signs(pattern, 13, np.array([1, -1, 1]), np.random.default_rng(0))
    assert signs.shape == (13, 13, 3) and set(np.unique(signs)) <= {-1, 1}
    if pattern == "flat":
        assert (signs == np.array([1, -1, 1])).all()
    else:
        block = int(pattern.removeprefix("noise"))
        # Constant on each block x block tile.
        assert (signs[::block, ::block].repeat(block, 0).repeat(block, 1)[:13, :13] == signs).all()


def test_later_squares_overwrite_earlier_ones() -> None:
    ones = np.ones((4, 4, 3), dtype=np.int16)
    delta = render([Square(0, 0, ones), Square(2, 2, -ones)], 8, 8, levels=3)
    assert delta[0, 0, 0] == 3 and delta[2, 2, 0] == -3 and delta[5, 5, 0] == -3 and delta[7, 7, 0] == 0
    # its stored form: the signs packed 8 to a byte (48 minus signs: 6 zero bytes, base64)
    assert Square(2, 2, -ones).as_dict() == {"y0": 2, "x0": 2, "side": 4, "bits": "AAAAAAAA"}


def test_anchors_are_the_maps_argmax_outside_and_inside_the_goal() -> None:
    density = np.full((20, 40), -10.0)  # the image's 40 x 20 px
    density[5, 7] = -1.0  # outside the goal
    density[15, 31] = -2.0  # inside it
    goal = Goal(24.0, 0.0, 39.0, 19.0, source="protocol", peak_x=7.0, target_x=31.0)
    output = TargetOutput(log_density=density, salient_point=(7.0, 5.0), crops=())
    rival, inside = anchors(output, goal, 40, 20, has_point=True)
    assert rival == (7.5, 5.5) and inside == (31.5, 15.5)
    no_map = TargetOutput(log_density=None, salient_point=(7.0, 5.0), crops=())
    assert anchors(no_map, goal, 40, 20, has_point=True) == ((7.0, 5.0), (31.5, 9.5))


def test_minimise_keeps_a_success_and_never_raises_the_level() -> None:
    target = ClassicSaliency()
    problem = sample_problem(target, eps=20.0, eps_inf=8 / 255)
    result = SquareSearch(budget=60, seed=1).run(problem, target)
    if result.success:
        assert result.extra["levels"] <= 8 and result.perturbation is not None
        assert len(result.perturbation["squares"]) == result.extra["squares"]
    delta = np.abs(result.adversarial.astype(np.int16) - problem.image.pixels.astype(np.int16))
    assert delta.max() <= result.extra["levels"]


def test_conf_builds_the_attack_as_black_box() -> None:
    root = OmegaConf.create(
        {"budget": 30, "early_stop": True, "seed": 2, "attack": group_config("attack", "square")}
    )
    settings = {k: v for k, v in OmegaConf.to_container(root.attack, resolve=True).items() if k != "name"}
    attack = instantiate(settings)
    assert isinstance(attack, SquareSearch) and attack.budget == 30 and attack.seed == 2
    from blackbox.settings.build import attack_family

    assert attack_family(group_config("attack", "square")) == "black-box"


def test_every_query_is_a_stored_trial_and_the_result_replays(tmp_path) -> None:
    import optuna

    from blackbox.experiment.storage import journal_storage
    from blackbox.search import render_trial
    from blackbox.settings.build import attack_spec
    from blackbox.settings.preflight import compose_overrides

    storage = journal_storage(tmp_path / "trials.journal")
    overrides = ["attack=square", "budget=40", "early_stop=false", "progress=false"]
    spec = attack_spec(compose_overrides(overrides))
    target = counting(ClassicSaliency())
    problem = sample_problem(target, eps=20.0, eps_inf=CAP)
    before = target.answered
    result = spec.build(storage=storage).run(problem, target)
    [summary] = optuna.get_all_study_summaries(storage)
    assert summary.study_name == result.extra["study"]
    assert summary.user_attrs["image"] == problem.image.image_id
    trials = optuna.load_study(study_name=summary.study_name, storage=storage).trials
    assert len(trials) == result.queries == target.answered - before  # one trial a query, pruning's too
    assert {t.user_attrs["phase"] for t in trials} <= {"search", "prune", "level"}
    best = trials[result.best_trial]
    assert np.array_equal(render_trial(problem, best.user_attrs["perturbation"]), result.adversarial)
    # The same image again (a run that ended before its record): the study is replaced, not doubled.
    again = spec.build(storage=storage).run(problem, target)
    assert np.array_equal(again.adversarial, result.adversarial)
    assert [s.n_trials for s in optuna.get_all_study_summaries(storage)] == [result.queries]


def test_without_a_storage_nothing_is_written(tmp_path) -> None:
    target = ClassicSaliency()
    result = SquareSearch(budget=5, seed=1).run(sample_problem(target, eps=20.0, eps_inf=CAP), target)
    assert "study" not in result.extra and result.perturbation is not None


def test_a_square_round_trips_through_its_stored_form() -> None:
    from blackbox.search.square_trials import decode_square, encode_square

    rng = np.random.default_rng(0)
    for side in (1, 3, 8, 17):
        signs = rng.choice(np.array([-1, 1], dtype=np.int16), size=(side, side, 3))
        y0, x0, back = decode_square(encode_square(5, 7, signs))
        assert (y0, x0) == (5, 7) and np.array_equal(back, signs)


# The named baselines under the cap (blackbox/search/capped_baselines.py) keep the same promises.
BASELINES = {
    "square_attack": lambda: SquareAttack(budget=12, seed=3),
    "parsimonious": lambda: Parsimonious(budget=12, block=16, seed=3),
    "simba_dct": lambda: SimBADCT(budget=12, order=4, seed=3),
    "bandits": lambda: BanditsTD(budget=12, tile=8, seed=3),
}


@pytest.mark.parametrize("name", sorted(BASELINES))
class TestCappedBaselinesConformance(AttackConformance):
    query_budget = 12
    eps_inf = CAP

    @pytest.fixture
    def attack(self, name):
        return BASELINES[name]


@pytest.mark.parametrize("name", sorted(BASELINES))
def test_baselines_stay_within_the_cap_and_refuse_a_problem_without_one(name) -> None:
    target = counting(ClassicSaliency())
    problem = sample_problem(target, eps=20.0, eps_inf=CAP)
    result = BASELINES[name]().run(problem, target)
    delta = result.adversarial.astype(np.int16) - problem.image.pixels.astype(np.int16)
    assert 1 <= np.abs(delta).max() <= 4 and result.queries <= 12
    with pytest.raises(UnusableBudgetError, match="eps_inf="):
        BASELINES[name]().run(sample_problem(target, eps=2.0), target)


@pytest.mark.parametrize(
    ("make", "message"),
    [
        (lambda: SquareAttack(budget=5, p_init=0), "p_init"),
        (lambda: Parsimonious(budget=5, block=4, min_block=8), "min_block"),
        (lambda: SimBADCT(budget=5, order=0), "order"),
        (lambda: BanditsTD(budget=5, tile=0), "tile"),
        (lambda: SquareAttack(budget=0), "budget"),
    ],
)
def test_baseline_bad_settings_say_what_to_use(make, message) -> None:
    with pytest.raises(ValueError, match=message):
        make()


@pytest.mark.parametrize("name", ["square", *sorted(BASELINES)])
def test_every_capped_attack_has_a_conf_file_that_builds_it(name) -> None:
    root = OmegaConf.create(
        {"budget": 9, "early_stop": True, "seed": 1, "attack": group_config("attack", name)}
    )
    settings = {k: v for k, v in OmegaConf.to_container(root.attack, resolve=True).items() if k != "name"}
    attack = instantiate(settings)
    assert attack.budget == 9 and attack.name == name


@pytest.mark.parametrize("search", ["blobs", "grid", "texture"])
def test_the_patch_search_keeps_the_cap_and_replays_under_it(search) -> None:
    from blackbox.search import render_trial
    from blackbox.settings.build import attack_spec
    from blackbox.settings.preflight import compose_overrides

    overrides = ["attack=blackbox", f"search={search}", "budget=8", "eps=20", "eps_inf=3", "storage=memory"]
    spec = attack_spec(compose_overrides([*overrides, "early_stop=false", "progress=false"]))
    target = ClassicSaliency()
    problem = sample_problem(target, eps=20.0, eps_inf=3 / 255)
    result = spec.build().run(problem, target)
    delta = np.abs(result.adversarial.astype(np.int16) - problem.image.pixels.astype(np.int16))
    assert delta.max() == 3  # eps=20 alone would move pixels by tens of levels
    assert np.array_equal(render_trial(problem, result.perturbation), result.adversarial)


def test_attack_accumulate_keeps_the_cap() -> None:
    from blackbox.search import AccumulateSearch

    target = ClassicSaliency()
    problem = sample_problem(target, eps=20.0, eps_inf=2 / 255)
    result = AccumulateSearch(budget=8, shrink=False, early_stop=False).run(problem, target)
    delta = np.abs(result.adversarial.astype(np.int16) - problem.image.pixels.astype(np.int16))
    assert 1 <= delta.max() <= 2
