"""``python -m blackbox.distill student=deepgaze ...``: train DeepGaze II's readout for ``target=deepgaze``.

What is trained is what DeepGaze II learns (Kümmerer, Wallis, Gatys & Bethge, ICCV 2017): the 1x1
readout (16-32-2-1 channels as published), the Gaussian blur's σ and the centre-bias weight of
:class:`targets.deepgaze.DeepGazeIINetwork`; the ImageNet VGG-19 stays frozen. The readout starts
from PyTorch's default initialisation (seeded by ``seed``), σ = 8 px of the half-size image and a
centre-bias weight of 1 (deepgaze_pytorch's ``Finalizer`` defaults), or from ``student.weights=PATH``.
Two sources of supervision:

* a zoo teacher's maps (``teacher=twitter``; FastGaze was itself distilled from DeepGaze II): as for
  the surrogate (:mod:`blackbox.training.distill`), augmented crops of the training images, the student's
  density pooled onto 16 px cells and pulled towards the teacher's (KL divergence, nats), or towards
  the salient point a map-less teacher gives; fidelity on the held-out images by
  :func:`blackbox.evaluate.fidelity.fidelity` (pysaliency's CC, KL-div, NSS, AUC; point distance; crop IoU);
* real fixations (``fixation_data=mit1003|cat2000|DIR``): pysaliency's stimuli and fixations, the
  negative log-likelihood of the training fixations (in nats per fixation, relative to a uniform
  density: the loss DeepGaze II is trained with), each stimulus scaled to ``image_size`` on its long
  side and mirrored at random; on the held-out stimuli, pysaliency's information gain over its
  ``UniformModel`` (bits per fixation), AUC (uniform non-fixations) and NSS of the predicted density,
  averaged over fixations (pysaliency's default), as the DeepGaze authors evaluate with pysaliency.

The run folder (``runs/distill/<teacher or fixation data>-deepgaze-seed<seed>``) holds ``last.pt``
(the resumable state: ``{"state_dict": <readout in deepgaze_pytorch's layout>, "optimizer", "step",
"metadata"}``, itself loadable by ``target=deepgaze``), ``deepgaze2_readout.pth`` (the plain readout
state dict, the file ``target=deepgaze`` looks for by name), ``train.jsonl``,
``fidelity_initial.json``/``fidelity.json`` (the metrics before and after) and ``summary.md``.
Re-running the same command resumes (saved every ``checkpoint_every`` steps, at the end and on
Ctrl-C); each step's data depends only on ``(seed, step)``, so a resumed run ends with the same
weights as an uninterrupted one.
"""

from __future__ import annotations

import json
import math
import sys
import tempfile
import time
import warnings
from collections.abc import Callable, Mapping, Sequence
from pathlib import Path
from typing import TYPE_CHECKING

import numpy as np
import torch
import torch.nn.functional as F
from omegaconf import DictConfig, OmegaConf
from PIL import Image
from tqdm import tqdm

from blackbox.core.images import ImageLoadError
from targets import ConfigError, Target, load
from targets._deepgaze_checkpoint import CENTRE_BIAS_WEIGHT_KEY, READOUT_PREFIX, SIGMA_KEY
from targets._functional import upsample_log_density
from targets._readout import build_readout
from targets.deepgaze import PUBLISHED_READOUT, READOUT_FILE, DeepGazeII
from targets.weights import BadModelFileError, MissingModelFileError

if TYPE_CHECKING:  # blackbox.training.distill imports this module when student=deepgaze
    from blackbox.training.distill import DistillSummary

CHECKPOINT_FORMAT = "blackbox-deepgaze2-readout/1"
INITIAL_BLUR_SIGMA = 8.0  # px of the half-size image: deepgaze_pytorch's Finalizer default
INITIAL_CENTRE_BIAS_WEIGHT = 1.0  # idem
MIN_BLUR_SIGMA = 0.5  # kept positive during training (the checkpoint format requires σ > 0)
TEACHER_CELL = 16  # px: the student's density is compared with the teacher's on cells this large
#: pysaliency's dataset loaders by name: (folder under the location, loader, its extra arguments).
FIXATION_DATASETS: dict[str, tuple[str, str, dict]] = {
    "mit1003": ("MIT1003", "get_mit1003", {}),
    "cat2000": ("CAT2000_train_v1.1", "get_cat2000_train", {"version": "1.1"}),
}
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


def _pysaliency():
    with warnings.catch_warnings():  # pysaliency imports pkg_resources, which warns on import
        warnings.simplefilter("ignore")
        import pysaliency
    return pysaliency


# --- The student ----------------------------------------------------------------------------------------


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


