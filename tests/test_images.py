"""Bad and unusual image files: each is read correctly or refused with a clear reason."""

from __future__ import annotations

import io
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from blackbox.core.datasets import folder_sources, iterate
from blackbox.core.images import ImageLoadError, load_image


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
    (tmp_path / "notes.txt").write_text("not an image")
    (tmp_path / ".DS_Store").write_bytes(b"\0")
    sources = folder_sources(tmp_path)
    assert [s.image_id for s in sources] == ["b", "c", "notes", "sub__a"]  # hidden files only are passed
    results = {s.image_id: r for s, r in iterate(sources, 80)}
    assert isinstance(results["c"], ImageLoadError)
    assert isinstance(results["notes"], ImageLoadError) and "notes.txt" in str(results["notes"])
    assert not isinstance(results["b"], ImageLoadError) and not isinstance(results["sub__a"], ImageLoadError)


def test_empty_folder_is_a_clear_error(tmp_path) -> None:
    with pytest.raises(ImageLoadError, match="no image files"):
        folder_sources(tmp_path)


# --- Fault kind 1: every mode decodes to the RGB a viewer shows, from the file's declared depth ---

CASES = Path(__file__).resolve().parents[2] / "shared" / "cases"


def _viewer_cases() -> list[tuple[str, Image.Image, dict, tuple[int, int, int]]]:
    """(id, image, save options, the RGB a viewer shows at pixel (1, 1)) per mode, keyed or not."""
    deep = np.full((40, 40), 200, dtype=np.uint16)  # a near-black 16-bit picture: 200/65535
    deep_keyed = deep.copy()
    deep_keyed[1, 1] = 7
    grey = np.full((40, 40), 90, dtype=np.uint8)
    grey[1, 1] = 10
    rgb = np.full((40, 40, 3), (200, 30, 60), dtype=np.uint8)
    rgb[1, 1] = (1, 2, 3)
    rgba = np.dstack([rgb, np.full((40, 40), 255, np.uint8)])
    rgba[1, 1, 3] = 0
    la = np.dstack([grey, np.full((40, 40), 255, np.uint8)])
    la[1, 1] = (0, 128)  # black at half alpha on white: 127
    palette = Image.fromarray(rgb).convert("P", palette=Image.Palette.ADAPTIVE, colors=4)
    palette_key = palette.getpixel((1, 1))
    one = Image.fromarray(grey > 50)
    return [
        ("I;16 dark", Image.fromarray(deep), {}, (1, 1, 1)),
        ("I;16 key", Image.fromarray(deep_keyed), {"transparency": 7}, (255, 255, 255)),
        ("L", Image.fromarray(grey), {}, (10, 10, 10)),
        ("L key", Image.fromarray(grey), {"transparency": 10}, (255, 255, 255)),
        ("1", one, {}, (0, 0, 0)),
        ("RGB", Image.fromarray(rgb), {}, (1, 2, 3)),
        ("RGB key", Image.fromarray(rgb), {"transparency": (1, 2, 3)}, (255, 255, 255)),
        ("RGBA", Image.fromarray(rgba, "RGBA"), {}, (255, 255, 255)),
        ("LA", Image.fromarray(la, "LA"), {}, (127, 127, 127)),
        ("P key", palette, {"transparency": palette_key}, (255, 255, 255)),
    ]


@pytest.mark.parametrize(
    ("name", "image", "options", "shown"), _viewer_cases(), ids=lambda v: v if isinstance(v, str) else ""
)
def test_every_mode_decodes_to_what_a_viewer_shows(tmp_path, name, image, options, shown) -> None:
    path = save(image, tmp_path / "x.png", **options)
    loaded = load_image(path, working_width=None)
    assert tuple(int(v) for v in loaded.pixels[1, 1]) == pytest.approx(shown, abs=1), name


def test_deep_data_is_scaled_by_the_declared_depth_not_the_brightest_pixel(tmp_path) -> None:
    dark = np.full((40, 40), 200, dtype=np.uint16)
    for suffix in (".png", ".tif", ".ppm"):
        loaded = load_image(save(Image.fromarray(dark), tmp_path / f"dark{suffix}"), working_width=None)
        assert loaded.pixels.max() <= 1, suffix  # near black, not the mid-grey a 255 scale gives
    wide = np.full((40, 40), 2**31 - 1, dtype=np.int32)  # a 32-bit TIFF at full scale is white
    loaded = load_image(save(Image.fromarray(wide, "I"), tmp_path / "wide.tif"), working_width=None)
    assert loaded.pixels.min() == 255
    from blackbox.core.images import to_rgb

    with Image.open(tmp_path / "wide.tif") as opened:  # as the HTTP server decodes a request body
        assert np.asarray(to_rgb(opened)).min() == 255
    floats = np.full((40, 40), 0.5, dtype=np.float32)  # floats are [0, 1]
    loaded = load_image(save(Image.fromarray(floats, "F"), tmp_path / "f.tif"), working_width=None)
    assert np.abs(loaded.pixels.astype(int) - 128).max() <= 1


