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
    x, y = output.salient_point
    r = max(4, pixels.shape[1] // 80)
    draw.ellipse((x - r, y - r, x + r, y + r), outline=POINT_COLOUR, width=3)
    draw.line((x - 2 * r, y, x + 2 * r, y), fill=POINT_COLOUR, width=2)
    draw.line((x, y - 2 * r, x, y + 2 * r), fill=POINT_COLOUR, width=2)
    draw.rectangle((0, 0, 8 * len(title) + 8, 16), fill=(0, 0, 0))
    draw.text((4, 2), title, fill=(255, 255, 255))
    return image


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
    width = sum(p.width for p in panels) + 8 * (len(panels) - 1)
    canvas = Image.new("RGB", (width, panels[0].height), (255, 255, 255))
    x = 0
    for panel in panels:
        canvas.paste(panel, (x, 0))
        x += panel.width + 8
    path.parent.mkdir(parents=True, exist_ok=True)
    canvas.save(path)
