"""``blackbox.protect`` / ``python -m blackbox.protect``: the ensemble objective, the original-size
round trip, format and metadata, the report, each failure, and a 2000-px photo end to end."""

from __future__ import annotations

import io
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
from PIL import Image, ImageCms

import blackbox
from blackbox import BoxTooLargeError, CropperUnavailableError, GoalError, NothingToProtectError
from blackbox.core.full_size import full_size_adversarial, full_size_budget
from blackbox.core.images import load_image
from blackbox.core.perturbation import PerturbationBudget
from blackbox.protection import (
    PairScore,
    PlatformTransform,
    TransformRange,
    aggregate,
    keep_region,
    pair_margin,
)
from blackbox.protection._protect import check_box_fits
from blackbox.protection.ensemble import box_goal
from blackbox.protection.output import inverse_orientation, shown_orientation, write_protected
from blackbox.protection.report import CropVerdict, kept_table
from targets import CropBox, FunctionTarget, crop_boxes, load

REPO = Path(__file__).resolve().parents[1]
CHEAP = ["vips_entropy", "vips_attention"]


def _photo(width: int, height: int) -> np.ndarray:
    import skimage.data

    return np.asarray(
        Image.fromarray(skimage.data.chelsea()).resize((width, height), Image.Resampling.BICUBIC)
    )


# --- the ensemble objective -------------------------------------------------------------------------


def test_the_worst_rule_follows_the_pair_that_holds_out_and_the_mean_rule_every_pair() -> None:
    scores = [PairScore(0.5, True), PairScore(-0.8, False), PairScore(0.1, True)]
    assert aggregate(scores, "worst") == pytest.approx(-0.8 + 0.01 * np.mean([0.5, -0.8, 0.1]))
    assert aggregate(scores, "mean") == pytest.approx(np.mean([0.5, -0.8, 0.1]))
    # Raising the worst pair raises "worst" even if another pair drops; "mean" weighs both.
    better = [PairScore(0.0, True), PairScore(-0.5, False), PairScore(0.1, True)]
    assert aggregate(better, "worst") > aggregate(scores, "worst")
    with pytest.raises(ValueError, match="worst, mean"):
        aggregate(scores, "median")  # type: ignore[arg-type]


def test_the_keep_region_is_where_every_policy_crop_holds_the_box() -> None:
    goal = box_goal([150, 40, 190, 80], (200, 100), (200, 100))
    region = keep_region(goal, 200, 100, (1.0, 0.56))
    ys, xs = np.nonzero(region)
    assert region.any() and not region.all()
    for x, y in [(xs.min(), ys.min()), (xs.max(), ys.max()), (0, 50), (100, 50)]:
        crops = crop_boxes(200, 100, (float(x), float(y)), (1.0, 0.56))
        assert all(goal.shown_by(c, 100, 200) for c in crops) == bool(region[y, x])


def test_a_map_croppers_margin_is_positive_exactly_when_its_crops_keep_the_box() -> None:
    target = load("classic", aspect_ratios=(1.0,))
    image = _photo(160, 106).astype(np.float32) / 255.0
    output = target.query([image])[0]
    point = output.salient_point
    far = [0, 0, 30, 30] if point[0] > 80 else [130, 0, 159, 30]
    near = [max(0, point[0] - 10), 0, min(159, point[0] + 10), 30]
    for box in (far, near):
        goal = box_goal(box, (160, 106), (160, 106))
        score = pair_margin(target, output, goal, 160, 106)
        assert (score.margin > 0) == score.kept
    crop_only = load("vips_entropy", aspect_ratios=(1.0,))
    out = crop_only.query([image])[0]
    kept_box = [out.crops[0].left + 2, 2, out.crops[0].left + 20, 20]
    score = pair_margin(crop_only, out, box_goal(kept_box, (160, 106), (160, 106)), 160, 106)
    assert score.kept and score.margin == 0.0


# --- platform treatments ----------------------------------------------------------------------------


def test_treatments_shrink_never_enlarge_and_reencode() -> None:
    pixels = _photo(400, 300)
    served = PlatformTransform(quality=75, long_side=200).apply(pixels)
    assert served.shape == (150, 200, 3)
    assert PlatformTransform(quality=None, long_side=1200).apply(pixels).shape == pixels.shape
    assert not np.array_equal(PlatformTransform(quality=75, long_side=None).apply(pixels), pixels)
    corners = TransformRange().corners((400, 300))
    assert [t.name for t in corners] == ["jpeg75", "jpeg95"]  # both sizes above the image's: one each
    # 4096 px is above this image's long side: no resize, the same as the original's size.
    assert [t.name for t in TransformRange().corners((3000, 2000))] == [
        "jpeg75@1200",
        "jpeg95@1200",
        "jpeg75",
        "jpeg95",
    ]
    assert [t.name for t in TransformRange().search_samples((3000, 2000))] == ["jpeg75@1200", "jpeg95"]
    with pytest.raises(blackbox.ConfigError, match="jpeg_quality"):
        TransformRange(qualities=(95, 75))


