"""Random model files in the exact published layouts, for tests and benchmarks (never for predictions).

Speed and memory do not depend on the weights' values, and layout checks need only names and shapes,
so tests and ``benchmarks/`` run on these instead of the real files (which are large, and which
tests must never download). Every function is seeded and deterministic.
"""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path

import torch

from targets._deepgaze_checkpoint import CENTRE_BIAS_WEIGHT_KEY, INDEXED_VGG_PREFIX, READOUT_PREFIX, SIGMA_KEY
from targets._vgg import vgg19_layout
from targets.deepgaze import PUBLISHED_READOUT, READOUT_FILE, VGG19_FILE


def random_vgg19_state_dict(*, seed: int = 0, classifier: bool = False) -> dict[str, torch.Tensor]:
    """torchvision's ``vgg19`` keys and shapes with He-initialised random values (features: 80 MB;
    the classifier adds 490 MB, so it is left out unless asked for)."""
    generator = torch.Generator().manual_seed(seed)
    state = {}
    for key, shape in vgg19_layout(classifier=classifier).items():
        if key.endswith(".weight"):
            fan_in = int(torch.tensor(shape[1:]).prod())
            state[key] = torch.randn(shape, generator=generator) * (2.0 / fan_in) ** 0.5
        else:
            state[key] = 0.01 * torch.randn(shape, generator=generator)
    return state


def random_readout_state_dict(
    *,
    channels: Sequence[int] = PUBLISHED_READOUT,
    in_channels: int = 2560,
    seed: int = 0,
    blur_sigma: float = 8.0,
    centre_bias_weight: float = 1.0,
) -> dict[str, torch.Tensor]:
    """A DeepGaze II readout checkpoint in deepgaze_pytorch's layout (convolutions with biases)."""
    generator = torch.Generator().manual_seed(seed + 1)
    state = {}
    previous = in_channels
    for i, out in enumerate(channels):
        weight = torch.randn(out, previous, 1, 1, generator=generator) / previous**0.5
        state[f"{READOUT_PREFIX}conv{i}.weight"] = weight
        state[f"{READOUT_PREFIX}conv{i}.bias"] = 0.1 * torch.randn(out, generator=generator)
        previous = out
    state[SIGMA_KEY] = torch.tensor(float(blur_sigma))
    state[CENTRE_BIAS_WEIGHT_KEY] = torch.tensor([float(centre_bias_weight)])
    return state


def write_deepgaze2_fixtures(directory: str | Path, *, seed: int = 0) -> dict[str, Path]:
    """Write random DeepGaze II files into ``directory`` under their real names, and a combined file.

    Returns ``{"vgg": vgg19-dcbb9e9d.pth (features only), "readout": deepgaze2_readout.pth,
    "combined": deepgaze2_with_vgg.pth (the readout with the backbone saved along, as
    deepgaze_pytorch's ``RGBvgg19`` nests it)}``.
    """
    directory = Path(directory)
    directory.mkdir(parents=True, exist_ok=True)
    vgg = random_vgg19_state_dict(seed=seed)
    readout = random_readout_state_dict(seed=seed)
    paths = {
        "vgg": directory / VGG19_FILE.filename,
        "readout": directory / READOUT_FILE.filename,
        "combined": directory / "deepgaze2_with_vgg.pth",
    }
    torch.save(vgg, paths["vgg"])
    torch.save(readout, paths["readout"])
    torch.save({**readout, **{INDEXED_VGG_PREFIX + k: v for k, v in vgg.items()}}, paths["combined"])
    return paths
