"""Choosing tensorizations: balanced factors, padding of sizes that do not factor well,
and the shape text ``N1x…:M1x…`` (input factors first)."""

from __future__ import annotations

import math

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from tensorgate.errors import PassError
from tensorgate.passes.decomposition import Tensorization, auto_tensorization, balanced_factors, parse_shape
from tensorgate.passes.decomposition.factorize import BALANCE_LIMIT


def brute_force_smallest_largest_factor(size: int, d: int) -> int:
    """The smallest possible largest factor of ``size`` into ``d`` factors, by trying all."""
    def best(remaining: int, parts: int) -> int:
        if parts == 1:
            return remaining
        return min(max(f, best(remaining // f, parts - 1)) for f in range(1, remaining + 1) if remaining % f == 0)
    return best(size, d)


@settings(max_examples=60, deadline=None)
@given(st.integers(1, 3000), st.integers(1, 4))
def test_balanced_factors(size, d):
    factors, pad = balanced_factors(size, d)
    assert len(factors) == d and math.prod(factors) == size + pad
    assert max(factors) <= BALANCE_LIMIT * (size + pad) ** (1 / d) + 1e-9
    assert max(factors) == brute_force_smallest_largest_factor(size + pad, d)
    for smaller in range(size, size + pad):
        assert brute_force_smallest_largest_factor(smaller, d) > BALANCE_LIMIT * smaller ** (1 / d)


def test_papers_sizes():
    assert balanced_factors(384, 4) == ((6, 4, 4, 4), 0)
    assert balanced_factors(57600, 4) == ((16, 16, 15, 15), 0)
    assert balanced_factors(1024, 4) == ((8, 8, 4, 4), 0)
    # 61056 = 2^7 · 3^2 · 53: the factor 53 is more than twice 61056^(1/4) ≈ 15.7
    factors, pad = balanced_factors(61056, 4)
    assert pad > 0 and max(factors) < 32


def test_a_prime_is_padded():
    assert balanced_factors(97, 2) == ((14, 7), 1)
    found = auto_tensorization(97, 1031, 2)
    assert (found.out_dim, found.in_dim) == (97, 1031) and found.out_pad == 1 and found.in_pad > 0


def test_auto_tensorization_pairs_large_output_with_small_input_factors():
    found = auto_tensorization(384, 1024, 4)
    assert found == Tensorization((6, 4, 4, 4), (4, 4, 8, 8))
    assert found.mode_sizes == (24, 16, 32, 32)


def test_padding_refused_suggests_a_shape():
    with pytest.raises(PassError) as caught:
        auto_tensorization(384, 61057, 4, allow_pad=False)
    message = str(caught.value)
    assert "61057 = 61057 has no balanced factorization into 4 factors" in message
    assert "it would use " + str(auto_tensorization(384, 61057, 4)) in message


def test_parse_shape():
    found = parse_shape("16x8x9x53:4x4x4x6", 384, 61056)
    assert found == Tensorization((4, 4, 4, 6), (16, 8, 9, 53))
    assert str(found) == "16x8x9x53:4x4x4x6"


@pytest.mark.parametrize("text,message", [
    ("16x8x9x53", "shape '16x8x9x53' is not of the form N1xN2x…:M1xM2x… (input factors : output factors)"),
    ("16x8x9:4x4x4x6", "shape '16x8x9:4x4x4x6' has 3 input factors but 4 output factors"),
    ("16x8x9x52:4x4x4x6", "shape '16x8x9x52:4x4x4x6': the input factors multiply to 59904, but the matrix has "
                          "61056 columns"),
    ("16x8x9x53:4x4x4x5", "the output factors multiply to 320, but the matrix has 384 rows"),
    ("0x8:4x96", "shape '0x8:4x96' has a zero factor"),
])
def test_bad_shapes(text, message):
    with pytest.raises(PassError) as caught:
        parse_shape(text, 384, 61056)
    assert message in str(caught.value)


def test_tensor_interleaves_modes_and_pads():
    tensorization = Tensorization((2, 3), (2, 2), out_pad=1, in_pad=1)
    matrix = np.arange(15.0).reshape(5, 3)
    tensor = tensorization.tensor(matrix)
    padded = np.zeros((6, 4))
    padded[:5, :3] = matrix
    assert tensor.shape == (4, 6) and tensor.dtype == np.float64
    for i1, i2, j1, j2 in np.ndindex(2, 3, 2, 2):
        assert tensor[i1 * 2 + j1, i2 * 2 + j2] == padded[i1 * 3 + i2, j1 * 2 + j2]
    with pytest.raises(PassError, match="shape 2x2:2x3 \\(out_pad 1, in_pad 1\\) tensorizes a 5x3 matrix, "
                                        "not one of shape 5x4"):
        tensorization.tensor(np.zeros((5, 4)))


@pytest.mark.parametrize("out_dim, in_dim, d, most", [(384, 61056, 50, 15), (4, 4, 3, 2), (7, 1024, 11, 10)])
def test_too_many_modes_is_an_error_naming_the_limit(out_dim, in_dim, d, most):
    with pytest.raises(PassError, match=rf"d={d} modes is too many for a {out_dim}x{in_dim} map.*at most {most}"):
        auto_tensorization(out_dim, in_dim, d)
    assert len(auto_tensorization(out_dim, in_dim, most).out_factors) == most


def test_a_map_too_small_for_its_modes_stays_dense_with_a_note_or_is_a_clear_error():
    from tensorgate.ir import F32, DenseMap, Module, TensorType
    from tensorgate.ir.builder import Builder
    from tensorgate.passes import PassManager

    module = Module("m")
    build = Builder(module)
    x = build.input("x", TensorType((2, 1, 6), F32))
    module.outputs = build.op("lstm", [x], {"hidden_size": 2, "w": [DenseMap(np.ones((8, 6), np.float32))],
                                            "r": [DenseMap(np.ones((8, 2), np.float32))]}).results
    assert PassManager.parse("decompose{d=50}").run(module) is module
    assert all(m.format == "dense" for key in ("w", "r") for m in module.ops[0].attrs[key])
    note = "map 'w' #0 (8x6) left dense: too small to factor into d=50 modes (at most 3)"
    assert any(note in text for text in module.notes)
    with pytest.raises(PassError, match="d=50 modes is too many"):
        PassManager.parse("decompose{d=50 dense-fallback=false}").run(module)
