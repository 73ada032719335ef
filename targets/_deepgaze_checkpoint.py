"""Reading DeepGaze II checkpoints in deepgaze_pytorch's layout (github.com/matthias-k/DeepGaze).

deepgaze_pytorch's ``DeepGazeII`` module (``deepgaze_pytorch/modules.py``) saves

* ``readout_network.<layer>.<param>``: the readout (see :mod:`targets._readout`);
* ``finalizer.gauss.sigma`` (a scalar, the blur's standard deviation in pixels of the image
  downsampled by 2) and ``finalizer.center_bias_weight`` (shape ``(1,)``);
* ``features.*``: the frozen backbone, when it was saved along. For VGG-19 that is either
  ``features.features.1.<torchvision vgg19 key>`` (its ``RGBvgg19``: a normaliser, then
  torchvision's model, classifier included) or ``features.features.conv5_1.weight``-style names (its
  ``VGG19NamedFeatures``, whose max-pools round up).

That is the one layout this project reads and writes for DeepGaze II readouts. The authors publish
no DeepGaze II (VGG-19) PyTorch weights: their released checkpoints are DeepGaze I
(``deepgaze1.pth``, AlexNet), DeepGaze IIE (``deepgaze2e.pth``) and DeepGaze III; the original
DeepGaze II weights exist only as a TensorFlow graph. Given one of those, the error says which it is.
"""

from __future__ import annotations

import pickle
import re
import zipfile
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path

import torch

from targets._readout import readout_blocks
from targets._vgg import LAYER_INDEX, check_vgg19_state_dict
from targets.weights import BadModelFileError

READOUT_PREFIX = "readout_network."
SIGMA_KEY = "finalizer.gauss.sigma"
CENTRE_BIAS_WEIGHT_KEY = "finalizer.center_bias_weight"
INDEXED_VGG_PREFIX = "features.features.1."
NAMED_VGG_PREFIX = "features.features."
# Normaliser buffers some deepgaze_pytorch versions saved: ImageNet constants, not weights.
IGNORED_KEYS = re.compile(r"^features\.features\.(0|normalize)\.(mean|std)$")
_NAMED_LAYER = re.compile(r"^(conv\d_\d)\.(weight|bias)$")


@dataclass(frozen=True)
class DeepGazeIICheckpoint:
    """What a DeepGaze II checkpoint holds, checked."""

    readout_blocks: list[dict[str, object]]
    readout_state: dict[str, torch.Tensor]
    blur_sigma: float
    centre_bias_weight: float
    vgg_features: dict[str, torch.Tensor] | None  # torchvision ``features.N.*`` keys, or None
    vgg_ceil_mode: bool = False


def load_state_dict_file(path: Path) -> Mapping[str, torch.Tensor]:
    """A checkpoint's tensors, read safely (``weights_only``) and memory-mapped where the format allows.

    Accepts a plain state dict or one wrapped as ``{"state_dict": ...}``.
    """
    try:
        try:
            loaded = torch.load(path, map_location="cpu", weights_only=True, mmap=True)
        except RuntimeError:
            # Files written before torch 1.6 (such as torchvision's VGG weights) cannot be mapped.
            loaded = torch.load(path, map_location="cpu", weights_only=True)
    except (OSError, RuntimeError, EOFError, pickle.UnpicklingError, zipfile.BadZipFile) as error:
        raise BadModelFileError(f"{path}: not a readable torch checkpoint ({error})") from error
    if isinstance(loaded, Mapping) and isinstance(loaded.get("state_dict"), Mapping):
        loaded = loaded["state_dict"]
    if not isinstance(loaded, Mapping) or not all(isinstance(v, torch.Tensor) for v in loaded.values()):
        raise BadModelFileError(
            f"{path}: expected a state dict (names to tensors), got {type(loaded).__name__}"
        )
    return loaded


