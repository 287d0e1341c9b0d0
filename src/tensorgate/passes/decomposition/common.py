"""What the decomposition algorithms share: the result type, option checks and the
truncated SVD of an unfolding."""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Any

import numpy as np
import scipy.linalg

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
    side.  The spectrum comes from the Gram matrix of the smaller side: for a wide
    matrix its eigenvectors are ``U``; for a tall one ``U = A V Σ⁻¹``, re-orthonormalized.
    Without a threshold only the kept eigenpairs are computed, and the discarded energy is
    the trace minus theirs.  An SVD of ``A`` replaces the Gram matrix when the threshold is
    below its precision (see ``GRAM_MIN_THRESHOLD``) or, for a tall matrix, when a kept
    singular value is.
    """
    rows, cols = matrix.shape
    wide = rows <= cols
    gram = matrix @ matrix.T if wide else matrix.T @ matrix
    total = float(np.trace(gram))
    floor = GRAM_MIN_THRESHOLD * total
    if threshold_sq is not None and threshold_sq < floor:
        return _svd_basis(matrix, cap, threshold_sq)
    if threshold_sq is None:
        squares, vectors = _leading_eigenpairs(gram, min(cap, len(gram)))
        discarded = max(total - float(squares.sum()), 0.0)
    else:
        squares, vectors = _leading_eigenpairs(gram, len(gram))
        rank, discarded = _truncation(squares, cap, threshold_sq)
        squares, vectors = squares[:rank], vectors[:, :rank]
    if wide:
        return np.ascontiguousarray(vectors), discarded
    if squares[-1] <= floor:
        return _svd_basis(matrix, cap, threshold_sq)
    return _orthonormalized(matrix @ (vectors / np.sqrt(squares))), discarded


def _leading_eigenpairs(gram: np.ndarray, count: int) -> tuple[np.ndarray, np.ndarray]:
    """The ``count`` largest eigenvalues (clipped at 0, descending) of a symmetric PSD
    matrix and their eigenvectors.  A few of many come from LAPACK's subset solver
    (bisection and inverse iteration, faster here than MRRR), which costs far less than
    computing all of them."""
    size = len(gram)
    if 4 * count < size:
        values, vectors = scipy.linalg.eigh(gram, subset_by_index=[size - count, size - 1], driver="evx")
    else:
        values, vectors = np.linalg.eigh(gram)
    return np.clip(values[::-1][:count], 0.0, None), vectors[:, ::-1][:, :count]


def _svd_basis(matrix: np.ndarray, cap: int, threshold_sq: float | None) -> tuple[np.ndarray, float]:
    left, singular, _ = np.linalg.svd(matrix, full_matrices=False)
    rank, discarded = _truncation(singular**2, cap, threshold_sq)
    return np.ascontiguousarray(left[:, :rank]), discarded


def _truncation(squares: np.ndarray, cap: int, threshold_sq: float | None) -> tuple[int, float]:
    """The rank to keep of a descending spectrum of squared singular values, and the
    energy the rest holds."""
    tails = np.concatenate([np.cumsum(squares[::-1])[::-1], [0.0]])  # tails[r] = Σ_{l ≥ r} σ_l²
    rank = min(cap, len(squares))
    if threshold_sq is not None:
        rank = min(rank, max(1, int(np.argmax(tails <= threshold_sq))))
    return rank, float(tails[rank])


def _orthonormalized(basis: np.ndarray) -> np.ndarray:
    """``basis (basisᵀ basis)^(-1/2)``: the nearest orthonormal basis of the same span, for
    a basis that is orthonormal up to rounding."""
    values, vectors = np.linalg.eigh(basis.T @ basis)
    return basis @ ((vectors / np.sqrt(values)) @ vectors.T)
