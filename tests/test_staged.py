"""``kind: staged`` (``search=texture_blobs``): a short first stage, then a second space on one budget."""

from __future__ import annotations

import contextlib
import dataclasses
import io

import numpy as np
import optuna
import pytest

from blackbox.attacks import Attack, AttackResult
from blackbox.core.metrics import perturbation_norms
from blackbox.experiment.attack_spec import SearchSpec
from blackbox.experiment.storage import make_storage
from blackbox.search import PatchSearch, StagedSearch, render_trial
from blackbox.search.patch_search import NothingChangedError
from blackbox.search.search_space import SearchSpaceError
from blackbox.search.staged import check_staged, is_staged
from blackbox.settings.build import attack_spec
from blackbox.settings.checks import check_run_config
from blackbox.settings.commands import run
from blackbox.settings.preflight import compose_overrides
from blackbox.settings.replay import main as replay_main
from targets import ConfigError, Target, TargetOutput
from targets.classic import ClassicSaliency
from tests.test_faults import SMALL
from tests.test_patch_search import CountingTarget, problem_for
from tests.test_replay import replays_to_the_saved_image

EPS = 30.0  # large enough for the searches to succeed within a few queries on chelsea
STAGED = ["attack=blackbox", "search=texture_blobs", "sampler=random", "batch_size=4", "progress=false"]


class GreyBlindTarget(Target):
    """Answers the clean image's output for a grey change (every pixel's channels move the same way,
    as a texture's do, even where clipped), and the inner target's otherwise: a first stage of textures
    that can never succeed, and no state, so a resumed search meets the same target."""

    name = "grey_blind"

    def __init__(self, inner: Target, clean: np.ndarray) -> None:
        super().__init__(aspect_ratios=inner.aspect_ratios)
        self.inner, self.clean, self.seen, self.grey = inner, clean.astype(np.float32) / 255.0, 0, 0

    @property
    def outputs(self):
        return self.inner.outputs

    def answer(self, images):
        self.seen += len(images)
        answers = []
        for image in images:
            delta = np.asarray(image, dtype=np.float32) - self.clean
            signs = np.sign(delta)
            grey = bool(np.all(signs == signs[..., :1]))  # clipping keeps a texture's signs equal
            self.grey += grey
            answers.append(self.inner.query([self.clean if grey else image])[0])
        return answers


def staged(budget: int, *extra: str, storage=None, cut_from: int | None = None) -> Attack:
    """The staged search; ``cut_from``: a run of that budget cut short after ``budget`` queries (its
    studies record the budget it was started with, which its resume must keep)."""
    cfg = compose_overrides([*STAGED, f"budget={budget}", f"eps={EPS}", *extra])
    spec = attack_spec(cfg)
    if cut_from is not None:
        assert isinstance(spec, SearchSpec) and spec.study_settings is not None
        spec = dataclasses.replace(spec, study_settings={**spec.study_settings, "budget": cut_from})
    return spec.build(storage=storage)


@pytest.fixture
def classic() -> ClassicSaliency:
    return ClassicSaliency()


def test_the_shipped_config_is_texture_then_blobs() -> None:
    search = compose_overrides(["search=texture_blobs"]).search
    assert is_staged(search) and search.first_queries == search.first.prior_cells == 4
    assert search.first.kinds == ["texture"] and search.first.prior == "salient_cells"
    assert search.then.n_patches == 4 and "kind" not in search.then  # the blob space
    check_run_config(compose_overrides(["search=texture_blobs"]))


@pytest.mark.parametrize(
    ("change", "says"),
    [
        ({"first_queries": 0}, "first_queries must be a whole number >= 1"),
        ({"first_queries": 2.5}, "first_queries must be a whole number >= 1"),
        ({"first_queries": 200}, "leaves nothing of budget=200"),
        ({"then": None}, "search.then must be a search space"),
        ({"first": {"kind": "staged"}}, "search.first is itself staged"),
    ],
)
def test_bad_staged_searches_say_which_key(change: dict, says: str) -> None:
    search = {**dict(compose_overrides(["search=texture_blobs"]).search), **change}
    with pytest.raises(SearchSpaceError, match=says):
        check_staged(search, budget=200)


