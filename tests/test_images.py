"""Bad and unusual image files: each is read correctly or refused with a clear reason."""

from __future__ import annotations

import io

import numpy as np
import pytest
from PIL import Image

from blackbox.datasets import folder_sources, iterate
from blackbox.images import ImageLoadError, load_image


def save(image: Image.Image, path, **kwargs):
    image.save(path, **kwargs)
    return path


def test_rgb_png_is_resized_to_the_working_width(tmp_path, photo) -> None:
    path = save(Image.fromarray(photo), tmp_path / "a.png")
    loaded = load_image(path, working_width=80)
    assert loaded.pixels.shape == (53, 80, 3) and loaded.pixels.dtype == np.uint8
    assert loaded.original_size == (160, 106)


@pytest.mark.parametrize(
    ("make", "expected_channels_equal"),
    [
        (lambda a: Image.fromarray(a).convert("L"), True),
        (lambda a: Image.fromarray(a).convert("RGBA"), False),
        (lambda a: Image.fromarray(a).convert("P"), False),
        (lambda a: Image.fromarray(a).convert("CMYK"), False),
        (lambda a: Image.fromarray(a[..., 0].astype(np.uint16) * 257), True),
    ],
    ids=["grayscale", "rgba", "palette", "cmyk", "16-bit"],
)
def test_modes_become_rgb(tmp_path, photo, make, expected_channels_equal) -> None:
    image = make(photo)
    suffix = ".jpg" if image.mode == "CMYK" else ".png"
    loaded = load_image(save(image, tmp_path / f"x{suffix}"), working_width=None)
    assert loaded.pixels.shape == (*photo.shape[:2], 3)
    same = np.array_equal(loaded.pixels[..., 0], loaded.pixels[..., 1])
    assert same == expected_channels_equal
    assert loaded.pixels.std() > 5  # content survived


def test_sixteen_bit_scale_is_kept(tmp_path, photo) -> None:
    loaded = load_image(
        save(Image.fromarray(photo[..., 0].astype(np.uint16) * 257), tmp_path / "x.png"), working_width=None
    )
    assert np.abs(loaded.pixels[..., 0].astype(int) - photo[..., 0]).max() <= 1


def test_transparent_pixels_become_white(tmp_path) -> None:
    rgba = np.zeros((40, 40, 4), dtype=np.uint8)
    loaded = load_image(save(Image.fromarray(rgba, "RGBA"), tmp_path / "t.png"), working_width=None)
    assert (loaded.pixels == 255).all()


def test_exif_rotation_is_applied(tmp_path, photo) -> None:
    image = Image.fromarray(photo)  # 160 x 106
    exif = image.getexif()
    exif[0x0112] = 6  # "rotate 90 CW to display"
    loaded = load_image(save(image, tmp_path / "r.jpg", exif=exif), working_width=None)
    assert loaded.pixels.shape[:2] == (160, 106)


@pytest.mark.parametrize(
    ("name", "content", "match"),
    [
        ("empty.png", b"", "empty"),
        ("text.png", b"this is not an image at all\n" * 10, "not an image"),
        ("truncated.png", None, "damaged or truncated"),
        ("truncated.jpg", None, "damaged or truncated"),
    ],
)
def test_unreadable_files_are_clear_errors(tmp_path, photo, name, content, match) -> None:
    path = tmp_path / name
    if content is None:
        buffer = io.BytesIO()
        Image.fromarray(photo).save(buffer, format="PNG" if name.endswith("png") else "JPEG")
        content = buffer.getvalue()[: len(buffer.getvalue()) // 2]
    path.write_bytes(content)
    with pytest.raises(ImageLoadError, match=match):
        load_image(path)


def test_tiny_image_is_refused(tmp_path) -> None:
    with pytest.raises(ImageLoadError, match="too small"):
        load_image(save(Image.new("RGB", (8, 8)), tmp_path / "tiny.png"), working_width=None)


def test_one_pixel_image_is_refused(tmp_path) -> None:
    with pytest.raises(ImageLoadError, match="too small"):
        load_image(save(Image.new("RGB", (1, 1)), tmp_path / "one.png"))


def test_decompression_bomb_is_refused(tmp_path) -> None:
    # A 1-bit 12000x12000 PNG is tiny on disk but 144 Mpx decoded.
    path = save(Image.new("1", (12000, 12000)), tmp_path / "bomb.png")
    assert path.stat().st_size < 200_000
    with pytest.raises(ImageLoadError, match="decompression bomb"):
        load_image(path)


def test_missing_file_and_folder(tmp_path) -> None:
    with pytest.raises(ImageLoadError, match="no such file"):
        load_image(tmp_path / "nope.png")
    with pytest.raises(ImageLoadError, match="not a file"):
        load_image(tmp_path)


def test_wrong_extension_is_read_by_content(tmp_path, photo) -> None:
    path = tmp_path / "photo.jpg"
    Image.fromarray(photo).save(path, format="PNG")
    assert load_image(path, working_width=None).pixels.shape == photo.shape


def test_folder_dataset_skips_bad_files_and_goes_on(tmp_path, photo) -> None:
    (tmp_path / "sub").mkdir()
    save(Image.fromarray(photo), tmp_path / "b.png")
    save(Image.fromarray(photo), tmp_path / "sub" / "a.jpg")
    (tmp_path / "c.png").write_bytes(b"")
    (tmp_path / "notes.txt").write_text("ignored")
    sources = folder_sources(tmp_path)
    assert [s.image_id for s in sources] == ["b", "c", "sub__a"]
    results = {s.image_id: r for s, r in iterate(sources, 80)}
    assert isinstance(results["c"], ImageLoadError)
    assert not isinstance(results["b"], ImageLoadError) and not isinstance(results["sub__a"], ImageLoadError)


def test_empty_folder_is_a_clear_error(tmp_path) -> None:
    with pytest.raises(ImageLoadError, match="no image files"):
        folder_sources(tmp_path)
