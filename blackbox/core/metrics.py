"""Perturbation sizes (L2, L-inf, PSNR), what a person sees (SSIM, SSIMULACRA 2), the paper's peak shift."""

from __future__ import annotations

import math

import numpy as np


def perturbation_norms(clean: np.ndarray, adversarial: np.ndarray) -> dict[str, float]:
    """L2 and L-inf of the 8-bit perturbation in [0, 1] units, L-inf in whole levels, and PSNR in dB."""
    moved = adversarial.astype(np.int32) - clean.astype(np.int32)
    delta = moved / 255.0
    l2 = float(np.sqrt(np.sum(delta**2)))
    levels = int(np.max(np.abs(moved))) if moved.size else 0
    mse = float(np.mean(delta**2))
    psnr = math.inf if mse == 0 else 10.0 * math.log10(1.0 / mse)
    return {"l2": l2, "linf": levels / 255.0, "linf_levels": levels, "psnr": psnr}


def ssim(clean: np.ndarray, adversarial: np.ndarray) -> float:
    """Structural similarity of two ``(H, W, 3)`` uint8 images (Wang et al. 2004; 1 = identical)."""
    from skimage.metrics import structural_similarity

    return float(structural_similarity(clean, adversarial, channel_axis=2, data_range=255))


def ssimulacra2(clean: np.ndarray, adversarial: np.ndarray) -> float:
    """SSIMULACRA 2 of two ``(H, W, 3)`` uint8 sRGB images: 100 identical, about 90 "visually lossless"
    (no difference in a flicker test at 1:1), 80 "very high quality" (none side by side at 1:1), 70
    "high quality" (libjxl's ``tools/ssimulacra2`` scale; the score can go below 0).

    Computed by the ``ssimulacra2`` package (a Python port of libjxl's metric, Jon Sneyers 2022) on
    lossless PNG copies; about 0.4 s at 640 x 480, so records compute it once per result.
    """
    import io

    from PIL import Image
    from ssimulacra2 import compute_ssimulacra2

    def png(pixels: np.ndarray) -> io.BytesIO:
        buffer = io.BytesIO()
        Image.fromarray(pixels).save(buffer, format="PNG", compress_level=0)
        buffer.seek(0)
        return buffer

    return float(compute_ssimulacra2(png(clean), png(adversarial)))


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