def test_premultiplied_and_converted_modes(tmp_path) -> None:
    from blackbox.core.images import to_rgb

    premultiplied = Image.fromarray(
        np.dstack([np.full((4, 4), 50, np.uint8), np.full((4, 4), 100, np.uint8)]), "LA"
    )
    premultiplied = Image.frombytes("La", (4, 4), premultiplied.tobytes())
    # 50 premultiplied by alpha 100 is 127.5 straight; on white at alpha 100/255: about 205.
    assert abs(int(np.asarray(to_rgb(premultiplied))[0, 0, 0]) - 205) <= 2
    for mode in ("CMYK", "YCbCr", "LAB", "HSV", "RGBX", "RGBa"):
        assert to_rgb(Image.new(mode, (4, 4))).mode == "RGB"


@pytest.mark.skipif(not (CASES / "gray16_dark.png").exists(), reason="../shared/cases not beside the clone")
def test_shared_case_gray16_dark_stays_dark() -> None:
    assert load_image(CASES / "gray16_dark.png").pixels.max() <= 1


# --- Fault kind 3: limits hold at the size actually processed, before any work ---


def test_a_strip_over_the_limit_at_working_width_is_refused_before_resizing(tmp_path, monkeypatch) -> None:
    path = save(Image.new("RGB", (32, 8000), (9, 9, 9)), tmp_path / "strip.png")
    resized = []
    monkeypatch.setattr(Image.Image, "resize", lambda self, *a, **k: resized.append(a))
    with pytest.raises(ImageLoadError, match="640x160000 px at working_width=640, over the 80,000,000"):
        load_image(path, working_width=640)
    assert not resized  # refused before a single pixel was allocated
    assert load_image(path, working_width=None).pixels.shape == (8000, 32, 3)  # fine at its own size


@pytest.mark.skipif(not (CASES / "strip_32x8000.png").exists(), reason="../shared/cases not beside the clone")
def test_shared_case_strip_is_refused_with_its_reason() -> None:
    with pytest.raises(ImageLoadError, match="pixel limit"):
        load_image(CASES / "strip_32x8000.png")


# --- Fault kind 4: nothing dropped silently ---


def test_an_animation_is_refused_not_cut_to_its_first_frame(tmp_path) -> None:
    frames = [Image.new("RGB", (40, 40), c) for c in ((0, 0, 0), (255, 0, 0), (0, 0, 255))]
    path = tmp_path / "anim.gif"
    frames[0].save(path, save_all=True, append_images=frames[1:], duration=100)
    with pytest.raises(ImageLoadError, match=r"3 frames.*export the frame you mean"):
        load_image(path)
    still = save(frames[1], tmp_path / "still.gif")
    assert load_image(still, working_width=None).pixels[0, 0].tolist() == [255, 0, 0]
    pages = tmp_path / "pages.tif"  # a multi-page TIFF is refused the same way
    frames[0].save(pages, save_all=True, append_images=frames[1:])
    with pytest.raises(ImageLoadError, match="3 frames"):
        load_image(pages)
    # A phone's JPEG (MPO) holds its photo then previews: the photo is used, not refused.
    phone = tmp_path / "phone.jpg"
    Image.new("RGB", (64, 64), (200, 10, 10)).save(
        phone, "MPO", save_all=True, append_images=[Image.new("RGB", (32, 32))]
    )
    assert load_image(phone, working_width=None).pixels.shape == (64, 64, 3)


@pytest.mark.skipif(
    not (CASES / "animated_title_card.gif").exists(), reason="../shared/cases not beside the clone"
)
def test_shared_case_animated_gif_is_refused() -> None:
    with pytest.raises(ImageLoadError, match="frames"):
        load_image(CASES / "animated_title_card.gif")


def test_a_file_of_an_unlisted_format_is_a_skipped_source_not_a_vanished_one(tmp_path, photo) -> None:
    save(Image.fromarray(photo), tmp_path / "a.png")
    (tmp_path / "a.avif").write_bytes(b"\0\0\0\x1cftypavif" + bytes(64))  # not decodable here
    sources = folder_sources(tmp_path)
    assert sorted(s.image_id for s in sources) == ["a.avif", "a.png"]  # one id each, neither lost
    results = {s.image_id: r for s, r in iterate(sources, 80)}
    assert not isinstance(results["a.png"], ImageLoadError)
    assert isinstance(results["a.avif"], ImageLoadError) and "a.avif" in str(results["a.avif"])
