"""The Python API as ML users call it: images in every form, batches, croppers of one's own, results.

The same picture gives the same working copy, and the same attack result, in every form; a batch
gives one outcome per image; a cropper is a plain function or a ``Target`` with a public ``answer``.
"""

from __future__ import annotations

import numpy as np
import pytest
import torch
from PIL import Image

import blackbox
import targets
from blackbox.core.image_input import load_images
from targets.testing import TargetConformance

WIDTH = 160  # a small working width keeps every attack here under a second


@pytest.fixture(scope="module")
def photo() -> np.ndarray:
    from skimage.data import chelsea

    return chelsea()  # 451 x 300, uint8 RGB


def forms(photo: np.ndarray, folder) -> dict[str, object]:
    """One picture in every form a user may hold it."""
    path = folder / "image.png"  # named "image", as an in-memory image is: the same id, the same study
    Image.fromarray(photo).save(path)
    floats = photo.astype(np.float32) / 255
    chw = np.moveaxis(photo, -1, 0)
    return {
        "path": path,
        "path as str": str(path),
        "PIL": Image.fromarray(photo),
        "uint8 HWC": photo,
        "float32 HWC": floats,
        "float64 HWC": photo / 255.0,
        "uint8 CHW": chw,
        "float CHW": np.moveaxis(floats, -1, 0),
        "int64 HWC": photo.astype(np.int64),
        "torch float CHW": torch.from_numpy(np.ascontiguousarray(np.moveaxis(floats, -1, 0))),
        "torch uint8 HWC": torch.from_numpy(photo.copy()),
    }


def test_every_form_gives_the_same_working_copy(photo, tmp_path) -> None:
    reference, batch = load_images(photo, working_width=WIDTH)
    assert not batch and reference[0].pixels.shape == (106, 160, 3)
    assert np.array_equal(reference[0].original_pixels, photo)
    for name, image in forms(photo, tmp_path).items():
        (loaded,), batch = load_images(image, working_width=WIDTH)
        assert not batch, name
        assert np.array_equal(loaded.pixels, reference[0].pixels), name
        assert np.array_equal(loaded.original_pixels, photo), name
        assert loaded.image_id == "image", name


@pytest.mark.parametrize("name", ["PIL", "float32 HWC", "uint8 CHW", "torch float CHW", "path"])
def test_every_form_gives_the_same_attack(photo, tmp_path, name) -> None:
    settings = {"budget": 3, "eps": 20, "working_width": WIDTH, "seed": 3}
    reference = blackbox.attack(photo, **settings)
    outcome = blackbox.attack(forms(photo, tmp_path)[name], **settings)
    assert np.array_equal(outcome.adversarial, reference.adversarial)
    assert outcome.record["salient_point_adversarial"] == reference.record["salient_point_adversarial"]


def test_gray_and_rgba_arrays_read_as_their_files_do(photo, tmp_path) -> None:
    gray = np.asarray(Image.fromarray(photo).convert("L"))
    rgba = np.dstack([photo, np.linspace(0, 255, photo.shape[1], dtype=np.uint8)[None].repeat(300, 0)])
    for array, mode in ((gray, "L"), (rgba, "RGBA")):
        path = tmp_path / f"{mode}.png"
        Image.fromarray(array, mode).save(path)
        (from_file,), _ = load_images(path, working_width=WIDTH)
        channel_last = array[..., None] if mode == "L" else array
        for form in (array, array / 255.0, Image.fromarray(array, mode), channel_last):
            (loaded,), _ = load_images(form, working_width=WIDTH)
            assert np.array_equal(loaded.pixels, from_file.pixels), mode
    # Gray is repeated into RGB; transparent pixels are composited on white, as files are.
    (loaded,), _ = load_images(rgba, working_width=None)
    assert (loaded.pixels[:, 0] == 255).all() and np.array_equal(loaded.pixels[:, -1], photo[:, -1])


def test_a_batch_in_every_form_gives_one_outcome_per_image_in_order(photo) -> None:
    flipped = np.ascontiguousarray(photo[:, ::-1])
    nhwc = np.stack([photo, flipped]).astype(np.float32) / 255
    settings = {"budget": 3, "eps": 20, "working_width": WIDTH, "method": "tpe"}
    as_list = blackbox.attack([photo, flipped], **settings)
    assert isinstance(as_list, list) and [o.image_id for o in as_list] == ["image0", "image1"]
    for batch in (nhwc, np.moveaxis(nhwc, -1, 1), torch.from_numpy(np.moveaxis(nhwc, -1, 1).copy())):
        outcomes = blackbox.attack(batch, **settings)
        assert [o.image_id for o in outcomes] == ["image0", "image1"]
        for got, want in zip(outcomes, as_list, strict=True):
            assert np.array_equal(got.adversarial, want.adversarial)
    # Each image has its own study: the two results are not one search's twice.
    assert as_list[0].record["study"] != as_list[1].record["study"]


