"""``protect``: one image whose every thumbnail, by every cropper, keeps a region, after the platform.

The steps (docs/protect.md):

1. The image file is read at its own size, as a viewer shows it (EXIF-rotated, sRGB), and a working
   copy is made (``working_width`` px wide, never enlarged). The box (or a square around the point)
   is in the original's pixels.
2. Checks before any search: the box must fit every crop (:class:`BoxTooLargeError` names the
   ratio), every cropper must load and answer (:class:`CropperUnavailableError`; the default set
   leaves out, saying so, a cropper whose model file is missing), and some crop of some cropper must
   cut the box on the original as served (:class:`NothingToProtectError` otherwise; nothing is written).
3. The search (:mod:`.search`) looks for one perturbation of the working copy that every cropper keeps
   after each treatment of the EoT sample, within ``budget`` queries to all croppers together.
4. The perturbation is carried to the original size within the budget measured there
   (:func:`blackbox.core.full_size.full_size_adversarial`) and written in the input's format with its
   metadata (:mod:`.output`).
5. The written file is read back as the platform would read it, served after every treatment of the
   report (the range's corners) and shown to every cropper: the report's "after" (:mod:`.report`).
"""

from __future__ import annotations

import math
import time
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from blackbox.core.full_size import full_size_adversarial, full_size_budget
from blackbox.core.goal import GoalError
from blackbox.core.images import load_image
from blackbox.core.metrics import perturbation_norms, ssim
from blackbox.core.perturbation import PerturbationBudget
from blackbox.protection.ensemble import RULES, box_goal
from blackbox.protection.output import WrittenImage, check_quality, write_protected
from blackbox.protection.report import CropVerdict, kept_table, write_picture, write_report
from blackbox.protection.search import search
from blackbox.protection.transforms import PlatformTransform, TransformRange
from targets import DEFAULT_ASPECT_RATIOS, ConfigError, Target, TargetQueryError, UserError, load
from targets.crop import crop_size
from targets.weights import MissingModelFileError

__all__ = [
    "DEFAULT_CROPPERS",
    "PROTECT_ASPECT_RATIOS",
    "BoxTooLargeError",
    "CropperUnavailableError",
    "NothingToProtectError",
    "ProtectResult",
    "protect",
]

#: Every zoo cropper that runs in process and offline (``deepgaze`` and ``surrogate`` need weights
#: a user trains or fetches; ``http`` and ``thumbnail`` are services, named explicitly).
DEFAULT_CROPPERS: tuple[str, ...] = (
    "classic",
    "twitter",
    "vips_attention",
    "vips_entropy",
    "smartcrop",
    "faces",
)
#: Twitter's four crop shapes (height / width), plus an exact 16:9 thumbnail (9/16 = 0.5625).
PROTECT_ASPECT_RATIOS: tuple[float, ...] = (*DEFAULT_ASPECT_RATIOS, 0.5625)
#: The side of the square a ``point`` stands for, a fraction of the image's shorter side.
POINT_BOX = 0.1


class BoxTooLargeError(GoalError):
    """The box is larger than the crop of some aspect ratio: no crop of that shape can hold it."""


class NothingToProtectError(UserError, ValueError):
    """Every crop of every cropper already keeps the box on the original as served: nothing to do."""


class CropperUnavailableError(UserError, RuntimeError):
    """A cropper could not be loaded or did not answer (a missing model file, a service down)."""


@dataclass
class ProtectResult:
    """What :func:`protect` did.

    ``kept``: whether every crop of every cropper keeps the box on the protected file after every
    treatment of the report. ``before``/``after``: ``{(cropper, treatment): [CropVerdict per ratio]}``.
    ``norms``: the perturbation at the original resolution, ``"computed"`` (the 8-bit image before
    encoding) and ``"written"`` (the file as decoded): ``l2``, ``linf_levels``, ``psnr``, ``ssim``.
    ``queries``: the search's queries per cropper (the budget's); ``verification_queries``: the
    report's own (the original and the protected file after every treatment). ``skipped``: croppers
    of the default set left out, with why.
    """

    image: Path
    report: Path
    picture: Path
    written: WrittenImage
    kept: bool
    before: dict[tuple[str, str], list[CropVerdict]]
    after: dict[tuple[str, str], list[CropVerdict]]
    norms: dict[str, dict[str, float]]
    queries: dict[str, int]
    verification_queries: dict[str, int]
    queries_to_kept: int | None
    search_kept: bool
    skipped: dict[str, str] = field(default_factory=dict)
    seconds: float = 0.0

    def kept_by(self, cropper: str) -> bool:
        return all(v.kept for (name, _), verdicts in self.after.items() if name == cropper for v in verdicts)

    def __repr__(self) -> str:
        return (
            f"ProtectResult(image={str(self.image)!r}, kept={self.kept}, "
            f"queries={sum(self.queries.values())}, linf_levels={self.norms['written']['linf_levels']}, "
            f"ssim={self.norms['written']['ssim']:.4f})"
        )


