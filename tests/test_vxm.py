"""The ``.vxm`` reader on the released file and on damaged copies of it made here."""

from __future__ import annotations

import struct
from pathlib import Path

import numpy as np
import pytest

from targets.vxm import (
    MAGIC,
    BlurLayer,
    ConvLayer,
    PoolLayer,
    VxmFormatError,
    encode_records,
    parse_vxm,
    read_records,
    read_vxm,
)
from tests.conftest import SHARED_MODELS

FASTGAZE = SHARED_MODELS / "fastgaze.vxm"


@pytest.fixture(scope="module")
def original() -> bytes:
    if not FASTGAZE.is_file():
        pytest.skip(f"{FASTGAZE} is absent (the shared models folder holds the released fastgaze.vxm)")
    return FASTGAZE.read_bytes()


@pytest.fixture
def records(original: bytes) -> dict[str, bytes]:
    return read_records(original)


def damaged(tmp_path: Path, data: bytes, name: str = "damaged.vxm") -> Path:
    path = tmp_path / name
    path.write_bytes(data)
    return path


def test_reads_the_released_file(original: bytes) -> None:
    model = read_vxm(FASTGAZE)
    assert model.model_type == 2 and len(model.layers) == 19
    kinds = ["conv" if isinstance(layer, ConvLayer) else type(layer).__name__ for layer in model.layers]
    pools = [i for i, layer in enumerate(model.layers) if isinstance(layer, PoolLayer)]
    assert pools == [2, 5, 8, 11] and kinds.count("conv") == 14
    chain = [model.convs[0].in_channels] + [c.out_channels for c in model.convs]
    assert chain == [3, 43, 44, 49, 56, 44, 38, 31, 20, 18, 10, 7, 7, 2, 1]
    assert [c.kernel_size for c in model.convs] == [3] * 10 + [1] * 4
    assert [c.activation for c in model.convs] == ["relu"] * 10 + ["alpha"] * 4
    assert all(c.alpha is not None and 0 < c.alpha < 1 for c in model.convs[10:])
    blur = model.layers[-1]
    assert isinstance(blur, BlurLayer) and (blur.kernel_size, blur.sigma) == (19, 3.0)
    assert model.stride == 16
    assert model.convs[0].weight.dtype == np.float32 and model.convs[0].weight.shape == (43, 3, 3, 3)
    assert "conv 3x3 3->43 relu" in model.describe()


def test_encode_records_round_trips(original: bytes, records: dict[str, bytes]) -> None:
    assert len(records) == 239
    assert encode_records(records) == original


@pytest.mark.parametrize("length", [0, 3, 7, 8, 12, 20, 1000, -1, -5])
def test_truncated_files_are_clear_errors(tmp_path, original: bytes, length: int) -> None:
    path = damaged(tmp_path, original[:length])
    with pytest.raises(VxmFormatError, match=r"truncated|shorter than"):
        read_vxm(path)


def test_wrong_magic(tmp_path, original: bytes) -> None:
    with pytest.raises(VxmFormatError, match=r"not a \.vxm model file"):
        read_vxm(damaged(tmp_path, b"\x89PNG" + original[4:]))


def test_an_image_renamed_vxm_is_not_a_model(tmp_path) -> None:
    with pytest.raises(VxmFormatError, match=r"not a \.vxm model file.*PNG"):
        read_vxm(damaged(tmp_path, b"\x89PNG\r\n\x1a\n" + bytes(200), "photo.vxm"))


def test_record_count_too_small_leaves_bytes_over(tmp_path, original: bytes) -> None:
    data = bytearray(original)
    struct.pack_into("<I", data, 4, 238)
    with pytest.raises(VxmFormatError, match="bytes follow the last"):
        read_vxm(damaged(tmp_path, bytes(data)))


def test_record_count_too_large_is_truncated(tmp_path, original: bytes) -> None:
    data = bytearray(original)
    struct.pack_into("<I", data, 4, 240)
    with pytest.raises(VxmFormatError, match="truncated"):
        read_vxm(damaged(tmp_path, bytes(data)))


def test_implausible_record_count(tmp_path, original: bytes) -> None:
    data = bytearray(original)
    struct.pack_into("<I", data, 4, 0xFFFFFFFF)
    with pytest.raises(VxmFormatError, match="not plausible"):
        read_vxm(damaged(tmp_path, bytes(data)))


def test_flipped_key_byte_is_an_unknown_key(tmp_path, original: bytes) -> None:
    data = bytearray(original)
    at = original.index(b"0Act\0")
    data[at + 3] ^= 0x20  # "0Act" -> "0AcT"
    with pytest.raises(VxmFormatError, match=r"unknown record key '0AcT'"):
        read_vxm(damaged(tmp_path, bytes(data)))


def test_flipped_length_byte(tmp_path, original: bytes) -> None:
    data = bytearray(original)
    data[original.index(b"0Act\0") - 4] ^= 0x40  # the key length of the first record
    with pytest.raises(VxmFormatError):
        read_vxm(damaged(tmp_path, bytes(data)))