def test_a_photo_turned_by_its_exif_orientation_is_sized_as_shown(photo, tmp_path) -> None:
    """Coordinates are the picture's as a viewer shows it: a phone's portrait stored sideways."""
    stored = Image.fromarray(photo)  # 451 x 300 as stored
    exif = stored.getexif()
    exif[0x0112] = 6  # Orientation: rotate 90 degrees clockwise to display
    path = tmp_path / "portrait.jpg"
    stored.save(path, exif=exif, quality=95)
    (loaded,), _ = load_images(path, working_width=WIDTH)
    assert loaded.original_size == (300, 451) and loaded.original_pixels.shape == (451, 300, 3)
    assert loaded.pixels.shape == (241, 160, 3) and loaded.scale == pytest.approx((160 / 300, 241 / 451))


def test_paths_in_a_batch_keep_their_names_and_repeats_get_their_place(photo, tmp_path) -> None:
    path = tmp_path / "cat.png"
    Image.fromarray(photo).save(path)
    loaded, batch = load_images([path, path, photo], working_width=WIDTH)
    assert batch and [i.image_id for i in loaded] == ["cat", "cat-1", "image2"]


def contrast_cropper(image: np.ndarray) -> dict:
    """A cropper as a plain function: saliency is the distance from the median grey."""
    assert image.dtype == np.float32 and image.ndim == 3 and image.shape[2] == 3
    gray = image.mean(axis=2)
    return {"saliency": np.abs(gray - np.median(gray)) ** 2}


def test_a_cropper_function_is_a_target(photo) -> None:
    outcome = blackbox.attack(photo, target=contrast_cropper, budget=4, eps=20, working_width=WIDTH)
    assert outcome.record["target"] == "contrast_cropper" and outcome.queries == 4
    assert outcome.clean_output.log_density is not None  # the map was read: the margin is searched
    assert outcome.record["success_rule"] == "point"


def test_a_crops_only_function_is_judged_by_its_crops(photo) -> None:
    def crops_only(image):
        height, width = image.shape[:2]
        gray = image.mean(axis=2)
        x = float(np.argmax(np.abs(gray - gray.mean()).sum(axis=0)))
        boxes = targets.crop_boxes(width, height, (x, height / 2))
        return {"crops": [{"aspect_ratio": b.aspect_ratio, "box": b.as_list()} for b in boxes]}

    outcome = blackbox.attack(photo, target=crops_only, budget=4, eps=20, working_width=WIDTH)
    assert outcome.record["success_rule"] == "crops" and outcome.record["goal"]["source"] == "beyond_crop"
    assert outcome.record["shift_pct_distance"] is None  # no map: no profile peak to move
    assert outcome.record["point_shift_pct_distance"] is not None


@pytest.mark.parametrize(
    ("answer", "message"),
    [
        (lambda image: np.zeros(3), "returned a ndarray; a cropper function returns a dict"),
        (lambda image: {"map": 1}, "returned none of saliency, salient_point, crops"),
        (lambda image: {"saliency": image.mean(axis=2) - 0.5}, "plain array must be non-negative"),
        (lambda image: {"salient_point": (1e6, 0)}, r"salient_point: \[1000000.0, 0\] is outside"),
        (lambda image: {"crops": [{"aspect_ratio": 1.0, "box": [0, 0, 5, 5]}]}, "no crop for aspect ratio"),
    ],
)
def test_a_bad_answer_of_a_function_names_the_field(photo, answer, message) -> None:
    with pytest.raises(blackbox.ImageSkipped, match=message):
        blackbox.attack(photo, target=answer, budget=2, working_width=WIDTH)


def test_a_function_giving_a_log_density_or_a_point_is_read_as_the_protocol_says() -> None:
    image = np.random.default_rng(0).random((40, 50, 3), dtype=np.float32)
    log_map = np.log(np.full((40, 50), 1 / 2000))
    log_map[10, 30] += 3
    target = targets.FunctionTarget(lambda x: {"saliency": {"kind": "log_density", "values": log_map}})
    (output,) = target.query([image])
    assert output.salient_point == (30.0, 10.0) and target.outputs == {targets.Output.SALIENCY}
    target = targets.FunctionTarget(lambda x: {"salient_point": np.array([12, 20])}, name="pointer")
    (output,) = target.query([image])
    assert output.salient_point == (12.0, 20.0) and len(output.crops) == 4
    with pytest.raises(blackbox.ConfigError, match="outputs must name"):
        targets.FunctionTarget(lambda x: {}, outputs=["heatmap"])