def _box_from(
    box: Sequence[float] | None, point: Sequence[float] | None, size: tuple[int, int]
) -> tuple[float, float, float, float]:
    width, height = size
    if (box is None) == (point is None):
        raise GoalError("give box=[x0,y0,x1,y1] or point=[x,y] (in the image's own pixels), one of them")
    if box is not None:
        values = [float(v) for v in box]
        if len(values) != 4:
            raise GoalError(f"box must be [x0, y0, x1, y1], got {list(box)}")
        x0, y0, x1, y1 = values
        if not (x0 < x1 and y0 < y1):
            raise GoalError(f"box must have x0 < x1 and y0 < y1, got {values}")
        if x0 < 0 or y0 < 0 or x1 > width or y1 > height:
            raise GoalError(
                f"box {values} is outside the {width}x{height} image (as shown, after its EXIF rotation)"
            )
        return x0, y0, x1, y1
    values = [float(v) for v in point]  # type: ignore[union-attr]
    if len(values) != 2:
        raise GoalError(f"point must be [x, y], got {list(point)}")  # type: ignore[arg-type]
    x, y = values
    if not (0 <= x < width and 0 <= y < height):
        raise GoalError(f"point {values} is outside the {width}x{height} image")
    half = POINT_BOX * min(width, height) / 2
    return max(0.0, x - half), max(0.0, y - half), min(float(width), x + half), min(float(height), y + half)


def check_box_fits(box: Sequence[float], size: tuple[int, int], ratios: Sequence[float]) -> None:
    """Raise :class:`BoxTooLargeError` naming every aspect ratio whose crop is smaller than ``box``."""
    width, height = size
    bw, bh = box[2] - box[0], box[3] - box[1]
    too_small = []
    for ratio in ratios:
        cw, ch = crop_size(width, height, ratio)
        if bw > cw or bh > ch:
            too_small.append(f"{ratio:g} (crop {cw}x{ch} px)")
    if too_small:
        raise BoxTooLargeError(
            f"the box is {bw:g}x{bh:g} px, larger than the crop of aspect ratio (height/width) "
            f"{', '.join(too_small)} on this {width}x{height} image: no crop of that shape can hold it; "
            "give a smaller box, or leave that ratio out (aspect_ratios=[...])"
        )


def load_croppers(
    names: Sequence[str] | None, ratios: Sequence[float], settings: Mapping[str, Mapping] | None = None
) -> tuple[dict[str, Target], dict[str, str]]:
    """The croppers by zoo name, with ``ratios``; ``names=None``: :data:`DEFAULT_CROPPERS`, leaving out
    (in the second dict, with why) one whose model file is missing.

    Raises:
        CropperUnavailableError: a named cropper cannot be loaded (the message says why and what to do).
    """
    explicit = names is not None
    chosen = list(DEFAULT_CROPPERS if names is None else names)
    if not chosen:
        raise ConfigError("croppers is empty: name at least one (e.g. croppers=[classic,vips_entropy])")
    if len(set(chosen)) != len(chosen):
        raise ConfigError(f"croppers names one twice: {chosen}")
    loaded: dict[str, Target] = {}
    skipped: dict[str, str] = {}
    for name in chosen:
        try:
            loaded[name] = load(name, aspect_ratios=tuple(ratios), **dict((settings or {}).get(name, {})))
        except MissingModelFileError as error:
            if explicit:
                raise CropperUnavailableError(f"cropper {name!r} cannot be loaded: {error}") from None
            skipped[name] = f"left out of the default croppers: {error}"
        except (ImportError, OSError) as error:
            raise CropperUnavailableError(f"cropper {name!r} cannot be loaded: {error}") from None
    if not loaded:
        raise CropperUnavailableError(
            "no cropper could be loaded: " + "; ".join(f"{k}: {v}" for k, v in skipped.items())
        )
    return loaded, skipped


