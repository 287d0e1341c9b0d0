"""Block-term decomposition (De Lathauwer's rank-(R_1..R_d) terms) fitted greedily.

Blocks are fitted one after another, each to the residual the earlier ones leave: a
Tucker approximation initialized from the truncated HOSVD of the residual and refined by
``iters`` sweeps of HOOI (alternating least squares: each factor becomes the leading left
singular subspace of the residual projected on all other factors).  A Tucker fit is an
orthogonal projection, so every block lowers the residual by the energy of its core and
the error never grows with the number of blocks.  Deterministic: no random starts.

Blocks stop being added once the residual is zero (to the matrix's precision) or when one
more block would store more parameters than the dense matrix: past that point a block term
can only cost more than the matrix it approximates.
"""

from __future__ import annotations

import math
from typing import Sequence

import numpy as np
import opt_einsum

from ...errors import PassError
from ...ir.tensor_formats import BTMap
from .common import (
    Decomposition, check_cap, check_eps, output_dtype, relative_error, squared_norm, truncated_basis, unfold,
)
from .factorize import Tensorization

ZERO_RESIDUAL_EPS = 16
"""A residual whose relative error is within this many machine epsilons of the matrix's
dtype is zero: what remains is rounding, and another block would only fit noise."""
HOOI_TOLERANCE = 1e-6
"""HOOI stops early once a sweep raises the core's energy by less than this fraction: the
captured energy is the fitted part of ‖W‖², so the error then changes by less than about
this fraction of ‖W‖² per further sweep."""


