"""Properties every decomposition algorithm (TT-SVD, BT HOOI, HT-SVD in both orders) has.

* Full ranks reconstruct ``W`` to 1e-6 relative, over random shapes, numbers of modes,
  factorizations and paddings; the reported error is then 0.
* The map has the matrix's logical shape and the padding of its tensorization, and keeps
  a float32 matrix in float32.
* Caps above what a shape allows are clamped, and the ranks actually used are reported.
* Deterministic: the same input gives the same cores.
"""

from __future__ import annotations

import math

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from tensorgate.passes.decomposition import (
    Tensorization, bt_als, bt_rank_bounds, ht_rank_bounds, ht_svd, tt_rank_bounds, tt_svd,
)
from tensorgate.ir.tensor_formats import balanced_tree

METHODS = {
    "tt": lambda w, t: tt_svd(w, t),
    "bt": lambda w, t: bt_als(w, t),
    "ht leaves-to-root": lambda w, t: ht_svd(w, t),
    "ht root-to-leaves": lambda w, t: ht_svd(w, t, order="root-to-leaves"),
}


@st.composite
def tensorizations(draw, max_d=4, max_factor=4):
    d = draw(st.integers(1, max_d))
    out_factors = tuple(draw(st.integers(1, max_factor)) for _ in range(d))
    in_factors = tuple(draw(st.integers(1, max_factor)) for _ in range(d))
    out_pad = draw(st.integers(0, math.prod(out_factors) // 3))
    in_pad = draw(st.integers(0, math.prod(in_factors) // 3))
    return Tensorization(out_factors, in_factors, out_pad, in_pad)


def relative_error(linear_map, matrix) -> float:
    return float(np.linalg.norm(linear_map.to_dense() - matrix) / np.linalg.norm(matrix))


@settings(max_examples=30, deadline=None)
@given(tensorizations(), st.sampled_from(sorted(METHODS)), st.integers(0, 2**32 - 1))
def test_full_ranks_reconstruct_the_matrix(tensorization, method, seed):
    matrix = np.random.default_rng(seed).standard_normal((tensorization.out_dim, tensorization.in_dim))
    result = METHODS[method](matrix, tensorization)
    result.map.verify()
    assert (result.map.out_dim, result.map.in_dim) == matrix.shape
    assert (result.map.out_pad, result.map.in_pad) == (tensorization.out_pad, tensorization.in_pad)
    assert relative_error(result.map, matrix) <= 1e-6
    assert result.error <= 1e-6


@pytest.mark.parametrize("method", sorted(METHODS))
def test_float32_matrix_gives_float32_cores(method):
    matrix = np.random.default_rng(0).standard_normal((12, 20)).astype(np.float32)
    result = METHODS[method](matrix, Tensorization((3, 4), (4, 5)))
    assert {t.dtype for t in result.map.tensors().values()} == {np.dtype(np.float32)}
    assert relative_error(result.map, matrix) <= 1e-6


@pytest.mark.parametrize("method", sorted(METHODS))
def test_zero_matrix(method):
    result = METHODS[method](np.zeros((6, 8)), Tensorization((2, 3), (2, 4)))
    assert result.error == 0.0
    assert not result.map.to_dense().any()


@pytest.mark.parametrize("method", sorted(METHODS))
def test_same_input_same_cores(method):
    matrix = np.random.default_rng(1).standard_normal((16, 27))
    tensorization = Tensorization((2, 2, 4), (3, 3, 3))
    assert METHODS[method](matrix, tensorization).map == METHODS[method](matrix, tensorization).map


def test_caps_are_clamped_to_the_shape_and_reported():
    tensorization = Tensorization((2, 3, 4), (2, 2, 5))  # mode sizes 4, 6, 20
    matrix = np.random.default_rng(2).standard_normal((24, 20))
    assert tt_rank_bounds(tensorization) == [1, 4, 20, 1]
    assert tt_svd(matrix, tensorization, max_rank=1000).ranks == [1, 4, 20, 1]
    assert tt_svd(matrix, tensorization, max_rank=5).ranks == [1, 4, 5, 1]
    assert bt_rank_bounds(tensorization) == [4, 6, 20]
    assert bt_als(matrix, tensorization, tucker_rank=1000).ranks == [[4, 6, 20]]
    assert bt_als(matrix, tensorization, tucker_rank=4, blocks=2).ranks == [[4, 4, 4], [4, 4, 4]]
    assert bt_als(matrix, tensorization, tucker_rank=5, blocks=2).ranks == [[4, 5, 5]]  # two would pass 24·20
    tree = balanced_tree(3)  # [[0, 1], 2]: pre-order root, [0, 1], 0, 1, 2
    assert ht_rank_bounds(tensorization, tree) == [1, 20, 4, 6, 20]
    assert ht_svd(matrix, tensorization, max_rank=1000).ranks == [1, 20, 4, 6, 20]
    assert ht_svd(matrix, tensorization, max_rank=5).ranks == [1, 5, 4, 5, 5]


def test_explicit_ranks_are_used_exactly():
    tensorization = Tensorization((2, 3, 4), (2, 2, 5))
    matrix = np.random.default_rng(3).standard_normal((24, 20))
    assert tt_svd(matrix, tensorization, ranks=[1, 3, 7, 1]).ranks == [1, 3, 7, 1]
    assert bt_als(matrix, tensorization, ranks=[2, 3, 4]).ranks == [[2, 3, 4]]
    assert ht_svd(matrix, tensorization, ranks=[1, 6, 3, 4, 6]).ranks == [1, 6, 3, 4, 6]
