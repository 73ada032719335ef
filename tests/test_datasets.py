"""Dataset sources: CAT2000 in its published layout and through pysaliency's loader (never downloading)."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from blackbox.core.datasets import sources_from_config
from blackbox.core.images import ImageLoadError


def _image(path: Path, seed: int) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    pixels = np.random.default_rng(seed).integers(0, 255, (48, 64, 3), dtype=np.uint8)
    Image.fromarray(pixels).save(path)


@pytest.fixture
def cat2000(tmp_path: Path) -> Path:
    stimuli = tmp_path / "CAT2000" / "trainSet" / "Stimuli"
    _image(stimuli / "Action" / "002.jpg", 0)
    _image(stimuli / "Action" / "001.jpg", 1)
    _image(stimuli / "Sketch" / "001.jpg", 2)
    _image(stimuli / "Action" / "Output" / "001_SaliencyMap.jpg", 3)  # maps, not stimuli
    return tmp_path / "CAT2000"


@pytest.mark.parametrize("where", ["", "trainSet", "trainSet/Stimuli"])
def test_cat2000_published_layout(cat2000: Path, where: str) -> None:
    sources = sources_from_config(image=None, dataset={"kind": "cat2000", "path": str(cat2000 / where)})
    assert [s.image_id for s in sources] == ["Action__001", "Action__002", "Sketch__001"]
    assert all(s.load(64).width == 64 for s in sources)


def test_cat2000_wrong_folder_says_what_layout_is_expected(tmp_path: Path) -> None:
    _image(tmp_path / "flat" / "a.jpg", 0)
    with pytest.raises(ImageLoadError, match=r"trainSet/Stimuli/<Category>"):
        sources_from_config(image=None, dataset={"kind": "cat2000", "path": str(tmp_path / "flat")})


def test_pysaliency_cat2000_reads_a_prepared_cache(cat2000: Path, tmp_path: Path) -> None:
    pysaliency = pytest.importorskip("pysaliency", reason="needs the extra distill (make test-distill)")

    files = sorted((cat2000 / "trainSet" / "Stimuli").glob("*/*.jpg"))
    prepared = tmp_path / "cache" / "CAT2000_train_v1.1"
    prepared.mkdir(parents=True)
    pysaliency.FileStimuli([str(f) for f in files]).to_hdf5(str(prepared / "stimuli.hdf5"))
    fixations = pysaliency.Fixations.create_without_history(
        x=np.array([10.0, 20.0]), y=np.array([5.0, 6.0]), n=np.array([0, 1])
    )
    fixations.to_hdf5(str(prepared / "fixations.hdf5"))
    sources = sources_from_config(
        image=None, dataset={"kind": "cat2000_pysaliency", "path": str(tmp_path / "cache")}
    )
    assert [s.image_id for s in sources] == ["Action__001", "Action__002", "Sketch__001"]
    assert sources[0].load(None).width == 64


def test_pysaliency_cat2000_refuses_to_download(tmp_path: Path) -> None:
    with pytest.raises(ImageLoadError, match=r"stimuli\.hdf5 missing"):
        sources_from_config(image=None, dataset={"kind": "cat2000_pysaliency", "path": str(tmp_path)})
    assert not list(tmp_path.iterdir())  # nothing was created, let alone fetched
