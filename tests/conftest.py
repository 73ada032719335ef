from __future__ import annotations

import os
from pathlib import Path

import numpy as np
import pytest

REPO = Path(__file__).resolve().parents[1]
SHARED_MODELS = REPO.parent / "shared" / "models"

# Tests read model files only from ../shared/models (or BLACKBOX_MODELS) and never download.
os.environ.setdefault("BLACKBOX_MODELS", str(SHARED_MODELS))
os.environ["BLACKBOX_OFFLINE"] = "1"


@pytest.fixture
def photo() -> np.ndarray:
    """A small real photograph (scikit-image's chelsea), uint8, 160 px wide."""
    import skimage.data
    from PIL import Image

    image = Image.fromarray(skimage.data.chelsea()).resize((160, 106), Image.Resampling.BICUBIC)
    return np.asarray(image, dtype=np.uint8).copy()
