"""Reading Twitter's ``.vxm`` model container (the file ``fastgaze.vxm`` was released in).

The format, as read from the released file (no specification was published):

* a 4-byte magic ``b"\\x01tPM"``, then a little-endian ``uint32`` record count;
* that many records, each ``uint32 key length``, the key (ASCII, NUL-terminated, the length counts
  the NUL), ``uint32 value length``, the value bytes. Nothing follows the last record.

Keys are ``layerCount`` and ``modelType`` (``int32``), and per layer ``i`` a ``"{i}"`` prefix on
``Type`` (0 convolution, 2 pool, 3 Gaussian blur), ``Act`` (1 ReLU, 4 a one-parameter activation
whose parameter is ``alpha``), ``Pool`` (pool size), ``KernelSize`` and ``Std`` (blur), all
``int32``; and arrays ``w``, ``b``, ``alpha`` stored as raw little-endian values, each described by
``.dtype`` (ASCII, ``float32``), ``.ndims`` and ``.shape`` (``ndims`` ``uint32``); arrays of more
than one dimension repeat their shape as ``.shape.listlength`` and ``.shape[k]``. Convolution
weights are ``(out, in, kh, kw)``.

:func:`read_vxm` checks all of it: every record parsed, nothing left over, no unknown key, dtype,
ndims and shape consistent with the bytes, the layer list complete, channel counts chained, values
finite; anything else raises :class:`VxmFormatError` saying what is wrong and where.
"""

from __future__ import annotations

import math
import os
import re
import struct
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from targets._errors import UserError

MAGIC = b"\x01tPM"
_HEADER = struct.Struct("<4sI")
_U32 = struct.Struct("<I")
_I32 = struct.Struct("<i")

#: Layer ``Type`` codes and activation ``Act`` codes the reader knows.
LAYER_TYPES = {0: "conv", 2: "pool", 3: "blur"}
ACTIVATIONS = {1: "relu", 4: "alpha"}
MODEL_TYPES = {2}  # the only one seen: a saliency network ending in a blur

_LAYER_KEY = re.compile(r"^(?P<layer>0|[1-9][0-9]*)(?P<field>[A-Za-z].*)$")
_LAYER_INT_FIELDS = {"Type", "Act", "Pool", "KernelSize", "Std"}
_ARRAY_NAMES = {"w", "b", "alpha"}
_ARRAY_SUFFIX = re.compile(
    r"^(?P<array>[a-z]+)(?P<meta>\.dtype|\.ndims|\.shape|\.shape\.listlength|\.shape\[\d+\])?$"
)
_DTYPES = {"float32": np.dtype("<f4")}
_MAX_RECORDS = 100_000  # far above any real model: a corrupt count must not drive a huge loop


class VxmFormatError(UserError, ValueError):
    """A file is not a valid ``.vxm`` model: truncated, corrupt, or of a kind this reader does not know."""


@dataclass(frozen=True)
class ConvLayer:
    """A convolution (``weight`` is ``(out, in, kh, kw)``) followed by its activation."""

    index: int
    weight: np.ndarray
    bias: np.ndarray
    activation: str  # "relu" or "alpha" (a one-parameter activation, see targets.twitter)
    alpha: float | None = None

    @property
    def in_channels(self) -> int:
        return int(self.weight.shape[1])

    @property
    def out_channels(self) -> int:
        return int(self.weight.shape[0])

    @property
    def kernel_size(self) -> int:
        return int(self.weight.shape[2])


@dataclass(frozen=True)
class PoolLayer:
    index: int
    size: int


@dataclass(frozen=True)
class BlurLayer:
    """A Gaussian blur over the output grid: ``kernel_size`` taps, standard deviation ``sigma`` cells."""

    index: int
    kernel_size: int
    sigma: float


Layer = ConvLayer | PoolLayer | BlurLayer


