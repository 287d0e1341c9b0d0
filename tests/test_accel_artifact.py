"""The verilog target's artifact and the accelerator's RTL: every design configuration the
backend builds is lint-clean; compile writes RTL, images and the hardware manifest; a
float module is refused with a message that says to add quantize."""

from __future__ import annotations

import json
import subprocess

import numpy as np
import pytest

from accel_models import AccelCase, build_module, quantized
from tensorgate.backend.verilog.artifact import write_verilog_artifact
from tensorgate.backend.verilog.hardware import TOP, AccelConfig, accel_sources
from tensorgate.backend.verilog import isa
from tensorgate.backend.verilog.isa import LoweringError, merge_dims
from tensorgate.backend.verilog.image import affine
from tensorgate.backend.verilog.lower import lower
from tensorgate.errors import TensorgateError
from tensorgate.fixedpoint.programs import LSTMProgram
from tensorgate.runtime.verilator import verilator_executable


@pytest.mark.parametrize("config", [AccelConfig(1), AccelConfig(4), AccelConfig(16, code_width=8, scratch_width=16),
                                    AccelConfig(64, groups=8, drain_lanes=2, banks=8),
                                    AccelConfig(128, code_width=8, scratch_width=16, groups=16, drain_lanes=4,
                                                banks=16, s_depth=103691),
                                    AccelConfig(8, code_width=32, scratch_width=32, prog_depth=1 << 16,
                                                s_depth=1 << 16, t_depth=256),
                                    AccelConfig(4, code_width=8, scratch_width=16, gru_rnn_cell=False),
                                    AccelConfig(2, lstm_cell=False), AccelConfig(4, lstm_cell=False, gru_rnn_cell=False)],
                         ids=["P1", "P4", "P16", "P64-groups8-drain2", "P128-groups16-drain4", "P8-wide-deep",
                              "P4-lstm-only", "P2-gru-rnn-only", "P4-no-cells"])
def test_accelerator_is_lint_clean(config):
    flags = [f"-G{name}={value}" for name, value in config.parameters().items()]
    result = subprocess.run([str(verilator_executable()), "--lint-only", "-Wall", "--top-module", TOP, *flags,
                             *map(str, accel_sources())], capture_output=True, text=True)
    assert result.returncode == 0 and "%Warning" not in result.stderr, result.stderr


def test_artifact_holds_rtl_images_and_hardware_summary(tmp_path):
    module, _ = quantized(AccelCase(fmt="tt", head="dense"), tmp_path)
    artifact = write_verilog_artifact(module, tmp_path / "out", "quantize", "model.onnx", 4)
    manifest = json.loads((artifact / "manifest.json").read_text())
    hardware = manifest["hardware"]
    assert manifest["target"] == "verilog" and hardware["pes"] == 4
    assert hardware["memory_bits"] == sum(hardware["memory_bits_by_memory"].values()) > 0
    assert hardware["cycles_estimate"] >= hardware["mac_bound_cycles"] > 0
    assert {p.name for p in (artifact / "rtl").iterdir()} == {p.name for p in accel_sources()}
    program = (artifact / "program.hex").read_text().split()
    assert len(program) == 64 * hardware["used_words"]["program"]
    assert all(len(word) == 16 for word in program)
    weights = (artifact / "weights.hex").read_text().split()
    assert len(weights) == 4 * hardware["used_words"]["weight_rows"]


@pytest.mark.parametrize("cell, units", [("lstm", (1, 0)), ("gru", (0, 1)), ("rnn+lstm", (1, 1))])
def test_a_build_has_the_cell_units_its_program_uses(tmp_path, cell, units):
    module, _ = quantized(AccelCase(cell=cell, layers=len(cell.split("+"))), tmp_path)
    artifact = write_verilog_artifact(module, tmp_path / "out", "quantize", "model.onnx", 4)
    parameters = json.loads((artifact / "manifest.json").read_text())["hardware"]["parameters"]
    assert (parameters["LSTM_CELL"], parameters["GRU_RNN_CELL"]) == units
    config = AccelConfig(4, lstm_cell=False, gru_rnn_cell=False)
    assert (config.shared().lstm_cell, config.shared().gru_rnn_cell) == (True, True)  # one simulation build


def test_float_module_is_refused_with_advice(tmp_path):
    with pytest.raises(TensorgateError, match="add 'quantize'"):
        write_verilog_artifact(build_module(AccelCase()), tmp_path / "out", "", "model.onnx", 4)


def test_pes_must_be_a_power_of_two(tmp_path):
    module, _ = quantized(AccelCase(), tmp_path)
    with pytest.raises(LoweringError, match="power of two"):
        write_verilog_artifact(module, tmp_path / "out", "quantize", "model.onnx", 3)


def test_peepholes_are_refused(tmp_path):
    module, _ = quantized(AccelCase(), tmp_path)
    lstm = module.ops_of("lstm")[0]
    lstm.attrs["peepholes"] = np.zeros((1, 12), np.int64)
    lstm.attrs["quant"]["peepholes"] = "fix<8,6>"
    with pytest.raises(LoweringError, match="peepholes"):
        write_verilog_artifact(module, tmp_path / "out", "quantize", "model.onnx", 4)


def test_affine_recognizes_strided_patterns_only():
    grid = 5 + np.arange(3)[:, None] * 7 + np.arange(4)[None, :] * 2
    assert affine(grid) == (5, (7, 2))
    assert affine(grid.T) == (5, (2, 7))
    gathered = grid.copy()
    gathered[1, 1] = 0
    assert affine(gathered) is None


def test_merge_dims_fuses_contiguous_loops_in_every_walk():
    assert merge_dims([(4, (1, 1)), (3, (4, 4)), (1, (9, 9)), (2, (12, 0))]) == [(12, (1, 1)), (2, (12, 0))]


def test_cell_instructions_point_at_their_own_layers_tables(tmp_path):
    module, inputs = quantized(AccelCase(layers=2, direction="bidirectional", head="dense"), tmp_path)
    image = lower(module, 4, {name: np.shape(value) for name, value in inputs.items()})
    cells = [words for words in image.program if int(words[0]) == isa.CELL]
    lstms = module.ops_of("lstm")
    per_op = len(cells) // len(lstms)
    for index, op in enumerate(lstms):
        quant = LSTMProgram(op).quant
        for words in cells[index * per_op:(index + 1) * per_op]:
            for u, unit in enumerate((quant.sigmoid, quant.tanh, quant.tanh_cell)):
                base = int(words[isa.CELL_UNITS + 8 * u + 6])
                stored = [t & 0xFFFFFFFF for t in image.tables[base:base + len(unit.values)]]
                assert stored == [int(v) & 0xFFFFFFFF for v in unit.values], (op.results[0].name, u)