def served_verdicts(
    pixels: np.ndarray,
    box: Sequence[float],
    croppers: Mapping[str, Target],
    transforms: Sequence[PlatformTransform],
    counts: dict[str, int],
) -> tuple[dict[tuple[str, str], list[CropVerdict]], dict[str, tuple[np.ndarray, tuple]]]:
    """Every cropper's crops of ``pixels`` (full size, as shown) after each treatment, and whether each
    keeps ``box``; also each treated image and the box in its pixels (for the picture).

    Raises:
        CropperUnavailableError: a cropper did not answer.
    """
    height, width = pixels.shape[:2]
    served = {t.name: t.apply(pixels) for t in transforms}
    verdicts: dict[tuple[str, str], list[CropVerdict]] = {}
    for name, target in croppers.items():
        images = list(served.values())
        counts[name] = counts.get(name, 0) + len(images)
        try:
            outputs = target.query([image.astype(np.float32) / 255.0 for image in images])
        except TargetQueryError as error:
            raise CropperUnavailableError(f"cropper {name!r} did not answer: {error}") from None
        for (treatment, image), output in zip(served.items(), outputs, strict=True):
            h, w = image.shape[:2]
            goal = box_goal(box, (w, h), (width, height))
            verdicts[(name, treatment)] = [CropVerdict(c, goal.shown_by(c, h, w)) for c in output.crops]
    boxes = {
        name: (image, box_goal(box, (image.shape[1], image.shape[0]), (width, height)).box)
        for name, image in served.items()
    }
    return verdicts, boxes


def _norms(clean: np.ndarray, other: np.ndarray) -> dict[str, float]:
    values = perturbation_norms(clean, other)
    return {
        "l2": values["l2"],
        "linf_levels": values["linf_levels"],
        "psnr": values["psnr"],
        "ssim": ssim(clean, other),
    }


