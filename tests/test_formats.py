"""The decomposed linear-map formats tt, bt and ht.

* applying a map equals multiplying by its dense matrix, and that matrix equals an
  independent ``np.einsum`` reconstruction from the cores written out from the
  conventions (row index row-major over out factors, column index over in factors,
  padding truncates the output and zero-pads the input);
* every contraction order of a map's network gives the same result; the default order
  costs no more MACs than folding the cores in one by one;
* parameter counts of the papers' UCF11 configurations;
* the verifier names the tensor and the expected and actual shapes; the text form
  prints and parses every format back to an equal map.
"""

from __future__ import annotations

import math
import string

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from tensorgate.errors import ExecutionError, VerifyError
from tensorgate.ir import BTMap, HTMap, Module, TensorType, TTMap, verify_module
from tensorgate.ir.builder import Builder
from tensorgate.ir.parser import parse_module
from tensorgate.ir.printer import module_tensors, print_module
from tensorgate.ir.tensor_formats import balanced_tree, tree_nodes
from tensorgate.ir.types import F32, F64

SETTINGS = settings(max_examples=25, deadline=None)


def einsum_dense(terms: list[str], arrays: list[np.ndarray], rows: str, cols: str, sizes: dict) -> np.ndarray:
    full = np.einsum(",".join(terms) + "->" + rows + cols, *arrays)
    return full.reshape(math.prod(sizes[c] for c in rows), math.prod(sizes[c] for c in cols))


def reference_dense(linear_map) -> np.ndarray:
    """``W`` from the cores by the conventions, with fresh letters (not the map's own network)."""
    d = linear_map.d
    letters = iter(string.ascii_letters)
    rows = "".join(next(letters) for _ in range(d))
    cols = "".join(next(letters) for _ in range(d))
    sizes = dict(zip(rows, linear_map.out_factors)) | dict(zip(cols, linear_map.in_factors))
    if isinstance(linear_map, TTMap):
        bonds = "".join(next(letters) for _ in range(d + 1))
        terms = [bonds[k] + rows[k] + cols[k] + bonds[k + 1] for k in range(d)]
        full = einsum_dense(terms, linear_map.cores, rows, cols, sizes)
    elif isinstance(linear_map, BTMap):
        full = 0
        for core, factors in linear_map.blocks:
            ranks = "".join(next(letters) for _ in range(d))
            terms = [ranks] + [rows[k] + cols[k] + ranks[k] for k in range(d)]
            full = full + einsum_dense(terms, [core, *factors], rows, cols, sizes)
    else:
        bond = {path: next(letters) for path, _ in tree_nodes(linear_map.tree)}
        terms, arrays = [], []
        for path, node in tree_nodes(linear_map.tree):
            if isinstance(node, list):
                terms.append(bond[path] + bond[path + "0"] + bond[path + "1"])
                arrays.append(linear_map.transfers[path])
            else:
                terms.append(rows[node] + cols[node] + bond[path])
                arrays.append(linear_map.leaves[node])
        full = einsum_dense(terms, arrays, rows, cols, sizes)  # the root's bond has size 1
    return full[: linear_map.out_dim, : linear_map.in_dim]


@st.composite
def tensorizations(draw, max_d=4):
    d = draw(st.integers(1, max_d))
    out_factors = [draw(st.integers(1, 4)) for _ in range(d)]
    in_factors = [draw(st.integers(1, 4)) for _ in range(d)]
    out_pad = draw(st.integers(0, math.prod(out_factors) - 1))
    in_pad = draw(st.integers(0, math.prod(in_factors) - 1))
    return out_factors, in_factors, out_pad, in_pad


@st.composite
def tt_maps(draw, dtype=np.float64):
    out_factors, in_factors, out_pad, in_pad = draw(tensorizations())
    d = len(out_factors)
    ranks = [1] + [draw(st.integers(1, 3)) for _ in range(d - 1)] + [1]
    rng = np.random.default_rng(draw(st.integers(0, 2**32 - 1)))
    cores = [rng.standard_normal((ranks[k], out_factors[k], in_factors[k], ranks[k + 1])).astype(dtype)
             for k in range(d)]
    return TTMap.from_cores(cores, out_pad=out_pad, in_pad=in_pad)


