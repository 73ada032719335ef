"""Side-by-side pictures: clean and adversarial, with salient points, crop boxes and the goal.

Every picture carries a legend (:func:`with_legend`): which colour is which crop aspect ratio, the
goal and the salient point. The colours are far apart in hue, so no crop is taken for the goal:
the goal is white with a black edge (no photo or heat map is drawn in it), the crops are orange,
cyan, magenta and blue, the point green with a black edge (it stands out on the red-to-yellow heat
map and on photos alike). A saliency picture's legend also carries the heat map's colour bar.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
from PIL import Image, ImageDraw, ImageFont

from blackbox.core.goal import Goal
from targets import TargetOutput

# One colour per crop aspect ratio, in the configured order: orange, cyan, magenta, blue.
CROP_COLOURS = ((255, 150, 0), (0, 220, 255), (255, 60, 200), (70, 90, 255))
GOAL_COLOUR = (255, 255, 255)
GOAL_EDGE = (0, 0, 0)
POINT_COLOUR = (0, 230, 0)
POINT_EDGE = (0, 0, 0)  # a halo, so the point shows on any colour under it
#: How many columns :func:`fitting_columns` may choose.
MAX_COLUMNS = 5


def font(size: int) -> ImageFont.ImageFont | ImageFont.FreeTypeFont:
    """Pillow's bundled font at ``size`` px (its fixed bitmap font where FreeType is missing)."""
    try:
        return ImageFont.load_default(size=size)
    except (TypeError, OSError, ImportError):
        return ImageFont.load_default()