# --- the original-size round trip, format and metadata ----------------------------------------------


def test_the_full_size_perturbation_stays_within_the_budget_measured_at_full_size() -> None:
    original = _photo(2000, 1333)
    clean = np.asarray(Image.fromarray(original).resize((640, 427), Image.Resampling.BICUBIC))
    rng = np.random.default_rng(0)
    budget = PerturbationBudget(eps=20.0, norm="l2", eps_inf=4 / 255)
    delta = budget.project(rng.normal(0, 0.05, clean.shape))
    adversarial = budget.apply(clean, delta)
    full = full_size_adversarial(original, clean, adversarial, budget)
    moved = (full.astype(np.float64) - original) / 255.0
    at_full = full_size_budget(budget, (640, 427), (2000, 1333))
    assert full.shape == original.shape and np.any(moved != 0)
    assert at_full.fits(moved) and np.abs(moved).max() <= 4 / 255 + 1e-12


@pytest.mark.parametrize("orientation", range(1, 9))
def test_orientation_inverse(orientation: int) -> None:
    stored = np.arange(2 * 3 * 3).reshape(2, 3, 3)
    assert np.array_equal(inverse_orientation(shown_orientation(stored, orientation), orientation), stored)
    # The same turn Pillow gives a file with that tag.
    image = Image.fromarray(stored.astype(np.uint8))
    exif = Image.Exif()
    exif[0x0112] = orientation
    buffer = io.BytesIO()
    image.save(buffer, format="PNG", exif=exif)
    from PIL import ImageOps

    shown = np.asarray(ImageOps.exif_transpose(Image.open(io.BytesIO(buffer.getvalue()))))
    assert np.array_equal(shown, shown_orientation(stored, orientation))


def _write_source(path: Path, pixels: np.ndarray, fmt: str, *, orientation: int = 6) -> bytes:
    profile = ImageCms.ImageCmsProfile(ImageCms.createProfile("sRGB")).tobytes()
    exif = Image.Exif()
    exif[0x0112] = orientation
    exif[0x010F] = "TestCam"  # Make: any other tag must survive too
    Image.fromarray(pixels).save(
        path, format=fmt, exif=exif, icc_profile=profile, **({"quality": 90} if fmt == "JPEG" else {})
    )
    return profile


@pytest.mark.parametrize("fmt", ["JPEG", "PNG"])
def test_the_written_file_keeps_format_size_profile_and_orientation(tmp_path: Path, fmt: str) -> None:
    stored = _photo(300, 200)
    source = tmp_path / ("in.jpg" if fmt == "JPEG" else "in.png")
    profile = _write_source(source, stored, fmt)
    shown = load_image(source, working_width=None).pixels
    assert shown.shape == (300, 200, 3)  # orientation 6: shown turned
    delta = np.zeros_like(shown, dtype=np.int16)
    delta[10:60, 20:80] = 4
    protected = np.clip(shown.astype(np.int16) + delta, 0, 255).astype(np.uint8)
    written = write_protected(source, shown, protected, tmp_path)
    with Image.open(written.path) as out:
        assert out.format == fmt and out.size == (300, 200)
        assert out.info.get("icc_profile") == profile
        assert out.getexif().get(0x0112) == 6 and out.getexif().get(0x010F) == "TestCam"
    back = load_image(written.path, working_width=None).pixels
    change = back.astype(np.int16) - shown
    if fmt == "PNG":
        assert np.array_equal(back, protected)  # lossless, the perturbation where it was shown
    else:
        # JPEG at the input's own tables: the perturbation's block is where it was shown.
        assert change[10:60, 20:80].mean() > 2.5 and abs(change[150:, 100:].mean()) < 1.0


# --- the report -------------------------------------------------------------------------------------


def test_the_report_table_has_a_row_per_cropper_and_treatment_and_a_column_per_ratio() -> None:
    crop = CropBox(0, 0, 10, 10, 1.0)
    before = {("a", "jpeg75"): [CropVerdict(crop, False), CropVerdict(crop, True)]}
    after = {("a", "jpeg75"): [CropVerdict(crop, True), CropVerdict(crop, True)]}
    table = kept_table(before, after, [1.0, 2.0]).splitlines()
    assert table[0] == "| cropper | served as | 1 | 2 | every crop |"
    assert table[2] == "| a | jpeg75 | **cut** → kept | kept → kept | **cut** → kept |"


# --- failures ---------------------------------------------------------------------------------------


def test_a_box_larger_than_some_crop_names_the_ratio() -> None:
    with pytest.raises(BoxTooLargeError, match=r"aspect ratio .*2 \(crop 100x200"):
        check_box_fits([0, 0, 150, 150], (400, 200), (0.56, 2.0))
    check_box_fits([0, 0, 90, 90], (400, 200), (0.56, 2.0))