def identify_other_deepgaze(state: Mapping[str, torch.Tensor]) -> str | None:
    """The name of another DeepGaze model whose checkpoint this is, if it is one."""
    keys = list(state)
    if any(k.startswith("models.") and ".saliency_networks." in k for k in keys):
        return "DeepGaze IIE (deepgaze2e.pth: models.<backbone>.saliency_networks.<k>.*)"
    if any(
        k.startswith(("saliency_network.", "scanpath_network.", "fixation_selection_network.")) for k in keys
    ):
        return "DeepGaze III (saliency_network.*, scanpath_network.*, fixation_selection_network.*)"
    if any(k.startswith("features.features.1.features.") and k.endswith(".weight") for k in keys) and any(
        k == "features.features.1.classifier.1.weight" for k in keys
    ):
        return "DeepGaze I (deepgaze1.pth: AlexNet features)"
    return None


def parse_deepgaze2(state: Mapping[str, torch.Tensor], *, source: str) -> DeepGazeIICheckpoint:
    """Split and check a DeepGaze II checkpoint (see module doc); strict about every key."""
    other = identify_other_deepgaze(state)
    if other is not None:
        raise BadModelFileError(
            f"{source} is a {other} checkpoint, not DeepGaze II (VGG-19 features with a readout): "
            "target=deepgaze cannot run it (README: 'DeepGaze IIE')"
        )
    for key in (SIGMA_KEY, CENTRE_BIAS_WEIGHT_KEY):
        if key not in state:
            raise BadModelFileError(
                f"{source}: missing {key}; a DeepGaze II checkpoint holds readout_network.*, "
                f"{SIGMA_KEY} and {CENTRE_BIAS_WEIGHT_KEY} (and optionally the VGG-19 features.*)"
            )
        if state[key].numel() != 1:
            raise BadModelFileError(
                f"{source}: {key} must be one number, got shape {tuple(state[key].shape)}"
            )
    sigma = float(state[SIGMA_KEY])
    if not sigma > 0:
        raise BadModelFileError(f"{source}: {SIGMA_KEY} must be positive, got {sigma}")

    readout: dict[str, torch.Tensor] = {}
    indexed_vgg: dict[str, torch.Tensor] = {}
    named_vgg: dict[str, torch.Tensor] = {}
    unexpected: list[str] = []
    for key, tensor in state.items():
        if key in (SIGMA_KEY, CENTRE_BIAS_WEIGHT_KEY) or IGNORED_KEYS.match(key):
            continue
        if key.startswith(READOUT_PREFIX):
            readout[key[len(READOUT_PREFIX) :]] = tensor
        elif key.startswith(INDEXED_VGG_PREFIX):
            indexed_vgg[key[len(INDEXED_VGG_PREFIX) :]] = tensor
        elif key.startswith(NAMED_VGG_PREFIX) and _NAMED_LAYER.match(key[len(NAMED_VGG_PREFIX) :]):
            name, param = key[len(NAMED_VGG_PREFIX) :].split(".")
            named_vgg[f"features.{LAYER_INDEX[name]}.{param}"] = tensor
        else:
            unexpected.append(key)
    if unexpected:
        raise BadModelFileError(f"{source}: unexpected keys {', '.join(sorted(unexpected)[:6])}")
    if indexed_vgg and named_vgg:
        raise BadModelFileError(f"{source}: holds two VGG-19 backbones (indexed and named layers)")
    vgg = None
    if indexed_vgg or named_vgg:
        vgg = check_vgg19_state_dict(indexed_vgg or named_vgg, source=f"{source} (its features.*)")
    return DeepGazeIICheckpoint(
        readout_blocks=readout_blocks(readout, source=source),
        readout_state=readout,
        blur_sigma=sigma,
        centre_bias_weight=float(state[CENTRE_BIAS_WEIGHT_KEY]),
        vgg_features=vgg,
        vgg_ceil_mode=bool(named_vgg),
    )