def protect(
    image: str | Path,
    *,
    box: Sequence[float] | None = None,
    point: Sequence[float] | None = None,
    croppers: Sequence[str] | None = None,
    cropper_settings: Mapping[str, Mapping] | None = None,
    aspect_ratios: Sequence[float] = PROTECT_ASPECT_RATIOS,
    transforms: TransformRange | None = None,
    budget: int = 2000,
    eps: float = 20.0,
    eps_inf: float | None = 4.0,
    ensemble: str = "worst",
    sampler: str = "tpe",
    proposal: str = "cells",
    step: float = 0.3,
    shrink_steps: int = 3,
    working_width: int | None = 640,
    jpeg_quality: str | int = "keep",
    seed: int = 0,
    out_dir: str | Path | None = None,
) -> ProtectResult:
    """Protect ``box`` (or ``point``) of the image file ``image`` against every cropper's crops.

    Args:
        image: a JPEG, PNG or other image file Pillow reads; written back in its own format (module doc).
        box: ``[x0, y0, x1, y1]`` in the image's own pixels, as shown (after its EXIF rotation).
        point: ``[x, y]``: a square ``0.1 x`` the shorter side around it stands for the box.
        croppers: zoo names (``classic``, ``twitter``, ``vips_attention``, ``vips_entropy``,
            ``smartcrop``, ``faces``, ``http``...); ``None``: :data:`DEFAULT_CROPPERS`, leaving out one
            whose model file is missing (the report says which and why).
        cropper_settings: per cropper, settings over its ``conf/target/<name>.yaml``
            (``{"http": {"url": ...}}``).
        aspect_ratios: crop heights / widths (default :data:`PROTECT_ASPECT_RATIOS`).
        transforms: the platform treatments to survive (default :class:`TransformRange()`: JPEG
            quality 75-95, long side 1200-4096 px, 2 treatments in the search).
        budget: queries the search may send, to all croppers together (one image to one cropper
            is one query; the clean image's included).
        eps: the perturbation's L2 norm at the working size, in [0, 1] pixel units (the budget at the
            original size scales with the square root of the pixel count).
        eps_inf: the L-inf cap in 8-bit levels (default 4); ``None``: no cap.
        ensemble: ``worst`` or ``mean`` (:mod:`blackbox.protection.ensemble`).
        sampler, proposal, step, shrink_steps, seed: the search's (:func:`blackbox.protection.search.search`).
        working_width: the working copy's width (never wider than the image); ``None``: the full size.
        jpeg_quality: ``keep`` (the input's own JPEG tables) or 1-100, for JPEG files.
        out_dir: where to write ``<name>_protected.<ext>``, ``report.md`` and ``thumbnails.png``
            (created; default ``runs/protect/<name>-<time>``).

    Returns:
        :class:`ProtectResult`.

    Raises:
        ImageLoadError: the image cannot be read. GoalError (BoxTooLargeError): a bad box or point, or
        one larger than some crop. CropperUnavailableError: a cropper cannot be loaded or reached.
        NothingToProtectError: every crop already keeps the box (nothing is written). ConfigError: a
        bad setting. All are :class:`~targets.UserError`.
    """
    started = time.perf_counter()
    if ensemble not in RULES:
        raise ConfigError(f"ensemble must be one of {', '.join(RULES)}, got {ensemble!r}")
    if int(budget) <= 0:
        raise ConfigError(f"budget must be a positive number of queries, got {budget}")
    jpeg_quality = check_quality(jpeg_quality)
    cap = None if eps_inf is None else float(eps_inf) / 255.0
    perturbation = PerturbationBudget(eps=float(eps), norm="l2", eps_inf=cap)
    perturbation.check_quantisable()
    transforms = transforms or TransformRange()
    ratios = tuple(float(r) for r in aspect_ratios)
    if not ratios or any(not (r > 0 and math.isfinite(r)) for r in ratios):
        raise ConfigError(f"aspect_ratios must be positive numbers (height/width), got {list(aspect_ratios)}")
    path = Path(image)
    full = load_image(path, working_width=None)
    size = (full.width, full.height)
    if working_width is not None and working_width < full.width:
        work = load_image(path, working_width=int(working_width))
    else:
        work = full
    region = _box_from(box, point, size)
    check_box_fits(region, size, ratios)

    loaded, skipped = load_croppers(croppers, ratios, cropper_settings)
    report_transforms = transforms.corners(size)
    verification: dict[str, int] = {}
    before, before_served = served_verdicts(full.pixels, region, loaded, report_transforms, verification)
    if all(v.kept for verdicts in before.values() for v in verdicts):
        raise NothingToProtectError(
            f"every crop of every cropper ({', '.join(loaded)}) already keeps the box "
            f"{[round(v, 1) for v in region]} on {path.name} after every treatment "
            f"({', '.join(t.name for t in report_transforms)}): nothing to protect, nothing written"
        )

    work_size = (work.width, work.height)
    samples = [t.at_working_scale(size, work_size) for t in transforms.search_samples(size)]
    samples = list({t.name: t for t in samples}.values())  # two corners may coincide at working scale
    found = search(
        work.pixels,
        goal=box_goal(region, work_size, size),
        croppers=loaded,
        transforms=samples,
        budget=perturbation,
        queries=int(budget),
        rule=ensemble,  # type: ignore[arg-type]
        proposal=proposal,
        sampler=sampler,
        step=float(step),
        shrink_steps=int(shrink_steps),
        seed=int(seed),
    )

    protected = full_size_adversarial(full.pixels, work.pixels, found.adversarial, perturbation)
    out = (
        Path(out_dir)
        if out_dir is not None
        else Path("runs") / "protect" / f"{path.stem}-{time.strftime('%Y%m%d-%H%M%S')}"
    )
    out.mkdir(parents=True, exist_ok=True)
    written = write_protected(path, full.pixels, protected, out, jpeg_quality=jpeg_quality)
    served_back = load_image(written.path, working_width=None).pixels
    after, after_served = served_verdicts(served_back, region, loaded, report_transforms, verification)
    kept = all(v.kept for verdicts in after.values() for v in verdicts)
    norms = {"computed": _norms(full.pixels, protected), "written": _norms(full.pixels, served_back)}
    full_budget = full_size_budget(perturbation, work_size, size)

    picture = out / "thumbnails.png"
    harshest = report_transforms[0].name
    write_picture(
        picture,
        before={
            n: (before_served[harshest][0], before[(n, harshest)], before_served[harshest][1]) for n in loaded
        },
        after={
            n: (after_served[harshest][0], after[(n, harshest)], after_served[harshest][1]) for n in loaded
        },
    )
    report = out / "report.md"
    result = ProtectResult(
        image=written.path,
        report=report,
        picture=picture,
        written=written,
        kept=kept,
        before=before,
        after=after,
        norms=norms,
        queries=dict(found.queries),
        verification_queries=verification,
        queries_to_kept=found.queries_to_kept,
        search_kept=found.kept,
        skipped=skipped,
    )
    result.seconds = time.perf_counter() - started
    write_report(
        report,
        title=f"Protection of {path.name}",
        sections=_sections(
            result,
            path,
            region,
            size,
            work_size,
            ratios,
            transforms,
            samples,
            perturbation,
            full_budget,
            ensemble,
            harshest,
        ),
    )
    return result


