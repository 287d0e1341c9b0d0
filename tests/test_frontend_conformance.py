"""The 18 ONNX conformance cases for LSTM, GRU and RNN (stored by
data/make_recurrent_conformance.py from the installed onnx package's case scripts) run
through the importer and the NumPy runtime, against the expected outputs that onnx's
own reference computed (and, where it runs them, onnxruntime), to 1e-5."""

from __future__ import annotations

from pathlib import Path

import onnx
import pytest
from onnx import numpy_helper

from models import assert_close_f32, freeze_inputs, run_onnxruntime
from tensorgate.frontend import import_onnx
from tensorgate.interpreter import run_module

CASES_DIR = Path(__file__).parent / "data" / "onnx_recurrent_conformance"
CASES = sorted(p.name for p in CASES_DIR.iterdir() if p.is_dir())
WEIGHTS = ("W", "R", "B", "P")


def load_case(name: str):
    """The model with W/R/B/P turned into initializers (the conformance cases feed them
    as inputs; the importer needs them constant), its remaining feeds and expected outputs."""
    directory = CASES_DIR / name
    model = onnx.load(directory / "model.onnx")
    data = directory / "test_data_set_0"

    def tensors(kind, infos):
        return {info.name: numpy_helper.to_array(onnx.load_tensor(data / f"{kind}_{i}.pb"))
                for i, info in enumerate(infos)}

    inputs = tensors("input", model.graph.input)
    expected = tensors("output", model.graph.output)
    weights = {k: v for k, v in inputs.items() if k in WEIGHTS}
    feeds = {k: v for k, v in inputs.items() if k not in WEIGHTS}
    return freeze_inputs(model, weights), feeds, expected


def test_all_18_cases_are_stored():
    prefixes = ("test_lstm_", "test_gru_", "test_simple_rnn_", "test_rnn_")
    assert len(CASES) == 18 and all(name.startswith(prefixes) for name in CASES)
    assert sum(name.startswith("test_gru_") for name in CASES) == 6
    assert sum("rnn" in name for name in CASES) == 6


@pytest.mark.parametrize("name", CASES)
def test_conformance_case(name):
    model, feeds, expected = load_case(name)
    module = import_onnx(model)
    assert [v.name for v in module.outputs] == list(expected)
    outputs = run_module(module, feeds)
    for key, want in expected.items():
        assert_close_f32(outputs[key], want, key)


@pytest.mark.parametrize("name", [n for n in CASES if not n.endswith("_batchwise")])
def test_stored_expectations_agree_with_onnxruntime(name):
    """Guards the stored data itself (onnxruntime refuses the layout-1 case)."""
    model, feeds, expected = load_case(name)
    for key, got in run_onnxruntime(model, feeds).items():
        assert_close_f32(got, expected[key], key)