class TestAFunctionTargetConforms(TargetConformance):
    """A cropper function passes the suite every zoo target passes (here one giving a map)."""

    @pytest.fixture
    def target(self):
        return targets.FunctionTarget(contrast_cropper)


class TestACropsOnlyFunctionTargetConforms(TargetConformance):
    @pytest.fixture
    def target(self):
        def crops_only(image):
            height, width = image.shape[:2]
            boxes = targets.crop_boxes(width, height, (width / 3, height / 2))
            return {"crops": [{"aspect_ratio": b.aspect_ratio, "box": b.as_list()} for b in boxes]}

        return targets.FunctionTarget(crops_only, outputs=["crops"])


class Brightest(targets.Target):
    """A Target subclass: the documented public method is ``answer``."""

    name = "brightest"

    @property
    def outputs(self):
        return frozenset({targets.Output.POINT, targets.Output.CROPS})

    def answer(self, images):
        outputs = []
        for image in images:
            height, width = image.shape[:2]
            row, col = np.unravel_index(int(np.argmax(image.sum(axis=2))), (height, width))
            point = (float(col), float(row))
            outputs.append(targets.TargetOutput(point, targets.crop_boxes(width, height, point)))
        return outputs


def test_a_target_subclass_writes_the_public_answer_method(photo) -> None:
    outcome = blackbox.attack(photo, target=Brightest(), budget=3, working_width=WIDTH)
    assert outcome.record["target"] == "brightest" and outcome.queries == 3
    with pytest.raises(TypeError, match="abstract method"):
        type("Unfinished", (targets.Target,), {})()


def test_an_outcome_is_short_shows_itself_and_saves_its_picture(photo, tmp_path, monkeypatch) -> None:
    outcome = blackbox.attack(photo, budget=3, working_width=WIDTH)
    text = repr(outcome)
    assert len(text) < 300 and "[[" not in text and "array" not in text
    for part in ("success=", "queries=3", "l2=", "linf=", "psnr=", "point=(", "goal=[", "size=451x300"):
        assert part in text, part
    shown: list = []
    monkeypatch.setattr(Image.Image, "show", lambda self, *a, **k: shown.append(self.size))
    picture = outcome.show()
    assert shown == [picture.size] and picture.width > 3 * WIDTH  # three panels side by side
    path = outcome.save(tmp_path / "deep" / "picture.png")
    with Image.open(path) as saved:
        assert saved.size == picture.size
    written = outcome.save_adversarial(tmp_path / "adversarial.png")
    with Image.open(written) as adversarial:
        assert adversarial.size == (451, 300)  # the original's size, not the working copy's


def test_coordinates_in_and_out_are_the_originals(photo) -> None:
    box = [300, 20, 360, 280]  # in the 451 x 300 original
    outcome = blackbox.attack(photo, goal_box=box, budget=3, working_width=WIDTH)
    assert outcome.goal_box == pytest.approx(box, abs=1e-6)
    sx, sy = outcome.scale
    assert outcome.goal.box == pytest.approx((300 * sx, 20 * sy, 360 * sx, 280 * sy))
    assert outcome.record["original_width"] == 451 and outcome.record["width"] == WIDTH
    x, y = outcome.clean_output.salient_point  # the target's own answer, on the working copy
    assert outcome.clean_point == pytest.approx((x / sx, y / sy))


def test_every_public_error_is_importable_from_blackbox() -> None:
    """Every UserError the project defines (and ImageSkipped, AttackFailedError) is ``blackbox.X``."""
    import importlib
    import pkgutil

    for package in ("blackbox", "targets"):
        for module in pkgutil.walk_packages(importlib.import_module(package).__path__, f"{package}."):
            if module.name.split(".")[-1] in ("__main__",) or module.name.startswith("targets.serve"):
                continue
            try:
                importlib.import_module(module.name)
            except blackbox.MissingExtraError:
                continue

    def subclasses(cls):
        for sub in cls.__subclasses__():
            yield sub
            yield from subclasses(sub)

    defined = {
        c
        for c in subclasses(blackbox.UserError)
        if c.__module__.split(".")[0] in ("blackbox", "targets") and "testing" not in c.__module__
    }
    missing = sorted(c.__name__ for c in defined if getattr(blackbox, c.__name__, None) is not c)
    assert not missing, f"not importable from blackbox: {missing}"
    assert set(blackbox.__all__) >= {c.__name__ for c in defined} | {"ImageSkipped", "AttackFailedError"}
    assert blackbox.ImageSkipped is blackbox.experiment.pipeline.ImageSkipped
    assert issubclass(blackbox.UnknownChoiceError, blackbox.ConfigError)
