"""What moves a saliency network per unit of L2: hand-made changes in the goal's most salient cell.

    python -m benchmarks.texture_probes                      # twitter, the 8 README pictures with a goal
    python -m benchmarks.texture_probes --target classic

Before ``search=texture`` was built (issue 18), on the README's pictures (bundled + the
:mod:`benchmarks.photos` folder, the protocol's goal), each probe below is laid on the goal's cell
that the clean map finds most salient (:func:`blackbox.search.prior.rank_cells`, the network's
32 px cells at 640 px) and bisected on its L2 (7 steps below ``--eps``): the smallest L2 that still
moves the salient point into the goal, or "-" if ``--eps`` does not. Probes: the ``texture``
checkerboard with 2, 4 or 8 squares per cell side (grey, or a colour's signs), the same on the
central half of the cell, the picture's own edges in the cell (``x - blur(x)``, sigma 1-4 px) and
its contrast (``x - mean``); and, beside them, PGD run on ``--surrogate`` (``classic``) towards the
same goal and sent to the target at 1, 2 and 4 times ``--eps`` (a transfer prior).
Prints a row per picture, the median per probe and how many pictures each moved.
"""

from __future__ import annotations

import argparse

import numpy as np
import torch
from scipy.ndimage import gaussian_filter

from benchmarks._compose import compose_run
from benchmarks.blackbox_vs_whitebox import problems
from blackbox.attacks import AttackProblem
from blackbox.attacks._gradients import goal_mask, to_delta_array, to_tensor
from blackbox.attacks.pgd import PGD
from blackbox.core.objective import succeeded
from blackbox.search.prior import rank_cells
from targets._zoo import instantiate_target

SETS = (["dataset=bundled"], ["dataset=folder", "dataset.path=runs/benchmarks/photos"])
SQUARE = {"grid": 20, "cells": "square"}
# name -> (kind, squares per side or blur sigma, share of the cell's side, RGB signs)
PROBES = {
    "texture 4, grey": ("texture", 4, 1.0, (1, 1, 1)),
    "texture 2, grey": ("texture", 2, 1.0, (1, 1, 1)),
    "texture 8, grey": ("texture", 8, 1.0, (1, 1, 1)),
    "texture 4, half cell": ("texture", 4, 0.5, (1, 1, 1)),
    "texture 4, green/magenta": ("texture", 4, 1.0, (1, -1, 1)),
    "texture 4, red": ("texture", 4, 1.0, (1, 0, 0)),
    "own edges, sigma 1": ("edges", 1, 1.0, None),
    "own edges, sigma 4": ("edges", 4, 1.0, None),
    "own contrast": ("contrast", 0, 1.0, None),
}


