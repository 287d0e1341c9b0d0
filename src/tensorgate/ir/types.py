"""Element and tensor types of IR values.

A dimension is an ``int`` (static) or a ``str`` (symbolic: a name such as
``"batch"``, or ``"?"`` when nothing is known).  Types print as ``f32[seq,batch,8]``.
"""

from __future__ import annotations

import json
import re
from dataclasses import dataclass
from typing import Union

import numpy as np

Dim = Union[int, str]
UNKNOWN = "?"
MAX_DIM = 2**31 - 1
"""The largest static dimension a type may declare (ONNX's int32 range of sizes)."""
MAX_ELEMENTS = 2**30
"""The most elements a value's static dims, or a result the runtimes compute from data
(``expand``), may have: 4 GiB of float32, ten times the largest weight matrix of the
models tensorgate compiles (FL-TT-LSTM's 94 M)."""


@dataclass(frozen=True)
class FloatType:
    """IEEE float: ``f32`` or ``f64``."""

    bits: int

    def __str__(self) -> str:
        return f"f{self.bits}"

    @property
    def numpy(self) -> np.dtype:
        return np.dtype(f"float{self.bits}")


@dataclass(frozen=True)
class IntType:
    """Signed integer, used for shapes, indices and sequence lengths."""

    bits: int

    def __str__(self) -> str:
        return f"i{self.bits}"

    @property
    def numpy(self) -> np.dtype:
        return np.dtype(np.bool_) if self.bits == 1 else np.dtype(f"int{self.bits}")


@dataclass(frozen=True)
class FixedType:
    """Signed fixed point: ``width`` total bits, ``frac`` of them fractional."""

    width: int
    frac: int

    def __str__(self) -> str:
        return f"fix<{self.width},{self.frac}>"

    @property
    def numpy(self) -> np.dtype:
        return np.dtype("int64")


ElementType = Union[FloatType, IntType, FixedType]
F32 = FloatType(32)
F64 = FloatType(64)
I32 = IntType(32)
I64 = IntType(64)
BOOL = IntType(1)

FIXED_WIDTHS = range(2, 65)
"""The widths of ``fix<w,f>`` types: a sign bit and at least one more, at most int64 codes."""
FIXED_FRACS = range(-256, 257)
"""The fraction bits of ``fix<w,f>`` types: scales ``2^-f`` far beyond any trained model's
range, yet exact in float64 (and in the integer shifts of the golden model)."""
_FIXED_TEXT = re.compile(r"fix<(-?\d+),(-?\d+)>")
_BY_NAME = {"f32": F32, "f64": F64, "i32": I32, "i64": I64, "i1": BOOL}


def element_type(name: str) -> ElementType:
    """Parse ``f32``/``f64``/``i32``/``i64``/``i1``/``fix<w,f>`` (``ValueError`` with a
    sentence for anything else, a fixed-point type outside ``FIXED_WIDTHS`` and
    ``FIXED_FRACS`` included)."""
    if not isinstance(name, str):
        raise ValueError(f"{name!r} is not an element type name")
    name = name.replace(" ", "")
    if name in _BY_NAME:
        return _BY_NAME[name]
    match = _FIXED_TEXT.fullmatch(name)
    if match is None:
        raise ValueError(f"unknown element type '{name}'")
    width, frac = int(match.group(1)), int(match.group(2))
    if width not in FIXED_WIDTHS or frac not in FIXED_FRACS:
        raise ValueError(f"fixed-point type '{name}' needs a width of {FIXED_WIDTHS.start}..{FIXED_WIDTHS.stop - 1} "
                         f"bits and {FIXED_FRACS.start}..{FIXED_FRACS.stop - 1} fraction bits")
    return FixedType(width, frac)


def element_type_of(dtype: np.dtype) -> ElementType:
    """The element type for a NumPy dtype (bool maps to i1)."""
    dtype = np.dtype(dtype)
    if dtype == np.bool_:
        return BOOL
    kind = {"f": "f", "i": "i", "u": "i"}.get(dtype.kind)
    name = f"{kind}{dtype.itemsize * 8}"
    if kind is None or name not in _BY_NAME:
        raise ValueError(f"no IR element type for NumPy dtype {dtype}")
    return element_type(name)