@dataclass(frozen=True)
class VxmModel:
    """Everything a ``.vxm`` file declares: its model type and its layers, in order."""

    model_type: int
    layers: tuple[Layer, ...]
    source: str = "<bytes>"

    @property
    def convs(self) -> tuple[ConvLayer, ...]:
        return tuple(layer for layer in self.layers if isinstance(layer, ConvLayer))

    @property
    def stride(self) -> int:
        """How many input pixels one output cell spans (the product of the pool sizes)."""
        return math.prod(layer.size for layer in self.layers if isinstance(layer, PoolLayer))

    def describe(self) -> str:
        """One line per layer, for error messages and the docs."""
        lines = []
        for layer in self.layers:
            if isinstance(layer, ConvLayer):
                act = f"alpha={layer.alpha:.4g}" if layer.alpha is not None else layer.activation
                lines.append(
                    f"{layer.index}: conv {layer.kernel_size}x{layer.kernel_size} "
                    f"{layer.in_channels}->{layer.out_channels} {act}"
                )
            elif isinstance(layer, PoolLayer):
                lines.append(f"{layer.index}: pool {layer.size}x{layer.size}")
            else:
                lines.append(f"{layer.index}: blur k={layer.kernel_size} sigma={layer.sigma:g}")
        return "\n".join(lines)


def read_records(data: bytes, *, source: str = "<bytes>") -> dict[str, bytes]:
    """The raw ``key -> value`` records of a ``.vxm`` byte string, in file order."""
    where = f"{source}: "
    if len(data) < _HEADER.size:
        raise VxmFormatError(f"{where}truncated: {len(data)} bytes is shorter than the 8-byte header")
    magic, count = _HEADER.unpack_from(data, 0)
    if magic != MAGIC:
        raise VxmFormatError(
            f"{where}not a .vxm model file: it starts with {magic!r}, a .vxm file starts with {MAGIC!r}"
        )
    if count == 0 or count > _MAX_RECORDS:
        raise VxmFormatError(f"{where}corrupt header: record count {count} is not plausible")
    records: dict[str, bytes] = {}
    offset = _HEADER.size
    for number in range(count):
        key_bytes, offset = _chunk(data, offset, source, f"record {number} key")
        if not key_bytes.endswith(b"\0") or b"\0" in key_bytes[:-1] or len(key_bytes) < 2:
            raise VxmFormatError(
                f"{where}corrupt record {number} at byte {offset}: its key is not one NUL-terminated name"
            )
        try:
            key = key_bytes[:-1].decode("ascii")
        except UnicodeDecodeError:
            raise VxmFormatError(
                f"{where}corrupt record {number}: key {key_bytes[:-1]!r} is not ASCII"
            ) from None
        if not key.isprintable():
            raise VxmFormatError(f"{where}corrupt record {number}: key {key!r} has control characters")
        value, offset = _chunk(data, offset, source, f"record {number} ({key!r}) value")
        if key in records:
            raise VxmFormatError(f"{where}corrupt: record {key!r} appears twice")
        records[key] = value
    if offset != len(data):
        raise VxmFormatError(
            f"{where}corrupt: {len(data) - offset} bytes follow the last of the {count} records the header "
            "announces (a wrong record count, or two files joined)"
        )
    return records


def _chunk(data: bytes, offset: int, source: str, what: str) -> tuple[bytes, int]:
    if offset + _U32.size > len(data):
        raise VxmFormatError(f"{source}: truncated at byte {len(data)}: {what} length is missing")
    (length,) = _U32.unpack_from(data, offset)
    start = offset + _U32.size
    if start + length > len(data):
        raise VxmFormatError(
            f"{source}: truncated or corrupt: {what} declares {length} bytes at byte {start}, "
            f"but the file ends at byte {len(data)}"
        )
    return data[start : start + length], start + length


def encode_records(records: Mapping[str, bytes]) -> bytes:
    """The ``.vxm`` bytes holding ``records`` (the inverse of :func:`read_records`; for tools and tests)."""
    parts = [_HEADER.pack(MAGIC, len(records))]
    for key, value in records.items():
        name = key.encode("ascii") + b"\0"
        parts += [_U32.pack(len(name)), name, _U32.pack(len(value)), bytes(value)]
    return b"".join(parts)


