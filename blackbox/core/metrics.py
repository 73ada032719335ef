"""Perturbation sizes (L2, L-inf, PSNR, SSIM) and the paper's peak-shift measure."""

from __future__ import annotations

import math

import numpy as np


def perturbation_norms(clean: np.ndarray, adversarial: np.ndarray) -> dict[str, float]:
    """L2 and L-inf of the 8-bit perturbation in [0, 1] units, and PSNR in dB."""
    delta = (adversarial.astype(np.float64) - clean.astype(np.float64)) / 255.0
    l2 = float(np.sqrt(np.sum(delta**2)))
    linf = float(np.max(np.abs(delta))) if delta.size else 0.0
    mse = float(np.mean(delta**2))
    psnr = math.inf if mse == 0 else 10.0 * math.log10(1.0 / mse)
    return {"l2": l2, "linf": linf, "psnr": psnr}


def ssim(clean: np.ndarray, adversarial: np.ndarray) -> float:
    """Structural similarity of two ``(H, W, 3)`` uint8 images (Wang et al. 2004; 1 = identical)."""
    from skimage.metrics import structural_similarity

    return float(structural_similarity(clean, adversarial, channel_axis=2, data_range=255))


def peak_shift(old_peak_x: float, new_peak_x: float, target_x: float, width: int) -> dict[str, float]:
    """How far the peak moved toward the target column.

    ``shift_pct_distance``: the movement projected on the peak-to-target direction, as % of that
    distance (the paper's Table 1; 100 = reached the target, negative = moved away).
    ``shift_pct_width``: the same movement as % of the image width (Table 2).
    """
    distance = target_x - old_peak_x
    moved = new_peak_x - old_peak_x
    toward = moved * (1.0 if distance >= 0 else -1.0)
    pct_distance = 100.0 * toward / abs(distance) if distance != 0 else 0.0
    return {"shift_pct_distance": pct_distance, "shift_pct_width": 100.0 * toward / width}
