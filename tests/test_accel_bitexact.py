"""The Verilated accelerator equals the integer golden model, every bit, on every output:
LSTM, GRU (both linear_before_reset forms; stacked, per-gate and decomposed R) and RNN
(Tanh, Sigmoid, Relu) layers, alone and stacked together; dense/TT/BT/HT maps; one layer,
stacked, bidirectional, with a classifier head; one and several steps, ragged sequence
lengths, initial states, clip, coupled input-forget gates; 8 and 16 bits; PWL and LUT
activations; both rounding modes; P in {1, 4, 16} and, with row groups, 32 and 64.  One
build per P serves every case."""

from __future__ import annotations

import numpy as np
import pytest

from accel_models import AccelCase, quantized
from tensorgate.backend.verilog.artifact import write_verilog_artifact
from tensorgate.interpreter import run_fixed
from tensorgate.runtime.simulator import Simulator

CASES = {
    "dense-states-lens-P1": (AccelCase(lens=True), 1),
    "dense-head-T1-16bit-P4": (AccelCase(steps=1, head="dense", bits=16), 4),
    "dense-split-gates-P16": (AccelCase(split_gates=True, initial=True), 16),
    "dense-input-forget-lens-P4": (AccelCase(input_forget=True, lens=True, hidden=8), 4),
    "tt-head-P1": (AccelCase(fmt="tt", head="dense"), 1),
    "tt-scheduled-16bit-P4": (AccelCase(fmt="tt", bits=16, schedule=True), 4),
    "tt-lut-half-away-P16": (AccelCase(fmt="tt", activation="lut", rounding="half-away", lens=True), 16),
    "bt-head-P4": (AccelCase(fmt="bt", head="bt", hidden=8), 4),
    "bt-16bit-scheduled-P16": (AccelCase(fmt="bt", bits=16, schedule=True, steps=2), 16),
    "ht-bidirectional-P1": (AccelCase(fmt="ht", direction="bidirectional", lens=True, initial=True), 1),
    "ht-head-T1-P16": (AccelCase(fmt="ht", steps=1, head="tt", hidden=8), 16),
    "stacked-bidirectional-dense-P4": (AccelCase(layers=2, direction="bidirectional", head="dense"), 4),
    "stacked-tt-16bit-lut-P16": (AccelCase(fmt="tt", layers=2, bits=16, activation="lut", lens=True, hidden=8,
                                           inputs=16), 16),
    "bidirectional-tt-split-P4": (AccelCase(fmt="tt", direction="bidirectional", split_gates=True,
                                            hidden=8, inputs=8), 4),
    # row groups: 2 at P = 32, 4 at P = 64
    "stacked-bidirectional-dense-P32": (AccelCase(layers=2, direction="bidirectional", head="dense", lens=True), 32),
    "ht-bidirectional-P64": (AccelCase(fmt="ht", direction="bidirectional", lens=True, initial=True), 64),
    "bt-head-16bit-P64": (AccelCase(fmt="bt", head="bt", hidden=8, bits=16), 64),
    # GRU: linear_before_reset 1 (torch's form) and 0 (r ⊙ h before R_h: a dense stacked R is
    # split into its rows, per-gate maps apply R_h alone, a decomposed stacked R is applied anew)
    "gru-lbr1-dense-lens-P4": (AccelCase(cell="gru", linear_before_reset=1, lens=True, initial=True), 4),
    "gru-lbr0-dense-clip-P4": (AccelCase(cell="gru", clip=1.0), 4),
    "gru-lbr0-split-gates-lens-P1": (AccelCase(cell="gru", split_gates=True, initial=True, lens=True), 1),
    "gru-lbr0-tt-lens-P16": (AccelCase(cell="gru", fmt="tt", lens=True), 16),
    "gru-lbr1-tt-16bit-lut-P4": (AccelCase(cell="gru", fmt="tt", linear_before_reset=1, bits=16, activation="lut"), 4),
    "gru-lbr1-ht-bidirectional-half-away-P64": (AccelCase(cell="gru", fmt="ht", linear_before_reset=1,
                                                          direction="bidirectional", rounding="half-away",
                                                          initial=True, lens=True), 64),
    "gru-lbr0-bt-bidirectional-head-P32": (AccelCase(cell="gru", fmt="bt", hidden=8, direction="bidirectional",
                                                     head="bt", schedule=True), 32),
    # RNN: Tanh, Sigmoid, Relu
    "rnn-tanh-dense-P4": (AccelCase(cell="rnn"), 4),
    "rnn-relu-bidirectional-lens-P4": (AccelCase(cell="rnn", rnn_activation="Relu", direction="bidirectional",
                                                 lens=True), 4),
    "rnn-sigmoid-tt-clip-P16": (AccelCase(cell="rnn", rnn_activation="Sigmoid", fmt="tt", clip=1.0, lens=True,
                                          initial=True), 16),
    "rnn-relu-bt-16bit-P1": (AccelCase(cell="rnn", rnn_activation="Relu", fmt="bt", hidden=8, bits=16), 1),
    # LSTM, GRU and RNN layers in one model
    "gru-lstm-stacked-head-P4": (AccelCase(cell="gru+lstm", layers=2, linear_before_reset=1, head="dense"), 4),
    "rnn-gru-lstm-bidirectional-P16": (AccelCase(cell="rnn+gru+lstm", layers=3, direction="bidirectional",
                                                 lens=True, initial=True, head="dense"), 16),
}


