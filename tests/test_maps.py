from __future__ import annotations

from pathlib import Path

import numpy as np
from PIL import Image

from blackbox.maps import main


def test_maps_picture_of_an_image(tmp_path: Path, photo: np.ndarray) -> None:
    source = tmp_path / "cat.png"
    Image.fromarray(photo).save(source)
    out = tmp_path / "maps.png"
    assert main([f"images={source}", "target=classic", "working_width=160", f"out={out}"]) == 0
    with Image.open(out) as picture:
        assert picture.width == 160 and picture.height > 106  # the map, then its legend below
        pixels = np.asarray(picture, dtype=float)
        # The map is drawn over the photo: the picture differs from the photo itself.
        assert np.abs(pixels[:106] - photo).mean() > 5
        # The legend: one swatch per crop aspect ratio, each in its own colour.
        from blackbox.core.visualize import CROP_COLOURS

        legend = np.asarray(picture)[106:].reshape(-1, 3)
        for colour in CROP_COLOURS:
            assert (legend == colour).all(axis=1).any(), colour


def test_unknown_target_is_a_clear_error(tmp_path: Path, capsys) -> None:
    assert main(["target=nope", f"out={tmp_path / 'x.png'}"]) == 2
    assert "unknown target 'nope'" in capsys.readouterr().err


def test_unreadable_image_is_a_clear_error(tmp_path: Path, capsys) -> None:
    bad = tmp_path / "bad.png"
    bad.write_bytes(b"not a png")
    assert main([f"images={bad}", f"out={tmp_path / 'x.png'}"]) == 2
    assert "not an image file" in capsys.readouterr().err


def test_goal_crop_and_point_colours_are_far_apart() -> None:
    """The old goal (pure green) and the 2.0 crop (lime) looked alike: every pair differs a lot now."""
    from blackbox.core.visualize import CROP_COLOURS, GOAL_COLOUR, POINT_COLOUR

    colours = [*CROP_COLOURS, GOAL_COLOUR, POINT_COLOUR]
    for i, a in enumerate(colours):
        for b in colours[i + 1 :]:
            assert np.abs(np.subtract(a, b)).sum() >= 150, (a, b)


def test_the_point_stands_out_on_every_heat_map_colour() -> None:
    """The point was red, the heat map's own colour at half the maximum density."""
    from blackbox.core.visualize import POINT_COLOUR, heat_colours

    for colour in 255 * heat_colours(np.linspace(0, 1, 101)):
        assert np.abs(colour - POINT_COLOUR).sum() >= 150, colour


def test_a_grid_fits_the_count() -> None:
    from blackbox.core.visualize import fitting_columns

    # Five photos: one row, not 3 over 2 with a blank cell; every count leaves the fewest blanks.
    assert [fitting_columns(n) for n in (1, 3, 5, 6, 7, 8, 9)] == [1, 3, 5, 3, 4, 4, 3]


def test_the_maps_picture_has_a_colour_bar_and_fits_five_photos(tmp_path: Path, photo: np.ndarray) -> None:
    sources = []
    for i in range(5):
        sources.append(tmp_path / f"cat{i}.png")
        Image.fromarray(photo).save(sources[-1])
    out = tmp_path / "maps.png"
    images = f"images=[{','.join(map(str, sources))}]"
    assert main([images, "target=classic", "working_width=160", f"out={out}"]) == 0
    with Image.open(out) as picture:
        assert picture.width == 5 * 160 + 4 * 8  # one row of five, no blank cell
        legend = np.asarray(picture.convert("RGB"))[106:].reshape(-1, 3).astype(int)
    # The colour bar runs from black through red to yellow (what full density is drawn as).
    for colour in ((255, 255, 0), (255, 0, 0)):
        assert (np.abs(legend - colour).sum(axis=1) <= 12).any(), colour
