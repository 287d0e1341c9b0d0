"""The ``decompose`` pass on LSTM modules built directly.

* Exact decompositions (no truncation option) leave the model's outputs unchanged, for
  every method, weights choice, gate grouping and direction; the NumPy runtime applies
  the maps without ever rebuilding a dense matrix.
* The maps it makes: one per direction (stacked) or per gate, the explicit or automatic
  tensorization with its padding, the ranks asked for; the text form round-trips.
* Bad options are errors naming the pass option, or the op, map and numbers.
"""

from __future__ import annotations

import numpy as np
import pytest

from tensorgate.backend.artifact import build_manifest
from tensorgate.errors import PassError, PipelineError
from tensorgate.ir import BTMap, DenseMap, F32, HTMap, Module, TensorType, TTMap, verify_module
from tensorgate.ir.builder import Builder
from tensorgate.ir.parser import parse_module
from tensorgate.ir.printer import module_tensors, print_module
from tensorgate.ir.tensor_formats import TensorizedMap
from tensorgate.passes import PassManager
from tensorgate.passes.decompose import Decompose, regroup_gates
from tensorgate.interpreter import run_module

T, B = 3, 2


def lstm_module(inputs: int, hidden: int, direction: str = "forward", separate: bool = False, seed: int = 0):
    """An LSTM over ``x[T, B, inputs]`` with dense W/R (stacked per direction, or per gate)."""
    rng = np.random.default_rng(seed)
    dirs = 2 if direction == "bidirectional" else 1
    w = rng.standard_normal((dirs, 4 * hidden, inputs)).astype(np.float32) / np.sqrt(inputs)
    r = rng.standard_normal((dirs, 4 * hidden, hidden)).astype(np.float32) / np.sqrt(hidden)

    def maps(weights):
        if separate:
            return [DenseMap(gate) for d in range(dirs) for gate in np.split(weights[d], 4)]
        return [DenseMap(weights[d]) for d in range(dirs)]

    module = Module("lstm")
    build = Builder(module)
    x = build.input("x", TensorType((T, B, inputs), F32))
    attrs = {"hidden_size": hidden, "direction": direction, "w": maps(w), "r": maps(r),
             "bias": rng.standard_normal((dirs, 8 * hidden)).astype(np.float32)}
    module.outputs = build.op("lstm", [x], attrs).results
    verify_module(module)
    return module


def run(module, seed: int = 1):
    x = np.random.default_rng(seed).standard_normal((T, B, module.inputs[0].type.shape[-1])).astype(np.float32)
    return [out for out in run_module(module, {"x": x}, dtype=np.float64).values()]


@pytest.mark.parametrize("method", ["tt", "bt", "ht"])
@pytest.mark.parametrize("weights,gates,direction", [
    ("input", "stacked", "forward"),
    ("all", "separate", "bidirectional"),
    ("recurrent", "stacked", "reverse"),
])
def test_exact_decomposition_keeps_the_outputs(method, weights, gates, direction, monkeypatch):
    module = lstm_module(12, 4, direction, separate=(gates == "stacked"))
    expected = run(module)
    PassManager([Decompose(method=method, weights=weights, gates=gates, d=2, eps=0)]).run(module)
    (op,) = module.ops_of("lstm")
    for key in ("w", "r"):
        decomposed = weights == "all" or key == {"input": "w", "recurrent": "r"}[weights]
        assert all(isinstance(m, TensorizedMap) == decomposed for m in op.attrs[key])
    monkeypatch.setattr(TensorizedMap, "to_dense", lambda self: pytest.fail("the runtime rebuilt W"))
    for ours, reference in zip(run(module), expected):
        np.testing.assert_allclose(ours, reference, rtol=1e-5, atol=1e-5)


def test_gate_grouping_and_shapes():
    module = lstm_module(61, 4, "bidirectional")
    PassManager([Decompose(weights="all", gates="separate", shape="61:4", recurrent_shape="2x2:2x2",
                           max_rank=2)]).run(module)
    (op,) = module.ops_of("lstm")
    assert [m.meta()["in_factors"] for m in op.attrs["w"]] == [[61]] * 8
    assert [(m.out_dim, m.in_dim) for m in op.attrs["r"]] == [(4, 4)] * 8
    assert op.attrs["r"][0].meta()["ranks"] == [1, 2, 1]