@st.composite
def bt_maps(draw, dtype=np.float64):
    out_factors, in_factors, out_pad, in_pad = draw(tensorizations())
    d = len(out_factors)
    rng = np.random.default_rng(draw(st.integers(0, 2**32 - 1)))
    blocks = []
    for _ in range(draw(st.integers(1, 3))):
        ranks = [draw(st.integers(1, 3)) for _ in range(d)]
        blocks.append((rng.standard_normal(ranks).astype(dtype),
                       [rng.standard_normal((m, n, r)).astype(dtype)
                        for m, n, r in zip(out_factors, in_factors, ranks)]))
    return BTMap.from_blocks(blocks, out_pad=out_pad, in_pad=in_pad)


@st.composite
def ht_maps(draw, dtype=np.float64):
    out_factors, in_factors, out_pad, in_pad = draw(tensorizations())
    d = len(out_factors)
    modes = draw(st.permutations(range(d)))
    tree = balanced_tree(list(modes)) if draw(st.booleans()) else _caterpillar(list(modes))
    rng = np.random.default_rng(draw(st.integers(0, 2**32 - 1)))
    rank = {path: (1 if not path else draw(st.integers(1, 3))) for path, _ in tree_nodes(tree)}
    leaves, transfers = [None] * d, {}
    for path, node in tree_nodes(tree):
        if isinstance(node, list):
            transfers[path] = rng.standard_normal((rank[path], rank[path + "0"], rank[path + "1"])).astype(dtype)
        else:
            leaves[node] = rng.standard_normal((out_factors[node], in_factors[node], rank[path])).astype(dtype)
    return HTMap.from_tree(tree, leaves, transfers, out_pad=out_pad, in_pad=in_pad)


def _caterpillar(modes):
    """The unbalanced tree ``[[[m0, m1], m2], m3]``."""
    tree = modes[0]
    for mode in modes[1:]:
        tree = [tree, mode]
    return tree


any_map = st.one_of(tt_maps(), bt_maps(), ht_maps())


@SETTINGS
@given(any_map, st.integers(0, 2**32 - 1))
def test_apply_equals_dense_product_and_dense_equals_reference(linear_map, seed):
    linear_map.verify()
    dense = linear_map.to_dense()
    assert dense.shape == (linear_map.out_dim, linear_map.in_dim)
    np.testing.assert_allclose(dense, reference_dense(linear_map), rtol=1e-12, atol=1e-12)
    x = np.random.default_rng(seed).standard_normal((2, 3, linear_map.in_dim))
    np.testing.assert_allclose(linear_map.apply(x), x @ dense.T, rtol=1e-10, atol=1e-10)


@SETTINGS
@given(st.one_of(tt_maps(np.float32), bt_maps(np.float32), ht_maps(np.float32)))
def test_float32_maps_apply_in_float32(linear_map):
    linear_map.verify()
    x = np.random.default_rng(0).standard_normal((4, linear_map.in_dim)).astype(np.float32)
    y = linear_map.apply(x)
    assert y.dtype == np.float32
    exact = x.astype(np.float64) @ linear_map.astype(np.float64).to_dense().T
    scale = np.abs(x).astype(np.float64) @ np.abs(linear_map.astype(np.float64).to_dense()).T
    assert np.all(np.abs(y - exact) <= 1e-4 * (scale + 1e-30))


def _fold_path(num_operands: int, order: list[int]) -> tuple[tuple[int, int], ...]:
    path, current = [], 0
    for step, index in enumerate(order):
        path.append((current, index))
        current = num_operands + step
    return tuple(path)


@SETTINGS
@given(any_map, st.randoms(use_true_random=False))
def test_every_fold_order_gives_the_same_result_and_default_is_cheapest(linear_map, random):
    x = np.random.default_rng(1).standard_normal((3,) + linear_map.in_factors)
    for network in linear_map.networks():
        order = list(range(1, len(network.terms)))
        random.shuffle(order)
        fold = _fold_path(len(network.terms), order)
        np.testing.assert_allclose(network.contract(x, fold), network.contract(x), rtol=1e-10, atol=1e-10)
        assert network.macs() <= network.macs(fold)


