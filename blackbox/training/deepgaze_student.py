"""The DeepGaze II student: a fresh readout in deepgaze_pytorch's layout (PyTorch's default
initialisation, seeded; deepgaze_pytorch's ``Finalizer`` defaults for σ and the centre-bias weight),
``target=deepgaze`` built around a readout with the student's settings, and the command that runs a
trained readout as trained.
"""

from __future__ import annotations

import json
from collections.abc import Mapping, Sequence
from pathlib import Path

import torch
from omegaconf import OmegaConf

from targets import ConfigError
from targets._deepgaze_checkpoint import CENTRE_BIAS_WEIGHT_KEY, READOUT_PREFIX, SIGMA_KEY
from targets._readout import build_readout
from targets.deepgaze import PUBLISHED_READOUT, DeepGazeII
from targets.weights import BadModelFileError, MissingModelFileError

INITIAL_BLUR_SIGMA = 8.0  # px of the half-size image: deepgaze_pytorch's Finalizer default
INITIAL_CENTRE_BIAS_WEIGHT = 1.0  # idem
STUDENT_SETTINGS = (
    "vgg_weights",
    "centre_bias",
    "centre_bias_sigma",
    "readout_channels",
    "activation",
    "final_activation",
    "downsample",
    "channels_last",
    "download",
)


def initial_readout_state(
    channels: Sequence[int] = PUBLISHED_READOUT, *, seed: int = 0, in_channels: int = 2560
) -> dict[str, torch.Tensor]:
    """A fresh readout in deepgaze_pytorch's layout: PyTorch's default initialisation of the 1x1
    convolutions (seeded), σ = :data:`INITIAL_BLUR_SIGMA`, weight = :data:`INITIAL_CENTRE_BIAS_WEIGHT`."""
    if not channels or int(channels[-1]) != 1 or any(int(c) < 1 for c in channels):
        raise ConfigError(
            f"student.readout_channels must be positive channel counts ending in 1, got {list(channels)}"
        )
    blocks, previous = [], in_channels
    for out in channels:
        blocks.append({"in": previous, "out": int(out), "conv_bias": True})
        previous = int(out)
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(int(seed))
        readout = build_readout(blocks)
    state = {READOUT_PREFIX + k: v.detach().clone() for k, v in readout.state_dict().items()}
    state[SIGMA_KEY] = torch.tensor(INITIAL_BLUR_SIGMA)
    state[CENTRE_BIAS_WEIGHT_KEY] = torch.tensor([INITIAL_CENTRE_BIAS_WEIGHT])
    return state


def build_student(
    settings: Mapping, readout: Mapping[str, torch.Tensor] | str | Path, aspect_ratios
) -> DeepGazeII:
    """``target=deepgaze`` with ``readout`` (a state dict or a file) and the student's other settings."""
    chosen = {k: settings[k] for k in STUDENT_SETTINGS if k in settings}
    try:
        return DeepGazeII(weights=readout, aspect_ratios=aspect_ratios, **chosen)
    except (BadModelFileError, MissingModelFileError):
        raise  # their messages say which file and what to do
    except (TypeError, ValueError) as error:
        raise ConfigError(f"student settings: {error}") from error


def target_command(readout_path: Path, settings: Mapping) -> str:
    """The ``python -m blackbox target=deepgaze ...`` line that runs the trained readout as trained."""
    defaults = OmegaConf.load(Path(__file__).resolve().parents[2] / "conf" / "target" / "deepgaze.yaml")
    differing = [
        f"target.{key}={json.dumps(settings[key]) if not isinstance(settings[key], str) else settings[key]}"
        for key in ("centre_bias", "centre_bias_sigma", "activation", "final_activation", "downsample")
        if key in settings and settings[key] != defaults.get(key)
    ]
    if settings.get("vgg_weights"):
        differing.append(f"target.vgg_weights={settings['vgg_weights']}")
    return " ".join(
        ["python -m blackbox target=deepgaze", f"target.weights={readout_path}", *differing, "budget=20"]
    )
