"""The FastGaze architecture family (Theis et al. 2018) in torch, shared by ``twitter`` and ``surrogate``.

A FastGaze network is a pruned VGG-style trunk (3x3 convolutions with ReLU, 2x2 pools that keep a
partial last window, as Caffe's do), a readout of 1x1 convolutions each followed by a one-parameter
activation, an optional Gaussian blur over the output grid, an optional centre-bias log prior, and a
log-softmax over the grid. Its input is an RGB image resized, aspect ratio kept, so that its long
side gives ``grid_cells`` output cells (:class:`GridInput`).

:class:`FastGazeTarget` turns such a network into a :class:`~targets.DifferentiableTarget`: the
log-density at image resolution is the grid's, bilinearly resized and renormalised; the salient
point is the most salient grid cell's centre scaled back to image pixels, as Twitter's cropper did.
"""

from __future__ import annotations

import math
from collections.abc import Sequence

import numpy as np
import torch
import torch.nn.functional as F
from torch import nn

from targets._base import DifferentiableTarget
from targets._functional import gaussian_blur, log_softmax_2d, upsample_log_density
from targets._output import TargetOutput
from targets.crop import DEFAULT_ASPECT_RATIOS, crop_boxes
from targets.vxm import BlurLayer, ConvLayer, PoolLayer, VxmModel

POOL = "pool"
ALPHA_ACTIVATIONS = ("prelu", "elu")
CHANNEL_ORDERS = ("rgb", "bgr")
POOLS = ("max", "avg")
# How GridInput shrinks an image: torch's bilinear/bicubic without antialiasing sample the source
# as a plain C++ resize does (the binary's choice, see targets/twitter.py); "_antialias" low-passes first.
RESIZES = ("bilinear", "bicubic", "bilinear_antialias", "area")


class AlphaActivation(nn.Module):
    """The readout's activation with one learned scalar ``alpha``.

    ``prelu``: ``x`` for ``x > 0``, else ``alpha * x`` (He et al. 2015, one shared slope);
    ``elu``: ``x`` for ``x > 0``, else ``alpha * (exp(x) - 1)``.
    """

    def __init__(self, kind: str = "prelu", alpha: float = 0.25) -> None:
        super().__init__()
        if kind not in ALPHA_ACTIVATIONS:
            raise ValueError(f"alpha_activation must be one of {ALPHA_ACTIVATIONS}, got {kind!r}")
        self.kind = kind
        self.alpha = nn.Parameter(torch.tensor([float(alpha)]))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        negative = self.alpha * x if self.kind == "prelu" else self.alpha * torch.expm1(x.clamp_max(0))
        return torch.where(x > 0, x, negative)

    def extra_repr(self) -> str:
        return f"{self.kind}, alpha={float(self.alpha):.4g}"


class CentreBias(nn.Module):
    """A learned Gaussian centre-bias log prior on the grid: ``weight * -(r / sigma)² / 2``.

    ``r`` is the distance from the centre in units of the grid's long side. ``weight`` starts at 0,
    so an untrained centre bias changes nothing.
    """

    def __init__(self, *, sigma: float = 0.25, weight: float = 0.0) -> None:
        super().__init__()
        if not sigma > 0:
            raise ValueError(f"centre-bias sigma must be positive, got {sigma}")
        self.log_sigma = nn.Parameter(torch.tensor(math.log(sigma)))
        self.weight = nn.Parameter(torch.tensor(float(weight)))

    def forward(self, logits: torch.Tensor) -> torch.Tensor:
        height, width = logits.shape[-2:]
        scale = max(height, width)
        ys = (torch.arange(height, device=logits.device, dtype=logits.dtype) + 0.5 - height / 2) / scale
        xs = (torch.arange(width, device=logits.device, dtype=logits.dtype) + 0.5 - width / 2) / scale
        squared = ys[:, None] ** 2 + xs[None, :] ** 2
        return logits + self.weight * (-squared / (2 * torch.exp(2 * self.log_sigma)))