def test_macs_of_a_fold_order_by_hand():
    tt = TTMap.from_cores([np.ones((1, 2, 3, 4)), np.ones((4, 5, 6, 1))])
    network = tt.networks()[0]
    # x[b, n1, n2] · g1[r, m2, n2] (sum over n2: 3·6·4·5 MACs), then · g0[m1, n1, r] (3·4·5·2 MACs)
    assert network.macs(_fold_path(3, [2, 1])) == 3 * 6 * 4 * 5 + 3 * 4 * 5 * 2


def test_ucf11_parameter_counts_of_the_papers():
    """TT-LSTM / BT-LSTM on UCF11: four gates' W stacked, 1024 x 57600 = 16·4·4·4 x 8·20·20·18."""
    out_factors, in_factors = (16, 4, 4, 4), (8, 20, 20, 18)
    ranks = [1, 4, 4, 4, 1]
    tt = TTMap.from_cores([np.zeros((ranks[k], m, n, ranks[k + 1]), np.float32)
                           for k, (m, n) in enumerate(zip(out_factors, in_factors))])
    assert (tt.out_dim, tt.in_dim, tt.params()) == (1024, 57600, 3360)
    bt = BTMap.from_blocks([(np.zeros((4,) * 4, np.float32), [np.zeros((m, n, 4), np.float32)
                                                               for m, n in zip(out_factors, in_factors)])] * 2)
    assert (bt.out_dim, bt.in_dim, bt.params()) == (1024, 57600, 3392)


def test_padding_truncates_output_and_pads_input():
    rng = np.random.default_rng(2)
    tt = TTMap.from_cores([rng.standard_normal((1, 2, 3, 2)), rng.standard_normal((2, 2, 3, 1))], out_pad=1, in_pad=2)
    assert (tt.out_dim, tt.in_dim) == (3, 7)
    full = TTMap.from_cores(tt.cores).to_dense()
    np.testing.assert_array_equal(tt.to_dense(), full[:3, :7])
    x = rng.standard_normal(7)
    np.testing.assert_allclose(tt.apply(x), full[:3] @ np.concatenate([x, [0, 0]]))


def test_meta_and_tensors_round_trip():
    rng = np.random.default_rng(3)
    tree = [[0, 1], 2]
    ht = HTMap.from_tree(tree, [rng.standard_normal((2, 2, 2)) for _ in range(3)],
                         {"": rng.standard_normal((1, 3, 2)), "0": rng.standard_normal((3, 2, 2))}, in_pad=1)
    assert ht.meta() == {"out_factors": [2, 2, 2], "in_factors": [2, 2, 2], "in_pad": 1, "tree": tree,
                         "ranks": [1, 3, 2, 2, 2]}
    assert list(ht.tensors()) == ["u0", "u1", "u2", "t", "t0"]
    assert HTMap.from_parts(ht.meta(), ht.tensors()) == ht
    bt = BTMap.from_blocks([(rng.standard_normal((2, 1)),
                             [rng.standard_normal((2, 3, 2)), rng.standard_normal((1, 2, 1))])])
    assert list(bt.tensors()) == ["b0.core", "b0.f0", "b0.f1"]
    assert BTMap.from_parts(bt.meta(), bt.tensors()) == bt


@pytest.mark.parametrize("dtype,element", [(np.float32, F32), (np.float64, F64)])
def test_text_form_round_trips_every_format(dtype, element):
    rng = np.random.default_rng(4)
    def tensor(*shape):
        return rng.standard_normal(shape).astype(dtype)

    maps = [
        TTMap.from_cores([tensor(1, 4, 5, 3), tensor(3, 2, 6, 1)], in_pad=3),
        BTMap.from_blocks([(tensor(2, 3), [tensor(4, 5, 2), tensor(2, 6, 3)])] * 2, out_pad=1, in_pad=3),
        HTMap.from_tree([1, 0], [tensor(4, 5, 2), tensor(2, 6, 3)], {"": tensor(1, 3, 2)}, in_pad=3),
    ]
    module = Module("m")
    builder = Builder(module)
    x = builder.input("x", TensorType((2, 27), element))
    for linear_map in maps:
        y = builder.op("linear", [x], {"weight": linear_map}).result
        module.outputs.append(y)
    verify_module(module)
    text = print_module(module)
    parsed = parse_module(text, module_tensors(module))
    verify_module(parsed)
    for op, original in zip(parsed.ops, maps):
        assert op.attrs["weight"] == original
    assert print_module(parsed) == text


