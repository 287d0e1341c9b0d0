"""Linear maps ``y = W x`` (``W`` is ``out_dim × in_dim``) as first-class IR attributes.

A linear map is stored in a *format*: ``dense`` holds the matrix; the decomposed
formats (``tt``, ``bt``, ``ht``) hold cores and are applied by contracting the input
with them, never by rebuilding ``W``.  Every format registers itself in ``FORMATS`` so
the printer, parser and verifier handle all of them the same way:

* ``meta()``: the scalar/list attributes that describe the map (printed in the text);
* ``tensors()``: the named arrays that hold its numbers (inline or in the sidecar);
* ``from_parts(meta, tensors)``: the inverse of the two.
"""

from __future__ import annotations

from typing import Any, ClassVar

import numpy as np

from ..errors import VerifyError

FORMATS: dict[str, type["LinearMap"]] = {}


def register_format(cls: type["LinearMap"]) -> type["LinearMap"]:
    """Class decorator: make a format known to the printer, parser and verifier."""
    FORMATS[cls.format] = cls
    return cls


class LinearMap:
    """Base class of all linear-map formats."""

    format: ClassVar[str]

    @property
    def out_dim(self) -> int:
        raise NotImplementedError

    @property
    def in_dim(self) -> int:
        raise NotImplementedError

    def apply(self, x: np.ndarray) -> np.ndarray:
        """``x[..., in_dim] -> y[..., out_dim]`` as a new array (callers may write into it)."""
        raise NotImplementedError

    def to_dense(self) -> np.ndarray:
        """The ``out_dim × in_dim`` matrix (for analysis and tests, not for execution)."""
        raise NotImplementedError

    def params(self) -> int:
        """Number of stored parameters."""
        return sum(int(t.size) for t in self.tensors().values())

    def macs(self) -> int:
        """Multiply-accumulates for one application to one input vector."""
        raise NotImplementedError

    def meta(self) -> dict[str, Any]:
        raise NotImplementedError

    def tensors(self) -> dict[str, np.ndarray]:
        raise NotImplementedError

    @classmethod
    def from_parts(cls, meta: dict[str, Any], tensors: dict[str, np.ndarray]) -> "LinearMap":
        raise NotImplementedError

    def verify(self) -> None:
        """Raise ``VerifyError`` with a sentence if the stored arrays are inconsistent."""

    def map_tensors(self, fn) -> "LinearMap":
        """A copy with ``fn`` applied to every stored array (e.g. a dtype cast)."""
        return type(self).from_parts(self.meta(), {k: fn(v) for k, v in self.tensors().items()})

    def astype(self, dtype) -> "LinearMap":
        return self.map_tensors(lambda t: t.astype(dtype))

    @property
    def dtype(self) -> np.dtype:
        return next(iter(self.tensors().values())).dtype

    def __eq__(self, other: object) -> bool:
        if type(other) is not type(self):
            return NotImplemented
        mine, theirs = self.tensors(), other.tensors()
        return self.meta() == other.meta() and mine.keys() == theirs.keys() and all(
            mine[k].dtype == theirs[k].dtype and np.array_equal(mine[k], theirs[k]) for k in mine
        )

    __hash__ = None  # type: ignore[assignment]

    def __repr__(self) -> str:
        return f"<{self.format} map {self.out_dim}x{self.in_dim}>"


@register_format
class DenseMap(LinearMap):
    """A plain matrix ``W[out_dim, in_dim]``."""

    format = "dense"

    def __init__(self, matrix: np.ndarray):
        self.matrix = np.asarray(matrix)

    @property
    def out_dim(self) -> int:
        return int(self.matrix.shape[0])

    @property
    def in_dim(self) -> int:
        return int(self.matrix.shape[1])

    def apply(self, x: np.ndarray) -> np.ndarray:
        return x @ self.matrix.T

    def to_dense(self) -> np.ndarray:
        return self.matrix

    def macs(self) -> int:
        return self.out_dim * self.in_dim

    def meta(self) -> dict[str, Any]:
        return {}

    def tensors(self) -> dict[str, np.ndarray]:
        return {"w": self.matrix}

    @classmethod
    def from_parts(cls, meta: dict[str, Any], tensors: dict[str, np.ndarray]) -> "DenseMap":
        return cls(tensors["w"])

    def verify(self) -> None:
        if self.matrix.ndim != 2:
            raise VerifyError(f"dense map must be a matrix, got shape {self.matrix.shape}")
