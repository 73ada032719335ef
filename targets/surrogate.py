"""``target=surrogate``: a trainable Twitter-style saliency model, for white-box and transfer attacks.

The same architecture family as ``twitter`` (:mod:`targets._fastgaze`): a pruned VGG-style trunk,
a 1x1 readout with one-parameter activations, the Gaussian blur, and an optional learned centre
bias. It starts from one of:

* ``checkpoint=PATH``: a distilled result (``python -m blackbox.distill``); the checkpoint carries
  its own architecture and input settings, which then win over the others given here;
* ``init=fastgaze``: Twitter's ``fastgaze.vxm`` (resolved like ``target=twitter``'s weights, or
  ``weights=PATH``); with the centre bias's weight at 0 and the same ``blur`` and ``resize`` as
  ``twitter`` (the defaults) it equals ``twitter`` until trained;
* ``init=random``: fresh weights (PyTorch's default initialisation, seeded by ``seed``), with the
  channel counts ``trunk`` and ``readout``.

Used as a target its parameters are frozen; :func:`save_checkpoint` and :func:`load_checkpoint`
read and write the checkpoint format (a ``torch.save`` dictionary of tensors and plain values,
loaded with ``weights_only=True``).
"""

from __future__ import annotations

import os
import tempfile
from collections.abc import Mapping, Sequence
from pathlib import Path

import torch

from targets._errors import UserError
from targets._fastgaze import FastGazeNet, FastGazeTarget, GridInput
from targets.crop import DEFAULT_ASPECT_RATIOS
from targets.twitter import FASTGAZE, IMAGENET_MEAN_RGB
from targets.vxm import read_vxm
from targets.weights import MissingModelFileError, resolve

CHECKPOINT_FORMAT = "blackbox-surrogate/1"
FASTGAZE_TRUNK: tuple[int | str, ...] = (
    43,
    44,
    "pool",
    49,
    56,
    "pool",
    44,
    38,
    "pool",
    31,
    20,
    "pool",
    18,
    10,
)
FASTGAZE_READOUT: tuple[int, ...] = (7, 7, 2, 1)
INITS = ("fastgaze", "random")


class SurrogateCheckpointError(UserError, ValueError):
    """A file is not a usable surrogate checkpoint."""