def bt_rank_bounds(tensorization: Tensorization) -> list[int]:
    """The largest useful Tucker rank per mode: ``R_k ≤ min(p_k, Π_{l≠k} p_l)``."""
    sizes = tensorization.mode_sizes
    return [min(p, math.prod(sizes) // p) for p in sizes]


def bt_als(matrix: np.ndarray, tensorization: Tensorization, *, blocks: int = 1, tucker_rank: int | None = None,
           ranks: Sequence[int] | None = None, iters: int = 10, eps: float | None = None) -> Decomposition:
    """Decompose ``matrix`` into a BT map of up to ``blocks`` Tucker blocks.

    ``tucker_rank``: a cap on every mode's Tucker rank, clamped to ``bt_rank_bounds``;
    ``ranks``: the exact Tucker ranks, one per mode (excludes ``tucker_rank``); with
    neither, the bounds (one block is then exact).  ``iters``: HOOI sweeps per block;
    ``eps``: stop adding blocks once the relative error is at most ``eps``.  Blocks also
    stop once the residual is zero or when the next one would take the parameter count
    past the dense matrix's (the first block is always fitted).
    """
    check_eps("bt", eps)
    check_cap("bt", "blocks", blocks)
    check_cap("bt", "tucker-rank", tucker_rank)
    if not isinstance(iters, (int, np.integer)) or iters < 0:
        raise PassError(f"bt: iters {iters} must be a non-negative integer")
    bounds = bt_rank_bounds(tensorization)
    if ranks is not None:
        if tucker_rank is not None:
            raise PassError("bt: explicit ranks exclude tucker-rank")
        check_bt_ranks(ranks, tensorization)
    caps = list(ranks) if ranks is not None else [min(b, tucker_rank or b) for b in bounds]
    residual = tensorization.tensor(matrix)
    norm_sq = squared_norm(residual)
    target = max(eps or 0.0, ZERO_RESIDUAL_EPS * float(np.finfo(output_dtype(matrix)).eps))
    fitted: list[tuple[np.ndarray, list[np.ndarray]]] = []
    params = 0
    while len(fitted) < blocks:
        if fitted and (squared_norm(residual) <= target**2 * norm_sq
                       or params + _block_params(caps, tensorization) > matrix.size):
            break
        core, factors = _fit_tucker(residual, caps, iters)
        residual -= _expand(core, factors)
        fitted.append((core, factors))
        params += core.size + sum(f.size for f in factors)

    dtype = output_dtype(matrix)
    blocks_out = [(core.astype(dtype), [f.reshape(m, n, -1).astype(dtype) for f, m, n in
                                         zip(factors, tensorization.out_factors, tensorization.in_factors)])
                  for core, factors in fitted]
    bt = BTMap.from_blocks(blocks_out, out_pad=tensorization.out_pad, in_pad=tensorization.in_pad)
    return Decomposition(bt, [list(r) for r in bt.ranks], relative_error(squared_norm(residual), norm_sq))


def _block_params(caps: list[int], tensorization: Tensorization) -> int:
    """The most parameters one block of Tucker ranks ``caps`` stores: its core and factors."""
    return math.prod(caps) + sum(p * r for p, r in zip(tensorization.mode_sizes, caps))


def check_bt_ranks(ranks: Sequence[int], tensorization: Tensorization) -> None:
    """Explicit Tucker ranks: one positive integer per mode, each within ``bt_rank_bounds``."""
    ranks, bounds = list(ranks), bt_rank_bounds(tensorization)
    if len(ranks) != tensorization.d or min(ranks) < 1:
        raise PassError(f"bt: ranks {ranks} must be {tensorization.d} positive Tucker ranks, one per mode of "
                        f"shape {tensorization.describe()}")
    for k, (rank, bound) in enumerate(zip(ranks, bounds)):
        if rank > bound:
            raise PassError(f"bt: Tucker rank R_{k + 1} = {rank} in {ranks} exceeds {bound}, the most that shape "
                            f"{tensorization.describe()} allows there (full ranks are {bounds})")


def _fit_tucker(tensor: np.ndarray, caps: list[int], iters: int) -> tuple[np.ndarray, list[np.ndarray]]:
    """Tucker fit ``(core, factors)`` with orthonormal factors ``p_k × R_k``: sequentially
    truncated HOSVD (each mode's subspace from the tensor already projected on the earlier
    modes), refined by HOOI sweeps."""
    d = tensor.ndim
    factors: list[np.ndarray] = []
    core = tensor
    for k in range(d):
        factors.append(truncated_basis(unfold(core, [k]), caps[k])[0])
        core = _mode_product(core, factors[k], k)
    energy = squared_norm(core)
    for _ in range(iters):
        factors[0] = truncated_basis(unfold(_project(tensor, factors, range(1, d)), [0]), caps[0])[0]
        head = _mode_product(tensor, factors[0], 0)
        for k in range(1, d):
            partial = _project(head, factors, [m for m in range(1, d) if m != k])
            factors[k] = truncated_basis(unfold(partial, [k]), caps[k])[0]
        core = _mode_product(partial, factors[-1], d - 1) if d > 1 else head
        new_energy = squared_norm(core)
        converged = new_energy - energy <= HOOI_TOLERANCE * energy
        energy = new_energy
        if converged:
            break
    return core, factors


def _mode_product(tensor: np.ndarray, basis: np.ndarray, k: int) -> np.ndarray:
    """``tensor ×_k basisᵀ``: axis ``k`` (size ``p_k``) becomes the basis's ``R_k``
    columns.  The end axes go through one matrix product without moving data."""
    shape = list(tensor.shape)
    if k == 0:
        result = basis.T @ tensor.reshape(shape[0], -1)
    elif k == tensor.ndim - 1:
        result = tensor.reshape(-1, shape[-1]) @ basis
    else:
        result = np.moveaxis(np.tensordot(tensor, basis, axes=([k], [0])), -1, k)
    return result.reshape(shape[:k] + [basis.shape[1]] + shape[k + 1:])


def _project(tensor: np.ndarray, factors: list[np.ndarray], modes) -> np.ndarray:
    """``tensor ×_k U_kᵀ`` for every mode in ``modes``, the end modes first."""
    last = tensor.ndim - 1
    for k in sorted(modes, key=lambda m: (m not in (0, last), -m)):
        tensor = _mode_product(tensor, factors[k], k)
    return tensor


def _expand(core: np.ndarray, factors: list[np.ndarray]) -> np.ndarray:
    """The full tensor ``core ×_k U_k``."""
    d = core.ndim
    ranks = [opt_einsum.get_symbol(k) for k in range(d)]
    modes = [opt_einsum.get_symbol(d + k) for k in range(d)]
    equation = ",".join(["".join(ranks)] + [modes[k] + ranks[k] for k in range(d)]) + "->" + "".join(modes)
    return opt_einsum.contract(equation, core, *factors)
