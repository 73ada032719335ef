"""Attacks: one interface (:class:`Attack`), one result type (:class:`AttackResult`), and the white-box
reference attacks. The black-box search lives one layer up, in :mod:`blackbox.search`."""

from blackbox.attacks._base import Attack, AttackFailedError, AttackProblem, AttackResult
from blackbox.attacks._whitebox import WhiteBoxAttack
from blackbox.attacks.gaussian_noise import GaussianNoise
from blackbox.attacks.gradcam_fgm import GradCamFGM
from blackbox.attacks.gradcam_noise import GradCamNoise
from blackbox.attacks.iterative_fgm import IterativeFGM
from blackbox.attacks.pgd import PGD

__all__ = [
    "PGD",
    "Attack",
    "AttackFailedError",
    "AttackProblem",
    "AttackResult",
    "GaussianNoise",
    "GradCamFGM",
    "GradCamNoise",
    "IterativeFGM",
    "WhiteBoxAttack",
]
