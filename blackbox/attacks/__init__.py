"""Attacks: one interface (:class:`Attack`) and one result type (:class:`AttackResult`)."""

from blackbox.attacks._base import Attack, AttackProblem, AttackResult
from blackbox.attacks.patch_search import PatchSearch, render_trial, study_name

__all__ = ["Attack", "AttackProblem", "AttackResult", "PatchSearch", "render_trial", "study_name"]
