"""VGG-19 (Simonyan & Zisserman, 2015) in torchvision's published state-dict layout, without torchvision.

torchvision's ``vgg19`` keeps its convolutions in ``features`` (a ``Sequential``: each 3x3
convolution is followed by a ReLU, and each block by a 2x2 max-pool) and three linear layers in
``classifier``; its ImageNet weights, ``vgg19-dcbb9e9d.pth``, hold exactly the 38 tensors
:func:`vgg19_layout` lists. We define the same ``features`` indices so that file loads by name,
strictly, and never build the classifier (123 M parameters no saliency model reads).
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence

import torch
from torch import nn

from targets.weights import BadModelFileError

# torchvision's configuration "E": output channels of each 3x3 convolution, "M" a 2x2 max-pool.
VGG19_CONFIG: tuple[int | str, ...] = (
    *(64, 64, "M", 128, 128, "M"),
    *(256, 256, 256, 256, "M", 512, 512, 512, 512, "M"),
    *(512, 512, 512, 512, "M"),
)

#: ImageNet statistics the torchvision weights were trained with (RGB in [0, 1]).
IMAGENET_MEAN = (0.485, 0.456, 0.406)
IMAGENET_STD = (0.229, 0.224, 0.225)


def _layer_names() -> list[str]:
    """``conv1_1, relu1_1, ..., pool5``: the conventional name of every ``features`` index."""
    names, block, layer = [], 1, 1
    for item in VGG19_CONFIG:
        if item == "M":
            names.append(f"pool{block}")
            block, layer = block + 1, 1
        else:
            names += [f"conv{block}_{layer}", f"relu{block}_{layer}"]
            layer += 1
    return names


#: ``features`` index of each named layer (``conv5_1`` is 28, ``relu5_4`` is 35).
LAYER_INDEX: dict[str, int] = {name: i for i, name in enumerate(_layer_names())}


def vgg19_layout(*, classifier: bool = True) -> dict[str, tuple[int, ...]]:
    """Every key of torchvision's ``vgg19`` state dict with its shape, in file order."""
    layout: dict[str, tuple[int, ...]] = {}
    index, channels = 0, 3
    for item in VGG19_CONFIG:
        if item == "M":
            index += 1
            continue
        assert isinstance(item, int)
        layout[f"features.{index}.weight"] = (item, channels, 3, 3)
        layout[f"features.{index}.bias"] = (item,)
        channels, index = item, index + 2
    if classifier:
        for index, (out_features, in_features) in zip(
            (0, 3, 6), ((4096, 512 * 7 * 7), (4096, 4096), (1000, 4096)), strict=True
        ):
            layout[f"classifier.{index}.weight"] = (out_features, in_features)
            layout[f"classifier.{index}.bias"] = (out_features,)
    return layout


def check_vgg19_state_dict(state: Mapping[str, torch.Tensor], *, source: str) -> dict[str, torch.Tensor]:
    """The ``features`` tensors of a torchvision ``vgg19`` state dict, checked strictly.

    Accepted: the full published file (features and classifier) or the features alone. Any missing
    or unexpected key, or any shape that differs, is an error that names them. The classifier is
    checked by shape only (it may be memory-mapped) and dropped.
    """
    full = vgg19_layout()
    features_only = vgg19_layout(classifier=False)
    keys = set(state)
    expected = full if any(k.startswith("classifier.") for k in keys) else features_only
    missing = [k for k in expected if k not in keys]
    unexpected = sorted(keys - set(expected))
    wrong = [
        f"{k} {tuple(state[k].shape)} (expected {shape})"
        for k, shape in expected.items()
        if k in state and tuple(state[k].shape) != shape
    ]
    problems = []
    if missing:
        problems.append(f"missing keys: {_few(missing)}")
    if unexpected:
        problems.append(f"unexpected keys: {_few(unexpected)}")
    if wrong:
        problems.append(f"wrong shapes: {_few(wrong)}")
    if problems:
        raise BadModelFileError(
            f"{source} is not torchvision's VGG-19 layout (vgg19-dcbb9e9d.pth: features.N.weight/bias "
            f"and classifier.N.weight/bias); " + "; ".join(problems)
        )
    return {k: state[k] for k in features_only}


def _few(items: Sequence[str], limit: int = 6) -> str:
    shown = ", ".join(items[:limit])
    return shown + (f" and {len(items) - limit} more" if len(items) > limit else "")


class VGG19Features(nn.Module):
    """torchvision's ``vgg19().features`` up to a given layer, returning the outputs of chosen layers.

    Non-inplace ReLUs: a convolution's output that is itself a feature (``conv5_1``) must survive
    the ReLU after it. Max-pools floor odd sizes, as torchvision's do, unless ``ceil_mode``.
    """

    def __init__(self, *, taps: Sequence[str], ceil_mode: bool = False) -> None:
        super().__init__()
        unknown = [t for t in taps if t not in LAYER_INDEX]
        if unknown or not taps:
            raise ValueError(f"unknown VGG-19 layers {unknown or taps}; known: {', '.join(LAYER_INDEX)}")
        self.taps = tuple(taps)
        self._tap_indices = [LAYER_INDEX[t] for t in taps]
        last = max(self._tap_indices)
        layers: list[nn.Module] = []
        channels = 3
        for item in VGG19_CONFIG:
            if item == "M":
                layers.append(nn.MaxPool2d(kernel_size=2, stride=2, ceil_mode=ceil_mode))
            else:
                assert isinstance(item, int)
                layers += [nn.Conv2d(channels, item, kernel_size=3, padding=1), nn.ReLU()]
                channels = item
        self.features = nn.Sequential(*layers[: last + 1])

    def load_torchvision(self, features: Mapping[str, torch.Tensor]) -> None:
        """Load checked ``features.N.*`` tensors (see :func:`check_vgg19_state_dict`); layers past
        the last tap are not built, so their tensors are not needed."""
        own = self.state_dict()
        self.load_state_dict({k: features[k].to(own[k].dtype) for k in own}, strict=True)

    def forward(self, images: torch.Tensor) -> list[torch.Tensor]:
        """ImageNet-normalised ``(B, 3, H, W)`` images to the tapped layers' outputs, in tap order."""
        outputs: dict[int, torch.Tensor] = {}
        x = images
        for index, layer in enumerate(self.features):
            x = layer(x)
            if index in self._tap_indices:
                outputs[index] = x
        return [outputs[i] for i in self._tap_indices]


def imagenet_normalise(images: torch.Tensor) -> torch.Tensor:
    """``(B, 3, H, W)`` RGB in [0, 1] to the normalised input torchvision's VGG weights expect."""
    mean = images.new_tensor(IMAGENET_MEAN).view(1, 3, 1, 1)
    std = images.new_tensor(IMAGENET_STD).view(1, 3, 1, 1)
    return (images - mean) / std
