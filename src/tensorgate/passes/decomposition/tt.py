"""TT-SVD (Oseledets 2011, Algorithm 1) for a tensorized matrix.

Sweeping modes left to right, each step keeps the leading left singular subspace of the
current unfolding as a core and carries ``Uᵀ A`` on.  The errors of the steps are
orthogonal, so ``‖W − W_TT‖² = Σ_k (discarded at step k)`` exactly.  With ``eps``, each
step discards at most ``δ² = ε² ‖W‖² / (d − 1)``, which gives ``‖W − W_TT‖ ≤ ε ‖W‖``.

Speed: an unfolding is wide in the early steps (``r_{k-1} m_k n_k`` rows against the
product of all later modes) and its leading subspace comes from the small Gram matrix
``A Aᵀ`` (see ``common.truncated_basis``), never from an SVD of the wide side.
"""

from __future__ import annotations

import math
from typing import Sequence

import numpy as np

from ...errors import PassError
from ...ir.tensor_formats import TTMap
from .common import Decomposition, check_cap, check_eps, output_dtype, relative_error, squared_norm, truncated_basis
from .factorize import Tensorization


def tt_rank_bounds(tensorization: Tensorization) -> list[int]:
    """The largest useful TT ranks: ``r_k ≤ min(Π_{l≤k} p_l, Π_{l>k} p_l)``."""
    sizes = tensorization.mode_sizes
    return [min(math.prod(sizes[:k]), math.prod(sizes[k:])) for k in range(len(sizes) + 1)]


def tt_svd(matrix: np.ndarray, tensorization: Tensorization, *, eps: float | None = None,
           max_rank: int | None = None, ranks: Sequence[int] | None = None) -> Decomposition:
    """Decompose ``matrix`` into a TT map.

    ``eps``: relative Frobenius error bound (truncation ``δ = ε‖W‖/√(d−1)`` per step);
    ``max_rank``: cap on every rank (clamped to ``tt_rank_bounds``); ``ranks``: the exact
    ranks ``[1, r_1, …, r_{d-1}, 1]`` (excludes ``eps`` and ``max_rank``).  With none of
    them the decomposition is exact (full ranks).
    """
    check_eps("tt", eps)
    check_cap("tt", "max-rank", max_rank)
    if ranks is not None:
        if eps is not None or max_rank is not None:
            raise PassError("tt: explicit ranks exclude eps and max-rank")
        check_tt_ranks(ranks, tensorization)
    bounds = tt_rank_bounds(tensorization)
    caps = list(ranks) if ranks is not None else [min(b, max_rank or b) for b in bounds]
    tensor = tensorization.tensor(matrix)
    norm_sq = squared_norm(tensor)
    d = tensorization.d
    threshold_sq = eps**2 * norm_sq / (d - 1) if eps is not None and d > 1 else None

    cores, rank, discarded = [], 1, 0.0
    rest = tensor.reshape(1, -1)
    for k in range(d - 1):
        unfolding = rest.reshape(rank * tensorization.mode_sizes[k], -1)
        basis, lost = truncated_basis(unfolding, caps[k + 1], threshold_sq)
        new_rank = basis.shape[1]
        cores.append(basis.reshape(rank, tensorization.out_factors[k], tensorization.in_factors[k], new_rank))
        rest = basis.T @ unfolding
        rank, discarded = new_rank, discarded + lost
    cores.append(rest.reshape(rank, tensorization.out_factors[-1], tensorization.in_factors[-1], 1))

    dtype = output_dtype(matrix)
    tt = TTMap.from_cores([core.astype(dtype) for core in cores], out_pad=tensorization.out_pad,
                          in_pad=tensorization.in_pad)
    return Decomposition(tt, list(tt.ranks), relative_error(discarded, norm_sq))


def check_tt_ranks(ranks: Sequence[int], tensorization: Tensorization) -> None:
    """Explicit TT ranks must be ``d + 1`` positive integers ``[1, …, 1]``, each within
    ``tt_rank_bounds`` and within what its neighbours allow (``r_k ≤ r_{k-1} p_k`` and
    ``r_k ≤ p_{k+1} r_{k+1}``)."""
    d, sizes = tensorization.d, tensorization.mode_sizes
    ranks = list(ranks)
    if len(ranks) != d + 1 or ranks[0] != 1 or ranks[-1] != 1 or min(ranks) < 1:
        raise PassError(f"tt: ranks {ranks} must be {d + 1} positive integers [1, r_1, …, r_{d - 1}, 1] "
                        f"for shape {tensorization.describe()}")
    bounds = tt_rank_bounds(tensorization)
    for k in range(1, d):
        allowed = min(bounds[k], ranks[k - 1] * sizes[k - 1], sizes[k] * ranks[k + 1])
        if ranks[k] > allowed:
            raise PassError(f"tt: rank r_{k} = {ranks[k]} in {ranks} exceeds {allowed}, the most that shape "
                            f"{tensorization.describe()} allows there (full ranks are {bounds})")
