"""Bad options are errors that name the method and the numbers."""

from __future__ import annotations

import numpy as np
import pytest

from tensorgate.errors import PassError
from tensorgate.passes.decomposition import Tensorization, bt_als, ht_svd, tt_svd

SHAPE = Tensorization((2, 3, 4), (2, 2, 5))  # 24 x 20, mode sizes 4, 6, 20
MATRIX = np.random.default_rng(0).standard_normal((24, 20))


@pytest.mark.parametrize("call,message", [
    (lambda: tt_svd(MATRIX, SHAPE, eps=1.5), "tt: eps 1.5 must be in (0, 1)"),
    (lambda: tt_svd(MATRIX, SHAPE, eps=0.0), "tt: eps 0.0 must be in (0, 1)"),
    (lambda: ht_svd(MATRIX, SHAPE, eps=-0.1), "ht: eps -0.1 must be in (0, 1)"),
    (lambda: bt_als(MATRIX, SHAPE, eps=1.0), "bt: eps 1.0 must be in (0, 1)"),
    (lambda: tt_svd(MATRIX, SHAPE, max_rank=0), "tt: max-rank 0 must be a positive integer"),
    (lambda: bt_als(MATRIX, SHAPE, blocks=0), "bt: blocks 0 must be a positive integer"),
    (lambda: bt_als(MATRIX, SHAPE, tucker_rank=0), "bt: tucker-rank 0 must be a positive integer"),
    (lambda: bt_als(MATRIX, SHAPE, iters=-1), "bt: iters -1 must be a non-negative integer"),
    (lambda: bt_als(MATRIX, SHAPE, ranks=[2, 2]),
     "bt: ranks [2, 2] must be 3 positive Tucker ranks, one per mode of shape 2x2x5:2x3x4"),
    (lambda: bt_als(MATRIX, SHAPE, ranks=[2, 7, 2]),
     "bt: Tucker rank R_2 = 7 in [2, 7, 2] exceeds 6, the most that shape 2x2x5:2x3x4 allows there "
     "(full ranks are [4, 6, 20])"),
    (lambda: bt_als(MATRIX, SHAPE, ranks=[2, 2, 2], tucker_rank=2), "bt: explicit ranks exclude tucker-rank"),
    (lambda: tt_svd(MATRIX, SHAPE, ranks=[1, 4, 1]),
     "tt: ranks [1, 4, 1] must be 4 positive integers [1, r_1, …, r_2, 1] for shape 2x2x5:2x3x4"),
    (lambda: tt_svd(MATRIX, SHAPE, ranks=[1, 4, 21, 1]),
     "tt: rank r_2 = 21 in [1, 4, 21, 1] exceeds 20, the most that shape 2x2x5:2x3x4 allows there "
     "(full ranks are [1, 4, 20, 1])"),
    (lambda: tt_svd(MATRIX, SHAPE, ranks=[1, 2, 13, 1]),
     "tt: rank r_2 = 13 in [1, 2, 13, 1] exceeds 12"),
    (lambda: tt_svd(MATRIX, SHAPE, ranks=[1, 2, 3, 1], eps=0.1), "tt: explicit ranks exclude eps and max-rank"),
    (lambda: ht_svd(MATRIX, SHAPE, ranks=[1, 4, 4]),
     "ht: ranks [1, 4, 4] must be 5 positive integers, one per node of tree [[0, 1], 2] in pre-order"),
    (lambda: ht_svd(MATRIX, SHAPE, ranks=[1, 5, 4, 6, 6]),
     "ht: ranks [1, 5, 4, 6, 6]: the root's children split one spectrum and need the same rank, got 5 and 6"),
    (lambda: ht_svd(MATRIX, SHAPE, ranks=[1, 5, 5, 6, 5]),
     "ht: rank 5 of node '00' (0) in [1, 5, 5, 6, 5] exceeds 4"),
    (lambda: ht_svd(MATRIX, SHAPE, tree=[[0, 1], 1]), "ht: tree [[0, 1], 1] must hold each mode 0..2 exactly once"),
    (lambda: ht_svd(MATRIX, SHAPE, order="sideways"), "ht: unknown order 'sideways'"),
    (lambda: tt_svd(np.zeros((24, 21)), SHAPE),
     "shape 2x2x5:2x3x4 tensorizes a 24x20 matrix, not one of shape 24x21"),
])
def test_bad_options(call, message):
    with pytest.raises(PassError) as caught:
        call()
    assert message in str(caught.value)
