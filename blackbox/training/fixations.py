"""Real fixations through pysaliency: a prepared dataset (MIT1003, CAT2000) or a folder of pysaliency's
HDF5 files, a fixed split by stimulus, each training step's loss on the training fixations (the negative
log-likelihood DeepGaze II is trained with, stimuli scaled to ``image_size`` and mirrored at random), and
pysaliency's metrics of a :class:`~targets.deepgaze.DeepGazeII` on the held-out fixations.
"""

from __future__ import annotations

import warnings
from collections.abc import Callable
from pathlib import Path

import numpy as np
import torch
from PIL import Image

from blackbox.core.extras import import_pysaliency
from blackbox.core.images import ImageLoadError
from blackbox.training.losses import fixation_nll
from targets import ConfigError
from targets._functional import upsample_log_density
from targets.deepgaze import DeepGazeII

#: pysaliency's dataset loaders by name: (folder under the location, loader, its extra arguments).
FIXATION_DATASETS: dict[str, tuple[str, str, dict]] = {
    "mit1003": ("MIT1003", "get_mit1003", {}),
    "cat2000": ("CAT2000_train_v1.1", "get_cat2000_train", {"version": "1.1"}),
}


def _pysaliency():
    return import_pysaliency("training on fixations (fixation_data=...)")


def load_fixation_data(data: str, location: str | None):
    """pysaliency ``(Stimuli, Fixations)`` of ``data``: ``mit1003`` or ``cat2000`` from a location
    pysaliency has already prepared (never downloaded here), or a folder holding pysaliency's
    ``stimuli.hdf5`` and ``fixations.hdf5``."""
    pysaliency = _pysaliency()
    if data in FIXATION_DATASETS:
        folder, loader, extra = FIXATION_DATASETS[data]
        if not location:
            raise ConfigError(f"fixation_data={data} needs fixation_location=DIR (pysaliency's location)")
        root = Path(location).expanduser()
        prepared = root / folder
        if not (prepared / "stimuli.hdf5").is_file() or not (prepared / "fixations.hdf5").is_file():
            arguments = "".join(f", {k}='{v}'" for k, v in extra.items())
            raise ImageLoadError(
                f"no pysaliency {data} cache at {prepared} (stimuli.hdf5 and fixations.hdf5). Prepare it "
                f"once with internet: python -c \"import pysaliency; pysaliency.{loader}(location='{root}'"
                f"{arguments})\" (README: 'Training the DeepGaze II readout')"
            )
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            return getattr(pysaliency, loader)(location=str(root), **extra)
    folder = Path(data).expanduser()
    if not (folder / "stimuli.hdf5").is_file() or not (folder / "fixations.hdf5").is_file():
        raise ImageLoadError(
            f"fixation_data={data!r} is neither {' nor '.join(FIXATION_DATASETS)} nor a folder holding "
            "pysaliency's stimuli.hdf5 and fixations.hdf5"
        )
    return pysaliency.read_hdf5(str(folder / "stimuli.hdf5")), pysaliency.read_hdf5(
        str(folder / "fixations.hdf5")
    )


def split_fixation_data(stimuli, fixations, held_out: float, seed: int):
    """A fixed random split by stimulus: ``(train_stimuli, train_fixations, held_stimuli,
    held_fixations, held_indices)``, ``held_out`` of the stimuli (at least one, never all) held out."""
    if not 0 < held_out < 1:
        raise ConfigError(f"held_out must be a fraction between 0 and 1, got {held_out}")
    count = len(stimuli)
    if count < 2:
        raise ImageLoadError(f"training needs at least 2 stimuli (to train on and to hold out), got {count}")
    order = np.random.default_rng(seed).permutation(count)
    held = sorted(int(i) for i in order[: min(count - 1, max(1, round(held_out * count)))])
    train = sorted(set(range(count)) - set(held))
    create_subset = _pysaliency().create_subset
    train_stimuli, train_fixations = create_subset(stimuli, fixations, train)
    held_stimuli, held_fixations = create_subset(stimuli, fixations, held)
    if len(train_fixations.x) == 0 or len(held_fixations.x) == 0:
        raise ImageLoadError("the split left the training or the held-out stimuli without fixations")
    return train_stimuli, train_fixations, held_stimuli, held_fixations, held


def _rgb(stimulus: np.ndarray) -> np.ndarray:
    array = np.asarray(stimulus)
    if array.ndim == 2:
        array = np.repeat(array[..., None], 3, axis=2)
    if array.ndim != 3 or array.shape[2] not in (3, 4):
        raise ImageLoadError(f"a stimulus must be (H, W) or (H, W, 3) pixels, got shape {array.shape}")
    array = array[..., :3]
    if array.dtype != np.uint8:
        array = np.clip(np.round(array * 255 if array.max() <= 1 else array), 0, 255).astype(np.uint8)
    return array


