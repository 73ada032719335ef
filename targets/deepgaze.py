"""``target=deepgaze``: DeepGaze II (Kümmerer, Wallis, Gatys & Bethge, ICCV 2017), in plain torch.

The model, as published: the image is downsampled by 2 and passed through a frozen, ImageNet-trained
VGG-19; the feature maps ``conv5_1, relu5_1, relu5_2, conv5_3, relu5_4`` (512 channels each,
stride 16, concatenated in that order: 2560 channels) feed a readout of 1x1 convolutions with 16,
32, 2 and 1 channels; its output is blurred by a Gaussian, a weighted centre-bias log-density is
added, and a softmax over the image turns it into a log-density. Twitter's cropper was a distilled
DeepGaze II, and the paper this project starts from measured every attack with it.

Files (resolved by :mod:`targets.weights`; README "Model files"):

* ``vgg19-dcbb9e9d.pth``: torchvision's ImageNet VGG-19, loaded by name into our own VGG-19
  (:mod:`targets._vgg`; torchvision is not needed), unless the readout checkpoint carries the
  backbone itself;
* the readout checkpoint (``target.weights``; default name ``deepgaze2_readout.pth``) in
  deepgaze_pytorch's DeepGaze II layout (:mod:`targets._deepgaze_checkpoint`). No DeepGaze II
  readout is published as PyTorch weights: ``python -m blackbox.distill student=deepgaze`` trains
  one on this frozen backbone (:mod:`blackbox.training.distill_deepgaze`; from a zoo teacher's maps or from
  pysaliency's fixation datasets, as the authors trained theirs on MIT1003) and writes
  ``runs/distill/<source>-deepgaze-seed<seed>/deepgaze2_readout.pth``; converting the authors'
  TensorFlow release is the other way;
* optionally the MIT1003 centre bias ``centerbias_mit1003.npy`` (``centre_bias: mit1003``, or a
  path), a 1024x1024 log-density the authors publish; by default a Gaussian prior stands in
  (``centre_bias_log_prior``, σ = 0.25 of the long side: a documented stand-in, not fitted to MIT1003).

Choices where the publications leave room, each a setting: the downsampling is an area average
(``downsample: area``; ``nearest`` is what deepgaze_pytorch's ``F.interpolate`` default does,
and leaves three pixels in four without influence); the readout nonlinearity is a softplus after
every block but the last (deepgaze_pytorch's readouts use softplus; ``activation: relu`` is
available); the readout map is upsampled to half resolution by nearest neighbour, blurred there
(σ from the checkpoint, in those pixels), the centre bias added there, then bilinearly upsampled
to the image and renormalised.
"""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence
from pathlib import Path

import numpy as np
import torch
import torch.nn.functional as F
from torch import nn

from targets._base import DifferentiableTarget
from targets._deepgaze_checkpoint import (
    CENTRE_BIAS_WEIGHT_KEY,
    READOUT_PREFIX,
    SIGMA_KEY,
    DeepGazeIICheckpoint,
    load_state_dict_file,
    parse_deepgaze2,
)
from targets._functional import centre_bias_log_prior, gaussian_blur, log_softmax_2d, upsample_log_density
from targets._readout import ACTIVATIONS, build_readout
from targets._vgg import VGG19Features, check_vgg19_state_dict, imagenet_normalise
from targets.crop import DEFAULT_ASPECT_RATIOS
from targets.weights import BadModelFileError, FileRequest, ModelFile, locate, resolve_all

#: The VGG-19 layers DeepGaze II reads, in the readout's channel order.
DEEPGAZE2_LAYERS = ("conv5_1", "relu5_1", "relu5_2", "conv5_3", "relu5_4")
PUBLISHED_READOUT = (16, 32, 2, 1)
FEATURE_STRIDE = 16  # conv5 of VGG-19 is four 2x2 pools deep
DOWNSAMPLE = 2

