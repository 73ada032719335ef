from __future__ import annotations

import pytest

from targets.crop import DEFAULT_ASPECT_RATIOS, crop_box, crop_boxes


def test_wide_image_square_crop_is_centred_on_the_point() -> None:
    box = crop_box(640, 480, (320, 100), 1.0)
    assert (box.left, box.top, box.width, box.height) == (80, 0, 480, 480)


def test_window_slides_back_inside_at_the_left_edge() -> None:
    box = crop_box(640, 480, (5, 240), 1.0)
    assert box.left == 0 and box.width == 480


def test_window_slides_back_inside_at_the_right_edge() -> None:
    box = crop_box(640, 480, (639, 240), 1.0)
    assert box.right == 640 and box.width == 480


def test_ratio_below_image_ratio_keeps_full_width() -> None:
    # 0.56 < 480/640: keep the width, cut the height around y.
    box = crop_box(640, 480, (10, 400), 0.56)
    assert box.width == 640 and box.height == int(640 * 0.56)
    assert box.bottom == 480  # slid up from the bottom edge


def test_tall_crop_on_wide_image_keeps_full_height() -> None:
    box = crop_box(640, 480, (320, 240), 2.0)
    assert box.height == 480 and box.width == 240 and box.left == 200


def test_ratio_equal_to_image_ratio_is_the_whole_image() -> None:
    box = crop_box(640, 480, (10, 10), 0.75)
    assert (box.left, box.top, box.width, box.height) == (0, 0, 640, 480)


def test_vertical_image() -> None:
    box = crop_box(300, 900, (150, 800), 1.0)
    assert box.width == 300 and box.height == 300 and box.bottom == 900


def test_one_box_per_ratio_in_order() -> None:
    boxes = crop_boxes(640, 480, (320, 240))
    assert [b.aspect_ratio for b in boxes] == list(DEFAULT_ASPECT_RATIOS)


def test_contains_box() -> None:
    box = crop_box(640, 480, (100, 240), 1.0)
    assert box.contains_box((10, 10, 50, 50))
    assert not box.contains_box((500, 10, 560, 50))


@pytest.mark.parametrize("ratio", [0.0, -1.0, float("nan"), float("inf")])
def test_bad_ratio(ratio: float) -> None:
    with pytest.raises(ValueError, match="aspect ratio"):
        crop_box(640, 480, (1, 1), ratio)


def test_bad_size() -> None:
    with pytest.raises(ValueError, match="positive"):
        crop_box(0, 480, (1, 1), 1.0)


def test_a_crop_a_few_px_short_of_the_full_width_does_not_cut_it() -> None:
    from targets import CropBox, estimate_point

    # A real cropper's rounding: 638 of 640 px wide is the full width; only the rows are cut.
    crops = [CropBox(0, 100, 638, 358, 0.56), CropBox(200, 0, 480, 480, 1.0)]
    x, y = estimate_point(crops, 640, 600)
    assert x == 440.0  # the square crop's centre alone, not dragged toward the middle by the 638 px one
    assert y == pytest.approx((100 + 179 + 240) / 2)
