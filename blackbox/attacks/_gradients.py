"""The white-box attacks' functional core: the attack loss, its gradient, Grad-CAM, norm helpers.

The attack loss ``J`` is the black-box margin made smooth: a soft maximum of the log-density
inside the goal minus a soft maximum outside it,
``J = τ·logsumexp(ℓ_in / τ) − τ·logsumexp(ℓ_out / τ)``. As ``τ → 0`` it is the margin the black-box
search maximises (positive exactly when the map's maximum is in the goal); with ``τ > 0`` every
pixel near either maximum gets a gradient, so the step both raises the goal and lowers the current
peak. Using one objective for both attack families keeps the comparison fair.
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


def direction(gradient: torch.Tensor, norm: str) -> torch.Tensor:
    """The steepest unit step: ``g / ||g||_2`` for L2, ``sign(g)`` for L-inf."""
    if norm == "linf":
        return gradient.sign()
    size = gradient.norm()
    return gradient / size if size > 0 else gradient


def fill_budget(delta: torch.Tensor, eps: float, norm: str) -> torch.Tensor:
    """Rescale ``delta`` so its norm is exactly ``eps`` (what 'the same budget' means here)."""
    size = delta.abs().max() if norm == "linf" else delta.norm()
    return delta * (eps / size) if size > 0 else delta


def fill_budget_clipped(delta: torch.Tensor, image: torch.Tensor, eps: float, norm: str) -> torch.Tensor:
    """Scale ``delta`` so that what survives clipping to [0, 1] has norm ``eps`` (or as near as it gets).

    A gradient concentrated on a few pixels loses most of its size to the clip at 0 and 1; scaling
    up the direction until the *clipped* perturbation fills the budget spends it elsewhere instead.
    The clipped norm grows monotonically with the scale, so bisection finds it.
    """
    delta = fill_budget(delta, eps, norm)

    def clipped(scale: float) -> torch.Tensor:
        return (image + scale * delta).clamp(0, 1) - image

    def size(d: torch.Tensor) -> float:
        return float(d.abs().max() if norm == "linf" else d.norm())

    if size(clipped(1.0)) >= eps * (1 - 1e-6):
        return clipped(1.0)
    low, high = 1.0, 2.0
    while size(clipped(high)) < eps and high < 1e4:
        low, high = high, high * 2
    for _ in range(30):
        middle = (low + high) / 2
        if size(clipped(middle)) < eps:
            low = middle
        else:
            high = middle
    return clipped(low)


def project(delta: torch.Tensor, eps: float, norm: str) -> torch.Tensor:
    """The nearest perturbation within the ``eps`` ball."""
    if norm == "linf":
        return delta.clamp(-eps, eps)
    size = delta.norm()
    return delta * (eps / size) if size > eps else delta