def read_vxm(path: str | os.PathLike[str]) -> VxmModel:
    """Parse and check the ``.vxm`` file at ``path`` (see module doc)."""
    path = Path(path)
    try:
        data = path.read_bytes()
    except IsADirectoryError:
        raise VxmFormatError(f"{path} is a directory, not a .vxm model file") from None
    return parse_vxm(data, source=str(path))


def parse_vxm(data: bytes, *, source: str = "<bytes>") -> VxmModel:
    """Parse and check ``.vxm`` bytes (see module doc)."""
    records = read_records(data, source=source)
    return _Decoder(records, source).model()


class _Decoder:
    """Turns records into layers, checking each against the others."""

    def __init__(self, records: Mapping[str, bytes], source: str) -> None:
        self.records = records
        self.source = source
        self.used: set[str] = set()

    def fail(self, message: str) -> VxmFormatError:
        return VxmFormatError(f"{self.source}: {message}")

    def int32(self, key: str) -> int:
        if key not in self.records:
            raise self.fail(f"record {key!r} is missing")
        value = self.records[key]
        if len(value) != _I32.size:
            raise self.fail(f"record {key!r} should hold one int32 (4 bytes), holds {len(value)} bytes")
        self.used.add(key)
        return _I32.unpack(value)[0]

    def array(self, name: str) -> np.ndarray:
        for suffix in ("", ".dtype", ".ndims", ".shape"):
            if name + suffix not in self.records:
                raise self.fail(f"array {name!r}: record {name + suffix!r} is missing")
        dtype_name = self.records[name + ".dtype"].decode("ascii", errors="replace")
        if dtype_name not in _DTYPES:
            raise self.fail(f"array {name!r} has dtype {dtype_name!r}; this reader knows {sorted(_DTYPES)}")
        self.used.add(name + ".dtype")
        ndims = self.int32(name + ".ndims")
        if not 1 <= ndims <= 8:
            raise self.fail(f"array {name!r} declares {ndims} dimensions")
        shape_bytes = self.records[name + ".shape"]
        if len(shape_bytes) != 4 * ndims:
            raise self.fail(
                f"array {name!r}: .shape holds {len(shape_bytes)} bytes, {ndims} dimensions need {4 * ndims}"
            )
        shape = struct.unpack(f"<{ndims}I", shape_bytes)
        self.used.add(name + ".shape")
        if name + ".shape.listlength" in self.records:
            listed = self.int32(name + ".shape.listlength")
            if listed != ndims:
                raise self.fail(f"array {name!r}: .shape.listlength {listed} disagrees with .ndims {ndims}")
            for k, size in enumerate(shape):
                repeated = self.int32(f"{name}.shape[{k}]")
                if repeated != size:
                    raise self.fail(
                        f"array {name!r}: .shape[{k}] is {repeated} but .shape says {size} (shape {shape})"
                    )
        elif ndims > 1:
            raise self.fail(f"array {name!r} has {ndims} dimensions but no .shape.listlength record")
        dtype = _DTYPES[dtype_name]
        raw = self.records[name]
        expected = math.prod(shape) * dtype.itemsize
        if len(raw) != expected:
            raise self.fail(
                f"array {name!r} holds {len(raw)} bytes, its shape {shape} of {dtype_name} needs {expected}"
            )
        self.used.add(name)
        values = np.frombuffer(raw, dtype=dtype).reshape(shape).astype(np.float32)
        if not np.isfinite(values).all():
            raise self.fail(f"array {name!r} holds NaN or infinite values (corrupt bytes)")
        return values

    def model(self) -> VxmModel:
        self._check_keys_known()
        model_type = self.int32("modelType")
        if model_type not in MODEL_TYPES:
            raise self.fail(f"modelType {model_type} is unknown; this reader knows {sorted(MODEL_TYPES)}")
        count = self.int32("layerCount")
        if not 1 <= count <= 1000:
            raise self.fail(f"layerCount {count} is not plausible")
        layers = tuple(self.layer(i) for i in range(count))
        stray = sorted(set(self.records) - self.used)
        if stray:
            raise self.fail(f"records not belonging to any of the {count} layers: {stray[:8]}")
        self._check_chain(layers)
        return VxmModel(model_type=model_type, layers=layers, source=self.source)

    def _check_keys_known(self) -> None:
        for key in self.records:
            if key in ("layerCount", "modelType"):
                continue
            match = _LAYER_KEY.match(key)
            if match is None:
                raise self.fail(f"unknown record key {key!r}")
            field_name = match["field"]
            if field_name in _LAYER_INT_FIELDS:
                continue
            array = _ARRAY_SUFFIX.match(field_name)
            if array is None or array["array"] not in _ARRAY_NAMES:
                raise self.fail(f"unknown record key {key!r} (layer {match['layer']}, field {field_name!r})")

    def layer(self, i: int) -> Layer:
        kind = self.int32(f"{i}Type")
        if kind not in LAYER_TYPES:
            raise self.fail(f"layer {i} has Type {kind}; this reader knows {LAYER_TYPES}")
        if LAYER_TYPES[kind] == "pool":
            size = self.int32(f"{i}Pool")
            if size < 1:
                raise self.fail(f"layer {i}: pool size {size} must be positive")
            return PoolLayer(i, size)
        if LAYER_TYPES[kind] == "blur":
            kernel_size, sigma = self.int32(f"{i}KernelSize"), self.int32(f"{i}Std")
            if kernel_size < 1 or kernel_size % 2 == 0 or sigma <= 0:
                raise self.fail(f"layer {i}: blur kernel size {kernel_size} / std {sigma} not usable")
            return BlurLayer(i, kernel_size, float(sigma))
        act_code = self.int32(f"{i}Act")
        if act_code not in ACTIVATIONS:
            raise self.fail(f"layer {i} has activation code {act_code}; this reader knows {ACTIVATIONS}")
        weight, bias = self.array(f"{i}w"), self.array(f"{i}b")
        if weight.ndim != 4 or weight.shape[2] != weight.shape[3] or weight.shape[2] % 2 == 0:
            raise self.fail(f"layer {i}: weight shape {weight.shape} is not (out, in, k, k) with odd k")
        if bias.shape != (weight.shape[0],):
            raise self.fail(f"layer {i}: bias shape {bias.shape} does not match {weight.shape[0]} outputs")
        alpha = None
        if ACTIVATIONS[act_code] == "alpha":
            alpha_array = self.array(f"{i}alpha")
            if alpha_array.shape != (1,):
                raise self.fail(f"layer {i}: alpha has shape {alpha_array.shape}, expected one scalar")
            alpha = float(alpha_array[0])
        elif f"{i}alpha" in self.records:
            raise self.fail(f"layer {i} has an alpha but its activation (code {act_code}) takes none")
        return ConvLayer(i, weight, bias, ACTIVATIONS[act_code], alpha)

    def _check_chain(self, layers: tuple[Layer, ...]) -> None:
        channels = 3  # an RGB (or BGR) image
        convs = 0
        for layer in layers:
            if isinstance(layer, ConvLayer):
                if layer.in_channels != channels:
                    raise self.fail(
                        f"layer {layer.index} takes {layer.in_channels} channels but receives {channels}"
                    )
                channels = layer.out_channels
                convs += 1
            elif isinstance(layer, BlurLayer) and layer is not layers[-1]:
                raise self.fail(f"layer {layer.index}: a blur is only expected as the last layer")
        if convs == 0:
            raise self.fail("the model declares no convolution")
        if channels != 1:
            raise self.fail(f"the last convolution gives {channels} channels, a saliency map needs 1")