def _device(name: str) -> torch.device:
    if name == "auto":
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    if name not in ("cpu", "cuda") and not name.startswith("cuda:"):
        raise ConfigError(f"device must be cpu, cuda, cuda:N or auto, got {name!r}")
    if name.startswith("cuda") and not torch.cuda.is_available():
        raise ConfigError(f"device={name}: this torch build sees no CUDA GPU; use device=cpu")
    return torch.device(name)


# --- Fixations through pysaliency -------------------------------------------------------------------------


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


def fixation_nll(log_density: torch.Tensor, xs: torch.Tensor, ys: torch.Tensor) -> torch.Tensor:
    """Mean negative log-likelihood of fixations ``(xs, ys)`` (integer pixels) under a ``(H, W)``
    log-density, relative to a uniform density: ``-(mean log p + log(H W))``, nats per fixation."""
    height, width = log_density.shape
    return -(log_density[ys, xs].mean() + math.log(height * width))


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


def pooled_log_density(log_density: torch.Tensor, grid: tuple[int, int]) -> torch.Tensor:
    """``(B, H, W)`` log-densities to ``(B, rows, columns)`` log-probabilities of the grid's cells."""
    cells = F.adaptive_avg_pool2d(log_density.exp()[:, None], grid)[:, 0].clamp_min(1e-30).log()
    return cells - torch.logsumexp(cells.flatten(1), dim=1)[:, None, None]


def teacher_loss(
    student: DeepGazeII, teacher: Target, crops: np.ndarray, *, point_sigma: float
) -> torch.Tensor:
    """KL(teacher || student) in nats, mean over ``(B, H, W, 3)`` float32 ``crops`` in [0, 1], both
    densities on cells of :data:`TEACHER_CELL` px (a map-less teacher: a Gaussian of ``point_sigma``
    cells around its salient point;
    :func:`blackbox.training.distill.cell_targets`). Gradients reach the readout."""
    from blackbox.training.distill import cell_targets, kl_loss

    outputs = teacher.query(list(crops))
    tensor = torch.from_numpy(np.ascontiguousarray(crops)).permute(0, 3, 1, 2)
    height, width = crops.shape[1:3]
    grid = (math.ceil(height / TEACHER_CELL), math.ceil(width / TEACHER_CELL))
    cells = pooled_log_density(student.log_density(tensor), grid)
    targets = cell_targets(teacher, outputs, grid, height, width, point_sigma=point_sigma)
    return kl_loss(targets.to(cells), cells)


# --- Checkpoints ------------------------------------------------------------------------------------------


def _save_atomic(state: object, path: Path) -> None:
    # Write beside the destination and rename: an interruption never leaves a half-written file.
    with tempfile.NamedTemporaryFile(dir=path.parent, suffix=".tmp", delete=False) as handle:
        torch.save(state, handle)
        temporary = Path(handle.name)
    temporary.replace(path)


def load_training_state(path: Path) -> dict:
    """The resumable state in ``last.pt`` (see module doc), or a clear error."""
    try:
        state = torch.load(path, map_location="cpu", weights_only=True)
    except Exception as error:  # torch raises many kinds for a file that is not a checkpoint
        raise BadModelFileError(
            f"{path} is not a readable DeepGaze II training checkpoint: {error}"
        ) from error
    if not isinstance(state, dict) or state.get("format") != CHECKPOINT_FORMAT:
        found = state.get("format") if isinstance(state, dict) else type(state).__name__
        raise BadModelFileError(
            f"{path} is not a DeepGaze II training checkpoint (format {found!r}, expected "
            f"{CHECKPOINT_FORMAT!r}); choose another hydra.run.dir"
        )
    return state


# --- Training ---------------------------------------------------------------------------------------------