@pytest.mark.parametrize("name", list(CASES))
def test_simulation_equals_the_golden_model(name, tmp_path):
    case, pes = CASES[name]
    module, inputs = quantized(case, tmp_path)
    artifact = write_verilog_artifact(module, tmp_path / "artifact", "quantize", name, pes)
    expected = run_fixed(module, inputs, raw=True)
    outputs, stats = Simulator(artifact, progress=False).run(inputs, raw=True)
    assert outputs.keys() == expected.keys()
    for key, value in expected.items():
        assert outputs[key].shape == value.shape, key
        assert np.array_equal(outputs[key], value), f"{key}: {outputs[key].ravel()} != {value.ravel()}"
    assert stats["cycles"] > 0 and stats["macs"] > 0
    assert 0 < stats["pe_utilization"] <= 1
    assert stats["mac_bound_cycles"] * stats["steps"] == -(-stats["macs"] // pes)
    assert stats["gemm_cycles"] * pes >= stats["macs"]  # no more than P MACs a cycle
    assert stats["cell_cycles"] > 0 and stats["overhead_cycles"] > 0
    by_class = ("gemm_cycles", "ew_cycles", "cell_cycles", "overhead_cycles")
    assert sum(stats[key] for key in by_class) == stats["cycles"]


def test_dequantized_outputs_equal_the_golden_model(tmp_path):
    module, inputs = quantized(AccelCase(fmt="tt", head="dense"), tmp_path)
    artifact = write_verilog_artifact(module, tmp_path / "artifact", "quantize", "float", 4)
    outputs, _ = Simulator(artifact, progress=False).run(inputs)
    expected = run_fixed(module, inputs)
    assert all(np.array_equal(outputs[k], expected[k]) for k in expected)


def test_saturating_inputs_stay_bit_exact(tmp_path):
    case = AccelCase(fmt="bt", lens=True)
    module, inputs = quantized(case, tmp_path)
    inputs["x"] = inputs["x"] * 8  # far beyond calibration: saturation is part of the contract
    artifact = write_verilog_artifact(module, tmp_path / "artifact", "quantize", "saturation", 4)
    outputs, _ = Simulator(artifact, progress=False).run(inputs, raw=True)
    expected = run_fixed(module, inputs, raw=True)
    assert all(np.array_equal(outputs[k], expected[k]) for k in expected)
