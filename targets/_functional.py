"""Differentiable building blocks the zoo's saliency models share (kornia-style functional core)."""

from __future__ import annotations

import math

import torch
import torch.nn.functional as F


def gaussian_kernel1d(sigma: float | torch.Tensor, *, truncate: float = 3.0) -> torch.Tensor:
    """A normalised 1-D Gaussian of standard deviation ``sigma`` (in samples).

    ``sigma`` may be a 0-d tensor: the kernel is then differentiable in it (a trained blur, as
    DeepGaze's); its length follows the current value.
    """
    if not sigma > 0:
        raise ValueError(f"sigma must be positive, got {float(sigma)}")
    value = float(sigma.detach()) if isinstance(sigma, torch.Tensor) else float(sigma)
    radius = max(1, math.ceil(truncate * value))
    like = sigma if isinstance(sigma, torch.Tensor) else torch.empty(0)
    # In σ's dtype: a 0-d float64 σ would not promote a float32 arange, and its gradient would lose precision.
    x = torch.arange(
        -radius, radius + 1, dtype=torch.promote_types(like.dtype, torch.float32), device=like.device
    )
    kernel = torch.exp(-0.5 * (x / sigma) ** 2)
    return kernel / kernel.sum()


def gaussian_blur(maps: torch.Tensor, sigma: float | torch.Tensor, *, truncate: float = 3.0) -> torch.Tensor:
    """Separable Gaussian blur of ``(B, C, H, W)`` maps with edge replication.

    Replicate padding rather than zeros, so the border is not darkened, which would act as an
    extra centre bias on top of the explicit one.
    """
    kernel = gaussian_kernel1d(sigma, truncate=truncate).to(maps)
    radius = kernel.numel() // 2
    channels = maps.shape[1]
    # Reflection/replication needs the pad to be smaller than the side; clamp for small maps.
    pad_x = min(radius, maps.shape[-1] - 1)
    pad_y = min(radius, maps.shape[-2] - 1)
    kx = kernel[radius - pad_x : radius + pad_x + 1]
    ky = kernel[radius - pad_y : radius + pad_y + 1]
    kx, ky = kx / kx.sum(), ky / ky.sum()
    out = F.pad(maps, (pad_x, pad_x, 0, 0), mode="replicate")
    out = F.conv2d(out, kx.view(1, 1, 1, -1).expand(channels, 1, 1, -1), groups=channels)
    out = F.pad(out, (0, 0, pad_y, pad_y), mode="replicate")
    return F.conv2d(out, ky.view(1, 1, -1, 1).expand(channels, 1, -1, 1), groups=channels)


def centre_bias_log_prior(
    height: int, width: int, *, sigma: float = 0.25, device: torch.device | None = None
) -> torch.Tensor:
    """``(H, W)`` log of an isotropic Gaussian centre prior; ``sigma`` is in units of the long side.

    Observers look at the centre of photographs (Tatler 2007); DeepGaze adds such a prior as a
    log-density. Normalised so its ``logsumexp`` is zero.
    """
    scale = max(height, width)
    ys = (torch.arange(height, dtype=torch.float32, device=device) + 0.5 - height / 2) / scale
    xs = (torch.arange(width, dtype=torch.float32, device=device) + 0.5 - width / 2) / scale
    log_prior = -(ys[:, None] ** 2 + xs[None, :] ** 2) / (2 * sigma**2)
    return log_prior - torch.logsumexp(log_prior.flatten(), 0)


def log_softmax_2d(logits: torch.Tensor) -> torch.Tensor:
    """Normalise ``(B, H, W)`` logits to a log-density over each image's pixels."""
    flat = logits.flatten(1)
    return (flat - torch.logsumexp(flat, dim=1, keepdim=True)).view_as(logits)


def upsample_log_density(log_density: torch.Tensor, height: int, width: int) -> torch.Tensor:
    """Bilinearly resize ``(B, h, w)`` log-densities to ``(B, H, W)`` and renormalise there."""
    if log_density.shape[-2:] != (height, width):
        log_density = F.interpolate(
            log_density[:, None], size=(height, width), mode="bilinear", align_corners=False
        )[:, 0]
    return log_softmax_2d(log_density)


def dct_matrix(n: int, *, dtype: torch.dtype = torch.float32) -> torch.Tensor:
    """The orthonormal DCT-II matrix ``D``: ``D @ x`` is the DCT of ``x``, ``D.T @ y`` its inverse."""
    k = torch.arange(n, dtype=torch.float64)[:, None]
    i = torch.arange(n, dtype=torch.float64)[None, :]
    matrix = torch.cos(math.pi * (2 * i + 1) * k / (2 * n)) * math.sqrt(2.0 / n)
    matrix[0] /= math.sqrt(2.0)
    return matrix.to(dtype)


def srgb_to_lab(images: torch.Tensor) -> torch.Tensor:
    """``(B, 3, H, W)`` sRGB in [0, 1] to CIE L*a*b* (D65), differentiable everywhere."""
    linear = torch.where(
        images > 0.04045, ((images.clamp_min(0.04045) + 0.055) / 1.055) ** 2.4, images / 12.92
    )
    rgb_to_xyz = images.new_tensor(
        [
            [0.4124564, 0.3575761, 0.1804375],
            [0.2126729, 0.7151522, 0.0721750],
            [0.0193339, 0.1191920, 0.9503041],
        ]
    )
    white = images.new_tensor([0.95047, 1.0, 1.08883])
    xyz = torch.einsum("ij,bjhw->bihw", rgb_to_xyz, linear) / white[None, :, None, None]
    delta = 6.0 / 29.0
    f = torch.where(
        xyz > delta**3,
        xyz.clamp_min(delta**3) ** (1.0 / 3.0),
        xyz / (3 * delta**2) + 4.0 / 29.0,
    )
    lightness = 116.0 * f[:, 1] - 16.0
    a = 500.0 * (f[:, 0] - f[:, 1])
    b = 200.0 * (f[:, 1] - f[:, 2])
    return torch.stack([lightness, a, b], dim=1)