class FastGazeNet(nn.Module):
    """Preprocessed ``(B, 3, h, w)`` image to ``(B, h/s, w/s)`` log-density over the output grid.

    ``trunk`` lists the 3x3 convolutions' output channels with ``"pool"`` for a 2x2 pool, e.g.
    ``[43, 44, "pool", 49, 56, ...]``; ``readout`` the 1x1 convolutions' output channels, ending in 1.
    Pools round up (``ceil_mode``): an input side of ``n`` pixels gives ``ceil(n / stride)`` cells,
    so an image that is not a whole number of cells keeps its last, partial row or column.
    ``blur=False`` leaves out the Gaussian blur (the network still records its size and sigma).
    """

    def __init__(
        self,
        *,
        trunk: Sequence[int | str],
        readout: Sequence[int],
        alpha_activation: str = "prelu",
        alphas: Sequence[float] | None = None,
        pool: str = "max",
        blur: bool = True,
        blur_kernel_size: int = 19,
        blur_sigma: float = 3.0,
        centre_bias: bool = False,
    ) -> None:
        super().__init__()
        if pool not in POOLS:
            raise ValueError(f"pool must be one of {POOLS}, got {pool!r}")
        if not readout or int(readout[-1]) != 1:
            raise ValueError(f"the readout must end in one channel (the saliency map), got {list(readout)}")
        if blur_kernel_size < 1 or blur_kernel_size % 2 == 0 or not blur_sigma > 0:
            raise ValueError(
                f"blur needs an odd kernel size and sigma > 0, got {blur_kernel_size}, {blur_sigma}"
            )
        alphas = list(alphas) if alphas is not None else [0.25] * len(readout)
        if len(alphas) != len(readout):
            raise ValueError(f"{len(readout)} readout layers but {len(alphas)} alphas")
        layers: list[nn.Module] = []
        channels = 3
        self.stride = 1
        for item in trunk:
            if item == POOL:
                # ceil_mode: a partial last window is pooled over its valid pixels (Caffe's rule).
                pool_layer = nn.MaxPool2d if pool == "max" else nn.AvgPool2d
                layers.append(pool_layer(2, ceil_mode=True))
                self.stride *= 2
                continue
            width = int(item)
            if width < 1:
                raise ValueError(f"trunk channel counts must be positive, got {item!r}")
            layers += [nn.Conv2d(channels, width, 3, padding=1), nn.ReLU()]
            channels = width
        if not any(isinstance(m, nn.Conv2d) for m in layers):
            raise ValueError("the trunk needs at least one convolution")
        self.trunk = nn.Sequential(*layers)
        heads: list[nn.Module] = []
        for width, alpha in zip(readout, alphas, strict=True):
            heads += [nn.Conv2d(channels, int(width), 1), AlphaActivation(alpha_activation, alpha)]
            channels = int(width)
        self.readout = nn.Sequential(*heads)
        self.blur = bool(blur)
        self.blur_kernel_size = int(blur_kernel_size)
        self.blur_sigma = float(blur_sigma)
        self.centre_bias = CentreBias() if centre_bias else None

    @classmethod
    def from_vxm(cls, model: VxmModel, **options: object) -> FastGazeNet:
        """The network ``model`` declares, with its weights (``options`` choose what the file leaves open)."""
        trunk: list[int | str] = []
        readout: list[int] = []
        alphas: list[float] = []
        convs = []
        for layer in model.layers:
            if isinstance(layer, PoolLayer):
                if layer.size != 2:
                    raise ValueError(f"layer {layer.index}: only 2x2 pools are supported, got {layer.size}")
                if readout:
                    raise ValueError(f"layer {layer.index}: a pool after the 1x1 readout is not supported")
                trunk.append(POOL)
            elif isinstance(layer, ConvLayer):
                convs.append(layer)
                if layer.activation == "relu" and layer.kernel_size == 3 and not readout:
                    trunk.append(layer.out_channels)
                elif layer.activation == "alpha" and layer.kernel_size == 1:
                    readout.append(layer.out_channels)
                    alphas.append(float(layer.alpha))  # type: ignore[arg-type]
                else:
                    raise ValueError(
                        f"layer {layer.index}: a {layer.kernel_size}x{layer.kernel_size} {layer.activation} "
                        "convolution does not fit the FastGaze layout (3x3 ReLU trunk, then 1x1 readout)"
                    )
        blur = model.layers[-1]
        if not isinstance(blur, BlurLayer):
            raise ValueError("the model does not end in a Gaussian blur, as every FastGaze network does")
        net = cls(
            trunk=trunk,
            readout=readout,
            alphas=alphas,
            blur_kernel_size=blur.kernel_size,
            blur_sigma=blur.sigma,
            **options,  # type: ignore[arg-type]
        )
        modules = [m for m in [*net.trunk, *net.readout] if isinstance(m, nn.Conv2d)]
        with torch.no_grad():
            for module, layer in zip(modules, convs, strict=True):
                module.weight.copy_(torch.from_numpy(layer.weight))
                module.bias.copy_(torch.from_numpy(layer.bias))
        return net

    def features(self, x: torch.Tensor) -> torch.Tensor:
        return self.trunk(x)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        # Channels-last runs the pruned (odd) channel counts several times faster on CPU.
        logits = self.readout(self.trunk(x.contiguous(memory_format=torch.channels_last)))
        if self.blur:
            truncate = (self.blur_kernel_size // 2) / self.blur_sigma  # exactly the declared number of taps
            logits = gaussian_blur(logits, self.blur_sigma, truncate=truncate)
        logits = logits[:, 0]
        if self.centre_bias is not None:
            logits = self.centre_bias(logits)
        return log_softmax_2d(logits)


class GridInput(nn.Module):
    """``(B, 3, H, W)`` RGB in [0, 1] to the network's input: resized, scaled, mean-subtracted, reordered.

    The image is resized with its aspect ratio kept: the long side to ``grid_cells * stride`` pixels,
    the short side in proportion, rounded to the nearest pixel (not to whole cells). The network's
    pools round up, so the grid has ``ceil(side / stride)`` cells along each side; a partial last
    cell covers the rest of the image. Twitter's binary printed a 17 x 20 grid for a 1034 x 851
    image this way (``../shared/evidence/twitter-binary/``). ``resize`` is one of :data:`RESIZES`.

    Raises:
        ValueError: for ``grid_cells < 1``, a ``resize``, ``channel_order`` or ``mean`` not understood,
            or ``value_scale <= 0``.
    """

    def __init__(
        self,
        *,
        grid_cells: int = 20,
        stride: int = 16,
        value_scale: float = 255.0,
        mean: Sequence[float] = (0.0, 0.0, 0.0),
        channel_order: str = "rgb",
        resize: str = "bilinear",
    ) -> None:
        super().__init__()
        if resize not in RESIZES:
            raise ValueError(f"resize must be one of {RESIZES}, got {resize!r}")
        if grid_cells < 1:
            raise ValueError(f"grid_cells must be a positive number of output cells, got {grid_cells}")
        if channel_order not in CHANNEL_ORDERS:
            raise ValueError(f"channel_order must be one of {CHANNEL_ORDERS}, got {channel_order!r}")
        if len(mean) != 3:
            raise ValueError(f"mean needs one value per R, G, B channel, got {list(mean)}")
        if not value_scale > 0:
            raise ValueError(f"value_scale must be positive, got {value_scale}")
        self.grid_cells = int(grid_cells)
        self.stride = int(stride)
        self.value_scale = float(value_scale)
        self.channel_order = channel_order
        self.resize = resize
        self.mean_values = tuple(float(m) for m in mean)
        self.register_buffer("mean", torch.tensor(self.mean_values).view(1, 3, 1, 1), persistent=False)

    def input_size(self, height: int, width: int) -> tuple[int, int]:
        """``(height, width)`` in pixels of the network's input for an image of this size."""
        scale = self.grid_cells * self.stride / max(height, width)
        return max(1, round(height * scale)), max(1, round(width * scale))

    def grid_size(self, height: int, width: int) -> tuple[int, int]:
        """``(rows, columns)`` of the output grid for an image of this size."""
        input_height, input_width = self.input_size(height, width)
        return math.ceil(input_height / self.stride), math.ceil(input_width / self.stride)

    def forward(self, images: torch.Tensor) -> torch.Tensor:
        size = self.input_size(*images.shape[-2:])
        if images.shape[-2:] != size:
            images = _resize(images, size, self.resize)
        x = images * self.value_scale - self.mean.to(images)
        return x.flip(1) if self.channel_order == "bgr" else x


def _resize(images: torch.Tensor, size: tuple[int, int], kind: str) -> torch.Tensor:
    if kind == "area":
        return F.interpolate(images, size=size, mode="area")
    mode, _, antialias = kind.partition("_")
    return F.interpolate(images, size=size, mode=mode, align_corners=False, antialias=bool(antialias))


def grid_salient_point(grid_log_density: np.ndarray, height: int, width: int) -> tuple[float, float]:
    """The most salient cell's centre (the first in row-major order on ties), in image pixels.

    The grid is spread evenly over the image (``(row + 0.5) * height / rows``), as in the figure of
    Twitter's binary for its sample image (its 0.56 crop starts 36-44 px from the top).
    """
    rows, columns = grid_log_density.shape
    row, column = np.unravel_index(int(np.argmax(grid_log_density)), grid_log_density.shape)
    return float((column + 0.5) * width / columns), float((row + 0.5) * height / rows)


class FastGazeTarget(DifferentiableTarget):
    """A :class:`FastGazeNet` behind the target interface (see module doc)."""

    def __init__(
        self,
        *,
        net: FastGazeNet,
        grid_input: GridInput,
        aspect_ratios: Sequence[float] = DEFAULT_ASPECT_RATIOS,
    ) -> None:
        super().__init__(aspect_ratios=aspect_ratios)
        if grid_input.stride != net.stride:
            raise ValueError(f"input stride {grid_input.stride} differs from the network's {net.stride}")
        self.net = net
        self.grid_input = grid_input

    def feature_layer(self) -> nn.Module:
        """The trunk's last ReLU: its output is what the readout reads (Grad-CAM weighs it)."""
        return self.net.trunk[-1]

    def grid_log_density(self, images: torch.Tensor) -> torch.Tensor:
        """``(B, 3, H, W)`` in [0, 1] to the ``(B, rows, columns)`` log-density on the output grid."""
        if images.ndim != 4 or images.shape[1] != 3:
            raise ValueError(f"expected (B, 3, H, W) images, got shape {tuple(images.shape)}")
        dtype = next(self.net.parameters()).dtype  # float32, or float64 for gradient checks
        return self.net(self.grid_input(images.to(dtype)))

    def log_density(self, images: torch.Tensor) -> torch.Tensor:
        height, width = images.shape[-2:]
        return upsample_log_density(self.grid_log_density(images), height, width)

    def answer(self, images: list[np.ndarray]) -> list[TargetOutput]:
        results: list[TargetOutput | None] = [None] * len(images)
        by_size: dict[tuple[int, int], list[int]] = {}
        for i, image in enumerate(images):
            by_size.setdefault(image.shape[:2], []).append(i)
        with torch.inference_mode():
            for (height, width), indices in by_size.items():
                batch = np.stack([images[i] for i in indices]).astype(np.float32, copy=False)
                grid = self.grid_log_density(torch.from_numpy(batch).permute(0, 3, 1, 2))
                maps = upsample_log_density(grid, height, width).double().numpy()
                grids = grid.double().numpy()
                for row, i in enumerate(indices):
                    point = grid_salient_point(grids[row], height, width)
                    crops = crop_boxes(width, height, point, self.aspect_ratios)
                    results[i] = TargetOutput(point, crops, maps[row])
        return [r for r in results if r is not None]