def distill_deepgaze(cfg: DictConfig, run_dir: Path, *, teacher: Target | None = None) -> DistillSummary:
    """Train (or resume training) the DeepGaze II readout (see module doc); returns the
    :class:`blackbox.training.distill.DistillSummary`. Raises :class:`ConfigError` on bad settings,
    ``ImageLoadError`` on missing data, model-file errors on missing or bad VGG-19/readout files."""
    from blackbox.training import distill as base  # the surrogate's trainer: its data, loss and fidelity code

    run_dir.mkdir(parents=True, exist_ok=True)
    steps, batch, size = int(cfg.steps), int(cfg.batch_size), int(cfg.image_size)
    if steps < 0 or batch < 1 or size < 32:
        raise ConfigError(
            f"need steps >= 0, batch_size >= 1 and image_size >= 32; got {steps}, {batch}, {size}"
        )
    if not float(cfg.point_sigma) > 0:
        raise ConfigError(f"point_sigma (grid cells) must be positive, got {cfg.point_sigma}")
    device = _device(str(cfg.get("device") or "cpu"))
    settings = OmegaConf.to_container(cfg.student, resolve=True)
    assert isinstance(settings, dict)
    fixation_data = cfg.get("fixation_data") or None
    checkpoint_path, readout_path, log_path = (
        run_dir / "last.pt",
        run_dir / READOUT_FILE.filename,
        run_dir / "train.jsonl",
    )
    fingerprint = base._fingerprint(cfg)

    state = None
    if checkpoint_path.exists():
        state = load_training_state(checkpoint_path)
        base.check_fingerprint(state.get("metadata", {}).get("fingerprint"), fingerprint, run_dir)
    if state is not None:
        readout: Mapping[str, torch.Tensor] | str = state["state_dict"]
    elif settings.get("weights"):
        readout = str(settings["weights"])  # fine-tune a readout someone has
    else:
        readout = initial_readout_state(
            settings.get("readout_channels") or PUBLISHED_READOUT, seed=int(cfg.seed)
        )
    # Data before the 550 MB VGG-19: a wrong path should not wait for it.
    if fixation_data:
        stimuli, fixations = load_fixation_data(str(fixation_data), cfg.get("fixation_location"))
        train_stimuli, train_fixations, held_stimuli, held_fixations, held = split_fixation_data(
            stimuli, fixations, float(cfg.held_out), int(cfg.seed)
        )
        names = [_stimulus_name(stimuli, i) for i in range(len(stimuli))]
        train_ids = [names[i] for i in range(len(stimuli)) if i not in set(held)]
        held_ids = [names[i] for i in held]
    else:
        teacher = teacher or load(
            str(cfg.teacher), aspect_ratios=cfg.aspect_ratios, **(cfg.get("teacher_settings") or {})
        )
        images = base.load_images(cfg.get("images"))
        train, held_images = base.split(images, float(cfg.held_out), int(cfg.seed))
        train_ids, held_ids = [im.image_id for im in train], [im.image_id for im in held_images]
    student = build_student(settings, readout, cfg.aspect_ratios)
    network = student.network.to(device)
    parameters = network.trainable_parameters()
    optimizer = torch.optim.Adam(parameters, lr=float(cfg.lr))
    start = 0
    if state is not None:
        optimizer.load_state_dict(state["optimizer"])
        start = int(state["step"])
        print(f"resuming {run_dir} from step {start} of {steps}", file=sys.stderr)
    summary = base.DistillSummary(run_dir, start, train_ids, held_ids)
    summary.resumed_from = start

    if fixation_data:
        by_image = [np.flatnonzero(train_fixations.n == n) for n in range(len(train_stimuli))]
        candidates = [n for n, found in enumerate(by_image) if len(found)]
        flip = bool(cfg.augment.get("flip", True))

        def step_loss(step: int) -> torch.Tensor:
            rng = np.random.default_rng([int(cfg.seed), step])
            losses = []
            for _ in range(batch):
                n = candidates[int(rng.integers(len(candidates)))]
                stimulus = train_stimuli.stimuli[n]
                image = scaled(stimulus, size)
                (height, width), (original_h, original_w) = image.shape[:2], np.asarray(stimulus).shape[:2]
                found = by_image[n]
                xs = np.clip(np.floor(train_fixations.x[found] * width / original_w), 0, width - 1).astype(
                    int
                )
                ys = np.clip(np.floor(train_fixations.y[found] * height / original_h), 0, height - 1).astype(
                    int
                )
                if flip and rng.random() < 0.5:
                    image, xs = image[:, ::-1], width - 1 - xs
                tensor = torch.from_numpy(np.ascontiguousarray(image)).permute(2, 0, 1)[None]
                log_density = student.log_density(tensor)[0]
                losses.append(
                    fixation_nll(
                        log_density, torch.from_numpy(xs).to(device), torch.from_numpy(ys).to(device)
                    )
                )
            return torch.stack(losses).mean()

        def measure() -> dict:
            return fixation_metrics(student, held_stimuli, held_fixations, size=size)

    else:
        evaluation = base._evaluation_images(held_images, int(cfg.eval_width))

        def step_loss(step: int) -> torch.Tensor:
            rng = np.random.default_rng([int(cfg.seed), step])
            crops = base.augment_batch(train, rng, size=size, batch=batch, augment=dict(cfg.augment))
            return teacher_loss(student, teacher, crops, point_sigma=float(cfg.point_sigma))

        def measure() -> dict:
            mean, per_image = base.fidelity(
                teacher, student, evaluation, fixations=int(cfg.fixations), seed=int(cfg.seed)
            )
            return {**mean, "per_image": dict(zip(held_ids, per_image, strict=True))}

    def evaluate(name: str) -> dict:
        network.eval()
        record = {"step": summary.step, **measure()}
        (run_dir / name).write_text(json.dumps(record, indent=1, allow_nan=True))
        return record

    initial_path = run_dir / "fidelity_initial.json"
    summary.initial = json.loads(initial_path.read_text()) if initial_path.exists() else None
    if summary.initial is None and start == 0:
        summary.initial = evaluate(initial_path.name)

    def save() -> None:
        readout_state = network.readout_state_dict()
        metadata = {
            "source": f"fixations {fixation_data}" if fixation_data else f"teacher {cfg.teacher}",
            "fingerprint": fingerprint,
            "train_images": summary.train_ids,
            "held_out_images": summary.held_out_ids,
            "target_settings": {k: settings.get(k) for k in STUDENT_SETTINGS if k in settings},
        }
        _save_atomic(
            {
                "format": CHECKPOINT_FORMAT,
                "state_dict": readout_state,
                "optimizer": optimizer.state_dict(),
                "step": summary.step,
                "metadata": metadata,
            },
            checkpoint_path,
        )
        _save_atomic(readout_state, readout_path)

    run(
        steps=steps,
        start=start,
        step_loss=step_loss,
        parameters=parameters,
        optimizer=optimizer,
        network=network,
        summary=summary,
        log_path=log_path,
        save=save,
        checkpoint_every=int(cfg.checkpoint_every),
        description=f"deepgaze from {fixation_data or cfg.teacher}",
        progress=bool(cfg.progress),
    )
    if summary.interrupted:
        print(
            f"\ninterrupted at step {summary.step}; saved {checkpoint_path}. "
            "Re-run the same command to resume.",
            file=sys.stderr,
        )
        return summary
    save()
    summary.final = evaluate("fidelity.json")
    table = (
        fixation_table(str(fixation_data), summary) if fixation_data else base.fidelity_table(cfg, summary)
    )
    (run_dir / "summary.md").write_text(table + "\n")
    print(table)
    print(f"\nreadout: {readout_path}  (use: {target_command(readout_path, settings)})")
    return summary


