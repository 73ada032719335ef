"""``target=twitter``: Twitter's released FastGaze model (``fastgaze.vxm``, 2018) rebuilt in torch.

The network is what the file declares (:mod:`targets.vxm`): ten 3x3 convolutions with ReLU and four
2x2 pools (channels 3-43-44 | 49-56 | 44-38 | 31-20 | 18-10, stride 16), four 1x1 readout
convolutions (10-7-7-2-1) each with a scalar ``alpha`` activation, and a 19-tap Gaussian blur of
sigma 3 grid cells, which Twitter's binary did not apply (below). We add a log-softmax over the grid,
as DeepGaze does: it shifts every score by one constant and changes no ranking. The salient point is
the argmax grid cell's centre scaled back to image pixels, and the crops follow Twitter's policy
(:mod:`targets.crop`), as Twitter's published code did.

**Ground truth: Twitter's binary.** ``../shared/evidence/twitter-binary/`` holds Twitter's sample
image (1034 x 851) and the 340 scores that Twitter's released ``candidate_crops`` binary printed for
it (17 x 20, read off a public figure, about +-0.03 each), with the salient point and crops the
figure shows. ``python -m benchmarks.twitter_evidence`` prints, for the default and for each choice
changed alone: the grid's shape, its Pearson correlation with the binary's scores, the argmax cell,
and the worst crop offset from the binary's crops (``tests/test_twitter_binary.py`` checks the
default). The landed reconstruction before this evidence (commit 9d31d7f) is the second row.

=====================================================  =======  =====  ========  ===========
variant                                                grid     CC     argmax    crop offset
=====================================================  =======  =====  ========  ===========
Twitter's binary                                       17 x 20  1      (6, 2)    0 px
**default** (0-255, mean, RGB, bilinear, no blur)      17 x 20  0.975  (6, 2)    1 px
landed 9d31d7f (whole cells, antialiased, blurred)     16 x 20  0.836  (3, 0)    36 px
the file's blur (``blur=true``)                        17 x 20  0.842  (0, 19)   609 px
sides rounded to whole cells (aspect distorted)        16 x 20  0.965  (1, 1)    36 px
``resize=bicubic`` / ``bilinear_antialias`` / ``area``  17 x 20  0.975 / 0.972 / 0.974, all (6, 2), 1 px
BGR channel order                                      17 x 20  0.675  (1, 18)   609 px
no mean subtraction (0-255)                            17 x 20  0.731  (1, 1)    36 px
values in [0, 1]                                       17 x 20  0.208  (0, 0)    36 px
ELU instead of PReLU                                   17 x 20  0.966  (6, 2)    1 px
average pooling                                        17 x 20  0.716  (1, 14)   537 px
flipped kernels (convolution, not correlation)         17 x 20  0.755  (5, 1)    36 px
=====================================================  =======  =====  ========  ===========

(CC for a grid of another shape: the map resized to the image, read at the binary's cell centres.)
What the binary settles:

* **No blur.** The file declares a blur layer, and the seed paper (Yoshida & Okuda) describes a
  blurred map for its own retrained model, but the binary's scores are sharp: CC 0.975 without the
  blur, 0.842 with it (and 0.81 zero-padded), whose argmax lands in the top-right corner. Small blurs
  do not help either (sigma 0.5 cell: 0.972; 1 cell: 0.956). ``blur=true`` keeps the file's blur as a
  named setting: **not what Twitter's binary does**.
* **Aspect ratio kept, a partial last cell.** The binary's 17 rows for 851 px: the long side goes
  to 320 px (20 cells of 16) and the short side in proportion, to 263 px, which 17 cells cover, the
  last one partly; so its pools round up, as Caffe's do. Rounding each side to whole cells (what the
  landed target did: 16 rows, the image squeezed by 3%) gives the wrong grid. Shrinking the short
  side in 2 px steps from 258 to 272 px, CC peaks at 262-264 px (0.975-0.977), where the aspect ratio
  is kept. The salient point spreads the grid evenly over the image (``(row + 0.5) * H / rows``):
  that puts the 0.56 crop 35 px from the top, as in the binary's figure (36-44 px).
* **Channel order RGB**, settled: CC 0.975 (RGB) vs 0.675 (BGR), whose argmax is in the top-right
  corner. (Before this evidence the hand-marked boxes below could not tell the two apart.)
* **Value scale 0-255 with the ImageNet means** (123.68, 116.78, 103.94 for R, G, B subtracted):
  0.975, against 0.73 without the mean and 0.21 with values in [0, 1] (the first layer's weights,
  std 0.28 over 27 taps, then give responses of order 0.4 against a mean |bias| of 0.62: the map
  hardly depends on the image). The Caffe-VGG convention the trunk's shape suggests.
* **Weight layout** ``(out, in, kh, kw)`` as declared, cross-correlation: flipped kernels 0.755.
  (Under this reading adjacent 3x3 taps correlate positively and opposite corners negatively in
  every trunk layer, e.g. layer 0: +0.30 / -0.65, as in trained filters; reading the same bytes as
  ``(kh, kw, in, out)`` gives no structure, -0.15 / -0.06.)
* **Pooling: max** (VGG's): average pooling 0.716.
* **Activation: PReLU** (``x`` if ``x > 0`` else ``alpha * x``): 0.975 vs 0.966 for ELU, both on
  the right cell; the parameters decide: the four alphas (0.275, 0.271, 0.374, 0.389) sit just above
  0.25, PReLU's usual initial value (He et al. 2015), where a learned ELU alpha would start at 1.

What stays open:

* **The resize kernel.** Plain bilinear (no antialiasing, as a C++ resize such as OpenCV's
  ``INTER_LINEAR`` samples), plain bicubic, antialiased bilinear and area averaging all reach CC
  0.972-0.975 and the binary's argmax cell, well within what one picture read off a plot can tell
  apart. The default, plain bilinear, is the one whose second and third cells are the binary's
  ((1, 1) then (7, 2)); antialiased bilinear ranks (7, 2) then (5, 2). At the default 640 px working
  width a landscape image is shrunk by exactly 2, where plain bilinear averages 2 x 2 pixels and
  every pixel counts; at other factors it skips pixels, as the binary presumably did.
* **The scores' scale.** The binary's scores are about 0.88 times our readout's (intercept about 0):
  a scale the crop does not depend on, left unexplained.
* **One picture.** The evidence is a single image; the hand-marked boxes on five more photos
  (``benchmarks.twitter_evidence``, AUC of cells inside a box against the rest, 60 cases) agree with
  the binary's choices: 0.837 for the default against 0.812 for the landed target.

No centre bias is stored, and none is added.

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
    """Twitter's FastGaze saliency model with its crop policy, as Twitter's binary ran it (module doc).

    Settings (keyword-only): ``weights`` (path to ``fastgaze.vxm``); ``grid_cells`` output cells
    along the long side (20: a 320 px input); ``value_scale``, ``mean`` (per R, G, B, after scaling)
    and ``channel_order`` (``rgb`` | ``bgr``) of the input; ``alpha_activation`` (``prelu`` |
    ``elu``); ``pool`` (``max`` | ``avg``); ``resize`` (one of
    :data:`targets._fastgaze.RESIZES`); ``blur`` (the file's blur; off, as in the binary);
    ``aspect_ratios`` (crop height / width). Images are ``(H, W, 3)`` float RGB in [0, 1].

    Raises:
        MissingModelFileError: the weights cannot be found.
        VxmFormatError: the file is not a readable ``.vxm``.
        ValueError: a setting out of its range.
    """

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