def test_non_ascii_key(tmp_path, original: bytes) -> None:
    data = bytearray(original)
    data[original.index(b"0Act\0") + 1] = 0xC3
    with pytest.raises(VxmFormatError, match="not ASCII"):
        read_vxm(damaged(tmp_path, bytes(data)))


def test_nan_in_weights(tmp_path, records: dict[str, bytes]) -> None:
    weight = bytearray(records["4w"])
    weight[0:4] = struct.pack("<f", float("nan"))
    with pytest.raises(VxmFormatError, match="'4w' holds NaN"):
        parse_vxm(encode_records({**records, "4w": bytes(weight)}))


def test_random_byte_flips_never_escape_as_other_errors(original: bytes) -> None:
    # A flip in weight bytes can leave a valid file; anything else must be a VxmFormatError.
    rng = np.random.default_rng(0)
    failures = 0
    for _ in range(300):
        data = bytearray(original)
        at = int(rng.integers(len(data)))
        data[at] ^= 1 << int(rng.integers(8))
        try:
            parse_vxm(bytes(data))
        except VxmFormatError:
            failures += 1
    assert failures > 0


def test_shape_disagreeing_with_the_bytes(records: dict[str, bytes]) -> None:
    changed = {**records, "0w.shape": struct.pack("<4I", 43, 3, 3, 4), "0w.shape[3]": struct.pack("<i", 4)}
    with pytest.raises(VxmFormatError, match=r"'0w' holds 4644 bytes, its shape \(43, 3, 3, 4\)"):
        parse_vxm(encode_records(changed))


@pytest.mark.parametrize(
    ("key", "value", "match"),
    [
        ("0w.shape[1]", struct.pack("<i", 4), r"\.shape\[1\] is 4 but \.shape says 3"),
        ("0w.shape.listlength", struct.pack("<i", 3), "listlength 3 disagrees"),
        ("0w.shape", struct.pack("<4I", 43, 3, 3, 4), r"\.shape\[3\] is 3 but \.shape says 4"),
        ("0w.ndims", struct.pack("<i", 3), r"\.shape holds 16 bytes, 3 dimensions need 12"),
        ("0b.shape", struct.pack("<I", 42), "holds 172 bytes"),
        ("0w.dtype", b"float64", "dtype 'float64'"),
        ("3Type", struct.pack("<i", 7), "layer 3 has Type 7"),
        ("3Act", struct.pack("<i", 9), "activation code 9"),
        ("modelType", struct.pack("<i", 5), "modelType 5 is unknown"),
        ("layerCount", struct.pack("<i", 18), "records not belonging"),
        ("layerCount", struct.pack("<i", 20), "'19Type' is missing"),
        ("3Act", b"\x01\x00", "one int32"),
        ("2Type", struct.pack("<i", 0), "'2Act' is missing"),
    ],
)
def test_inconsistent_records(records: dict[str, bytes], key: str, value: bytes, match: str) -> None:
    with pytest.raises(VxmFormatError, match=match):
        parse_vxm(encode_records({**records, key: value}))


def test_channel_chain_is_checked(records: dict[str, bytes]) -> None:
    # Make layer 3 a 1x1 convolution taking 40 channels, consistently declared: only the chain breaks.
    weight = np.zeros((49, 40, 1, 1), dtype="<f4")
    changed = {
        **records,
        "3w": weight.tobytes(),
        "3w.shape": struct.pack("<4I", 49, 40, 1, 1),
        "3w.shape[1]": struct.pack("<i", 40),
        "3w.shape[2]": struct.pack("<i", 1),
        "3w.shape[3]": struct.pack("<i", 1),
    }
    with pytest.raises(VxmFormatError, match="layer 3 takes 40 channels but receives 44"):
        parse_vxm(encode_records(changed))


def test_missing_and_unknown_records(records: dict[str, bytes]) -> None:
    without = {k: v for k, v in records.items() if k != "6b"}
    with pytest.raises(VxmFormatError, match="'6b' is missing"):
        parse_vxm(encode_records(without))
    with pytest.raises(VxmFormatError, match="unknown record key 'author'"):
        parse_vxm(encode_records({**records, "author": b"x"}))
    with pytest.raises(VxmFormatError, match="field 'gamma'"):
        parse_vxm(encode_records({**records, "3gamma": b"\0\0\0\0"}))
    with pytest.raises(VxmFormatError, match="takes none"):
        parse_vxm(encode_records({**records, "3alpha": records["14alpha"]}))


def test_duplicate_record(records: dict[str, bytes]) -> None:
    data = encode_records(records)
    extra = b"".join([struct.pack("<I", 5), b"0Act\0", struct.pack("<I", 4), struct.pack("<i", 1)])
    data = MAGIC + struct.pack("<I", len(records) + 1) + data[8:] + extra
    with pytest.raises(VxmFormatError, match="appears twice"):
        parse_vxm(data)


def test_a_directory_is_a_clear_error(tmp_path) -> None:
    with pytest.raises(VxmFormatError, match="is a directory"):
        read_vxm(tmp_path)


def test_messages_name_the_file(tmp_path, original: bytes) -> None:
    path = damaged(tmp_path, original[:100], "cut.vxm")
    with pytest.raises(VxmFormatError, match=r"cut\.vxm"):
        read_vxm(path)