def run(
    *,
    steps: int,
    start: int,
    step_loss: Callable[[int], torch.Tensor],
    parameters: Sequence[torch.nn.Parameter],
    optimizer: torch.optim.Optimizer,
    network: torch.nn.Module,
    summary: DistillSummary,
    log_path: Path,
    save: Callable[[], None],
    checkpoint_every: int,
    description: str,
    progress: bool,
) -> None:
    """The optimisation loop: steps ``start..steps-1``, a line of ``train.jsonl`` per step, a save
    every ``checkpoint_every`` steps and on Ctrl-C (then ``summary.interrupted``)."""
    network.train()
    for parameter in parameters:
        parameter.requires_grad_(True)
    sigma = network.blur_sigma
    bar = tqdm(total=steps, initial=min(start, steps), desc=description, disable=not progress)
    try:
        for step in range(start, steps):
            began = time.perf_counter()
            loss = step_loss(step)
            optimizer.zero_grad(set_to_none=True)
            loss.backward()
            torch.nn.utils.clip_grad_norm_(parameters, 5.0)
            optimizer.step()
            with torch.no_grad():
                sigma.clamp_(min=MIN_BLUR_SIGMA)
            summary.step = step + 1
            summary.losses.append(loss.item())
            with log_path.open("a") as handle:
                record = {
                    "step": summary.step,
                    "loss": summary.losses[-1],
                    "seconds": time.perf_counter() - began,
                }
                handle.write(json.dumps(record) + "\n")
            bar.update(1)
            bar.set_postfix(loss=f"{summary.losses[-1]:.4f}")
            if summary.step % checkpoint_every == 0:
                save()
    except KeyboardInterrupt:
        summary.interrupted = True
        save()
    finally:
        bar.close()
        for parameter in parameters:
            parameter.requires_grad_(False)
        network.eval()


def _stimulus_name(stimuli, index: int) -> str:
    filenames = getattr(stimuli, "filenames", None)
    return Path(filenames[index]).name if filenames is not None else f"stimulus {index}"


def fixation_table(data: str, summary: DistillSummary) -> str:
    """pysaliency's metrics on the held-out stimuli before and after training, as Markdown."""
    lines = [
        "| fixations | train / held-out stimuli | steps | IG over uniform (bit/fix) | AUC | NSS |",
        "| --- | --- | ---: | ---: | ---: | ---: |",
    ]
    for label, record in (("initial", summary.initial), ("trained", summary.final)):
        if record is None:
            continue
        lines.append(
            f"| {data} ({label}) | {len(summary.train_ids)} / {len(summary.held_out_ids)} | "
            f"{record['step']} | {record['information_gain']:.3f} | {record['auc']:.3f} | "
            f"{record['nss']:.3f} |"
        )
    return "\n".join(lines)


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
