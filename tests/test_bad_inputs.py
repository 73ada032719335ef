"""A corpus of bad and unusual image files through ``python -m blackbox dataset=folder``.

Each file is either read correctly (RGBA, palette, 16-bit, CMYK, EXIF rotation, a huge photo, a PNG
named .jpg) or skipped with a message that names it and says what to do; the run goes on with the
rest, lists what it skipped, and its exit code says that something was.
"""

from __future__ import annotations

import io
import json
import os
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from blackbox.core.images import MAX_PIXELS
from blackbox.experiment.run import EXIT_SKIPPED
from tests.conftest import REPO


def encoded(image: Image.Image, format: str, **kwargs) -> bytes:
    buffer = io.BytesIO()
    image.save(buffer, format=format, **kwargs)
    return buffer.getvalue()


def corpus(folder: Path, photo: np.ndarray) -> None:
    """Thirteen kinds of input; the name says what each is."""
    rgb = Image.fromarray(photo)  # 160 x 106
    png, jpeg = encoded(rgb, "PNG"), encoded(rgb, "JPEG", quality=90)
    files = {
        "zero_byte.png": b"",
        "truncated.png": png[: len(png) // 2],
        "truncated.jpg": jpeg[: len(jpeg) // 2],
        "not_an_image.jpg": b"name,score\nalice,3\n" * 20,
        # 1-bit 12000 x 12000: a few kB on disk, 144 Mpx decoded, over the documented limit.
        "decompression_bomb.png": encoded(Image.new("1", (12000, 12000)), "PNG"),
        "one_pixel.png": encoded(Image.new("RGB", (1, 1), (200, 10, 10)), "PNG"),
        "sixteen_bit.png": encoded(Image.fromarray(photo[..., 1].astype(np.uint16) * 257), "PNG"),
        "cmyk.jpg": encoded(rgb.convert("CMYK"), "JPEG", quality=95),
        "rgba.png": encoded(rgb.convert("RGBA"), "PNG"),
        "palette.png": encoded(rgb.convert("P"), "PNG"),
        "exif_rotated.jpg": encoded(rgb, "JPEG", quality=95, exif=_exif(rgb, orientation=6)),
        # 6000 x 4000 (24 Mpx, under the limit): downscaled to the working width like any photo.
        "huge.png": encoded(rgb.resize((6000, 4000), Image.Resampling.NEAREST), "PNG", compress_level=1),
        "png_named.jpg": png,
    }
    for name, content in files.items():
        (folder / name).write_bytes(content)


def _exif(image: Image.Image, *, orientation: int) -> Image.Exif:
    exif = image.getexif()
    exif[0x0112] = orientation
    return exif


READ = {"sixteen_bit", "cmyk", "rgba", "palette", "exif_rotated", "huge", "png_named"}
# What each refused file's message says: what is wrong and what to do.
REFUSED = {
    "zero_byte": ["empty", "re-export", "leave it out"],
    "truncated": ["truncated", "re-export"],  # the .png and the .jpg share a stem: see below
    "not_an_image": ["not an image", "convert it"],
    "decompression_bomb": [f"{MAX_PIXELS:,}", "downscale"],
    "one_pixel": ["1x1", "too small", "32"],
}


@pytest.fixture(scope="module")
def bad_input_run(tmp_path_factory, photo_module) -> tuple[subprocess.CompletedProcess, Path, Path]:
    folder = tmp_path_factory.mktemp("corpus")
    corpus(folder, photo_module)
    (folder / "jpeg").mkdir()  # the truncated JPEG in its own folder, so the two stems stay apart
    (folder / "truncated.jpg").rename(folder / "jpeg" / "truncated.jpg")
    run_dir = tmp_path_factory.mktemp("run")
    done = subprocess.run(
        [
            sys.executable,
            "-m",
            "blackbox",
            "dataset=folder",
            f"dataset.path={folder}",
            "working_width=64",
            "budget=2",
            "batch_size=2",
            "progress=false",
            f"hydra.run.dir={run_dir}",
        ],
        cwd=REPO,
        env={**os.environ, "OMP_NUM_THREADS": "1", "HYDRA_FULL_ERROR": "0"},
        capture_output=True,
        text=True,
        timeout=300,
    )
    return done, folder, run_dir


@pytest.fixture(scope="module")
def photo_module() -> np.ndarray:
    import skimage.data

    image = Image.fromarray(skimage.data.chelsea()).resize((160, 106), Image.Resampling.BICUBIC)
    return np.asarray(image, dtype=np.uint8).copy()


def test_the_run_goes_on_and_its_exit_code_says_something_was_skipped(bad_input_run) -> None:
    done, _, run_dir = bad_input_run
    assert done.returncode == EXIT_SKIPPED, done.stderr
    assert "Traceback" not in done.stderr
    attacked = [json.loads(line)["image"] for line in (run_dir / "results.jsonl").read_text().splitlines()]
    assert sorted(attacked) == sorted(READ)


def test_every_refused_file_is_named_with_what_to_do(bad_input_run) -> None:
    done, folder, run_dir = bad_input_run
    errors = {e["image"]: e for e in map(json.loads, (run_dir / "errors.jsonl").read_text().splitlines())}
    assert set(errors) == set(REFUSED) | {"jpeg__truncated"}
    for image, error in errors.items():
        expected = REFUSED.get(image, REFUSED["truncated"])
        assert all(word in error["error"] for word in expected), error
        assert Path(error["source"]).parent in (folder, folder / "jpeg")
        assert error["source"] in done.stderr  # said on the terminal too, by file name
    # Listed in the run's summary as well, so a reader of summary.md knows what is missing.
    summary = (run_dir / "summary.md").read_text()
    assert all(f"| {image} |" in summary for image in errors)
    assert f"{len(errors)} input(s) skipped" in done.stderr


def test_unusual_files_are_read_as_a_platform_would(bad_input_run) -> None:
    _, _, run_dir = bad_input_run
    records = {r["image"]: r for r in map(json.loads, (run_dir / "results.jsonl").read_text().splitlines())}
    # All at the working width; the EXIF-rotated photo stands upright (taller than wide).
    assert {r["width"] for r in records.values()} == {64}
    assert records["exif_rotated"]["height"] > 64 and records["huge"]["height"] == 43
    adversarial = run_dir / "adversarial"
    for image in READ:
        pixels = np.asarray(Image.open(adversarial / f"{image}.png"))
        assert pixels.shape[2] == 3 and pixels.dtype == np.uint8
