"""``target=twitter``: Twitter's released FastGaze model (``fastgaze.vxm``, 2018) rebuilt in torch.

The network is what the file declares (:mod:`targets.vxm`): ten 3x3 convolutions with ReLU and four
2x2 pools (channels 3-43-44 | 49-56 | 44-38 | 31-20 | 18-10, stride 16), four 1x1 readout
convolutions (10-7-7-2-1) each with a scalar ``alpha`` activation, a 19-tap Gaussian blur of sigma 3
grid cells, and (our addition, as DeepGaze does) a log-softmax over the grid. The salient point is
the argmax grid cell's centre scaled back to image pixels, and the crops follow Twitter's policy
(:mod:`targets.crop`), as Twitter's published code did.

What the file does not say was reconstructed by experiment; every choice is a setting in
``conf/target/twitter.yaml``. ``python -m benchmarks.twitter_evidence`` re-measures the figures
below: grid maps of five real photos (scikit-image's astronaut, chelsea, coffee, rocket, camera) at
long sides of 256, 320 and 384 px, each also mirrored, scored by the AUC with which the map separates
hand-marked salient boxes (face, eyes, nose, cup, spoon, rocket, lights, the cameraman's head: 10
boxes) from the rest of the image; 60 box/scale/mirror cases per variant.

* **Weight layout** ``(out, in, kh, kw)`` as declared, cross-correlation (no kernel flip): under
  this reading adjacent 3x3 taps correlate positively and opposite corners negatively in every
  trunk layer (e.g. layer 0: +0.30 / -0.65), as in trained filters; reading the same bytes as
  ``(kh, kw, in, out)`` gives no structure (-0.15 / -0.06). Flipped kernels score AUC 0.79 vs 0.81.
* **Value scale 0-255.** With inputs in [0, 1] the trunk's output hardly depends on the image: the
  first layer's weights (std 0.28, 27 taps) give responses of order 0.4 against a mean |bias| of
  0.62, and the final log-density is flat (0.04-0.06 nats from min to max; AUC 0.30, below chance).
  At 0-255 the maps span 0.9-2.2 nats and follow objects. This is the Caffe-VGG convention the
  trunk's shape (a pruned VGG: two 3x3 convolutions per block) suggests.
* **Mean subtraction** of the ImageNet means (123.68, 116.78, 103.94 for R, G, B): AUC 0.81 with it,
  0.72 (RGB) and 0.77 (BGR) without.
* **Channel order: RGB, not determined by the evidence.** Maps score AUC 0.812 (RGB) vs 0.801
  (BGR), RGB better in 32 of the 60 paired cases and worse in 28: no real difference. The first
  layer's dominant colour axis weighs the stored channels (0.68, 1.0, 0.41), which reads as sRGB
  luminance (G > R > B) in RGB order and would put blue above red in BGR order; weak evidence. The
  choice matters: the two orders' maps correlate at CC 0.86-0.99 and their argmax cell differs on 3
  of 5 photos. Caffe's original VGG used BGR; ``target.channel_order=bgr`` switches.
* **Activation: PReLU** (``x`` if ``x > 0`` else ``alpha * x``). The four alphas (0.275, 0.271,
  0.374, 0.389) are stored as learned one-element weight arrays, not as settings, and sit just above
  0.25, PReLU's usual initial value (He et al. 2015; ``torch.nn.PReLU()``'s default is exactly one
  shared slope of 0.25). A learned ELU alpha would start at 1. Maps hardly tell the forms apart
  (AUC 0.812 PReLU, 0.805 ELU), so the parameters decide.
* **Pooling: max** (VGG's): AUC 0.81 vs 0.64 for average pooling.
* **Resize rule:** the long side gives a 20-cell output grid (320 px at stride 16), which Twitter's
  published analysis data suggests; each side is rounded to a whole number of cells so that the
  grid tiles the image exactly (aspect distortion at most half a cell, 8 px of 320). The blur pads
  by replicating the border, as DeepGaze's does (zero padding scores the same AUC, 0.813, but
  darkens the border, an extra centre bias the file does not declare).
* No centre bias is stored, and none is added.

Weights are resolved by :mod:`targets.weights`: ``target.weights=PATH``; ``$BLACKBOX_MODELS``; the
user cache; a download from the pinned URL checked against its sha256. A file whose sha256 differs
from the released one is read (if it parses) with a warning.
"""

from __future__ import annotations

import os
import warnings
from collections.abc import Sequence

from targets._fastgaze import FastGazeNet, FastGazeTarget, GridInput
from targets.crop import DEFAULT_ASPECT_RATIOS
from targets.vxm import read_vxm
from targets.weights import ModelFile, resolve, sha256_of

FASTGAZE = ModelFile(
    filename="fastgaze.vxm",
    url=(
        "https://raw.githubusercontent.com/twitter-research/image-crop-analysis/"
        "91e60934a76e0acef304609e65352bbcd52ca32b/bin/fastgaze.vxm"
    ),
    sha256="b76cefc218ec8969cc62b26ad0f41111800421287e7f2725d808da1d90afbdf7",
)

IMAGENET_MEAN_RGB = (123.68, 116.779, 103.939)


class TwitterSaliency(FastGazeTarget):
    """Twitter's FastGaze saliency model with its crop policy (see module doc)."""

    name = "twitter"

    def __init__(
        self,
        *,
        weights: str | os.PathLike[str] | None = None,
        grid_cells: int = 20,
        value_scale: float = 255.0,
        mean: Sequence[float] = IMAGENET_MEAN_RGB,
        channel_order: str = "rgb",
        alpha_activation: str = "prelu",
        pool: str = "max",
        resize: str = "bilinear",
        blur: bool = False,
        aspect_ratios: Sequence[float] = DEFAULT_ASPECT_RATIOS,
    ) -> None:
        path = resolve(FASTGAZE, weights)
        model = read_vxm(path)
        if sha256_of(path) != FASTGAZE.sha256:
            warnings.warn(
                f"{path} is not the released fastgaze.vxm (its sha256 differs from {FASTGAZE.sha256}); "
                "results are those of this file, not of Twitter's model",
                stacklevel=2,
            )
        net = FastGazeNet.from_vxm(model, alpha_activation=alpha_activation, pool=pool, blur=blur)
        net.eval().requires_grad_(False)  # a fixed model: gradients flow to images only
        grid_input = GridInput(
            grid_cells=grid_cells,
            stride=net.stride,
            value_scale=value_scale,
            mean=mean,
            channel_order=channel_order,
            resize=resize,
        )
        super().__init__(net=net, grid_input=grid_input, aspect_ratios=aspect_ratios)
        self.weights_path = path
