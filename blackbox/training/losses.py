"""The distillation losses: KL divergence from a teacher's density (or from a Gaussian around its salient
point) on a grid of cells, and the negative log-likelihood of real fixations, in nats.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from typing import TYPE_CHECKING

import numpy as np
import torch
import torch.nn.functional as F

from blackbox.evaluate.fidelity import teacher_point
from targets import Target, TargetOutput

if TYPE_CHECKING:  # the surrogate's trainer need not import DeepGaze II
    from targets.deepgaze import DeepGazeII

TEACHER_CELL = 16  # px: the student's density is compared with the teacher's on cells this large


def cell_targets(
    teacher: Target,
    outputs: Sequence[TargetOutput],
    grid: tuple[int, int],
    height: int,
    width: int,
    *,
    point_sigma: float,
) -> torch.Tensor:
    """``(B, rows, columns)`` probabilities the student's grid should match (see module doc)."""
    rows, columns = grid
    targets = []
    for output in outputs:
        if output.log_density is not None:
            density = torch.from_numpy(np.exp(output.log_density)).float()[None, None]
            cells = F.adaptive_avg_pool2d(density, grid)[0, 0]
        else:
            x, y = teacher_point(teacher, output, width, height)
            knows_x = teacher.gives_point or any(c.width < width for c in output.crops)
            knows_y = teacher.gives_point or any(c.height < height for c in output.crops)
            cx, cy = x / width * columns - 0.5, y / height * rows - 0.5  # in cell units, cell centres at k
            column_weights = torch.exp(-0.5 * ((torch.arange(columns) - cx) / point_sigma) ** 2)
            row_weights = torch.exp(-0.5 * ((torch.arange(rows) - cy) / point_sigma) ** 2)
            cells = (row_weights if knows_y else torch.ones(rows))[:, None] * (
                column_weights if knows_x else torch.ones(columns)
            )[None, :]
        targets.append(cells / cells.sum())
    return torch.stack(targets)


def kl_loss(target_cells: torch.Tensor, log_density: torch.Tensor) -> torch.Tensor:
    """Mean over the batch of KL(teacher cells || student grid), in nats."""
    flat_p, flat_log_q = target_cells.flatten(1), log_density.flatten(1)
    return (torch.xlogy(flat_p, flat_p) - flat_p * flat_log_q).sum(dim=1).mean()


def fixation_nll(log_density: torch.Tensor, xs: torch.Tensor, ys: torch.Tensor) -> torch.Tensor:
    """Mean negative log-likelihood of fixations ``(xs, ys)`` (integer pixels) under a ``(H, W)``
    log-density, relative to a uniform density: ``-(mean log p + log(H W))``, nats per fixation."""
    height, width = log_density.shape
    return -(log_density[ys, xs].mean() + math.log(height * width))


def pooled_log_density(log_density: torch.Tensor, grid: tuple[int, int]) -> torch.Tensor:
    """``(B, H, W)`` log-densities to ``(B, rows, columns)`` log-probabilities of the grid's cells."""
    cells = F.adaptive_avg_pool2d(log_density.exp()[:, None], grid)[:, 0].clamp_min(1e-30).log()
    return cells - torch.logsumexp(cells.flatten(1), dim=1)[:, None, None]


def teacher_loss(
    student: DeepGazeII, teacher: Target, crops: np.ndarray, *, point_sigma: float
) -> torch.Tensor:
    """KL(teacher || student) in nats, mean over ``(B, H, W, 3)`` float32 ``crops`` in [0, 1], both
    densities on cells of :data:`TEACHER_CELL` px (a map-less teacher: a Gaussian of ``point_sigma``
    cells around its salient point;
    :func:`cell_targets`). Gradients reach the readout."""
    outputs = teacher.query(list(crops))
    tensor = torch.from_numpy(np.ascontiguousarray(crops)).permute(0, 3, 1, 2)
    height, width = crops.shape[1:3]
    grid = (math.ceil(height / TEACHER_CELL), math.ceil(width / TEACHER_CELL))
    cells = pooled_log_density(student.log_density(tensor), grid)
    targets = cell_targets(teacher, outputs, grid, height, width, point_sigma=point_sigma)
    return kl_loss(targets.to(cells), cells)