def test_a_prime_input_size_is_padded_and_the_manifest_says_so():
    module = lstm_module(61, 4)
    PassManager([Decompose(d=2, max_rank=3, dense_fallback=False)]).run(module)
    (tt,) = module.ops_of("lstm")[0].attrs["w"]
    assert tt.in_dim == 61 and tt.in_pad > 0 and tt.meta()["in_pad"] == tt.in_pad
    entry = next(m for m in build_manifest(module, "numpy", "decompose", "test")["maps"] if m["name"] == "lstm.w.fwd")
    assert entry["padding"] == {"out": 0, "in": tt.in_pad} and entry["ranks"] == tt.meta()["ranks"]
    with pytest.raises(PassError, match="61 = 61 has no balanced factorization into 2 factors"):
        PassManager([Decompose(d=2, pad=False)]).run(lstm_module(61, 4))


def test_ucf11_tt_and_bt_configurations_through_the_pipeline():
    """The papers' shapes on a smaller hidden size: four gates' W stacked (4H = 16)."""
    module = lstm_module(96, 4)
    text = "decompose{shape=4x4x6:2x2x4 ranks=1,4,4,1}"
    PassManager.parse(text).run(module)
    (tt,) = module.ops_of("lstm")[0].attrs["w"]
    assert isinstance(tt, TTMap) and tt.meta()["ranks"] == [1, 4, 4, 1]
    assert tt.params() == 2 * 4 * 4 + 4 * 2 * 4 * 4 + 4 * 4 * 6
    module = lstm_module(96, 4)
    PassManager.parse("decompose{method=bt shape=4x4x6:2x2x4 blocks=2 tucker-rank=2}").run(module)
    (bt,) = module.ops_of("lstm")[0].attrs["w"]
    assert isinstance(bt, BTMap) and bt.meta()["ranks"] == [[2, 2, 2]] * 2
    assert bt.params() == 2 * (2 * (2 * 4 + 2 * 4 + 4 * 6) + 2**3)


def test_eps_bounds_each_map_and_text_round_trips():
    module = lstm_module(16, 4)
    dense = module.ops_of("lstm")[0].attrs["w"][0].to_dense()
    PassManager.parse("decompose{method=ht eps=0.5 dense-fallback=false}").run(module)
    (ht,) = module.ops_of("lstm")[0].attrs["w"]
    assert isinstance(ht, HTMap)
    assert np.linalg.norm(ht.to_dense() - dense) <= 0.5 * np.linalg.norm(dense) + 1e-6
    parsed = parse_module(print_module(module), module_tensors(module))
    assert parsed.ops_of("lstm")[0].attrs["w"][0] == ht


def test_already_decomposed_maps_are_left_alone():
    module = lstm_module(16, 4)
    assert Decompose(max_rank=2, dense_fallback=False).run(module)
    before = print_module(module)
    assert not Decompose(max_rank=2, dense_fallback=False).run(module)
    assert print_module(module) == before


def test_regroup_gates_round_trips():
    rng = np.random.default_rng(0)
    stacked = [rng.standard_normal((8, 3)) for _ in range(2)]
    separate = regroup_gates(stacked, 2, 4, stacked=False)
    assert len(separate) == 8 and all(m.shape == (2, 3) for m in separate)
    np.testing.assert_array_equal(separate[5], stacked[1][2:4])  # direction 1, gate o
    assert all(np.array_equal(a, b) for a, b in zip(regroup_gates(separate, 2, 4, stacked=True), stacked))


