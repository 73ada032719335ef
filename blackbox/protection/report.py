"""The protection report: ``report.md`` (tables) and ``thumbnails.png`` (what a reader would see).

For every cropper x treatment x aspect ratio the report says whether the crop keeps the box, on the
original upload and on the protected file, each as the platform would serve it (:mod:`.transforms`).
Below: the perturbation's size at the original resolution (L2, L-inf, PSNR, SSIM), both as computed
and in the file as written (the file's own encoding adds its rounding), and the queries per cropper.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path

import numpy as np
from PIL import Image, ImageDraw

from targets import CropBox

__all__ = ["CropVerdict", "kept_table", "write_picture", "write_report"]


@dataclass(frozen=True)
class CropVerdict:
    """One crop of one cropper after one treatment: its box (in the treated image's pixels), and
    whether it keeps the user's box (``None``: this crop cannot miss it, or cannot hold it)."""

    crop: CropBox
    kept: bool


def _mark(value: bool) -> str:
    return "kept" if value else "**cut**"


def kept_table(
    before: Mapping[tuple[str, str], Sequence[CropVerdict]],
    after: Mapping[tuple[str, str], Sequence[CropVerdict]] | None,
    ratios: Sequence[float],
) -> str:
    """A markdown table: a row per (cropper, treatment), a column per aspect ratio, ``before -> after``."""
    header = "| cropper | served as | " + " | ".join(f"{r:g}" for r in ratios) + " | every crop |"
    lines = [header, "|" + "---|" * (len(ratios) + 3)]
    for key, verdicts in before.items():
        cells = []
        for index, verdict in enumerate(verdicts):
            text = _mark(verdict.kept)
            if after is not None:
                text += " → " + _mark(after[key][index].kept)
            cells.append(text)
        whole = all(v.kept for v in verdicts)
        summary = _mark(whole) + ("" if after is None else " → " + _mark(all(v.kept for v in after[key])))
        lines.append(f"| {key[0]} | {key[1]} | " + " | ".join(cells) + f" | {summary} |")
    return "\n".join(lines)


def write_report(path: Path, *, sections: Sequence[tuple[str, str]], title: str) -> None:
    """``# title`` then each ``(heading, body)`` as a ``##`` section."""
    text = [f"# {title}", ""]
    for heading, body in sections:
        text += [f"## {heading}", "", body.rstrip(), ""]
    path.write_text("\n".join(text))


def _thumbnail(
    pixels: np.ndarray, crop: CropBox, box: Sequence[float], kept: bool, height: int
) -> Image.Image:
    """The crop a reader sees, ``height`` px tall, the box outlined, framed green (kept) or red (cut)."""
    image = Image.fromarray(pixels[crop.top : crop.top + crop.height, crop.left : crop.left + crop.width])
    scale = height / max(1, image.height)
    image = image.resize((max(1, round(image.width * scale)), height), Image.Resampling.BICUBIC)
    draw = ImageDraw.Draw(image)
    x0, y0, x1, y1 = (
        (box[0] - crop.left) * scale,
        (box[1] - crop.top) * scale,
        (box[2] - crop.left) * scale,
        (box[3] - crop.top) * scale,
    )
    draw.rectangle([x0, y0, x1, y1], outline=(255, 220, 0), width=2)
    draw.rectangle(
        [0, 0, image.width - 1, image.height - 1], outline=(0, 170, 0) if kept else (220, 0, 0), width=4
    )
    return image


def write_picture(
    path: Path,
    *,
    before: Mapping[str, tuple[np.ndarray, Sequence[CropVerdict], Sequence[float]]],
    after: Mapping[str, tuple[np.ndarray, Sequence[CropVerdict], Sequence[float]]],
    height: int = 110,
) -> None:
    """One row per cropper: its thumbnails (one per ratio) before, then after, the box outlined in
    yellow, each framed green (keeps the box) or red (cuts it). ``before[name]`` is the served image,
    its verdicts and the box in that image's pixels."""
    rows = []
    gap = 6
    for name in before:
        tiles = []
        for side in (before, after):
            pixels, verdicts, box = side[name]
            tiles += [_thumbnail(pixels, v.crop, box, v.kept, height) for v in verdicts]
            tiles.append(None)  # a wider gap between before and after
        width = 130 + sum((t.width if t else 3 * gap) + gap for t in tiles)
        row = Image.new("RGB", (width, height + 2 * gap), "white")
        draw = ImageDraw.Draw(row)
        draw.text((gap, height // 2 - 6), name, fill="black")
        x = 130
        for tile in tiles:
            if tile is None:
                x += 3 * gap
                continue
            row.paste(tile, (x, gap))
            x += tile.width + gap
        rows.append(row)
    width = max(r.width for r in rows)
    legend = 22
    canvas = Image.new("RGB", (width, legend + sum(r.height for r in rows)), "white")
    ImageDraw.Draw(canvas).text(
        (6, 5),
        "left: the original's thumbnails; right: the protected file's (green: the box is kept, red: cut)",
        fill="black",
    )
    y = legend
    for row in rows:
        canvas.paste(row, (0, y))
        y += row.height
    canvas.save(path)
