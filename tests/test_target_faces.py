"""``target=faces``: OpenCV face detection, else corners, else the centre, as thumbor's detectors."""

from __future__ import annotations

import cv2  # a core dependency: missing is a failure, not a skip
import numpy as np
import pytest
import skimage.data
from PIL import Image

from targets import ConfigError, Output, crop_boxes, load
from targets.faces import FaceFocus, FocalPoint, opencv_version
from targets.testing import TargetConformance


class TestFacesConformance(TargetConformance):
    @pytest.fixture
    def target(self) -> FaceFocus:
        return FaceFocus()


def _astronaut(width: int = 512) -> np.ndarray:
    picture = Image.fromarray(skimage.data.astronaut()).resize((width, width))
    return np.asarray(picture, dtype=np.float32) / 255


class FakeCascade:
    """Stands in for the Haar cascade: answers the given face boxes."""

    def __init__(self, faces: list[tuple[int, int, int, int]]) -> None:
        self.faces = faces

    def detectMultiScale(self, grey, *args, **kwargs):
        return np.array(self.faces, dtype=np.int32).reshape(-1, 4)


def test_the_cascades_ship_inside_the_wheel() -> None:
    assert (int(opencv_version().split(".")[0]), int(opencv_version().split(".")[1])) >= (4, 8)
    assert FaceFocus()._cascade is not None
    assert FaceFocus(cascade="haarcascade_frontalface_default.xml")._cascade.empty() is False


def test_finds_the_astronauts_face() -> None:
    image = _astronaut()
    target = FaceFocus()
    points = target.focal_points(image)
    assert [p.origin for p in points] == ["face"]
    # Eileen Collins' face in scikit-image's astronaut: about x 180-260, y 60-160 of 512.
    x, y = target.query([image])[0].salient_point
    assert 180 <= x <= 260 and 60 <= y <= 160


def test_face_points_are_thumbors_arithmetic() -> None:
    target = FaceFocus()
    target._cascade = FakeCascade([(100, 50, 40, 40), (300, 2, 20, 20)])
    image = np.full((240, 400, 3), 0.5, dtype=np.float32)
    points = target.focal_points(image)
    # Centre moved up 12% of the height, unless that crosses the top; weight = area.
    assert points == [FocalPoint(120, int(50 - 4.8 + 20), 1600.0, "face"), FocalPoint(310, 12, 400.0, "face")]
    output = target.query([image])[0]
    expected = ((120 * 1600 + 310 * 400) // 2000, (65 * 1600 + 12 * 400) // 2000)
    assert output.salient_point == (float(expected[0]), float(expected[1]))
    assert output.crops == crop_boxes(400, 240, output.salient_point, target.aspect_ratios)


def test_without_a_face_the_corners_decide() -> None:
    image = np.full((200, 320, 3), 0.5, dtype=np.float32)
    image[40:80, 230:270] = np.kron(np.eye(2), np.ones((20, 20)))[..., None]  # a 2 x 2 checker: corners
    target = FaceFocus()
    points = target.focal_points(image)
    assert points and {p.origin for p in points} == {"corner"} and len(points) <= 20
    x, y = target.query([image])[0].salient_point
    assert 225 <= x <= 275 and 35 <= y <= 85
    narrow = target.query([image])[0].crops[-1]  # ratio 2: 100 px of 320
    assert narrow.left <= 230 and narrow.right >= 270


def test_a_flat_image_is_cropped_in_the_middle() -> None:
    image = np.full((200, 320, 3), 0.5, dtype=np.float32)
    target = FaceFocus()
    assert target.focal_points(image) == [FocalPoint(160, 100, 1.0, "centre")]
    assert target.query([image])[0].salient_point == (160.0, 100.0)


def test_gives_crops_and_its_point() -> None:
    target = FaceFocus()
    assert target.outputs == {Output.POINT, Output.CROPS} and target.gives_point


@pytest.mark.parametrize(
    ("kwargs", "match"),
    [
        ({"cascade": "haarcascade_nosuch.xml"}, r"no file .*haarcascade_frontalface_alt\.xml"),
        ({"scale_factor": 1.0}, "scale_factor"),
        ({"max_corners": 0}, "max_corners"),
        ({"quality_level": 0}, "quality_level"),
    ],
)
def test_bad_settings_are_clear_errors(kwargs, match, tmp_path) -> None:
    with pytest.raises(ValueError, match=match):
        FaceFocus(**kwargs)


def test_a_file_that_is_no_cascade_is_a_clear_error(tmp_path) -> None:
    bad = tmp_path / "bad.xml"
    bad.write_text("<opencv_storage></opencv_storage>")
    with pytest.raises(ValueError, match="not a Haar cascade"):
        FaceFocus(cascade=str(bad))
    with pytest.raises(ConfigError, match="not a Haar cascade"):
        load("faces", cascade=str(bad))


def test_in_the_zoo() -> None:
    target = load("faces", aspect_ratios=(0.56, 2.0))
    assert isinstance(target, FaceFocus)
    assert target.name == "faces" and target.aspect_ratios == (0.56, 2.0)
    assert cv2.data.haarcascades
