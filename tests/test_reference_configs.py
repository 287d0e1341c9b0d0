"""Parameter counts of the papers' reference configurations (DESIGN.md section 3),
built directly in the IR with seeded random cores (no decomposition needed)."""

from __future__ import annotations

import numpy as np
import pytest

from tensorgate.ir.stats import model_stats
from tensorgate.ir import F32, DenseMap, Module, TensorType, TTMap, verify_module
from tensorgate.ir.builder import Builder
from tensorgate.passes import PassManager

INPUT, HIDDEN, CLASSES = 61056, 384, 11
IN_FACTORS, OUT_FACTORS, RANKS = (16, 8, 9, 53), (4, 4, 4, 6), (1, 4, 4, 4, 1)


def tt_gate(rng) -> TTMap:
    cores = [rng.standard_normal((RANKS[k], OUT_FACTORS[k], IN_FACTORS[k], RANKS[k + 1])).astype(np.float32)
             for k in range(4)]
    return TTMap.from_cores(cores)


def fl_tt_lstm() -> Module:
    """FL-TT-LSTM: TT ranks [1,4,4,4,1] on each gate's W, dense R, ONNX's two biases,
    an 11-class linear head."""
    rng = np.random.default_rng(0)
    module = Module("fl_tt_lstm")
    build = Builder(module)
    x = build.input("x", TensorType((6, 1, INPUT), F32))
    lstm = build.op("lstm", [x], {
        "hidden_size": HIDDEN,
        "w": [tt_gate(rng) for _ in range(4)],
        "r": [DenseMap(rng.standard_normal((4 * HIDDEN, HIDDEN)).astype(np.float32))],
        "bias": rng.standard_normal((1, 8 * HIDDEN)).astype(np.float32),
    })
    shape = build.const(np.array([1, HIDDEN], np.int64))
    last = build.op("reshape", [lstm.results[1], shape]).result
    head = build.op("linear", [last], {"weight": DenseMap(rng.standard_normal((CLASSES, HIDDEN)).astype(np.float32)),
                                       "bias": np.zeros(CLASSES, np.float32)})
    module.outputs = [head.result]
    verify_module(module)
    return module


@pytest.mark.parametrize("fold_biases, dense, compressed", [
    (True, 94_377_611, 606_059),  # the paper's 94.38M -> 0.60M
    (False, 94_377_611 + 1_536, 606_059 + 1_536),
])
def test_fl_tt_lstm_parameter_counts(fold_biases, dense, compressed):
    module = fl_tt_lstm()
    if fold_biases:
        assert PassManager.parse("canonicalize").run(module) is module
        assert module.ops_of("lstm")[0].attrs["bias"].shape == (1, 4 * HIDDEN)
    stats = model_stats(module)
    assert (stats.params_dense, stats.params_compressed) == (dense, compressed)