def test_the_config_check_refuses_a_first_stage_as_long_as_the_budget() -> None:
    with pytest.raises(ConfigError, match="leaves nothing of budget=4"):
        check_run_config(compose_overrides(["search=texture_blobs", "budget=4"]))
    with pytest.raises(ConfigError, match=r"search\.first\.space\.w"):
        check_run_config(compose_overrides(["search=texture_blobs", "search.first.space.w.low=0"]))


def test_a_failed_first_stage_hands_the_rest_of_the_budget_to_the_second(photo, classic, tmp_path) -> None:
    target = GreyBlindTarget(classic, photo)
    problem = problem_for(photo, classic, eps=EPS)
    storage = make_storage("journal", tmp_path)
    result = staged(60, storage=storage).run(problem, target)
    assert result.extra["stage"] == "then" and result.method == "random"
    assert target.grey >= 4  # the first stage's batch: the goal's 4 most salient cells, textures
    assert result.success and result.queries_to_success is not None and result.queries_to_success > 4
    assert result.queries == target.seen <= 60
    # Two studies, one per stage; the second's queries are the budget's rest.
    studies = {s.study_name.rsplit("|", 1)[-1]: s for s in optuna.get_all_study_summaries(storage)}
    assert set(studies) == {"random:first", "random:then"}
    assert studies["random:first"].n_trials == 4
    then = optuna.load_study(study_name=result.extra["study"], storage=storage)
    assert result.extra["study"].endswith("random:then") and result.extra["first_study"].endswith(
        "random:first"
    )
    assert render_trial(problem, then.trials[result.best_trial].user_attrs["perturbation"]).tobytes() == (
        result.adversarial.tobytes()
    )


def test_a_first_stage_success_keeps_the_whole_budget_for_its_shrink(photo, classic) -> None:
    target = CountingTarget(classic)
    problem = problem_for(photo, classic, eps=EPS)
    target.seen = 0
    result = staged(40, "shrink.enabled=true").run(problem, target)
    assert result.extra["stage"] == "first" and result.extra["study"].endswith("random:first")
    assert result.success and result.queries_to_success is not None and result.queries_to_success <= 4
    assert result.queries == target.seen <= 40
    assert result.extra["shrink_queries"] > 0 and result.queries > 4  # the shrink went on past the batch
    assert perturbation_norms(photo, result.adversarial)["l2"] < result.extra["first_success_l2"]


@pytest.mark.parametrize("cut", [8, 12])  # batch boundaries (batch_size=4), as a real stop leaves them
def test_an_interrupted_staged_search_resumes_to_the_uninterrupted_result(
    photo, classic, tmp_path, cut
) -> None:
    problem = problem_for(photo, classic, eps=EPS)
    whole = staged(40, "shrink.enabled=true").run(problem, GreyBlindTarget(classic, photo))
    assert whole.extra["stage"] == "then" and whole.queries > cut
    staged(cut, "shrink.enabled=true", storage=make_storage("journal", tmp_path), cut_from=40).run(
        problem, GreyBlindTarget(classic, photo)
    )
    target = GreyBlindTarget(classic, photo)
    resumed = staged(40, "shrink.enabled=true", storage=make_storage("journal", tmp_path)).run(
        problem, target
    )
    assert resumed.adversarial.tobytes() == whole.adversarial.tobytes()
    assert (resumed.queries, resumed.queries_to_success) == (whole.queries, whole.queries_to_success)
    assert target.seen <= whole.queries - cut + 1  # the stored queries were not asked again


# The stage logic alone, on stand-in stages.


@dataclasses.dataclass
class Stand(Attack):
    """A stage that returns a fixed result and records how it was built."""

    result: AttackResult | Exception
    built: dict
    name: str = "stand"

    def run(self, problem, target) -> AttackResult:
        if isinstance(self.result, Exception):
            raise self.result
        return self.result


def outcome(success: bool, queries: int, to_success: int | None, score: float, mark: int) -> AttackResult:
    pixels = np.full((2, 2, 3), mark, dtype=np.uint8)
    output = TargetOutput((0.0, 0.0), [], None)
    return AttackResult(
        "x",
        "stand",
        success,
        pixels,
        output,
        None,
        EPS,
        "l2",
        queries,
        to_success,
        score,  # type: ignore[arg-type]
        extra={"study": f"study{mark}"},
    )


