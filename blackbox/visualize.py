"""Side-by-side pictures: clean and adversarial, with salient points, crop boxes and the goal."""

from __future__ import annotations

from pathlib import Path

import numpy as np
from PIL import Image, ImageDraw

from blackbox.goal import Goal
from targets import TargetOutput

CROP_COLOURS = ((255, 210, 0), (0, 200, 255), (255, 90, 200), (120, 255, 90))
GOAL_COLOUR = (0, 255, 0)
POINT_COLOUR = (255, 0, 0)


def annotate(pixels: np.ndarray, output: TargetOutput, goal: Goal, title: str) -> Image.Image:
    image = Image.fromarray(pixels, "RGB")
    draw = ImageDraw.Draw(image)
    for i, crop in enumerate(output.crops):
        colour = CROP_COLOURS[i % len(CROP_COLOURS)]
        draw.rectangle((crop.left, crop.top, crop.right - 1, crop.bottom - 1), outline=colour, width=2)
    draw.rectangle((goal.x0, goal.y0, goal.x1 - 1, goal.y1 - 1), outline=GOAL_COLOUR, width=2)
    _mark_point(draw, output.salient_point, pixels.shape[1])
    _title(draw, title)
    return image


def saliency_view(pixels: np.ndarray, output: TargetOutput, title: str) -> Image.Image:
    """The photo dimmed under the saliency map (hot = salient), with the salient point and crops.

    The map is shown as density relative to its maximum, so models of any sharpness compare.
    Without a map (crop-only targets) only the point and crops are drawn.
    """
    base = pixels.astype(np.float64)
    if output.log_density is not None:
        density = np.exp(output.log_density - output.log_density.max())[..., None]
        heat = np.concatenate([np.clip(2 * density, 0, 1), np.clip(2 * density - 1, 0, 1), 0 * density], -1)
        base = 0.35 * base + 0.65 * 255.0 * heat
    image = Image.fromarray(np.clip(base, 0, 255).astype(np.uint8), "RGB")
    draw = ImageDraw.Draw(image)
    for i, crop in enumerate(output.crops):
        colour = CROP_COLOURS[i % len(CROP_COLOURS)]
        draw.rectangle((crop.left, crop.top, crop.right - 1, crop.bottom - 1), outline=colour, width=2)
    _mark_point(draw, output.salient_point, pixels.shape[1])
    _title(draw, title)
    return image


def _mark_point(draw: ImageDraw.ImageDraw, point: tuple[float, float], width: int) -> None:
    x, y = point
    r = max(4, width // 80)
    draw.ellipse((x - r, y - r, x + r, y + r), outline=POINT_COLOUR, width=3)
    draw.line((x - 2 * r, y, x + 2 * r, y), fill=POINT_COLOUR, width=2)
    draw.line((x, y - 2 * r, x, y + 2 * r), fill=POINT_COLOUR, width=2)


def _title(draw: ImageDraw.ImageDraw, title: str) -> None:
    draw.rectangle((0, 0, 8 * len(title) + 8, 16), fill=(0, 0, 0))
    draw.text((4, 2), title, fill=(255, 255, 255))


def grid(panels: list[Image.Image], *, columns: int, gap: int = 8) -> Image.Image:
    """Panels in rows of ``columns``, each cell as large as the largest panel."""
    cell_w = max(p.width for p in panels)
    cell_h = max(p.height for p in panels)
    rows = -(-len(panels) // columns)
    canvas = Image.new(
        "RGB", (columns * cell_w + (columns - 1) * gap, rows * cell_h + (rows - 1) * gap), "white"
    )
    for i, panel in enumerate(panels):
        canvas.paste(panel, ((i % columns) * (cell_w + gap), (i // columns) * (cell_h + gap)))
    return canvas


def perturbation_view(clean: np.ndarray, adversarial: np.ndarray) -> Image.Image:
    """The perturbation amplified to full range (mid-grey is zero), so it can be seen at all."""
    delta = adversarial.astype(np.float64) - clean.astype(np.float64)
    peak = max(1.0, float(np.abs(delta).max()))
    view = np.clip(127.5 + 127.5 * delta / peak, 0, 255).astype(np.uint8)
    image = Image.fromarray(view, "RGB")
    ImageDraw.Draw(image).text((4, 2), f"perturbation x{127.5 / peak:.0f}", fill=(255, 255, 255))
    return image


def side_by_side(
    clean: np.ndarray,
    adversarial: np.ndarray,
    clean_output: TargetOutput,
    adversarial_output: TargetOutput,
    goal: Goal,
    path: Path,
) -> None:
    panels = [
        annotate(clean, clean_output, goal, "original"),
        annotate(adversarial, adversarial_output, goal, "adversarial"),
        perturbation_view(clean, adversarial),
    ]
    path.parent.mkdir(parents=True, exist_ok=True)
    grid(panels, columns=len(panels)).save(path)
