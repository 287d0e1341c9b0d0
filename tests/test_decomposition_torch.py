"""A decomposed torch-exported LSTM's outputs approach the dense model's as ranks grow,
for every method, and reach it at full rank.

The weights' error falls monotonically with rank (tested in test_decomposition_truncation);
the outputs of the nonlinear model need not at every step, so the test asserts the trend:
the largest truncated rank beats the smallest, and full rank reproduces the model up to
float32 rounding of the stored cores."""

from __future__ import annotations

import numpy as np
import pytest

from models import TorchRecurrent
from tensorgate.frontend import import_onnx
from tensorgate.passes import PassManager
from tensorgate.interpreter import run_module

CONFIG = TorchRecurrent(input_size=16, hidden_size=8, head="linear", num_classes=4, seed=3)
SHAPE = "4x4:4x8"  # input 16 = 4·4, the stacked gates 32 = 4·8
SWEEPS = {
    "tt": [f"max-rank={r}" for r in (1, 2, 4, 8)] + ["eps=0"],
    "ht": [f"max-rank={r}" for r in (1, 2, 4, 8)] + ["eps=0"],
    "bt": [f"blocks={b} tucker-rank=2" for b in (1, 2, 4)] + ["blocks=1"],
}


@pytest.mark.parametrize("method", sorted(SWEEPS))
def test_outputs_approach_dense_as_ranks_grow(method, torch_export):
    path = torch_export(CONFIG)
    x = np.random.default_rng(0).standard_normal((5, 6, CONFIG.input_size)).astype(np.float32)
    dense = run_module(import_onnx(path), {"x": x}, dtype=np.float64)["probs"]
    errors = []
    for options in SWEEPS[method]:
        module = import_onnx(path)
        PassManager.parse(f"canonicalize, decompose{{method={method} weights=all shape={SHAPE} "
                          f"recurrent-shape=2x4:4x8 dense-fallback=false {options}}}").run(module)
        ours = run_module(module, {"x": x}, dtype=np.float64)["probs"]
        errors.append(np.linalg.norm(ours - dense) / np.linalg.norm(dense))
    assert errors[0] > 1e-2, errors  # low ranks really approximate
    assert errors[-2] < errors[0], errors
    assert errors[-1] < 1e-6, errors
