"""What optuna-dashboard shows of a trial: user attributes, and images through Optuna's artifact store.

:class:`TrialArtifacts` is a :class:`~blackbox.search.PatchSearch` trial callback. On every trial
it sets the attributes a reader sorts and filters by, ``l2`` and the paper's peak shift
``shift_pct_distance`` (for a target without a map, ``point_shift_pct_distance``: the salient point's
move toward the goal) (the search itself sets ``queries``, ``success`` and ``salient_point``).
On the trials ``mode`` keeps it uploads two PNGs with :func:`optuna.artifacts.upload_artifact`:
the adversarial image exactly as the target saw it, and an overlay (the target's saliency map,
salient point, crop boxes and the goal box, drawn by :mod:`blackbox.core.visualize`).

``mode``: ``best`` (default) uploads only trials that improve on the study's best so far (success
first, then score), a handful per image; ``all`` every trial; ``none`` no images. Encoding and
copying two 640 px PNGs costs about twice a fast target's query (figures in README), so ``all``
would slow the search down noticeably on fast targets; the best trials are the ones a reader opens.
"""

from __future__ import annotations

import tempfile
from pathlib import Path

import numpy as np
import optuna
from optuna.artifacts import FileSystemArtifactStore, upload_artifact
from optuna.artifacts._protocol import ArtifactStore
from PIL import Image, ImageDraw

from blackbox.core.goal import Goal, peak_along
from blackbox.core.images import srgb_png_info
from blackbox.core.metrics import peak_shift
from blackbox.core.visualize import draw_goal, saliency_view, with_legend
from blackbox.search.patch_search import TrialRecord
from targets import TargetOutput

ARTIFACT_MODES = ("best", "all", "none")
# zlib level 1: a 640x427 photo's PNG in ~28 ms, its overlay in ~23 ms, against 72 and 156 ms at
# PIL's default level 6 (measured on this project's 2-core machine); the files are 13-15% larger.
PNG_COMPRESS_LEVEL = 1


class TrialArtifacts:
    """Trial attributes on every trial; the adversarial PNG and an overlay on the trials ``mode`` keeps."""

    def __init__(self, *, store: ArtifactStore | None, mode: str = "best") -> None:
        if mode not in ARTIFACT_MODES:
            raise ValueError(f"artifacts must be one of {', '.join(ARTIFACT_MODES)}, got {mode!r}")
        self.store = store
        self.mode = mode if store is not None else "none"
        self._best: dict[str, tuple[bool, float]] = {}  # study name -> (success, score) of its best
        self.uploaded = 0

    def __call__(self, record: TrialRecord) -> None:
        trial, problem = record.trial, record.problem
        goal = problem.goal
        # The paper's peak of the map's profile where there is a map; else the salient point (given or
        # implied by the crops), under its own name: one attribute, one meaning, for every target.
        has_map = problem.clean_output.log_density is not None and record.output.log_density is not None
        shift = peak_shift(
            _along(problem.clean_output, goal, has_map),
            _along(record.output, goal, has_map),
            goal.target_x,
            goal.extent(problem.image.width, problem.image.height),
        )
        # Two attributes, not every metric: each is a storage write (~4 ms on a journal file).
        trial.set_user_attr("l2", l2(problem.image.pixels, record.adversarial))
        key = "shift_pct_distance" if has_map else "point_shift_pct_distance"
        trial.set_user_attr(key, shift["shift_pct_distance"])
        if self.mode == "none" or not self._keeps(record):
            return
        self.upload(record)

    def _keeps(self, record: TrialRecord) -> bool:
        if self.mode == "all":
            return True
        name = record.study.study_name
        if name not in self._best:  # first trial of this session: the best of a resumed study
            self._best[name] = _study_best(record.study)
        candidate = (bool(record.success), float(record.score))
        if candidate > self._best[name]:
            self._best[name] = candidate
            return True
        return False

    def upload(self, record: TrialRecord) -> None:
        """Write both PNGs and hand them to the artifact store, linked to the trial."""
        assert self.store is not None
        number = record.trial.number
        images = {
            f"trial-{number}-adversarial.png": Image.fromarray(record.adversarial, "RGB"),
            f"trial-{number}-overlay.png": overlay(
                record.adversarial,
                record.output,
                record.problem.goal,
                f"trial {number}: score {record.score:.3g}, success {'yes' if record.success else 'no'}",
            ),
        }
        with tempfile.TemporaryDirectory(prefix="blackbox-artifact-") as folder:
            for filename, image in images.items():
                path = Path(folder) / filename
                image.save(path, compress_level=PNG_COMPRESS_LEVEL, pnginfo=srgb_png_info())
                upload_artifact(
                    artifact_store=self.store,
                    file_path=str(path),
                    study_or_trial=record.trial,
                    mimetype="image/png",
                )
        self.uploaded += 1


def overlay(pixels: np.ndarray, output: TargetOutput, goal: Goal, title: str) -> Image.Image:
    """The image under the target's saliency map, with its salient point, its crops and the goal box."""
    image = saliency_view(pixels, output, title)
    draw_goal(ImageDraw.Draw(image), goal)
    return with_legend(image, [c.aspect_ratio for c in output.crops], heat=output.log_density is not None)


def l2(clean: np.ndarray, adversarial: np.ndarray) -> float:
    """L2 of the 8-bit perturbation in [0, 1] units (as ``perturbation_norms``, in a third of its time)."""
    delta = np.subtract(adversarial, clean, dtype=np.int16).ravel().astype(np.float64)
    return float(np.sqrt(delta @ delta)) / 255.0


def artifact_store(directory: Path) -> FileSystemArtifactStore:
    directory.mkdir(parents=True, exist_ok=True)
    return FileSystemArtifactStore(str(directory))


def _along(output: TargetOutput, goal: Goal, has_map: bool) -> float:
    """As the records measure it: the map's profile peak along the goal's axis, else the salient
    point's coordinate there (a crop-only answer's point is the one its crops imply)."""
    if has_map:
        return peak_along(output.log_density, output.salient_point, goal.axis)
    return output.salient_point[0] if goal.axis == "x" else output.salient_point[1]


def _study_best(study: optuna.Study) -> tuple[bool, float]:
    completed = study.get_trials(deepcopy=False, states=(optuna.trial.TrialState.COMPLETE,))
    return max(
        ((bool(t.user_attrs.get("success")), float(t.value)) for t in completed if t.value is not None),
        default=(False, -np.inf),
    )
