"""DeepGaze's readout network: pointwise (1x1) convolutions over frozen deep features.

The layer layout is deepgaze_pytorch's (Kümmerer et al.): a ``Sequential`` whose parametrised
layers are named ``layernorm<i>``, ``conv<i>`` and ``bias<i>`` for block ``i``, so a checkpoint's
keys say the whole structure: ``conv<i>.weight`` is ``(out, in, 1, 1)``, with its bias either in
``conv<i>.bias`` or in a separate ``bias<i>.bias``; ``layernorm<i>.weight``/``.bias`` normalise the
block's input over channels and space. DeepGaze II's published readout is four blocks with 16, 32,
2 and 1 output channels. Nonlinearities hold no parameters, so the checkpoint cannot say which one
was used: that is a setting (``activation``), applied after every block but the last unless
``final_activation``.
"""

from __future__ import annotations

import re
from collections import OrderedDict
from collections.abc import Mapping, Sequence

import torch
import torch.nn.functional as F
from torch import nn

from targets.weights import BadModelFileError

ACTIVATIONS = {"softplus": nn.Softplus, "relu": nn.ReLU}
_KEY = re.compile(r"^(conv|bias|layernorm)(\d+)\.(weight|bias)$")


class ChannelLayerNorm(nn.Module):
    """Layer norm over ``(C, H, W)`` with a per-channel scale and shift, as deepgaze_pytorch's
    ``LayerNorm`` (its parameters have one value per channel; eps 1e-12)."""

    def __init__(self, channels: int, *, eps: float = 1e-12) -> None:
        super().__init__()
        self.eps = eps
        self.weight = nn.Parameter(torch.ones(channels))
        self.bias = nn.Parameter(torch.zeros(channels))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        normalised = F.layer_norm(x, x.shape[1:], eps=self.eps)
        return normalised * self.weight.view(1, -1, 1, 1) + self.bias.view(1, -1, 1, 1)


class ChannelBias(nn.Module):
    """A per-channel bias (deepgaze_pytorch's ``Bias``: convolutions there have ``bias=False``)."""

    def __init__(self, channels: int) -> None:
        super().__init__()
        self.bias = nn.Parameter(torch.zeros(channels))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return x + self.bias.view(1, -1, 1, 1)


def build_readout(
    blocks: Sequence[Mapping[str, object]], *, activation: str = "softplus", final_activation: bool = False
) -> nn.Sequential:
    """A readout ``Sequential`` from block specs ``{"in", "out", "layernorm", "conv_bias", "bias"}``.

    Module names follow deepgaze_pytorch's, so ``state_dict()`` keys match its checkpoints.
    """
    if activation not in ACTIVATIONS:
        raise ValueError(f"activation must be one of {', '.join(ACTIVATIONS)}, got {activation!r}")
    layers: OrderedDict[str, nn.Module] = OrderedDict()
    for i, block in enumerate(blocks):
        in_channels, out_channels = int(block["in"]), int(block["out"])  # type: ignore[call-overload]
        if block.get("layernorm"):
            layers[f"layernorm{i}"] = ChannelLayerNorm(in_channels)
        layers[f"conv{i}"] = nn.Conv2d(in_channels, out_channels, 1, bias=bool(block.get("conv_bias")))
        if block.get("bias"):
            layers[f"bias{i}"] = ChannelBias(out_channels)
        if i < len(blocks) - 1 or final_activation:
            layers[f"{activation}{i}"] = ACTIVATIONS[activation]()
    return nn.Sequential(layers)


def readout_blocks(state: Mapping[str, torch.Tensor], *, source: str) -> list[dict[str, object]]:
    """Block specs read from a readout's state dict (keys without the ``readout_network.`` prefix).

    Strict: every key must be a known parameter, blocks numbered from 0 without gaps, and every
    shape must chain (each block's input is the previous block's output).
    """
    by_block: dict[int, dict[str, torch.Tensor]] = {}
    for key, tensor in state.items():
        match = _KEY.match(key)
        if match is None:
            raise BadModelFileError(f"{source}: unexpected readout key readout_network.{key}")
        kind, index, param = match.groups()
        by_block.setdefault(int(index), {})[f"{kind}.{param}"] = tensor
    if not by_block:
        raise BadModelFileError(f"{source}: holds no readout_network.* tensors")
    if sorted(by_block) != list(range(len(by_block))):
        raise BadModelFileError(f"{source}: readout blocks must be numbered 0..n-1, found {sorted(by_block)}")
    blocks = []
    for i in range(len(by_block)):
        params = by_block[i]
        weight = params.get("conv.weight")
        if weight is None or weight.ndim != 4 or tuple(weight.shape[2:]) != (1, 1):
            shape = None if weight is None else tuple(weight.shape)
            raise BadModelFileError(
                f"{source}: readout block {i} needs conv{i}.weight of shape (out, in, 1, 1), got {shape}"
            )
        out_channels, in_channels = int(weight.shape[0]), int(weight.shape[1])
        expected = {
            "conv.bias": (out_channels,),
            "bias.bias": (out_channels,),
            "layernorm.weight": (in_channels,),
            "layernorm.bias": (in_channels,),
            "bias.weight": None,
        }
        for name, tensor in params.items():
            if name == "conv.weight":
                continue
            if expected.get(name) is None or tuple(tensor.shape) != expected[name]:
                kind, param = name.split(".")
                raise BadModelFileError(
                    f"{source}: readout key {kind}{i}.{param} has shape {tuple(tensor.shape)}, "
                    f"expected {expected.get(name)}"
                )
        if ("layernorm.weight" in params) != ("layernorm.bias" in params):
            raise BadModelFileError(f"{source}: layernorm{i} needs both weight and bias")
        if blocks and blocks[-1]["out"] != in_channels:
            raise BadModelFileError(
                f"{source}: readout block {i} takes {in_channels} channels "
                f"but block {i - 1} gives {blocks[-1]['out']}"
            )
        blocks.append(
            {
                "in": in_channels,
                "out": out_channels,
                "layernorm": "layernorm.weight" in params,
                "conv_bias": "conv.bias" in params,
                "bias": "bias.bias" in params,
            }
        )
    return blocks