def staged_on(results: dict, budget: int = 50) -> tuple[StagedSearch, list[dict]]:
    calls: list[dict] = []

    def make_stage(*, search_space, budget, stage, shrink, memory) -> Attack:
        calls.append({"stage": stage, "budget": budget, "shrink": shrink})
        return Stand(results[(stage, shrink)], calls[-1])

    search = {"kind": "staged", "first_queries": 4, "first": {"kind": "grid"}, "then": {"n_patches": 1}}
    return StagedSearch(make_stage=make_stage, search=search, budget=budget, name="tpe"), calls


def test_the_stage_logic_counts_both_stages_queries() -> None:
    first, then = outcome(False, 4, None, -2.0, 1), outcome(True, 30, 12, 0.5, 2)
    search, calls = staged_on({("first", False): first, ("then", True): then})
    result = search.run(None, None)  # type: ignore[arg-type]
    assert calls == [
        {"stage": "first", "budget": 4, "shrink": False},
        {"stage": "then", "budget": 46, "shrink": True},
    ]
    assert (result.queries, result.queries_to_success, result.method) == (34, 16, "tpe")
    assert result.extra == {"study": "study2", "stage": "then", "first_study": "study1"}


def test_a_first_success_is_resumed_with_the_whole_budget() -> None:
    probe, whole = outcome(True, 4, 2, 1.0, 1), outcome(True, 50, 2, 1.0, 3)
    search, calls = staged_on({("first", False): probe, ("first", True): whole})
    result = search.run(None, None)  # type: ignore[arg-type]
    assert [c["budget"] for c in calls] == [4, 50] and calls[1]["shrink"]
    assert (result.queries, result.queries_to_success, result.extra["stage"]) == (50, 2, "first")


def test_when_both_fail_the_better_scoring_image_is_reported() -> None:
    first, then = outcome(False, 4, None, -0.5, 1), outcome(False, 46, None, -3.0, 2)
    result = staged_on({("first", False): first, ("then", True): then})[0].run(None, None)  # type: ignore[arg-type]
    assert not result.success and result.queries == 50 and result.queries_to_success is None
    assert result.extra["stage"] == "first" and int(result.adversarial[0, 0, 0]) == 1


def test_a_first_stage_that_changes_nothing_leaves_the_whole_budget() -> None:
    then = outcome(True, 20, 7, 0.2, 2)
    search, calls = staged_on({("first", False): NothingChangedError("rounded"), ("then", True): then})
    result = search.run(None, None)  # type: ignore[arg-type]
    assert calls[-1] == {"stage": "then", "budget": 50, "shrink": True}
    assert (result.queries, result.queries_to_success, result.extra["stage"]) == (20, 7, "then")


def test_a_staged_run_replays_its_result_from_the_stage_that_gave_it(tmp_path) -> None:
    # The whole pipeline (python -m blackbox's run, journal storage) and blackbox.replay on its folder,
    # without study=: the result's own study is picked among the two stages'.
    overrides = [*SMALL, "search=texture_blobs", "dataset.names=[chelsea]", "eps=20", "budget=24"]
    cfg = compose_overrides([*overrides, "shrink.enabled=true"])
    with contextlib.redirect_stdout(io.StringIO()), contextlib.redirect_stderr(io.StringIO()):
        summary = run(cfg, tmp_path, target_name="classic")
    [record] = summary.records
    assert record["stage"] in ("first", "then") and record["study"].endswith(f"tpe:{record['stage']}")
    assert record["queries"] <= 24
    assert replays_to_the_saved_image(tmp_path, cfg, "chelsea")
    other = record["first_study"] if record["stage"] == "then" else record["study"].replace(":first", ":then")
    with contextlib.redirect_stderr(io.StringIO()) as err:
        code = replay_main([f"run={tmp_path}", "image=chelsea", f'study="{other}"'])
    if record["stage"] == "then":  # the first stage's study exists, but the result is not its trial
        assert code == 2 and "came from study" in err.getvalue()
    else:  # the first stage succeeded: no second stage ran
        assert code == 2 and "no study named" in err.getvalue()


def test_a_patch_search_refuses_a_staged_space_saying_what_runs_it() -> None:
    search = dict(compose_overrides(["search=texture_blobs"]).search)
    with pytest.raises(ValueError, match="StagedSearch"):
        PatchSearch(
            sampler_factory=optuna.samplers.RandomSampler, sampler_name="random", search=search, budget=9
        )