VGG19_FILE = ModelFile(
    "vgg19-dcbb9e9d.pth",
    url="https://download.pytorch.org/models/vgg19-dcbb9e9d.pth",
    # torchvision puts the first 8 hex digits in the file name; the whole digest (574,673,361 bytes) as
    # recorded independently by several public projects that pin this file, and it begins with them.
    sha256="dcbb9e9dad569fff7a846263a77324fc34978fea2bfb039c012d710e1776ae44",
    how_to_get="torchvision's ImageNet VGG-19 weights (about 550 MB).",
)
READOUT_FILE = ModelFile(
    "deepgaze2_readout.pth",
    how_to_get=(
        "a DeepGaze II readout in deepgaze_pytorch's layout (readout_network.*, finalizer.gauss.sigma, "
        "finalizer.center_bias_weight); the authors publish none for PyTorch. Train one with "
        "`python -m blackbox.distill student=deepgaze teacher=twitter` (README: 'Training the DeepGaze II "
        "readout'), which writes runs/distill/twitter-deepgaze-seed0/deepgaze2_readout.pth: pass that path "
        "as target.weights or copy the file into one of the folders above."
    ),
)
CENTRE_BIAS_FILE = ModelFile(
    "centerbias_mit1003.npy",
    url="https://github.com/matthias-k/DeepGaze/releases/download/v1.0.0/centerbias_mit1003.npy",
    how_to_get="the MIT1003 centre-bias log-density (1024x1024) the DeepGaze authors publish.",
)
DOWNSAMPLE_MODES = ("area", "nearest", "bilinear")