def _text_size(width: int) -> int:
    """Labels scale with the picture, so they stay readable when a grid of them is shrunk."""
    return max(12, width // 24)


def _line(pixels: np.ndarray) -> int:
    """Line width in px: thicker on large images, so lines survive a picture being shrunk."""
    return max(2, int(pixels.shape[1]) // 200)


def draw_goal(draw: ImageDraw.ImageDraw, goal: Goal, line: int = 2) -> None:
    """The goal box: white inside a black edge, visible on light and dark photos alike."""
    box = (goal.x0, goal.y0, max(goal.x0, goal.x1 - 1), max(goal.y0, goal.y1 - 1))
    draw.rectangle(box, outline=GOAL_EDGE, width=line + 3)
    draw.rectangle(box, outline=GOAL_COLOUR, width=line)


def annotate(pixels: np.ndarray, output: TargetOutput, goal: Goal, title: str) -> Image.Image:
    image = Image.fromarray(pixels, "RGB")
    draw = ImageDraw.Draw(image)
    for i, crop in enumerate(output.crops):
        colour = CROP_COLOURS[i % len(CROP_COLOURS)]
        draw.rectangle(
            (crop.left, crop.top, crop.right - 1, crop.bottom - 1), outline=colour, width=_line(pixels)
        )
    draw_goal(draw, goal, _line(pixels))
    _mark_point(draw, output.salient_point, pixels.shape[1])
    _title(draw, title, pixels.shape[1])
    return image


def saliency_view(pixels: np.ndarray, output: TargetOutput, title: str) -> Image.Image:
    """The photo dimmed under the saliency map (hot = salient), with the salient point and crops.

    The map is shown as density relative to its maximum, so models of any sharpness compare.
    Without a map (crop-only targets) only the point and crops are drawn.
    """
    base = pixels.astype(np.float64)
    if output.log_density is not None:
        density = np.exp(output.log_density - output.log_density.max())
        base = 0.35 * base + 0.65 * 255.0 * heat_colours(density)
    image = Image.fromarray(np.clip(base, 0, 255).astype(np.uint8), "RGB")
    draw = ImageDraw.Draw(image)
    for i, crop in enumerate(output.crops):
        colour = CROP_COLOURS[i % len(CROP_COLOURS)]
        draw.rectangle(
            (crop.left, crop.top, crop.right - 1, crop.bottom - 1), outline=colour, width=_line(pixels)
        )
    _mark_point(draw, output.salient_point, pixels.shape[1])
    _title(draw, title, pixels.shape[1])
    return image


def heat_colours(density: np.ndarray) -> np.ndarray:
    """Density relative to its maximum, in [0, 1], as RGB in [0, 1]: black, then red, then yellow."""
    density = np.asarray(density, dtype=np.float64)[..., None]
    return np.concatenate([np.clip(2 * density, 0, 1), np.clip(2 * density - 1, 0, 1), 0 * density], -1)


def _mark_point(draw: ImageDraw.ImageDraw, point: tuple[float, float], width: int) -> None:
    x, y = point
    r = max(4, width // 80)
    # Black strokes under the coloured ones: a halo that shows on red, yellow, dark or light.
    for colour, extra in ((POINT_EDGE, 2), (POINT_COLOUR, 0)):
        draw.ellipse((x - r, y - r, x + r, y + r), outline=colour, width=3 + extra)
        draw.line((x - 2 * r - extra, y, x + 2 * r + extra, y), fill=colour, width=2 + extra)
        draw.line((x, y - 2 * r - extra, x, y + 2 * r + extra), fill=colour, width=2 + extra)


def _title(draw: ImageDraw.ImageDraw, title: str, width: int) -> None:
    face = font(_text_size(width))
    *_, right, bottom = draw.textbbox((4, 2), title, font=face)
    draw.rectangle((0, 0, right + 4, bottom + 4), fill=(0, 0, 0))
    draw.text((4, 2), title, fill=(255, 255, 255), font=face)


# Short enough for the narrowest picture (a 640 px wide map): brighter is more salient.
HEAT_LABEL = "saliency: 0 to 1 x its max"


def legend(width: int, ratios: list[float], *, goal: bool = True, heat: bool = False) -> Image.Image:
    """A white strip ``width`` px wide naming each colour: the crops by aspect ratio, goal, point.

    ``heat``: also the heat map's colour bar (:func:`saliency_view`), dark to bright.
    """
    size = _text_size(min(width, 960))
    face = font(size)
    entries: list[tuple[str, tuple[int, int, int] | None]] = [
        (f"crop {r:g} (h/w)", CROP_COLOURS[i % len(CROP_COLOURS)]) for i, r in enumerate(ratios)
    ]
    if goal:
        entries.append(("goal", GOAL_COLOUR))
    entries.append(("salient point", POINT_COLOUR))
    if heat:
        entries.append((HEAT_LABEL, None))  # None: the colour bar, drawn 4 swatches wide
    strip = Image.new("RGB", (width, 1), "white")
    draw = ImageDraw.Draw(strip)
    # Lay the entries out left to right, wrapping to a new line where the width runs out.
    lines, x, y, row_h = [], 8, 8, size + 10
    for label, colour in entries:
        label_w = int(draw.textlength(label, font=face)) + size * (4 if colour is None else 1) + 24
        if x + label_w > width and x > 8:
            x, y = 8, y + row_h
        lines.append((x, y, label, colour))
        x += label_w
    strip = Image.new("RGB", (width, y + row_h + 4), "white")
    draw = ImageDraw.Draw(strip)
    for x, y, label, colour in lines:
        swatch = (x, y, x + size, y + size)
        if colour is None:  # the colour bar: the map's colours at full strength, 0 on the left
            bar = (255 * heat_colours(np.linspace(0, 1, 4 * size))).astype(np.uint8)
            strip.paste(Image.fromarray(np.repeat(bar[None], size, axis=0), "RGB"), (x, y))
            draw.rectangle((x, y, x + 4 * size, y + size), outline=(0, 0, 0))
            draw.text((x + 4 * size + 6, y - 1), label, fill=(0, 0, 0), font=face)
            continue
        if colour == GOAL_COLOUR:
            draw.rectangle(swatch, outline=GOAL_EDGE, width=4)
            draw.rectangle(swatch, outline=GOAL_COLOUR, width=2)
        elif colour == POINT_COLOUR:  # drawn as on the pictures: the marker on its halo
            draw.rectangle(swatch, fill=colour, outline=POINT_EDGE, width=2)
        else:
            draw.rectangle(swatch, fill=colour, outline=(0, 0, 0))
        draw.text((x + size + 6, y - 1), label, fill=(0, 0, 0), font=face)
    return strip


def with_legend(
    picture: Image.Image, ratios: list[float], *, goal: bool = True, heat: bool = False
) -> Image.Image:
    """``picture`` with its :func:`legend` below it."""
    strip = legend(picture.width, ratios, goal=goal, heat=heat)
    canvas = Image.new("RGB", (picture.width, picture.height + strip.height), "white")
    canvas.paste(picture, (0, 0))
    canvas.paste(strip, (0, picture.height))
    return canvas


def fitting_columns(count: int, most: int = MAX_COLUMNS) -> int:
    """Columns for ``count`` panels leaving the fewest empty cells (then the widest): 5 photos make
    one row of 5, not 3 over 2 with a blank beside them; 6 make 3 by 2, 7 make 4 over 3."""
    if count <= most:
        return max(1, count)
    return min(range(2, most + 1), key=lambda c: (-count % c, -c))


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
    _title(ImageDraw.Draw(image), f"perturbation x{127.5 / peak:.0f}", image.width)
    return image


def side_by_side_picture(
    clean: np.ndarray,
    adversarial: np.ndarray,
    clean_output: TargetOutput,
    adversarial_output: TargetOutput,
    goal: Goal,
) -> Image.Image:
    """Clean and adversarial ``(H, W, 3)`` uint8 images with their answers and the goal, and the
    amplified perturbation, side by side above the legend."""
    panels = [
        annotate(clean, clean_output, goal, "original"),
        annotate(adversarial, adversarial_output, goal, "adversarial"),
        perturbation_view(clean, adversarial),
    ]
    ratios = [c.aspect_ratio for c in clean_output.crops]
    return with_legend(grid(panels, columns=len(panels)), ratios)


def side_by_side(
    clean: np.ndarray,
    adversarial: np.ndarray,
    clean_output: TargetOutput,
    adversarial_output: TargetOutput,
    goal: Goal,
    path: Path,
) -> None:
    """:func:`side_by_side_picture` written to ``path`` as a PNG (its folder made if missing)."""
    path.parent.mkdir(parents=True, exist_ok=True)
    side_by_side_picture(clean, adversarial, clean_output, adversarial_output, goal).save(path)