def probe(name: str, pixels: np.ndarray, cell: tuple[int, int], side: float) -> np.ndarray:
    """The probe's change in the cell ``(col, row)``, unscaled, ``(H, W, 3)`` float64."""
    kind, value, share, signs = PROBES[name]
    height, width = pixels.shape[:2]
    inner = int(side * share)
    x0 = int(cell[0] * side) + (int(side) - inner) // 2
    y0 = int(cell[1] * side) + (int(side) - inner) // 2
    box = (slice(y0, min(height, y0 + inner)), slice(x0, min(width, x0 + inner)))
    delta = np.zeros((height, width, 3))
    if kind == "texture":
        square = max(1, round(side / value))
        ys, xs = np.mgrid[box]
        parity = ((ys // square + xs // square) % 2) * 2.0 - 1.0
        delta[box] = parity[..., None] * np.asarray(signs, dtype=np.float64)
    else:
        image = pixels.astype(np.float64) / 255.0
        smooth = (
            gaussian_filter(image, sigma=(value, value, 0)) if kind == "edges" else image[box].mean((0, 1))
        )
        delta[box] = (image - smooth)[box]
    return delta


def smallest_l2(target, loaded, goal, delta: np.ndarray, eps: float) -> float | None:
    """The smallest L2 of ``delta`` scaled (7 bisection steps below ``eps``) that moves the point."""
    norm = float(np.linalg.norm(delta))
    if norm == 0:
        return None
    unit = delta / norm * 255.0

    def moved(scale: float) -> tuple[bool, float]:
        adversarial = np.clip(np.round(loaded.pixels + unit * scale), 0, 255)
        output = target.query([(adversarial / 255.0).astype(np.float32)])[0]
        l2 = float(np.linalg.norm(adversarial - loaded.pixels) / 255.0)
        return succeeded(output, goal, loaded.width, loaded.height, has_point=True), l2

    if not moved(eps)[0]:
        return None
    low, high = 0.0, eps
    for _ in range(7):
        middle = (low + high) / 2
        low, high = (low, middle) if moved(middle)[0] else (middle, high)
    return moved(high)[1]


def transfer(target, surrogate, loaded, clean, goal, eps: float) -> list[bool]:
    """PGD on ``surrogate`` towards ``goal`` at 1, 2 and 4 x ``eps``, judged on ``target``."""
    out = []
    for factor in (1, 2, 4):
        problem = AttackProblem(loaded, clean, goal, eps * factor, "l2", "surrogate", "point")
        mask = goal_mask(goal, loaded.height, loaded.width)
        delta = to_delta_array(PGD(steps=20).perturbation(problem, surrogate, to_tensor(loaded.pixels), mask))
        adversarial = problem.budget.apply(loaded.pixels, delta)
        output = target.query([adversarial.astype(np.float32) / 255.0])[0]
        out.append(succeeded(output, goal, loaded.width, loaded.height, has_point=True))
    return out


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--target", default="twitter")
    parser.add_argument("--surrogate", default="classic", help="the transfer prior's model ('' to skip)")
    parser.add_argument("--eps", type=float, default=10.0)
    args = parser.parse_args()
    torch.set_num_threads(1)
    common = [f"target={args.target}", "storage=memory", "artifacts=none", "progress=false"]
    target = instantiate_target(compose_run(common).target)
    surrogate = (
        instantiate_target(compose_run([f"target={args.surrogate}"]).target) if args.surrogate else None
    )
    found: dict[str, list[float | None]] = {name: [] for name in PROBES}
    moved_by_transfer = np.zeros(3, dtype=int)
    items = [item for overrides in SETS for item in problems(target, args.target, overrides, common)]
    for loaded, clean, goal in items:
        side = max(loaded.height, loaded.width) / SQUARE["grid"]
        cell = rank_cells(SQUARE, goal, loaded.width, loaded.height, clean)[0]
        row = []
        for name in PROBES:
            l2 = smallest_l2(target, loaded, goal, probe(name, loaded.pixels, cell, side), args.eps)
            found[name].append(l2)
            row.append("-" if l2 is None else f"{l2:.2f}")
        moves = transfer(target, surrogate, loaded, clean, goal, args.eps) if surrogate else []
        moved_by_transfer += np.asarray(moves or [0, 0, 0], dtype=int)
        print(
            f"{loaded.image_id:>20} cell {cell}: " + " ".join(f"{v:>6}" for v in row) + f"  transfer {moves}"
        )
    print(
        f"\n{len(items)} pictures, eps {args.eps:g}: the smallest successful L2 (median over those "
        "moved) and the pictures moved"
    )
    for name, values in found.items():
        moved = [v for v in values if v is not None]
        median = f"{np.median(moved):.2f}" if moved else "-"
        print(f"  {name:>26}: median {median:>5}, moved {len(moved)} of {len(values)}")
    if surrogate:
        print(
            f"  PGD on {args.surrogate} sent to {args.target} at 1 / 2 / 4 x eps: "
            f"moved {list(moved_by_transfer)}"
        )


if __name__ == "__main__":
    main()