def test_failures_are_clear_and_write_nothing(tmp_path: Path) -> None:
    source = tmp_path / "photo.png"
    Image.fromarray(_photo(300, 200)).save(source)
    out = tmp_path / "out"
    with pytest.raises(BoxTooLargeError):
        blackbox.protect(source, box=[0, 0, 290, 190], croppers=CHEAP, out_dir=out)
    with pytest.raises(GoalError, match="outside"):
        blackbox.protect(source, box=[0, 0, 400, 50], croppers=CHEAP, out_dir=out)
    # Rows 90-110 of a 200 px tall image: every 0.56 crop (full width, 168 px tall) keeps them.
    with pytest.raises(NothingToProtectError, match="already keeps the box"):
        blackbox.protect(source, box=[140, 90, 160, 110], croppers=CHEAP, aspect_ratios=[0.56], out_dir=out)
    assert not out.exists()


def test_an_unreachable_cropper_is_named(tmp_path: Path, monkeypatch) -> None:
    monkeypatch.setenv("BLACKBOX_MODELS", str(tmp_path / "no-models"))
    source = tmp_path / "photo.png"
    Image.fromarray(_photo(300, 200)).save(source)
    with pytest.raises(CropperUnavailableError, match="twitter"):
        blackbox.protect(source, box=[0, 0, 30, 30], croppers=["twitter"], out_dir=tmp_path / "out")
    # In the default set it is left out, saying so; the others still run (here: nothing to do).
    from blackbox.protection._protect import load_croppers

    loaded, skipped = load_croppers(None, (1.0,))
    assert ("twitter" in skipped and "missing" in skipped["twitter"].lower()) or "twitter" not in loaded
    assert "classic" in loaded


def test_a_cropper_that_does_not_answer_is_named(tmp_path: Path, monkeypatch) -> None:
    from targets import TargetQueryError

    def refuse(image: np.ndarray) -> dict:
        raise TargetQueryError("connection refused")

    source = tmp_path / "photo.png"
    Image.fromarray(_photo(300, 200)).save(source)
    import blackbox.protection._protect as implementation

    monkeypatch.setattr(implementation, "load", lambda name, **kw: FunctionTarget(refuse, name="down"))
    with pytest.raises(CropperUnavailableError, match="did not answer"):
        blackbox.protect(source, box=[0, 0, 30, 30], croppers=["down"], out_dir=tmp_path / "out")


# --- end to end -------------------------------------------------------------------------------------


def test_a_2000_px_jpeg_end_to_end(tmp_path: Path) -> None:
    """A 2000-px photo, the cheap croppers, a small budget: the file at full size, the report, the
    budget kept at full size, every query counted."""
    source = tmp_path / "photo.jpg"
    Image.fromarray(_photo(2000, 1333)).save(source, quality=90)
    box = [1700, 300, 1900, 500]
    result = blackbox.protect(
        source,
        box=box,
        croppers=CHEAP,
        budget=48,
        transforms=TransformRange(qualities=(75,), long_sides=(1200,), samples=1),
        out_dir=tmp_path / "out",
    )
    with Image.open(result.image) as written:
        assert written.format == "JPEG" and written.size == (2000, 1333)
    assert sum(result.queries.values()) <= 48 and set(result.queries) == set(CHEAP)
    assert result.norms["computed"]["linf_levels"] <= 4
    assert 0 < result.norms["written"]["ssim"] <= 1
    text = result.report.read_text()
    for cropper in CHEAP:
        assert f"| {cropper} | jpeg75@1200 |" in text
    assert "SSIM" in text and "search queries" in text and result.picture.is_file()
    assert result.kept == all(v.kept for vs in result.after.values() for v in vs)


def test_the_command_writes_the_protected_file_and_report(tmp_path: Path) -> None:
    source = tmp_path / "photo.png"
    Image.fromarray(_photo(600, 400)).save(source)
    out = tmp_path / "run"
    done = subprocess.run(
        [
            sys.executable,
            "-m",
            "blackbox.protect",
            f"image={source}",
            "box=[520,300,590,390]",
            "croppers=[vips_entropy]",
            "budget=16",
            "transforms.long_side=[]",
            "transforms.jpeg_quality=[75]",
            f"hydra.run.dir={out}",
        ],
        cwd=REPO,
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert done.returncode == 0, done.stderr
    assert (out / "photo_protected.png").is_file() and (out / "report.md").is_file()
    bad = subprocess.run(
        [
            sys.executable,
            "-m",
            "blackbox.protect",
            f"image={source}",
            "box=[0,0,590,390]",
            "croppers=[vips_entropy]",
            f"hydra.run.dir={tmp_path / 'bad'}",
        ],
        cwd=REPO,
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert bad.returncode == 2 and "aspect ratio" in bad.stderr and not (tmp_path / "bad").exists()
