"""``target=classic``: the embedded default, a training-free published saliency model in torch.

The model is the *image signature* of Hou, Harel & Koch, "Image Signature: Highlighting Sparse
Salient Regions", IEEE TPAMI 34(1), 2012: an image's foreground is sparse in the DCT basis, so
reconstructing the image from only the *signs* of its DCT coefficients,
``x̄ = IDCT(sign(DCT(x)))``, concentrates energy on the foreground; ``x̄²`` smoothed by a Gaussian
is the saliency map. As in the paper we work per channel in CIE L*a*b* on a small copy of the
image (64 px wide by default) and sum the channels.

Two changes make it a target the white-box attacks can use, and a gaze model in DeepGaze's form:

* ``sign`` has a zero gradient almost everywhere, so we use ``tanh(c / (τ·mean|c|))``, which equals
  ``sign`` up to coefficients smaller than a few percent of the mean magnitude and is
  differentiable. ``τ → 0`` gives the paper's model back.
* The map is turned into a log-density as DeepGaze II does: log of the blurred map, plus a
  Gaussian centre-bias log prior, then a log-softmax; computed on the small grid, bilinearly resized
  to the image and renormalised there.

Several signature scales (64 and 128 px wide by default) are averaged: the coarse one finds objects,
the finer one keeps small salient details (faces, text). There are no weights; it is deterministic.
"""

from __future__ import annotations

from collections.abc import Sequence

import torch
import torch.nn.functional as F
from torch import nn

from targets._base import DifferentiableTarget
from targets._functional import (
    centre_bias_log_prior,
    dct_matrix,
    gaussian_blur,
    log_softmax_2d,
    srgb_to_lab,
    upsample_log_density,
)
from targets.crop import DEFAULT_ASPECT_RATIOS


class ImageSignature(nn.Module):
    """``(B, 3, H, W)`` L*a*b* image to its per-channel signature reconstructions ``x̄``.

    Its output is the model's feature layer (what Grad-CAM weighs).
    """

    def __init__(self, *, width: int, temperature: float) -> None:
        super().__init__()
        if width < 8:
            raise ValueError(f"signature width must be at least 8 px, got {width}")
        if not temperature > 0:
            raise ValueError(f"temperature must be positive, got {temperature}")
        self.width = width
        self.temperature = temperature
        self._dct_cache: dict[int, torch.Tensor] = {}

    def _dct(self, n: int, like: torch.Tensor) -> torch.Tensor:
        if n not in self._dct_cache:
            # Built outside inference mode even when first needed there: gradients reuse it later.
            with torch.inference_mode(False):
                self._dct_cache[n] = dct_matrix(n)
        return self._dct_cache[n].to(like)

    def forward(self, lab: torch.Tensor) -> torch.Tensor:
        height = max(8, round(lab.shape[-2] * self.width / lab.shape[-1]))
        small = F.interpolate(lab, size=(height, self.width), mode="area")
        d_h, d_w = self._dct(height, small), self._dct(self.width, small)
        coefficients = d_h @ small @ d_w.T
        scale = coefficients.abs().mean(dim=(-2, -1), keepdim=True).clamp_min(1e-8)
        signs = torch.tanh(coefficients / (self.temperature * scale))
        return d_h.T @ signs @ d_w


class ClassicSaliency(DifferentiableTarget):
    """Image-signature saliency with blur and centre bias, as a log-density (see module doc)."""

    name = "classic"

    def __init__(
        self,
        *,
        scales: Sequence[int] = (64, 128),
        temperature: float = 0.1,
        blur_sigma: float = 0.045,
        centre_bias_sigma: float = 0.3,
        centre_bias_weight: float = 1.0,
        aspect_ratios: Sequence[float] = DEFAULT_ASPECT_RATIOS,
    ) -> None:
        super().__init__(aspect_ratios=aspect_ratios)
        if not scales:
            raise ValueError("scales must name at least one signature width")
        if not blur_sigma > 0:
            raise ValueError(f"blur_sigma (a fraction of the width) must be positive, got {blur_sigma}")
        if centre_bias_weight < 0:
            raise ValueError(f"centre_bias_weight must be >= 0, got {centre_bias_weight}")
        self.signatures = nn.ModuleList(ImageSignature(width=int(s), temperature=temperature) for s in scales)
        self.grid_width = max(int(s) for s in scales)
        self.blur_sigma = blur_sigma
        self.centre_bias_sigma = centre_bias_sigma
        self.centre_bias_weight = centre_bias_weight

    def feature_layer(self) -> nn.Module:
        return self.signatures[-1]

    def log_density(self, images: torch.Tensor) -> torch.Tensor:
        if images.ndim != 4 or images.shape[1] != 3:
            raise ValueError(f"expected (B, 3, H, W) images, got shape {tuple(images.shape)}")
        height, width = images.shape[-2:]
        lab = srgb_to_lab(images.float())
        grid_h = max(8, round(height * self.grid_width / width))
        energy = 0
        for signature in self.signatures:
            x_bar = signature(lab)
            channel_energy = (x_bar**2).sum(dim=1, keepdim=True)
            # A flat image (all black, one colour) has zero energy everywhere: 0/0 would make the
            # whole map NaN. Its map is then the centre bias alone, finite as for any image.
            channel_energy = channel_energy / channel_energy.mean(dim=(-2, -1), keepdim=True).clamp_min(1e-12)
            energy = energy + F.interpolate(
                channel_energy, size=(grid_h, self.grid_width), mode="bilinear", align_corners=False
            )
        energy = energy / len(self.signatures)
        smooth = gaussian_blur(energy, self.blur_sigma * self.grid_width)[:, 0]
        logits = torch.log(smooth.clamp_min(1e-6))
        if self.centre_bias_weight:
            prior = centre_bias_log_prior(
                grid_h, self.grid_width, sigma=self.centre_bias_sigma, device=images.device
            )
            logits = logits + self.centre_bias_weight * prior
        return upsample_log_density(log_softmax_2d(logits), height, width)
