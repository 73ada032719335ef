"""The second round of fault kinds users hit (issue 29), each on inputs made here, plus the shared
cases in ``../shared/cases2/`` when present.

1 colour profiles, 2 metadata bombs, 3 HTTP answers that never end, 4 HTTP redirects, 5 storage this
Optuna cannot read, 6 the Python API's resume, 7 a sweep's table, 8 run folders the system refuses,
9 a refused run leaves nothing; and the API's ``target.*`` settings.
"""

from __future__ import annotations

import io
import struct
import zlib
from pathlib import Path

import numpy as np
import pytest
from PIL import Image, ImageCms, PngImagePlugin

from blackbox.core.images import ImageLoadError, load_image
from tests.test_faults import quiet_run

CASES2 = Path(__file__).resolve().parents[2] / "shared" / "cases2"


# --- Kind 1: colour profiles -----------------------------------------------------------------

# Adobe RGB (1998) and sRGB primaries adapted to D50 (the ICC connection space), and their curves.
ADOBE_RGB = np.array([[0.60974, 0.20528, 0.14919], [0.31111, 0.62567, 0.06322], [0.01947, 0.06087, 0.74457]])
SRGB = np.array([[0.43607, 0.38515, 0.14307], [0.22249, 0.71687, 0.06061], [0.01392, 0.09708, 0.71410]])
ADOBE_GAMMA = 563 / 256
D50 = (0.9642, 1.0, 0.8249)


def _s15(value: float) -> bytes:
    return struct.pack(">i", round(value * 65536))


def _xyz(x: float, y: float, z: float) -> bytes:
    return b"XYZ \0\0\0\0" + _s15(x) + _s15(y) + _s15(z)


def _curve(gamma: float) -> bytes:
    return b"curv\0\0\0\0" + struct.pack(">IH", 1, round(gamma * 256)) + b"\0\0"


def _desc(text: str) -> bytes:
    ascii_text = text.encode() + b"\0"
    return b"desc\0\0\0\0" + struct.pack(">I", len(ascii_text)) + ascii_text + b"\0" * 8 + b"\0\0\0" + b"\0" * 67


def icc_profile(space: str, tags: dict[bytes, bytes]) -> bytes:
    """A version 2 display ICC profile with ``tags`` (matrix and curves, or a gray curve)."""
    entries, data = [], b""
    offset = 128 + 4 + 12 * len(tags)
    for signature, body in tags.items():
        body += b"\0" * (-len(body) % 4)
        entries.append(struct.pack(">4sII", signature, offset + len(data), len(body)))
        data += body
    size = offset + len(data)
    header = (
        struct.pack(">I4sI4s4s4s", size, b"\0\0\0\0", 0x02100000, b"mntr", space.ljust(4).encode(), b"XYZ ")
        + b"\0" * 12
        + b"acsp"
        + b"\0" * 24
        + struct.pack(">I", 0)  # rendering intent: perceptual
        + _s15(D50[0])
        + _s15(D50[1])
        + _s15(D50[2])
        + b"\0" * 48
    )
    assert len(header) == 128
    return header + struct.pack(">I", len(tags)) + b"".join(entries) + data


def adobe_rgb_profile() -> bytes:
    columns = ADOBE_RGB.T
    return icc_profile(
        "RGB",
        {
            b"desc": _desc("Adobe RGB (1998) test profile"),
            b"wtpt": _xyz(*D50),
            b"rXYZ": _xyz(*columns[0]),
            b"gXYZ": _xyz(*columns[1]),
            b"bXYZ": _xyz(*columns[2]),
            b"rTRC": _curve(ADOBE_GAMMA),
            b"gTRC": _curve(ADOBE_GAMMA),
            b"bTRC": _curve(ADOBE_GAMMA),
        },
    )


def linear_gray_profile() -> bytes:
    return icc_profile("GRAY", {b"desc": _desc("linear gray"), b"wtpt": _xyz(*D50), b"kTRC": _curve(1.0)})


