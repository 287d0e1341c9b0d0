"""Truncation: error bounds and how the error moves with the ranks.

* TT-SVD and HT-SVD meet ``‖W − Ŵ‖ ≤ ε‖W‖``; the error they report is the measured one
  (TT, HT leaves-to-root: nested projections) or an upper bound of it (HT root-to-leaves).
* The error never increases as max-rank grows (TT, HT leaves-to-root); BT's error falls as blocks are
  added, and HOOI sweeps never make a block worse than its HOSVD start.
* A threshold too small for the Gram matrix's precision falls back to an SVD, which
  still picks the exact rank; tiny eps bounds are met on a steep spectrum.
* The papers' UCF11 configuration (1024 x 57600, shape 8x20x20x18:16x4x4x4): TT ranks
  [1, 4, 4, 4, 1] give 3,360 parameters and BT with 2 blocks of Tucker rank 4 gives 3,392.
"""

from __future__ import annotations

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from tensorgate.passes.decomposition import Tensorization, bt_als, ht_svd, parse_shape, tt_svd
from tensorgate.passes.decomposition.common import GRAM_MIN_THRESHOLD, truncated_basis

SLACK = 1e-9  # float64 rounding in the measured errors


@st.composite
def tensorizations(draw):
    d = draw(st.integers(2, 4))
    return Tensorization(tuple(draw(st.integers(1, 4)) for _ in range(d)),
                         tuple(draw(st.integers(2, 4)) for _ in range(d)))


def decaying_matrix(tensorization: Tensorization, seed: int) -> np.ndarray:
    """A random matrix with a decaying spectrum, so that truncation has something to choose."""
    rng = np.random.default_rng(seed)
    rows, cols = tensorization.out_dim, tensorization.in_dim
    left, _ = np.linalg.qr(rng.standard_normal((rows, min(rows, cols))))
    right, _ = np.linalg.qr(rng.standard_normal((cols, min(rows, cols))))
    return (left * 0.6 ** np.arange(left.shape[1])) @ right.T + 0.01 * rng.standard_normal((rows, cols))


def measured(linear_map, matrix) -> float:
    return float(np.linalg.norm(linear_map.to_dense() - matrix) / np.linalg.norm(matrix))


EPS_METHODS = {
    "tt": (tt_svd, True),
    "ht leaves-to-root": (ht_svd, True),
    "ht root-to-leaves": (lambda w, t, **kw: ht_svd(w, t, order="root-to-leaves", **kw), False),
}


@settings(max_examples=30, deadline=None)
@given(tensorizations(), st.sampled_from(sorted(EPS_METHODS)), st.floats(0.01, 0.95), st.integers(0, 2**32 - 1))
def test_eps_bound_is_met_and_reported(tensorization, method, eps, seed):
    decompose, exact = EPS_METHODS[method]
    matrix = decaying_matrix(tensorization, seed)
    result = decompose(matrix, tensorization, eps=eps)
    error = measured(result.map, matrix)
    assert error <= eps + SLACK
    if exact:
        assert result.error == pytest.approx(error, rel=1e-6, abs=SLACK)
    else:
        assert error <= result.error + SLACK


@settings(max_examples=30, deadline=None)
@given(tensorizations(), st.sampled_from(["tt", "ht leaves-to-root"]), st.integers(0, 2**32 - 1))
def test_error_never_increases_with_max_rank(tensorization, method, seed):
    """For the nested projections of TT-SVD and leaves-to-root HT-SVD (root-to-leaves
    projections are not nested and carry no such guarantee)."""
    decompose, _ = EPS_METHODS[method]
    matrix = decaying_matrix(tensorization, seed)
    errors = [measured(decompose(matrix, tensorization, max_rank=rank).map, matrix) for rank in range(1, 10)]
    assert all(later <= earlier + SLACK for earlier, later in zip(errors, errors[1:]))


@settings(max_examples=20, deadline=None)
@given(tensorizations(), st.integers(1, 3), st.integers(0, 2**32 - 1))
def test_bt_error_falls_as_blocks_grow(tensorization, tucker_rank, seed):
    """Each block added lowers the error; blocks stop being added before the map would
    store more parameters than the matrix (past the first)."""
    matrix = np.random.default_rng(seed).standard_normal((tensorization.out_dim, tensorization.in_dim))
    errors, counts = [], []
    for blocks in range(1, 5):
        result = bt_als(matrix, tensorization, blocks=blocks, tucker_rank=tucker_rank, iters=3)
        assert result.error == pytest.approx(measured(result.map, matrix), rel=1e-6, abs=SLACK)
        assert len(result.ranks) == 1 or result.map.params() <= matrix.size
        errors.append(result.error)
        counts.append(len(result.ranks))
    for earlier, later, before, after in zip(errors, errors[1:], counts, counts[1:]):
        assert later < earlier or earlier <= SLACK or after == before