@pytest.mark.parametrize("text,message", [
    ("decompose{method=svd}", "must be one of tt, bt, ht"),
    ("decompose{eps=1.5}", "pass 'decompose': option 'eps' must be in [0, 1), got 1.5"),
    ("decompose{eps=-0.1}", "option 'eps' must be in [0, 1), got -0.1"),
    ("decompose{method=bt max-rank=4}", "option 'max-rank' caps tt and ht ranks; bt takes 'tucker-rank'"),
    ("decompose{method=bt eps=0.3}", "method=bt with 'eps' needs 'tucker-rank'"),
    ("decompose{tucker-rank=4}", "options 'tucker-rank' and 'blocks' are for method=bt, not tt"),
    ("decompose{ranks=1,2,1 eps=0.1}", "option 'ranks' excludes 'eps', 'max-rank' and 'tucker-rank'"),
    ("decompose{shape=16x8:4}", "option 'shape': shape '16x8:4' has 2 input factors but 1 output factors"),
    ("decompose{method=bt blocks=100000}", "option 'blocks' of pass 'decompose' must be <= 1024, got 100000"),
    ("decompose{method=bt tucker-rank=2 iters=1099511627776}", "option 'iters' of pass 'decompose' must be <= 1000"),
])
def test_bad_options_are_pipeline_errors(text, message):
    with pytest.raises(PipelineError) as caught:
        PassManager.parse(text)
    assert message in str(caught.value)


@pytest.mark.parametrize("text,message", [
    ("decompose{shape=4x4x5:2x2x4}",
     "'lstm' %lstm: map 'w' #0 (16x96): shape '4x4x5:2x2x4': the input factors multiply to 80, but the matrix "
     "has 96 columns"),
    ("decompose{shape=4x4x6:2x2x4 ranks=1,4,1}",
     "map 'w' #0 (16x96): tt: ranks [1, 4, 1] must be 4 positive integers"),
    ("decompose{shape=4x4x6:2x2x4 ranks=1,9,4,1}",
     "map 'w' #0 (16x96): tt: rank r_1 = 9 in [1, 9, 4, 1] exceeds 8"),
])
def test_bad_shapes_and_ranks_name_the_op_and_numbers(text, message):
    with pytest.raises(PassError) as caught:
        PassManager.parse(text).run(lstm_module(96, 4))
    assert message in str(caught.value)
    assert "pass 'decompose' (position 1 of 1) failed" in str(caught.value)


@pytest.mark.parametrize("options", ["blocks=200 tucker-rank=2", "blocks=200 tucker-rank=3", "blocks=200"])
def test_bt_blocks_never_pass_the_dense_parameters(options):
    """Issue 15: blocks=200 on a small LSTM kept fitting blocks after the residual was zero
    (126,122 parameters for 1,834).  Blocks stop at a zero residual or before one more would
    store more than the matrix; only the first block may (full Tucker ranks, one exact block)."""
    module = lstm_module(12, 6)
    dense = {key: m.to_dense() for key in ("w", "r") for m in module.ops_of("lstm")[0].attrs[key]}
    PassManager.parse(f"decompose{{method=bt weights=all d=2 dense-fallback=false {options}}}").run(module)
    for key in ("w", "r"):
        (bt,) = module.ops_of("lstm")[0].attrs[key]
        assert isinstance(bt, BTMap)
        blocks = len(bt.meta()["ranks"])
        assert blocks == 1 or bt.params() <= dense[key].size, (key, blocks, bt.params(), dense[key].size)
        if "tucker-rank" not in options:
            assert blocks == 1 and bt.rel_error < 1e-5


@pytest.mark.parametrize("method, options", [("tt", "max-rank=2"), ("ht", "max-rank=2"), ("bt", "blocks=1 tucker-rank=2")])
def test_manifest_rel_error_is_the_measured_reconstruction_error(method, options):
    module = lstm_module(12, 4)
    original = module.ops_of("lstm")[0].attrs["w"][0].to_dense()
    PassManager.parse(f"decompose{{method={method} shape=3x4:4x4 {options}}}").run(module)
    decomposed = module.ops_of("lstm")[0].attrs["w"][0]
    measured = np.linalg.norm(original - decomposed.to_dense()) / np.linalg.norm(original)
    entry = next(m for m in build_manifest(module, "numpy", "", "")["maps"] if m["name"].endswith(".w.fwd"))
    assert entry["rel_error"] == pytest.approx(measured, rel=1e-3, abs=1e-6)
    assert 0 < entry["rel_error"] < 1
    reparsed = parse_module(print_module(module), module_tensors(module))
    assert reparsed.ops_of("lstm")[0].attrs["w"][0].rel_error == decomposed.rel_error
