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

_BY_NAME = {"f32": F32, "f64": F64, "i32": I32, "i64": I64, "i1": BOOL}


def element_type(name: str) -> ElementType:
    """Parse ``f32``/``f64``/``i32``/``i64``/``i1``/``fix<w,f>``."""
    name = name.replace(" ", "")
    if name in _BY_NAME:
        return _BY_NAME[name]
    if name.startswith("fix<") and name.endswith(">"):
        width, frac = (int(part) for part in name[4:-1].split(","))
        return FixedType(width, frac)
    raise ValueError(f"unknown element type '{name}'")


def element_type_of(dtype: np.dtype) -> ElementType:
    """The element type for a NumPy dtype (bool maps to i1)."""
    dtype = np.dtype(dtype)
    if dtype == np.bool_:
        return BOOL
    kind = {"f": "f", "i": "i", "u": "i"}.get(dtype.kind)
    if kind is None:
        raise ValueError(f"no IR element type for NumPy dtype {dtype}")
    return element_type(f"{kind}{dtype.itemsize * 8}")


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