@settings(max_examples=20, deadline=None)
@given(tensorizations(), st.integers(1, 3), st.integers(0, 2**32 - 1))
def test_hooi_sweeps_never_worsen_a_block(tensorization, tucker_rank, seed):
    matrix = decaying_matrix(tensorization, seed)
    hosvd = bt_als(matrix, tensorization, tucker_rank=tucker_rank, iters=0).error
    assert bt_als(matrix, tensorization, tucker_rank=tucker_rank, iters=5).error <= hosvd + SLACK


def test_bt_eps_stops_adding_blocks():
    tensorization = Tensorization((2, 3, 4), (3, 4, 5))
    matrix = decaying_matrix(tensorization, 5)
    result = bt_als(matrix, tensorization, blocks=50, tucker_rank=2, eps=0.4)
    assert result.error <= 0.4
    fewer = bt_als(matrix, tensorization, blocks=len(result.ranks) - 1, tucker_rank=2)
    assert fewer.error > 0.4
    unreachable = bt_als(matrix, tensorization, blocks=50, tucker_rank=2, eps=0.3)
    assert unreachable.error > 0.3 and unreachable.map.params() <= matrix.size  # stopped at dense's 1,440


def test_threshold_below_gram_precision_falls_back_to_an_svd():
    """Singular values 1 … 1e-14: a threshold of 1e-21 needs squared singular values far
    below the Gram matrix's noise (about 1e-16); the SVD still finds the exact rank."""
    assert 1e-21 < GRAM_MIN_THRESHOLD
    rng = np.random.default_rng(0)
    singular = np.logspace(0, -14, 20)
    left, _ = np.linalg.qr(rng.standard_normal((20, 20)))
    right, _ = np.linalg.qr(rng.standard_normal((200, 20)))
    tails = np.cumsum((singular**2)[::-1])[::-1]
    rank = int(np.argmax(tails <= 1e-21))
    basis, discarded = truncated_basis((left * singular) @ right.T, 20, 1e-21)
    assert basis.shape == (20, rank)
    assert discarded == pytest.approx(tails[rank], rel=1e-3)


@pytest.mark.parametrize("method", sorted(EPS_METHODS))
def test_tiny_eps_on_a_tensor_with_a_steep_spectrum(method):
    """A sum of 30 rank-one tensors weighted 1 … 1e-15: eps = 1e-9 keeps some of them."""
    tensorization = Tensorization((4, 4, 4), (3, 3, 9))
    rng = np.random.default_rng(6)
    vectors = [rng.standard_normal((30, p)) for p in tensorization.mode_sizes]
    tensor = np.einsum("k,ka,kb,kc->abc", np.logspace(0, -15, 30), *(v / np.linalg.norm(v, axis=1, keepdims=True)
                                                                   for v in vectors))
    matrix = tensor.reshape(4, 3, 4, 3, 4, 9).transpose(0, 2, 4, 1, 3, 5).reshape(64, 81)
    decompose, _ = EPS_METHODS[method]
    result = decompose(matrix, tensorization, eps=1e-9)
    assert measured(result.map, matrix) <= 1e-9
    assert max(result.ranks) < 30


@pytest.mark.slow
def test_ucf11_configuration_parameter_counts():
    """Four gates' W stacked, 1024 x 57600; random weights (the count depends on the ranks only)."""
    matrix = np.random.default_rng(7).standard_normal((1024, 57600), dtype=np.float32)
    tensorization = parse_shape("8x20x20x18:16x4x4x4", 1024, 57600)
    tt = tt_svd(matrix, tensorization, ranks=[1, 4, 4, 4, 1])
    assert (tt.ranks, tt.map.params()) == ([1, 4, 4, 4, 1], 3360)
    bt = bt_als(matrix, tensorization, blocks=2, tucker_rank=4, iters=1)
    assert (bt.ranks, bt.map.params()) == ([[4, 4, 4, 4]] * 2, 3392)