class DeepGazeIINetwork(nn.Module):
    """The network itself: ``(B, 3, H, W)`` images in [0, 1] to ``(B, H, W)`` log-densities.

    Built from checked parts (see :func:`targets._deepgaze_checkpoint.parse_deepgaze2`); the
    backbone is frozen and in eval mode.
    """

    def __init__(
        self,
        checkpoint: DeepGazeIICheckpoint,
        vgg_features: dict[str, torch.Tensor],
        *,
        activation: str = "softplus",
        final_activation: bool = False,
        downsample: str = "area",
        centre_bias_template: torch.Tensor | None = None,
        centre_bias_sigma: float = 0.25,
        channels_last: bool = True,
    ) -> None:
        super().__init__()
        _check_settings(downsample=downsample, activation=activation, centre_bias_sigma=centre_bias_sigma)
        self.vgg = VGG19Features(taps=DEEPGAZE2_LAYERS, ceil_mode=checkpoint.vgg_ceil_mode)
        self.vgg.load_torchvision(vgg_features)
        self.vgg.requires_grad_(False).eval()
        # An identity on the readout's input: the layer Grad-CAM weighs (2560 channels).
        self.readout_input = nn.Identity()
        self.readout_network = build_readout(
            checkpoint.readout_blocks, activation=activation, final_activation=final_activation
        )
        self.readout_network.load_state_dict(checkpoint.readout_state, strict=True)
        self.readout_network.requires_grad_(False).eval()
        # Parameters (frozen here) rather than numbers, so blackbox.training.distill_deepgaze can train them.
        self.blur_sigma = nn.Parameter(torch.tensor(float(checkpoint.blur_sigma)), requires_grad=False)
        self.centre_bias_weight = nn.Parameter(
            torch.tensor([float(checkpoint.centre_bias_weight)]), requires_grad=False
        )
        self.downsample = downsample
        self.centre_bias_sigma = centre_bias_sigma
        self.channels_last = channels_last
        if channels_last:
            self.vgg.to(memory_format=torch.channels_last)
        self.register_buffer("centre_bias_template", centre_bias_template, persistent=False)
        self._prior_cache: dict[tuple, torch.Tensor] = {}

    def features(self, images: torch.Tensor) -> torch.Tensor:
        """``(B, 3, H, W)`` in [0, 1] to the readout's ``(B, 2560, ⌈H/32⌉, ⌈W/32⌉)`` input."""
        height, width = images.shape[-2:]
        half = (height // DOWNSAMPLE, width // DOWNSAMPLE)
        small = F.interpolate(images, size=half, mode=self.downsample, **_align(self.downsample))
        x = imagenet_normalise(small)
        if self.channels_last:
            x = x.contiguous(memory_format=torch.channels_last)
        maps = self.vgg(x)
        grid = (math.ceil(half[0] / FEATURE_STRIDE), math.ceil(half[1] / FEATURE_STRIDE))
        # Floored pooling leaves a grid one cell short on some sizes; deepgaze_pytorch pads it by nearest.
        maps = [m if m.shape[-2:] == grid else F.interpolate(m, size=grid, mode="nearest") for m in maps]
        return self.readout_input(torch.cat(maps, dim=1).contiguous())

    def centre_bias(self, height: int, width: int, like: torch.Tensor) -> torch.Tensor:
        """``(H, W)`` centre-bias log-density on the half-resolution grid."""
        key = (height, width, like.device, like.dtype)
        if key not in self._prior_cache:
            # Built outside inference mode even when first needed there: gradients reuse it later.
            with torch.inference_mode(False), torch.no_grad():
                if self.centre_bias_template is not None:
                    template = self.centre_bias_template.to(like.device, like.dtype)[None, None]
                    resized = F.interpolate(
                        template, size=(height, width), mode="bilinear", align_corners=False
                    )
                    prior = log_softmax_2d(resized[:, 0])[0]
                else:
                    prior = centre_bias_log_prior(
                        height, width, sigma=self.centre_bias_sigma, device=like.device
                    )
                self._prior_cache[key] = prior.to(like.dtype)
        return self._prior_cache[key]

    def readout_state_dict(self) -> dict[str, torch.Tensor]:
        """The trained part in deepgaze_pytorch's DeepGaze II layout (what :func:`parse_deepgaze2`
        reads): ``readout_network.*``, ``finalizer.gauss.sigma`` (0-d) and
        ``finalizer.center_bias_weight`` (shape ``(1,)``), float32 copies on the CPU."""
        state = {
            READOUT_PREFIX + key: value.detach().float().cpu().clone()
            for key, value in self.readout_network.state_dict().items()
        }
        state[SIGMA_KEY] = self.blur_sigma.detach().float().cpu().clone().reshape(())
        state[CENTRE_BIAS_WEIGHT_KEY] = self.centre_bias_weight.detach().float().cpu().clone().reshape(1)
        return state

    def trainable_parameters(self) -> list[nn.Parameter]:
        """The readout's parameters, the blur's σ and the centre-bias weight: all DeepGaze II
        learns (the VGG-19 stays frozen). Gradients stay off until a trainer switches them on."""
        return [*self.readout_network.parameters(), self.blur_sigma, self.centre_bias_weight]

    def forward(self, images: torch.Tensor) -> torch.Tensor:
        height, width = images.shape[-2:]
        readout = self.readout_network(self.features(images))
        half = (height // DOWNSAMPLE, width // DOWNSAMPLE)
        logits = gaussian_blur(F.interpolate(readout, size=half, mode="nearest"), self.blur_sigma)[:, 0]
        logits = logits + self.centre_bias_weight * self.centre_bias(*half, logits)
        return upsample_log_density(logits, height, width)


def _check_settings(*, downsample: str, activation: str, centre_bias_sigma: float) -> None:
    if downsample not in DOWNSAMPLE_MODES:
        raise ValueError(f"downsample must be one of {', '.join(DOWNSAMPLE_MODES)}, got {downsample!r}")
    if activation not in ACTIVATIONS:
        raise ValueError(f"activation must be one of {', '.join(ACTIVATIONS)}, got {activation!r}")
    if not centre_bias_sigma > 0:
        raise ValueError(
            f"centre_bias_sigma (a fraction of the long side) must be positive, got {centre_bias_sigma}"
        )


def _align(mode: str) -> dict[str, bool]:
    return {"align_corners": False, "antialias": True} if mode == "bilinear" else {}


class DeepGazeII(DifferentiableTarget):
    """DeepGaze II as a zoo target (see module doc for the model and its files)."""

    name = "deepgaze"

    def __init__(
        self,
        *,
        weights: str | Path | Mapping[str, torch.Tensor] | None = None,
        vgg_weights: str | Path | None = None,
        centre_bias: str | Path | None = "prior",
        centre_bias_sigma: float = 0.25,
        readout_channels: Sequence[int] | None = PUBLISHED_READOUT,
        activation: str = "softplus",
        final_activation: bool = False,
        downsample: str = "area",
        channels_last: bool = True,
        download: bool = True,
        aspect_ratios: Sequence[float] = DEFAULT_ASPECT_RATIOS,
    ) -> None:
        super().__init__(aspect_ratios=aspect_ratios)
        # Settings first: a typo should not cost loading 500 MB before it is reported.
        _check_settings(downsample=downsample, activation=activation, centre_bias_sigma=centre_bias_sigma)
        centre_bias = "prior" if centre_bias in (None, "") else centre_bias
        vgg_request = FileRequest(VGG19_FILE, vgg_weights, "target.vgg_weights")
        centre_bias_requests = []
        if centre_bias != "prior":
            explicit = None if centre_bias == "mit1003" else centre_bias
            centre_bias_requests.append(FileRequest(CENTRE_BIAS_FILE, explicit, "target.centre_bias"))
        if isinstance(weights, Mapping):
            # A readout state dict in memory (blackbox.training.distill_deepgaze starts training from one).
            source = "the given readout state dict"
            checkpoint = parse_deepgaze2(weights, source=source)
        else:
            readout_request = FileRequest(READOUT_FILE, weights, "target.weights")
            readout_path = locate(readout_request)
            if readout_path is None:
                # Without the readout we cannot tell whether it carries the backbone: name every file missing.
                readout_path = resolve_all(
                    [readout_request, *centre_bias_requests, vgg_request], download=download
                )[0]
            source = str(readout_path)
            checkpoint = parse_deepgaze2(load_state_dict_file(readout_path), source=source)
        _check_readout_channels(checkpoint, readout_channels, source=source)
        needs_vgg = checkpoint.vgg_features is None or vgg_request.given_path is not None
        paths = resolve_all([*centre_bias_requests, *([vgg_request] if needs_vgg else [])], download=download)
        centre_bias_path = paths[: len(centre_bias_requests)]
        vgg_features = checkpoint.vgg_features
        if needs_vgg:
            vgg_path = paths[-1]
            vgg_features = check_vgg19_state_dict(load_state_dict_file(vgg_path), source=str(vgg_path))
        assert vgg_features is not None
        template = load_centre_bias(centre_bias_path[0]) if centre_bias_path else None
        self.centre_bias_source = str(centre_bias_path[0]) if centre_bias_path else "prior"
        self.network = DeepGazeIINetwork(
            checkpoint,
            vgg_features,
            activation=activation,
            final_activation=final_activation,
            downsample=downsample,
            centre_bias_template=template,
            centre_bias_sigma=centre_bias_sigma,
            channels_last=channels_last,
        )

    def feature_layer(self) -> nn.Module:
        return self.network.readout_input

    def log_density(self, images: torch.Tensor) -> torch.Tensor:
        if images.ndim != 4 or images.shape[1] != 3:
            raise ValueError(f"expected (B, 3, H, W) images, got shape {tuple(images.shape)}")
        parameter = next(self.network.parameters())
        # On the network's device and dtype (a GPU after .to("cuda"), as blackbox.training.distill trains it).
        return self.network(images.to(device=parameter.device, dtype=parameter.dtype))


def _check_readout_channels(
    checkpoint: DeepGazeIICheckpoint, expected: Sequence[int] | None, *, source: str
) -> None:
    inputs = int(checkpoint.readout_blocks[0]["in"])  # type: ignore[call-overload]
    if inputs != 512 * len(DEEPGAZE2_LAYERS):
        raise BadModelFileError(
            f"{source}: its readout takes {inputs} input channels; DeepGaze II reads "
            f"{512 * len(DEEPGAZE2_LAYERS)} ({', '.join(DEEPGAZE2_LAYERS)} of VGG-19, 512 each)"
        )
    channels = [int(b["out"]) for b in checkpoint.readout_blocks]  # type: ignore[call-overload]
    if channels[-1] != 1:
        raise BadModelFileError(f"{source}: the readout must end in 1 channel, its ends in {channels[-1]}")
    if expected is not None and list(channels) != [int(c) for c in expected]:
        raise BadModelFileError(
            f"{source}: its readout has channels {channels}, the setting readout_channels expects "
            f"{list(expected)} (DeepGaze II as published: {list(PUBLISHED_READOUT)}); set "
            f"target.readout_channels={channels} (or null) to run this checkpoint"
        )


def load_centre_bias(path: Path) -> torch.Tensor:
    """A centre-bias log-density from a ``.npy`` file (2-D, finite), as float32."""
    try:
        array = np.load(path, allow_pickle=False)
    except (OSError, ValueError) as error:
        raise BadModelFileError(f"{path}: not a readable .npy array ({error})") from error
    if array.ndim != 2 or min(array.shape) < 2 or not np.issubdtype(array.dtype, np.floating):
        raise BadModelFileError(
            f"{path}: a centre bias is a 2-D float log-density, got {array.dtype} {array.shape}"
        )
    if not np.isfinite(array).all():
        raise BadModelFileError(f"{path}: the centre bias holds NaN or infinite values")
    return torch.from_numpy(np.ascontiguousarray(array, dtype=np.float32))