def srgb_encode(linear: np.ndarray) -> np.ndarray:
    linear = np.clip(linear, 0.0, 1.0)
    return np.where(linear <= 0.0031308, 12.92 * linear, 1.055 * linear ** (1 / 2.4) - 0.055)


def adobe_to_srgb(pixels: np.ndarray) -> np.ndarray:
    """What a colour-managed viewer shows for Adobe RGB numbers, computed here from the primaries."""
    linear = (pixels.astype(np.float64) / 255.0) ** ADOBE_GAMMA
    shown = srgb_encode(linear @ ADOBE_RGB.T @ np.linalg.inv(SRGB).T)
    return np.rint(shown * 255.0)


PATCHES = np.array(
    [[200, 60, 60], [60, 180, 90], [90, 90, 200], [128, 128, 128], [240, 220, 40], [30, 30, 30]], np.uint8
)


def patch_image() -> np.ndarray:
    """Six saturated and gray 16 x 16 patches in a 48 x 32 picture."""
    return np.kron(PATCHES.reshape(2, 3, 3), np.ones((16, 16, 1), np.uint8)).astype(np.uint8)


@pytest.mark.parametrize(
    ("suffix", "options"),
    [(".png", {}), (".tif", {}), (".webp", {"lossless": True}), (".jpg", {"quality": 95})],
)
def test_an_embedded_profile_becomes_the_srgb_a_viewer_shows(tmp_path, suffix, options) -> None:
    path = tmp_path / f"adobe{suffix}"
    Image.fromarray(patch_image()).save(path, icc_profile=adobe_rgb_profile(), **options)
    raw = np.asarray(Image.open(path).convert("RGB")).astype(np.float64)  # the file's own numbers
    loaded = load_image(path, working_width=None).pixels.astype(np.float64)
    assert np.abs(loaded - adobe_to_srgb(raw)).max() <= 2
    assert np.abs(loaded - raw).max() > 30  # the raw numbers are not what a viewer shows


def test_a_gray_profile_and_transparency_are_applied_before_compositing(tmp_path) -> None:
    gray = tmp_path / "gray.png"
    Image.new("L", (40, 40), 128).save(gray, icc_profile=linear_gray_profile())
    shown = round(float(srgb_encode(np.array(128 / 255))) * 255)  # linear 128 is sRGB 188
    assert np.abs(load_image(gray, working_width=None).pixels.astype(int) - shown).max() <= 1

    rgba = np.zeros((40, 40, 4), np.uint8)
    rgba[..., :3], rgba[..., 3] = (200, 60, 60), 128
    path = tmp_path / "half.png"
    Image.fromarray(rgba, "RGBA").save(path, icc_profile=adobe_rgb_profile())
    expected = adobe_to_srgb(np.array([[200, 60, 60]])) * 128 / 255 + 255 * (1 - 128 / 255)
    assert np.abs(load_image(path, working_width=None).pixels[0, 0] - expected[0]).max() <= 2


def test_a_profile_that_does_not_fit_the_pixels_is_ignored_and_a_damaged_one_refused(tmp_path) -> None:
    path = tmp_path / "mismatch.png"
    Image.fromarray(patch_image()).save(path, icc_profile=linear_gray_profile())  # gray profile, RGB data
    assert np.array_equal(load_image(path, working_width=None).pixels, patch_image())
    damaged = tmp_path / "damaged.png"
    Image.fromarray(patch_image()).save(damaged, icc_profile=adobe_rgb_profile()[:100])
    with pytest.raises(ImageLoadError, match=r"ICC colour profile cannot be read.*re-save it .*sRGB"):
        load_image(damaged)


