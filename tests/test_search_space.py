from __future__ import annotations

import numpy as np
import pytest

from blackbox.core.goal import Goal
from blackbox.core.perturbation import PerturbationBudget
from blackbox.search.search_space import (
    Region,
    SearchSpaceError,
    distributions,
    patch_regions,
    pixel,
    trial_config,
)
from blackbox.search.warm_start import fit_patches

SPACE = {
    "n_patches": 4,
    "region": "goal",
    "margin": 0.5,
    "space": {"size": {"low": 2.0, "high": 10.0, "log": True}, "amplitude": {"low": -1.0, "high": 1.0}},
}
WIDTH, HEIGHT = 200, 100
BAND = Goal(150.0, 0.0, 170.0, 99.0, "protocol", 40.0, 160.0)  # a full-height goal band


def test_goal_region_is_the_goal_grown_by_margin() -> None:
    regions = patch_regions(SPACE, BAND, WIDTH, HEIGHT, peak=(40.0, 50.0))
    assert regions == [Region(140, 0, 180, 99)] * 4


def test_goal_and_peak_sends_half_the_patches_to_the_peak() -> None:
    space = {**SPACE, "region": "goal_and_peak"}
    regions = patch_regions(space, BAND, WIDTH, HEIGHT, peak=(40.0, 50.0))
    # A full-height goal band gives a full-height band of the goal's width around the peak.
    assert regions[:2] == [Region(20, 0, 60, 99)] * 2
    assert regions[2:] == [Region(140, 0, 180, 99)] * 2
    dims = distributions(space, regions)
    assert (dims["p0_x"].low, dims["p0_x"].high) == (20, 60)
    assert (dims["p3_x"].low, dims["p3_x"].high) == (140, 180)


def test_goal_and_peak_box_goal_gives_a_box_around_the_peak() -> None:
    box = Goal(150.0, 40.0, 170.0, 60.0, "user", 40.0, 160.0)
    space = {**SPACE, "region": "goal_and_peak", "peak_patches": 1}
    regions = patch_regions(space, box, WIDTH, HEIGHT, peak=(40.0, 20.0))
    assert regions[0] == Region(20, 0, 60, 40)  # the goal's size around the peak, grown, clipped at 0
    assert regions[1:] == [Region(140, 30, 180, 70)] * 3


@pytest.mark.parametrize(
    ("change", "message"),
    [
        ({"region": "corner"}, "search.region"),
        ({"region": "goal_and_peak", "peak_patches": 5}, "peak_patches"),
    ],
)
def test_bad_regions_are_refused(change, message) -> None:
    with pytest.raises(SearchSpaceError, match=message):
        patch_regions({**SPACE, **change}, BAND, WIDTH, HEIGHT, peak=(40.0, 50.0))


def test_coordinates_are_continuous_and_rounded_half_up() -> None:
    dims = distributions(SPACE, Region(140, 0, 180, 99))
    assert type(dims["p0_x"]).__name__ == "FloatDistribution"
    assert [pixel(v) for v in (3.49, 3.5, 4.5, 0.0)] == [3, 4, 5, 0]
    params = {f"p{k}_{n}": 1.0 for k in range(4) for n in ("size", "r", "g", "b")}
    params.update({f"p{k}_x": 150.5 for k in range(4)} | {f"p{k}_y": 10.2 for k in range(4)})
    budget = PerturbationBudget(eps=2.0, norm="l2")
    config = trial_config(SPACE, params=params, region=Region(140, 0, 180, 99), budget=budget)
    assert config["patches"][0]["x"] == 151 and config["patches"][0]["y"] == 10
    assert config["region_bounds"] == {"x0": 140, "y0": 0, "x1": 180, "y1": 99}


def test_warm_start_patches_stay_in_their_regions() -> None:
    delta = np.zeros((HEIGHT, WIDTH, 3))
    delta[50, 100] = 1.0  # all the energy between the two regions
    space = {**SPACE, "region": "goal_and_peak"}
    regions = patch_regions(space, BAND, WIDTH, HEIGHT, peak=(40.0, 50.0))
    params = fit_patches(delta, n_patches=4, region=regions, space=space)
    for k, region in enumerate(regions):
        assert region.x0 <= params[f"p{k}_x"] <= region.x1 and region.y0 <= params[f"p{k}_y"] <= region.y1


def test_parameter_names_are_declared_once_and_read_back() -> None:
    from blackbox.search.search_space import PARAM_KEYS, PatchParam, SearchSpaceError, param_name

    assert param_name(3, "x") == "p3_x" and param_name(0, "r") == "p0_r"
    for key in PARAM_KEYS:
        parsed = PatchParam.parse(param_name(12, key))
        assert parsed == PatchParam(12, key) and parsed.name == f"p12_{key}"
        assert parsed.is_location == (key in ("x", "y"))
    assert PatchParam.parse("x") is None and PatchParam.parse("p0_colour") is None
    with pytest.raises(SearchSpaceError, match="one of x, y"):
        param_name(0, "colour")
    with pytest.raises(SearchSpaceError, match="patch number"):
        param_name(-1, "x")


def test_every_declared_distribution_is_named_by_the_declaration() -> None:
    from blackbox.search.search_space import PatchParam

    space = {**SPACE, "space": {**SPACE["space"], "frequency": {"low": 0.0, "high": 0.3}}}
    dims = distributions(space, Region(0, 0, 99, 99))
    parsed = [PatchParam.parse(name) for name in dims]
    assert all(p is not None for p in parsed)
    assert {p.patch for p in parsed} == set(range(space["n_patches"]))