class SurrogateSaliency(FastGazeTarget):
    """A FastGaze-family model that can be trained (see module doc)."""

    name = "surrogate"

    def __init__(
        self,
        *,
        checkpoint: str | os.PathLike[str] | None = None,
        init: str = "fastgaze",
        weights: str | os.PathLike[str] | None = None,
        trunk: Sequence[int | str] = FASTGAZE_TRUNK,
        readout: Sequence[int] = FASTGAZE_READOUT,
        centre_bias: bool = True,
        grid_cells: int = 20,
        value_scale: float = 255.0,
        mean: Sequence[float] = IMAGENET_MEAN_RGB,
        channel_order: str = "rgb",
        alpha_activation: str = "prelu",
        pool: str = "max",
        blur: bool = False,
        resize: str = "bilinear",
        seed: int = 0,
        aspect_ratios: Sequence[float] = DEFAULT_ASPECT_RATIOS,
    ) -> None:
        self.checkpoint_path: Path | None = None
        self.metadata: dict = {}
        if checkpoint is not None and str(checkpoint) != "":
            state = load_checkpoint(checkpoint)
            # Checkpoints from before the binary's evidence (targets/twitter.py) were trained on
            # antialiased inputs; their architecture has no "blur" key and FastGazeNet's default keeps it.
            state["input"].setdefault("resize", "bilinear_antialias")
            try:
                net = FastGazeNet(**state["architecture"])
                net.load_state_dict(state["state_dict"])
                grid_input = GridInput(stride=net.stride, **state["input"])
            except (TypeError, ValueError, RuntimeError) as error:
                raise SurrogateCheckpointError(f"{checkpoint}: inconsistent checkpoint: {error}") from error
            self.checkpoint_path = Path(checkpoint)
            self.metadata = dict(state.get("metadata", {}))
        else:
            if init not in INITS:
                raise ValueError(f"init must be one of {INITS} (or give checkpoint=PATH), got {init!r}")
            options = {
                "alpha_activation": alpha_activation,
                "pool": pool,
                "blur": bool(blur),
                "centre_bias": bool(centre_bias),
            }
            if init == "fastgaze":
                net = FastGazeNet.from_vxm(read_vxm(resolve(FASTGAZE, weights)), **options)
            else:
                with torch.random.fork_rng(devices=[]):
                    torch.manual_seed(int(seed))
                    net = FastGazeNet(trunk=list(trunk), readout=list(readout), **options)
            grid_input = GridInput(
                grid_cells=grid_cells,
                stride=net.stride,
                value_scale=value_scale,
                mean=mean,
                channel_order=channel_order,
                resize=resize,
            )
        net.eval().requires_grad_(False)  # as a target; training switches gradients on
        super().__init__(net=net, grid_input=grid_input, aspect_ratios=aspect_ratios)

    def architecture(self) -> dict:
        """The settings that rebuild :attr:`net` (``FastGazeNet(**architecture)``)."""
        net = self.net
        trunk: list[int | str] = []
        for module in net.trunk:
            if isinstance(module, torch.nn.Conv2d):
                trunk.append(int(module.out_channels))
            elif isinstance(module, (torch.nn.MaxPool2d, torch.nn.AvgPool2d)):
                trunk.append("pool")
        readout = [int(m.out_channels) for m in net.readout if isinstance(m, torch.nn.Conv2d)]
        activations = [m for m in net.readout if not isinstance(m, torch.nn.Conv2d)]
        pools = [m for m in net.trunk if isinstance(m, (torch.nn.MaxPool2d, torch.nn.AvgPool2d))]
        return {
            "trunk": trunk,
            "readout": readout,
            "alpha_activation": activations[0].kind,
            "pool": "avg" if pools and isinstance(pools[0], torch.nn.AvgPool2d) else "max",
            "blur": net.blur,
            "blur_kernel_size": net.blur_kernel_size,
            "blur_sigma": net.blur_sigma,
            "centre_bias": net.centre_bias is not None,
        }

    def input_settings(self) -> dict:
        grid_input = self.grid_input
        return {
            "grid_cells": grid_input.grid_cells,
            "value_scale": grid_input.value_scale,
            "mean": list(grid_input.mean_values),
            "channel_order": grid_input.channel_order,
            "resize": grid_input.resize,
        }


def save_checkpoint(
    target: SurrogateSaliency,
    path: str | os.PathLike[str],
    *,
    metadata: Mapping | None = None,
    **extra: object,
) -> Path:
    """Write ``target``'s network (and ``extra`` training state) to ``path``, atomically."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    state = {
        "format": CHECKPOINT_FORMAT,
        "architecture": target.architecture(),
        "input": target.input_settings(),
        "state_dict": target.net.state_dict(),
        "metadata": dict(metadata or {}),
        **extra,
    }
    # Write beside the destination and rename: an interruption never leaves a half-written checkpoint.
    with tempfile.NamedTemporaryFile(dir=path.parent, suffix=".tmp", delete=False) as handle:
        torch.save(state, handle)
        temporary = Path(handle.name)
    temporary.replace(path)
    return path


def load_checkpoint(path: str | os.PathLike[str]) -> dict:
    """Read a checkpoint written by :func:`save_checkpoint`, or raise saying what is wrong."""
    path = Path(path).expanduser()
    if not path.is_file():
        raise MissingModelFileError(
            f"surrogate checkpoint {path} not found "
            "(python -m blackbox.distill writes runs/distill/<run>/last.pt)"
        )
    try:
        state = torch.load(path, map_location="cpu", weights_only=True)
    except Exception as error:  # torch raises many kinds for a file that is not a checkpoint
        raise SurrogateCheckpointError(f"{path} is not a readable surrogate checkpoint: {error}") from error
    if not isinstance(state, dict) or state.get("format") != CHECKPOINT_FORMAT:
        found = state.get("format") if isinstance(state, dict) else type(state).__name__
        raise SurrogateCheckpointError(
            f"{path} is not a surrogate checkpoint (format {found!r}, expected {CHECKPOINT_FORMAT!r})"
        )
    missing = {"architecture", "input", "state_dict"} - set(state)
    if missing:
        raise SurrogateCheckpointError(f"{path} lacks {sorted(missing)}")
    return state