def test_the_attacked_and_written_image_is_the_displayed_one_and_says_srgb(tmp_path) -> None:
    source = tmp_path / "adobe.png"
    Image.fromarray(np.kron(patch_image(), np.ones((4, 4, 1), np.uint8))).save(
        source, icc_profile=adobe_rgb_profile()
    )
    summary, _ = quiet_run(tmp_path / "run", f"image={source}", "budget=3", "working_width=192")
    (record,) = summary.records
    written = Image.open(tmp_path / "run" / "adversarial" / f"{record['image']}.png")
    assert written.info.get("srgb") == 0 and "icc_profile" not in written.info
    displayed = adobe_to_srgb(np.asarray(Image.open(source).convert("RGB")))
    l2 = np.linalg.norm((np.asarray(written, np.float64) - displayed) / 255.0)
    assert l2 <= record["eps"] + 0.05  # within eps of what a viewer shows (a level of rounding aside)


@pytest.mark.skipif(not (CASES2 / "adobergb_tagged.png").exists(), reason="../shared/cases2 not beside the clone")
def test_shared_case_adobe_rgb_is_read_as_displayed() -> None:
    path = CASES2 / "adobergb_tagged.png"
    with Image.open(path) as image:
        profile = ImageCms.ImageCmsProfile(io.BytesIO(image.info["icc_profile"]))
        shown = ImageCms.profileToProfile(image, profile, ImageCms.createProfile("sRGB"), outputMode="RGB")
    assert np.array_equal(load_image(path, working_width=None).pixels, np.asarray(shown))


# --- Kind 2: metadata bombs ------------------------------------------------------------------


def _png_with_chunk(pixels: np.ndarray, chunk_type: bytes, data: bytes) -> bytes:
    """A PNG of ``pixels`` with one extra chunk before its image data."""
    buffer = io.BytesIO()
    Image.fromarray(pixels).save(buffer, format="PNG")
    png = buffer.getvalue()
    chunk = struct.pack(">I", len(data)) + chunk_type + data
    chunk += struct.pack(">I", zlib.crc32(chunk_type + data))
    at = png.index(b"IDAT") - 4
    return png[:at] + chunk + png[at:]


@pytest.mark.parametrize(
    ("chunk_type", "data"),
    [
        (b"zTXt", b"Comment\0\0" + zlib.compress(b"x" * (16 << 20))),
        (b"iTXt", b"Comment\0\x01\0\0\0" + zlib.compress(b"x" * (16 << 20))),
        (b"iCCP", b"ICC Profile\0\0" + zlib.compress(b"\0" * (16 << 20))),
    ],
    ids=["zTXt", "iTXt", "iCCP"],
)
def test_an_oversized_metadata_chunk_is_named_not_called_damaged(tmp_path, photo, chunk_type, data) -> None:
    path = tmp_path / "bomb.png"
    path.write_bytes(_png_with_chunk(photo, chunk_type, data))
    with pytest.raises(ImageLoadError) as info:
        load_image(path)
    message = str(info.value)
    assert f"its {chunk_type.decode()} chunk" in message and "metadata decompression bomb" in message
    assert "re-save the pixels without" in message and "damaged" not in message


def test_text_chunks_over_the_total_limit_are_named(tmp_path, photo, monkeypatch) -> None:
    monkeypatch.setattr(PngImagePlugin, "MAX_TEXT_MEMORY", 1 << 16)
    info = PngImagePlugin.PngInfo()
    for number in range(3):
        info.add_text(f"note{number}", "y" * 30_000)
    path = tmp_path / "notes.png"
    Image.fromarray(photo).save(path, pnginfo=info)
    with pytest.raises(ImageLoadError, match=r"its text chunks together would expand past .*0.0625 MiB"):
        load_image(path)


@pytest.mark.skipif(not (CASES2 / "ztxt_bomb.png").exists(), reason="../shared/cases2 not beside the clone")
def test_shared_case_ztxt_bomb_is_named() -> None:
    with pytest.raises(ImageLoadError, match=r"its zTXt chunk .*metadata decompression bomb"):
        load_image(CASES2 / "ztxt_bomb.png")
