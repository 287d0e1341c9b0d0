"""What the decomposition algorithms share: the result type, option checks and the
truncated SVD of an unfolding."""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Any

import numpy as np

from ...errors import PassError
from ...ir.tensor_formats import TensorizedMap

GRAM_MIN_THRESHOLD = 1e-10
"""The Gram matrix ``A Aᵀ`` (in float64) holds the squared singular values with absolute
errors of about ``1e-16 ‖A‖²``.  It picks a rank by a threshold ``τ²`` only when
``τ² ≥ GRAM_MIN_THRESHOLD · ‖A‖²``, a million times that noise; a smaller threshold
falls back to an SVD of ``A`` itself."""


@dataclass(frozen=True)
class Decomposition:
    """A decomposed map with the ranks it uses and its relative Frobenius error
    ``‖W − Ŵ‖_F / ‖W‖_F`` (0 for a zero matrix).

    ``ranks``: tt ``[r_0..r_d]``; bt one ``[R_1..R_d]`` per block; ht the node ranks in
    pre-order.  ``error`` is computed from the discarded singular values (tt, ht) or the
    final residual (bt); for ht ``order="root-to-leaves"`` it is an upper bound.
    """

    map: TensorizedMap
    ranks: list[Any]
    error: float


def check_eps(method: str, eps: float | None) -> None:
    if eps is not None and not 0 < eps < 1:
        raise PassError(f"{method}: eps {eps} must be in (0, 1)")


def check_cap(method: str, name: str, cap: int | None) -> None:
    if cap is not None and (not isinstance(cap, (int, np.integer)) or cap < 1):
        raise PassError(f"{method}: {name} {cap} must be a positive integer")


def output_dtype(matrix: np.ndarray) -> np.dtype:
    """Cores keep a float32 or float64 matrix's dtype; anything else becomes float64."""
    return matrix.dtype if matrix.dtype in (np.float32, np.float64) else np.dtype(np.float64)


def squared_norm(tensor: np.ndarray) -> float:
    flat = tensor.reshape(-1)
    return float(flat @ flat)


def relative_error(discarded: float, norm_sq: float) -> float:
    return math.sqrt(max(discarded, 0.0) / norm_sq) if norm_sq > 0 else 0.0


def unfold(tensor: np.ndarray, axes: list[int]) -> np.ndarray:
    """The matricization with ``axes`` (in that order) as rows and the rest as columns."""
    moved = np.moveaxis(tensor, axes, list(range(len(axes))))
    rows = math.prod(tensor.shape[a] for a in axes)
    return np.ascontiguousarray(moved).reshape(rows, -1)


def truncated_basis(matrix: np.ndarray, cap: int, threshold_sq: float | None = None) -> tuple[np.ndarray, float]:
    """An orthonormal basis ``U`` of the leading left singular subspace of ``matrix`` and
    the squared Frobenius norm ``‖A − U Uᵀ A‖²`` it discards.

    The rank is the smallest that discards at most ``threshold_sq`` (all of them when
    ``threshold_sq`` is ``None``), and never more than ``cap`` or the matrix's smaller
    side.  A wide matrix goes through its Gram matrix, a tall one (whose small side is its
    width) through a thin SVD; see ``GRAM_MIN_THRESHOLD`` for when the Gram matrix is not
    trusted.
    """
    rows, cols = matrix.shape
    squares = left = None
    if rows <= cols:
        values, vectors = np.linalg.eigh(matrix @ matrix.T)
        squares, left = np.clip(values[::-1], 0.0, None), vectors[:, ::-1]
        if threshold_sq is not None and threshold_sq < GRAM_MIN_THRESHOLD * squares.sum():
            squares = None
    if squares is None:
        left, singular, _ = np.linalg.svd(matrix, full_matrices=False)
        squares = singular**2
    tails = np.concatenate([np.cumsum(squares[::-1])[::-1], [0.0]])  # tails[r] = Σ_{l ≥ r} σ_l²
    rank = min(cap, len(squares))
    if threshold_sq is not None:
        rank = min(rank, max(1, int(np.argmax(tails <= threshold_sq))))
    return np.ascontiguousarray(left[:, :rank]), float(tails[rank])