def _sections(
    result: ProtectResult,
    source: Path,
    region: Sequence[float],
    size: tuple[int, int],
    work_size: tuple[int, int],
    ratios: Sequence[float],
    transforms: TransformRange,
    samples: Sequence[PlatformTransform],
    perturbation: PerturbationBudget,
    full_budget: PerturbationBudget,
    ensemble: str,
    harshest: str,
) -> list[tuple[str, str]]:
    verdict = (
        "kept in every crop of every cropper after every treatment"
        if result.kept
        else (
            "NOT kept everywhere: cut by "
            + ", ".join(
                sorted({f"{c} ({t})" for (c, t), vs in result.after.items() if not all(v.kept for v in vs)})
            )
        )
    )
    quality = result.written.quality
    fmt = result.written.format + (
        ""
        if quality is None
        else " at "
        + (
            "the input's own quantisation tables (quality kept)"
            if quality == "keep"
            else f"quality {quality}"
        )
    )
    summary = [
        f"- input: `{source}` ({size[0]}x{size[1]} px as shown); box `{[round(v, 1) for v in region]}`",
        f"- written: `{result.image.name}` ({fmt}; ICC profile and EXIF kept)"
        + (f"; {result.written.note}" if result.written.note else ""),
        f"- verdict: the box is **{verdict}**",
        f"- croppers: {', '.join(sorted({c for c, _ in result.before}))}"
        + "".join(f"; {name} {why}" for name, why in result.skipped.items()),
        f"- aspect ratios (height/width): {', '.join(f'{r:g}' for r in ratios)}",
        f"- platform treatments: {transforms.describe()}; the report serves each of: "
        f"{', '.join(sorted({t for _, t in result.before}))}; the search scored each candidate after: "
        f"{', '.join(t.name for t in samples)} (at the {work_size[0]}x{work_size[1]} working copy's scale)",
        f"- budget: {perturbation} at the working copy, {full_budget} at the original size; "
        f"ensemble rule `{ensemble}`",
        f"- time: {result.seconds:.1f} s",
    ]
    rows = ["| image | L2 | L-inf (levels) | PSNR (dB) | SSIM |", "|---|---|---|---|---|"]
    for label, key in (
        ("as computed (8-bit, before encoding)", "computed"),
        ("the file as written, decoded", "written"),
    ):
        n = result.norms[key]
        rows.append(f"| {label} | {n['l2']:.2f} | {n['linf_levels']:g} | {n['psnr']:.1f} | {n['ssim']:.4f} |")
    names = list(result.queries)
    queries = ["| cropper | search queries | report queries |", "|---|---|---|"]
    queries += [f"| {n} | {result.queries[n]} | {result.verification_queries.get(n, 0)} |" for n in names]
    queries.append(f"| all | {sum(result.queries.values())} | {sum(result.verification_queries.values())} |")
    queries.append("")
    queries.append(
        "The search's queries are the budget's; the report's are its own measurement of the original "
        "and the protected file. "
        + (
            ""
            if result.queries_to_kept is None
            else f"The search first kept the box everywhere after {result.queries_to_kept} queries."
        )
    )
    table = kept_table(result.before, result.after, ratios)
    return [
        ("Summary", "\n".join(summary)),
        ("Does each crop keep the box? (original → protected)", table),
        ("Perturbation at the original resolution", "\n".join(rows)),
        ("Queries", "\n".join(queries)),
        (
            "Thumbnails",
            f"![thumbnails](thumbnails.png)\n\nAs served after {harshest}: per cropper, each ratio's crop "
            "of the original (left) and of the protected file (right); the box in yellow; green frame: kept, "
            "red: cut.",
        ),
    ]
