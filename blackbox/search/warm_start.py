"""Warm starts for the black-box search from a transfer perturbation.

A white-box attack on a local, differentiable stand-in (a surrogate, or any zoo model) gives a
dense perturbation. The search cannot take a dense image, but it can start from patches *fitted* to
it: the ``n_patches`` places where its smoothed energy is highest inside the search region (with
non-maximum suppression), each with the perturbation's mean colour there as amplitudes. Those
parameters are enqueued as the study's first trial, so the first query already carries what the
stand-in's gradient knows; TPE refines from there.
"""

from __future__ import annotations

from collections.abc import Mapping

import numpy as np
from scipy.ndimage import gaussian_filter

from blackbox.search.search_space import CHANNELS, Region, param_name


def fit_patches(
    delta: np.ndarray, *, n_patches: int, region: Region | list[Region], space: Mapping
) -> dict[str, float]:
    """Patch parameters (as the search names them) approximating ``delta`` (``(H, W, 3)``).

    ``region`` bounds every patch's centre, or is one region per patch.
    """
    regions = region if isinstance(region, list) else [region] * n_patches
    declared = space["space"]
    low, high = float(declared["size"]["low"]), float(declared["size"]["high"])
    size = float(np.clip(np.sqrt(low * high), low, high))  # the middle of the (log) size range
    energy = gaussian_filter((delta**2).sum(axis=2), sigma=size)
    yy, xx = np.mgrid[0 : energy.shape[0], 0 : energy.shape[1]]
    amp_low, amp_high = float(declared["amplitude"]["low"]), float(declared["amplitude"]["high"])
    params: dict[str, float] = {}
    for k in range(n_patches):
        bounds = regions[k]
        allowed = np.full(energy.shape, -np.inf)
        allowed[bounds.y0 : bounds.y1 + 1, bounds.x0 : bounds.x1 + 1] = 0.0
        y, x = np.unravel_index(int(np.argmax(energy + allowed)), energy.shape)
        window = np.exp(-((xx - x) ** 2 + (yy - y) ** 2) / (2 * size**2))
        colour = (delta * window[..., None]).sum(axis=(0, 1)) / window.sum()
        colour = colour / max(float(np.abs(colour).max()), 1e-12)
        # Clipped: when suppression has emptied a region, argmax falls outside it.
        params[param_name(k, "x")] = float(np.clip(x, bounds.x0, bounds.x1))
        params[param_name(k, "y")] = float(np.clip(y, bounds.y0, bounds.y1))
        params[param_name(k, "size")] = size
        for channel, value in zip(CHANNELS, colour, strict=True):
            params[param_name(k, channel)] = float(np.clip(value, amp_low, amp_high))
        if "frequency" in declared:
            params[param_name(k, "frequency")] = float(declared["frequency"]["low"])
        if "angle" in declared:
            params[param_name(k, "angle")] = float(declared["angle"]["low"])
        energy[window > np.exp(-4.5)] = -np.inf  # suppress within 3 sigma
    return params
