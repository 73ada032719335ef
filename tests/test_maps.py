from __future__ import annotations

from pathlib import Path

import numpy as np
from PIL import Image

from blackbox.maps import main


def test_maps_picture_of_an_image(tmp_path: Path, photo: np.ndarray) -> None:
    source = tmp_path / "cat.png"
    Image.fromarray(photo).save(source)
    out = tmp_path / "maps.png"
    assert main([str(source), "--target", "classic", "--working-width", "160", "--out", str(out)]) == 0
    with Image.open(out) as picture:
        assert picture.width == 160 and picture.height > 106  # the map, then its legend below
        pixels = np.asarray(picture, dtype=float)
        # The map is drawn over the photo: the picture differs from the photo itself.
        assert np.abs(pixels[:106] - photo).mean() > 5
        # The legend: one swatch per crop aspect ratio, each in its own colour.
        from blackbox.visualize import CROP_COLOURS

        legend = np.asarray(picture)[106:].reshape(-1, 3)
        for colour in CROP_COLOURS:
            assert (legend == colour).all(axis=1).any(), colour


def test_unknown_target_is_a_clear_error(tmp_path: Path, capsys) -> None:
    assert main(["--target", "nope", "--out", str(tmp_path / "x.png")]) == 2
    assert "unknown target 'nope'" in capsys.readouterr().err


def test_unreadable_image_is_a_clear_error(tmp_path: Path, capsys) -> None:
    bad = tmp_path / "bad.png"
    bad.write_bytes(b"not a png")
    assert main([str(bad), "--out", str(tmp_path / "x.png")]) == 2
    assert "not an image file" in capsys.readouterr().err


def test_goal_crop_and_point_colours_are_far_apart() -> None:
    """The old goal (pure green) and the 2.0 crop (lime) looked alike: every pair differs a lot now."""
    from blackbox.visualize import CROP_COLOURS, GOAL_COLOUR, POINT_COLOUR

    colours = [*CROP_COLOURS, GOAL_COLOUR, POINT_COLOUR]
    for i, a in enumerate(colours):
        for b in colours[i + 1 :]:
            assert np.abs(np.subtract(a, b)).sum() >= 150, (a, b)
