"""The black-box search: :class:`PatchSearch` (an Optuna study over perturbation parameters),
its search spaces, samplers, query budget and warm start; :class:`StagedSearch` runs two spaces on one
budget."""

from blackbox.search._study import StudySettingsError
from blackbox.search.accumulate import AccumulateSearch
from blackbox.search.capped_baselines import BanditsTD, Parsimonious, SimBADCT, SquareAttack
from blackbox.search.patch_search import PatchSearch, ShrinkSettings, TrialRecord, render_trial, study_name
from blackbox.search.search_space import PatchParam, param_name
from blackbox.search.square_search import SquareSearch
from blackbox.search.staged import StagedSearch

__all__ = [
    "AccumulateSearch",
    "BanditsTD",
    "Parsimonious",
    "PatchParam",
    "PatchSearch",
    "ShrinkSettings",
    "SimBADCT",
    "SquareAttack",
    "SquareSearch",
    "StagedSearch",
    "StudySettingsError",
    "TrialRecord",
    "param_name",
    "render_trial",
    "study_name",
]
