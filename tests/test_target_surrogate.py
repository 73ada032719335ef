"""``target=surrogate``: the trainable FastGaze-family model and its checkpoints."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from targets import DEFAULT_ASPECT_RATIOS, load
from targets.surrogate import SurrogateCheckpointError, SurrogateSaliency, load_checkpoint, save_checkpoint
from targets.testing import DifferentiableTargetConformance
from targets.weights import MissingModelFileError
from tests.conftest import SHARED_MODELS

SMALL = {"init": "random", "trunk": [6, "pool", 8, "pool", 8], "readout": [4, 1], "grid_cells": 8}


@pytest.fixture(scope="module")
def zoo_surrogate() -> SurrogateSaliency:
    # Through the zoo, as `target=surrogate target.init=random` builds it.
    return load("surrogate", aspect_ratios=DEFAULT_ASPECT_RATIOS, init="random")


class TestSurrogateConformance(DifferentiableTargetConformance):
    @pytest.fixture
    def target(self, zoo_surrogate: SurrogateSaliency) -> SurrogateSaliency:
        return zoo_surrogate


def log_density(target: SurrogateSaliency, image: torch.Tensor) -> torch.Tensor:
    with torch.no_grad():
        return target.log_density(image)


@pytest.fixture
def image() -> torch.Tensor:
    return torch.rand(1, 3, 60, 80, generator=torch.Generator().manual_seed(0))


def test_random_init_is_seeded(image: torch.Tensor) -> None:
    first, again = SurrogateSaliency(**SMALL, seed=1), SurrogateSaliency(**SMALL, seed=1)
    other = SurrogateSaliency(**SMALL, seed=2)
    torch.testing.assert_close(log_density(first, image), log_density(again, image))
    assert not torch.allclose(log_density(first, image), log_density(other, image))
    assert first.net.stride == 4 and first.grid_input.grid_size(60, 80) == (6, 8)


@pytest.mark.skipif(not (SHARED_MODELS / "fastgaze.vxm").is_file(), reason="shared fastgaze.vxm is absent")
def test_fastgaze_init_equals_twitter_until_trained(image: torch.Tensor) -> None:
    from targets.twitter import TwitterSaliency

    weights = SHARED_MODELS / "fastgaze.vxm"
    surrogate, twitter = SurrogateSaliency(weights=weights), TwitterSaliency(weights=weights)
    assert surrogate.net.centre_bias is not None
    torch.testing.assert_close(log_density(surrogate, image), log_density(twitter, image))


def test_checkpoint_round_trip_through_the_zoo(tmp_path, image: torch.Tensor) -> None:
    trained = SurrogateSaliency(**SMALL, centre_bias=True)
    with torch.no_grad():
        trained.net.centre_bias.weight.fill_(3.0)  # a visible change from any fresh model
    path = save_checkpoint(trained, tmp_path / "ckpt" / "last.pt", metadata={"teacher": "classic"}, step=7)
    # The checkpoint's architecture wins over the config's (the zoo config describes FastGaze's).
    loaded = load("surrogate", aspect_ratios=(1.0,), checkpoint=str(path))
    assert isinstance(loaded, SurrogateSaliency) and loaded.architecture() == trained.architecture()
    assert loaded.metadata == {"teacher": "classic"} and load_checkpoint(path)["step"] == 7
    torch.testing.assert_close(log_density(loaded, image), log_density(trained, image))
    assert not any(p.requires_grad for p in loaded.net.parameters())


def test_centre_bias_pulls_towards_the_centre() -> None:
    target = SurrogateSaliency(**SMALL, centre_bias=True)
    flat = torch.full((1, 3, 64, 64), 0.5)
    with torch.no_grad():
        before = target.grid_log_density(flat)[0]
        target.net.centre_bias.weight.fill_(5.0)
        after = target.grid_log_density(flat)[0]
    centre, corner = (after[3:5, 3:5].mean() - before[3:5, 3:5].mean()), (after[0, 0] - before[0, 0])
    assert centre > 0 > corner


def test_one_training_step_changes_the_map(image: torch.Tensor) -> None:
    target = SurrogateSaliency(**SMALL)
    target.net.requires_grad_(True)
    before = log_density(target, image)
    optimizer = torch.optim.SGD(target.net.parameters(), lr=0.1)
    loss = -target.grid_log_density(image)[0, 0, 0]  # make the top-left cell more salient
    loss.backward()
    optimizer.step()
    after = log_density(target, image)
    assert after[0, :10, :10].mean() > before[0, :10, :10].mean()


def test_missing_checkpoint(tmp_path) -> None:
    with pytest.raises(MissingModelFileError, match=r"blackbox\.distill"):
        SurrogateSaliency(checkpoint=tmp_path / "nothing.pt")


def test_corrupt_or_foreign_checkpoints(tmp_path) -> None:
    garbage = tmp_path / "garbage.pt"
    garbage.write_bytes(b"not a checkpoint at all")
    with pytest.raises(SurrogateCheckpointError, match="not a readable"):
        SurrogateSaliency(checkpoint=garbage)
    foreign = tmp_path / "foreign.pt"
    torch.save({"weights": torch.zeros(3)}, foreign)
    with pytest.raises(SurrogateCheckpointError, match="format None"):
        SurrogateSaliency(checkpoint=foreign)
    path = save_checkpoint(SurrogateSaliency(**SMALL), tmp_path / "good.pt")
    state = torch.load(path, weights_only=True)
    state["architecture"]["readout"] = [5, 1]
    torch.save(state, tmp_path / "mismatch.pt")
    with pytest.raises(SurrogateCheckpointError, match="inconsistent"):
        SurrogateSaliency(checkpoint=tmp_path / "mismatch.pt")


@pytest.mark.parametrize(
    "settings",
    [
        {"init": "pretrained"},
        {"init": "random", "trunk": [0, "pool"]},
        {"init": "random", "readout": [4, 2]},
        {"init": "random", "trunk": ["pool"]},
        {"init": "random", "alpha_activation": "gelu"},
        {"init": "random", "channel_order": "rbg"},
    ],
)
def test_bad_settings_are_clear_errors(settings: dict) -> None:
    with pytest.raises(ValueError):
        SurrogateSaliency(**settings)


def test_query_outputs_follow_the_grid() -> None:
    target = SurrogateSaliency(**SMALL)
    image = np.random.default_rng(0).random((60, 80, 3)).astype(np.float32)
    output = target.query([image])[0]
    # Cell centres of an 8x6 grid on an 80x60 image sit at 5 + 10k px.
    assert (output.salient_point[0] - 5) % 10 == pytest.approx(0) and (
        output.salient_point[1] - 5
    ) % 10 == pytest.approx(0)