def scaled(stimulus: np.ndarray, size: int) -> np.ndarray:
    """``(h, w, 3)`` float32 in [0, 1], the stimulus with its long side ``size`` px (bicubic)."""
    pixels = _rgb(stimulus)
    height, width = pixels.shape[:2]
    scale = size / max(height, width)
    shape = (max(32, round(width * scale)), max(32, round(height * scale)))
    return np.asarray(Image.fromarray(pixels).resize(shape, Image.Resampling.BICUBIC), dtype=np.float32) / 255


def pysaliency_model(target: DeepGazeII, size: int):
    """``target`` as a ``pysaliency.Model``: the log-density of each stimulus at its own size,
    computed with the stimulus's long side at ``size`` px (as the student is trained) and bilinearly
    resized there. The network runs once per stimulus: its small map is kept (float32) and resized
    for each metric that asks."""
    pysaliency = _pysaliency()
    small: dict[str, torch.Tensor] = {}

    class DeepGazeIIModel(pysaliency.Model):
        def _log_density(self, stimulus: np.ndarray) -> np.ndarray:
            key = pysaliency.datasets.get_image_hash(stimulus)
            if key not in small:
                image = torch.from_numpy(scaled(stimulus, size)).permute(2, 0, 1)[None]
                with torch.inference_mode():
                    small[key] = target.log_density(image).float().cpu()
            height, width = np.asarray(stimulus).shape[:2]
            return upsample_log_density(small[key].double(), height, width)[0].numpy()

    return DeepGazeIIModel(caching=False)


def fixation_metrics(target: DeepGazeII, stimuli, fixations, *, size: int) -> dict:
    """pysaliency's information gain over its ``UniformModel`` (bits/fixation), AUC (uniform
    non-fixations) and NSS of the predicted density on ``fixations``, each averaged over fixations
    (pysaliency's default), and the number of fixations and stimuli they rest on."""
    pysaliency = _pysaliency()
    model = pysaliency_model(target, size)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        information_gain = model.information_gain(
            stimuli, fixations, baseline_model=pysaliency.UniformModel()
        )
        density = pysaliency.DensitySaliencyMapModel(model)
        auc = density.AUC(stimuli, fixations, nonfixations="uniform")
        nss = density.NSS(stimuli, fixations)
    return {
        "information_gain": float(information_gain),
        "auc": float(auc),
        "nss": float(nss),
        "fixations": len(fixations.x),
        "stimuli": len(set(int(n) for n in fixations.n)),
    }


def stimulus_name(stimuli, index: int) -> str:
    """The file name of stimulus ``index``, or ``stimulus <index>`` when pysaliency knows none."""
    filenames = getattr(stimuli, "filenames", None)
    return Path(filenames[index]).name if filenames is not None else f"stimulus {index}"


def fixation_step_loss(
    student: DeepGazeII,
    stimuli,
    fixations,
    *,
    seed: int,
    batch: int,
    size: int,
    flip: bool,
    device: torch.device,
) -> Callable[[int], torch.Tensor]:
    """A step's loss on the training ``fixations``: the mean :func:`fixation_nll` over ``batch``
    stimuli with fixations drawn by ``(seed, step)``, each :func:`scaled` to ``size`` px on its long
    side and mirrored at random when ``flip``. Gradients reach the readout."""
    by_image = [np.flatnonzero(fixations.n == n) for n in range(len(stimuli))]
    candidates = [n for n, found in enumerate(by_image) if len(found)]

    def step_loss(step: int) -> torch.Tensor:
        rng = np.random.default_rng([seed, step])
        losses = []
        for _ in range(batch):
            n = candidates[int(rng.integers(len(candidates)))]
            stimulus = stimuli.stimuli[n]
            image = scaled(stimulus, size)
            (height, width), (original_h, original_w) = image.shape[:2], np.asarray(stimulus).shape[:2]
            found = by_image[n]
            xs = np.clip(np.floor(fixations.x[found] * width / original_w), 0, width - 1).astype(int)
            ys = np.clip(np.floor(fixations.y[found] * height / original_h), 0, height - 1).astype(int)
            if flip and rng.random() < 0.5:
                image, xs = image[:, ::-1], width - 1 - xs
            tensor = torch.from_numpy(np.ascontiguousarray(image)).permute(2, 0, 1)[None]
            log_density = student.log_density(tensor)[0]
            losses.append(
                fixation_nll(log_density, torch.from_numpy(xs).to(device), torch.from_numpy(ys).to(device))
            )
        return torch.stack(losses).mean()

    return step_loss