@dataclass(frozen=True)
class TensorType:
    """Shape and element type of a value."""

    shape: tuple[Dim, ...]
    dtype: ElementType

    def __post_init__(self) -> None:
        object.__setattr__(self, "shape", tuple(self.shape))

    def __str__(self) -> str:
        return f"{self.dtype}[{','.join(str(d) for d in self.shape)}]"

    @property
    def rank(self) -> int:
        return len(self.shape)

    @property
    def is_static(self) -> bool:
        return all(isinstance(d, int) for d in self.shape)

    def with_shape(self, shape) -> "TensorType":
        return TensorType(tuple(shape), self.dtype)

    @staticmethod
    def of(array: np.ndarray) -> "TensorType":
        return TensorType(tuple(int(d) for d in array.shape), element_type_of(array.dtype))


def check_dims(type: TensorType) -> str | None:
    """What is wrong with ``type``'s dims (``None`` if nothing): a static dim must lie in
    ``0..MAX_DIM`` and the static dims together hold at most ``MAX_ELEMENTS`` elements;
    a symbolic dim is a name."""
    static = 1
    for dim in type.shape:
        if isinstance(dim, bool) or not isinstance(dim, (int, str)):
            return f"dim {dim!r} is neither a size nor a name"
        if isinstance(dim, int):
            if not 0 <= dim <= MAX_DIM:
                return f"dim {dim} is outside 0..{MAX_DIM}"
            static *= dim
    if static > MAX_ELEMENTS:
        return f"its static dims hold {static:,} elements, more than {MAX_ELEMENTS:,}"
    return None


def dims_compatible(a: Dim, b: Dim) -> bool:
    """Two dims agree unless both are static and differ."""
    return not (isinstance(a, int) and isinstance(b, int) and a != b)


def shapes_compatible(a: tuple[Dim, ...], b: tuple[Dim, ...]) -> bool:
    return len(a) == len(b) and all(dims_compatible(x, y) for x, y in zip(a, b))


BARE_DIM = re.compile(r"[A-Za-z_][A-Za-z0-9_.]*")
_TYPE_TEXT = re.compile(r"(fix<\s*-?\d+\s*,\s*-?\d+\s*>|[fi]\d+)\[(.*)\]", re.DOTALL)
_DIM = re.compile(r'\s*(-?\d+|\?|[A-Za-z_][A-Za-z0-9_.]*|"(?:[^"\\]|\\.)*")\s*(,|$)')


def dim_text(dim: Dim) -> str:
    """A dim as the IR text writes it: a number, ``?``, or a name (quoted unless bare)."""
    if isinstance(dim, int) and not isinstance(dim, bool):
        return str(int(dim))
    if dim == UNKNOWN or BARE_DIM.fullmatch(dim):
        return dim
    return json.dumps(dim)


def type_text(type: TensorType) -> str:
    """``f32[seq,batch,8]``; the inverse of ``parse_type``."""
    return f"{type.dtype}[{','.join(dim_text(d) for d in type.shape)}]"


def parse_type(text: str) -> TensorType:
    """The type ``type_text`` wrote; ``ValueError`` with a sentence if ``text`` is none."""
    match = _TYPE_TEXT.fullmatch(text.strip())
    if match is None:
        raise ValueError(f"'{text}' is not a tensor type such as f32[batch,8]")
    dims: list[Dim] = []
    rest = match.group(2)
    while rest.strip():
        dim = _DIM.match(rest)
        if dim is None:
            raise ValueError(f"'{text}' has a malformed dimension list")
        token = dim.group(1)
        dims.append(json.loads(token) if token.startswith('"') else token if not token.lstrip("-").isdigit()
                    else int(token))
        rest = rest[dim.end():]
        if dim.group(2) == "" and rest:
            raise ValueError(f"'{text}' has a malformed dimension list")
    return TensorType(tuple(dims), element_type(match.group(1)))
