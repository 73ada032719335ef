"""benchmarks/invisible.py and invisible_figures.py: the figures of docs/invisible.md, on a tiny run."""

from __future__ import annotations

import numpy as np
import pytest

from benchmarks import invisible, invisible_figures


def test_the_benchmark_prints_each_method_beside_pgd(capsys) -> None:
    small = ["--budget", "5", "--cap", "4"]
    invisible.main(
        [
            "--targets",
            "classic",
            "--sets",
            "bundled",
            "--only",
            "chelsea",
            "--methods",
            "pgd",
            "square",
            "auto",
            *small,
        ]
    )
    out = capsys.readouterr().out
    assert "classic bundled cap 4/255 eps 20 budget 5" in out
    assert "chelsea: pgd=" in out and "square=" in out and "auto=" in out
    assert "pgd             n= 1" in out and "square          n= 1" in out and "auto            n= 1" in out


def test_an_unknown_method_or_a_missing_picture_folder_says_what_to_do(tmp_path, monkeypatch) -> None:
    with pytest.raises(SystemExit, match="unknown methods"):
        invisible.main(["--methods", "nope"])
    monkeypatch.chdir(tmp_path)
    with pytest.raises(SystemExit, match=r"python -m benchmarks\.heldout_photos"):
        invisible.pictures("heldout")


def test_the_figure_window_is_where_the_change_is_densest() -> None:
    clean = np.zeros((100, 120, 3), dtype=np.uint8)
    adversarial = clean.copy()
    adversarial[70:90, 90:110] = 2
    rows, cols = invisible_figures.window(np.any(adversarial != clean, axis=2), 32)
    assert rows.start <= 70 and rows.stop >= 90 and cols.start <= 90 and cols.stop >= 110
    picture = invisible_figures.figure(clean, adversarial, 32)
    assert picture.shape == (32, 3 * 32 + 2 * invisible_figures.GAP, 3)
    assert picture[..., 2 * (32 + invisible_figures.GAP) :, :].max() == 128 + 32 * 2  # the change x32
