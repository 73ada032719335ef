"""benchmarks.vips_search's verdicts on issue 16's goals, from made-up sweep results (no cropper runs)."""

from __future__ import annotations

from benchmarks.vips_search import VARIANTS, goals, rate_at, report


def _result(variant: str, target: str, smallest: list[float | None]) -> dict:
    images = {
        f"img{i}": {"smallest_eps": eps, "queries": {}, "success_queries": {"40": 3} if eps else {}}
        for i, eps in enumerate(smallest)
    }
    return {
        "variant": variant,
        "target": target,
        "budget": VARIANTS[variant][1],
        "seconds": 1.0,
        "images": images,
    }


def test_rates_count_pictures_moved_at_some_eps_up_to_each_size() -> None:
    result = _result("grid_tpe", "vips_entropy", [10.0, 20.0, 40.0, None, None])
    assert [rate_at(result, e) for e in (10, 20, 40)] == [0.2, 0.4, 0.6]


def test_goals_say_met_and_not_met_with_the_figures() -> None:
    results = [
        _result("grid_tpe", "vips_attention", [10.0, 20.0, 40.0, 40.0, 10.0]),  # 100%
        _result("grid_random", "vips_attention", [10.0, None, 40.0, 40.0, 10.0]),  # 80%
        _result("grid_tpe", "vips_entropy", [10.0, None, None, 40.0, 10.0]),  # 60%
        _result("grid_random", "vips_entropy", [10.0, 40.0, None, 40.0, 10.0]),  # 80%
    ]
    text = goals(results)
    assert "goal 1, vips_attention: met: 100% of 5 pictures" in text
    assert "goal 1, vips_entropy: NOT met: 60% of 5 pictures" in text  # random's 2000 queries do not count
    assert "goal 2, vips_attention: met: tpe within 500 queries 100%, random within 2000 80%" in text
    assert "goal 2, vips_entropy: NOT met: tpe within 500 queries 60%, random within 2000 80%" in text
    table = report(results, [10.0, 20.0, 40.0])
    assert "| grid_tpe | vips_entropy | 500 | 40 | 40 | 60 |" in table
    assert "| img1 | 20 | - | - | 40 |" in table
