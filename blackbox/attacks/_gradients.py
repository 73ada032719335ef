"""The white-box attacks' functional core: the attack loss, its gradient, Grad-CAM.

The attack loss ``J`` is the black-box margin made smooth: a soft maximum of the log-density
inside the goal minus a soft maximum outside it,
``J = τ·logsumexp(ℓ_in / τ) − τ·logsumexp(ℓ_out / τ)``. As ``τ → 0`` it is the margin the black-box
search maximises (positive exactly when the map's maximum is in the goal); with ``τ > 0`` every
pixel near either maximum gets a gradient, so the step both raises the goal and lowers the current
peak. Using one objective for both attack families keeps the comparison fair. The norm arithmetic
(steepest direction, rescale, projection) is :class:`blackbox.core.perturbation.PerturbationBudget`'s.
"""

from __future__ import annotations

import numpy as np
import torch
import torch.nn.functional as F

from blackbox.attacks._base import AttackFailedError
from blackbox.core.goal import Goal, goal_slices
from targets import DifferentiableTarget


def goal_mask(goal: Goal, height: int, width: int, *, device: torch.device | None = None) -> torch.Tensor:
    """``(H, W)`` bool mask of the goal box's pixels."""
    mask = torch.zeros(height, width, dtype=torch.bool, device=device)
    mask[goal_slices(goal, height, width)] = True  # the same pixels as the black-box margin
    return mask


def smooth_margin(log_density: torch.Tensor, mask: torch.Tensor, temperature: float) -> torch.Tensor:
    """``(B, H, W)`` log-densities to ``(B,)`` soft margins (see module doc)."""
    flat = log_density.flatten(1)
    inside = flat[:, mask.flatten()]
    outside = flat[:, ~mask.flatten()]
    soft_in = temperature * torch.logsumexp(inside / temperature, dim=1)
    if outside.shape[1] == 0:
        return soft_in
    return soft_in - temperature * torch.logsumexp(outside / temperature, dim=1)


def to_tensor(pixels: np.ndarray) -> torch.Tensor:
    """``(H, W, 3)`` uint8 or float in [0, 1] to ``(1, 3, H, W)`` float32."""
    array = pixels.astype(np.float32) / 255.0 if pixels.dtype == np.uint8 else pixels.astype(np.float32)
    return torch.from_numpy(array).permute(2, 0, 1)[None].contiguous()


def to_delta_array(delta: torch.Tensor) -> np.ndarray:
    """``(1, 3, H, W)`` tensor to ``(H, W, 3)`` float64 array."""
    return delta[0].permute(1, 2, 0).detach().double().cpu().numpy()


def loss_and_gradient(
    target: DifferentiableTarget, image: torch.Tensor, mask: torch.Tensor, temperature: float
) -> tuple[float, torch.Tensor]:
    """``J`` at ``image`` and ``∇_image J``."""
    image = image.detach().clone().requires_grad_(True)
    loss = smooth_margin(target.log_density(image), mask, temperature).sum()
    (gradient,) = torch.autograd.grad(loss, image)
    check_finite_gradient(target, loss, gradient, "the attack loss")
    return float(loss.detach()), gradient


def check_finite_gradient(
    target: DifferentiableTarget, loss: torch.Tensor, gradient: torch.Tensor, what: str
) -> None:
    """Raise :class:`AttackFailedError` naming the target if ``loss`` or ``gradient`` is NaN or inf.

    A NaN gradient turns every later step into NaN, and the clipped, quantised image then silently
    equals the clean one: the image is skipped with this reason instead.
    """
    bad = int(torch.count_nonzero(~torch.isfinite(gradient)))
    if bad or not bool(torch.isfinite(loss).all()):
        raise AttackFailedError(
            f"target {target.name!r}: {what} or its gradient is NaN or infinite ({bad} of "
            f"{gradient.numel()} gradient values) on this image; the white-box attack cannot use it"
        )


def grad_cam(
    target: DifferentiableTarget, image: torch.Tensor, mask: torch.Tensor, temperature: float
) -> torch.Tensor:
    """Grad-CAM (Selvaraju et al., ICCV 2017) of the goal score: ``(1, 1, H, W)`` in [0, 1].

    Gradients of ``J`` with respect to the feature layer's output, averaged over space, weigh its
    channels; the ReLU of the weighted sum, normalised to [0, 1], is resized to the image.
    """
    layer = target.feature_layer()
    if layer is None:
        raise ValueError(
            f"target {target.name!r} names no feature layer, so Grad-CAM is unavailable; "
            "run the attack with gradcam=false"
        )
    captured: list[torch.Tensor] = []
    handle = layer.register_forward_hook(lambda _m, _i, out: captured.append(out))
    try:
        with torch.enable_grad():
            # The input needs grad so that feature maps of parameter-free layers join the graph.
            log_density = target.log_density(image.detach().clone().requires_grad_(True))
            if not captured:
                raise RuntimeError(f"the feature layer of {target.name!r} did not run in its forward pass")
            features = captured[-1]
            loss = smooth_margin(log_density, mask, temperature).sum()
            (gradient,) = torch.autograd.grad(loss, features)
            check_finite_gradient(target, loss, gradient, "Grad-CAM's goal score")
    finally:
        handle.remove()
    weights = gradient.mean(dim=(-2, -1), keepdim=True)
    cam = F.relu((weights * features).sum(dim=1, keepdim=True)).detach()
    cam = F.interpolate(cam, size=image.shape[-2:], mode="bilinear", align_corners=False)
    peak = cam.amax(dim=(-2, -1), keepdim=True)
    # A CAM that is zero everywhere (no channel helps the goal) masks nothing rather than everything.
    return torch.where(peak > 0, cam / peak.clamp_min(1e-12), torch.ones_like(cam))