def _tt(shapes, **kwargs):
    return TTMap.from_cores([np.zeros(s) for s in shapes], **kwargs)


@pytest.mark.parametrize("make,message", [
    (lambda: TTMap([np.zeros((1, 2, 3, 2)), np.zeros((2, 2, 3, 1))], out_factors=[2, 2], in_factors=[3, 3],
                   ranks=[1, 3, 1]),
     "tt map: tensor 'g0' has shape (1, 2, 3, 2), expected (1, 2, 3, 3) from out_factors [2, 2], in_factors [3, 3] "
     "and ranks [1, 3, 1]"),
    (lambda: _tt([(2, 2, 3, 1)]), "tt map: ranks [2, 1] must start and end with 1"),
    (lambda: _tt([(1, 2, 3, 1)], in_pad=3), "tt map: in_pad 3 must be an integer in [0, 3) (the product of [3])"),
    (lambda: TTMap([np.zeros((1, 2, 3, 1), np.int32)], out_factors=[2], in_factors=[3], ranks=[1, 1]),
     "tt map: tensor 'g0' has type int32, expected float32 or float64"),
    (lambda: TTMap.from_cores([np.zeros((1, 2, 3, 2), np.float32), np.zeros((2, 2, 3, 1))]),
     "tt map: tensors mix dtypes float32, float64"),
    (lambda: TTMap([np.zeros((1, 2, 3, 1))], out_factors=[2], in_factors=[3, 1], ranks=[1, 1]),
     "tt map: out_factors [2] and in_factors [3, 1] have different numbers of modes"),
    (lambda: BTMap([(np.zeros((2, 2)), [np.zeros((2, 3, 2)), np.zeros((2, 3, 1))])], out_factors=[2, 2],
                   in_factors=[3, 3], ranks=[[2, 2]]),
     "bt map: tensor 'b0.f1' has shape (2, 3, 1), expected (2, 3, 2)"),
    (lambda: HTMap([np.zeros((2, 3, 2)), np.zeros((2, 3, 2))], {"": np.zeros((1, 2, 3))}, tree=[0, 1],
                   out_factors=[2, 2], in_factors=[3, 3], ranks=[1, 2, 2]),
     "ht map: tensor 't' has shape (1, 2, 3), expected (1, 2, 2)"),
    (lambda: HTMap([np.zeros((2, 3, 2)), np.zeros((2, 3, 2))], {"": np.zeros((1, 2, 2))}, tree=[0, 0],
                   out_factors=[2, 2], in_factors=[3, 3], ranks=[1, 2, 2]),
     "ht map: tree [0, 0] must hold each mode 0..1 exactly once"),
    (lambda: HTMap([np.zeros((2, 3, 2)), np.zeros((2, 3, 2))], {"": np.zeros((1, 2, 2))}, tree=[0, 1],
                   out_factors=[2, 2], in_factors=[3, 3], ranks=[2, 2, 2]),
     "ht map: ranks [2, 2, 2] must start with the root's rank 1"),
])
def test_verify_names_the_tensor_and_the_numbers(make, message):
    with pytest.raises(VerifyError) as caught:
        make().verify()
    assert message in str(caught.value)


def test_from_parts_reports_missing_tensors_and_meta():
    tt = _tt([(1, 2, 3, 1), (1, 2, 3, 1)])
    with pytest.raises(VerifyError, match="tt map: tensors missing g1 \\(expected g0, g1\\)"):
        TTMap.from_parts(tt.meta(), {"g0": tt.cores[0]})
    with pytest.raises(VerifyError, match="tt map: meta entry 'ranks' is missing"):
        TTMap.from_parts({"out_factors": [2, 2], "in_factors": [3, 3]}, tt.tensors())


def test_apply_rejects_a_wrong_input_width():
    with pytest.raises(ExecutionError, match="tt map 4x9: input of shape \\(2, 8\\) does not end in 9"):
        _tt([(1, 2, 3, 1), (1, 2, 3, 1)]).apply(np.zeros((2, 8)))
