from __future__ import annotations

import numpy as np
import pytest

from blackbox.evaluate.selection import SelectionReport, SelectionRules, rejection


def profile_map(width: int, height: int, peaks: list[tuple[int, float]]) -> np.ndarray:
    xs = np.arange(width)
    profile = sum(h * np.exp(-((xs - c) ** 2) / (2 * 4.0**2)) for c, h in peaks) + 1e-4
    density = np.tile(profile, (height, 1))
    return np.log(density / density.sum())


RULES = SelectionRules()


def test_a_good_image_is_kept() -> None:
    assert rejection(profile_map(200, 100, [(80, 1.0), (105, 0.8)]), RULES) is None


@pytest.mark.parametrize(
    ("peaks", "size", "rule"),
    [
        ([(80, 1.0)], (200, 100), "maxima"),
        ([(20, 1.0), (60, 0.9), (100, 0.8), (140, 0.7), (180, 0.6)], (200, 100), "maxima"),
        ([(80, 1.0), (105, 0.8)], (200, 160), "horizontal"),
        ([(40, 1.0), (150, 0.8)], (200, 100), "distance"),
        ([(80, 1.0), (105, 0.5)], (200, 100), "balance"),
    ],
)
def test_each_rule_drops_what_it_should(peaks, size, rule) -> None:
    reason = rejection(profile_map(*size, peaks), RULES)
    assert reason is not None and reason.startswith(rule + ":")


def test_rules_are_configurable() -> None:
    far = profile_map(200, 100, [(40, 1.0), (150, 0.8)])
    assert rejection(far, SelectionRules(max_distance=0.6)) is None
    assert rejection(far, SelectionRules(enabled=False)) is None


def test_bad_rules_are_clear_errors() -> None:
    with pytest.raises(ValueError, match="unknown selection settings"):
        SelectionRules.from_config({"max_distanse": 0.2})
    with pytest.raises(ValueError, match="min_maxima"):
        SelectionRules(min_maxima=3, max_maxima=2)


def test_report_counts_add_up() -> None:
    report = SelectionReport()
    report.add("a", None)
    report.add("b", "maxima: 1 local maxima, need 2 to 4")
    report.add("c", "balance: target's profile 60.0% below the peak's > 40%")
    assert report.counts() == {"maxima": 1, "horizontal": 0, "distance": 0, "balance": 1}
    assert "1 of 3 images kept" in report.markdown()
