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
        assert picture.size == (160, 106)
        # The map is drawn over the photo: the picture differs from the photo itself.
        assert np.abs(np.asarray(picture, dtype=float) - photo).mean() > 5


def test_unknown_target_is_a_clear_error(tmp_path: Path, capsys) -> None:
    assert main(["--target", "nope", "--out", str(tmp_path / "x.png")]) == 2
    assert "unknown target 'nope'" in capsys.readouterr().err


def test_unreadable_image_is_a_clear_error(tmp_path: Path, capsys) -> None:
    bad = tmp_path / "bad.png"
    bad.write_bytes(b"not a png")
    assert main([str(bad), "--out", str(tmp_path / "x.png")]) == 2
    assert "not an image file" in capsys.readouterr().err
