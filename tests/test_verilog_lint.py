"""Every hand-written RTL file (and every test top) is clean under
`verilator --lint-only -Wall`, at its default parameters and at the corners the
backend uses (narrow and wide datapaths, one loop, odd depths)."""

from __future__ import annotations

import subprocess
from pathlib import Path

import pytest

from tensorgate.backend.verilog import RTL_DIR, rtl_sources
from tensorgate.runtime.verilator import verilator_executable

TEST_TOPS = sorted((Path(__file__).parent / "rtl").glob("*.sv"))

VARIANTS = {
    "tg_requant": [{"IN_W": 16, "OUT_W": 16, "SHIFT_W": 3}, {"IN_W": 63, "OUT_W": 2, "SHIFT_W": 8}],
    "tg_requant_pipe": [{"IN_W": 64, "OUT_W": 64, "SHIFT_W": 8}, {"IN_W": 47, "OUT_W": 18, "SHIFT_W": 8}],
    "tg_mac_lane": [{"A_W": 16, "B_W": 16, "ACC_W": 48, "OUT_W": 16}, {"A_W": 4, "B_W": 8, "ACC_W": 12,
                                                                      "OUT_W": 4, "SHIFT_W": 4},
                    {"A_W": 16, "B_W": 16, "ACC_W": 44, "OUT_W": 44, "MUL_STAGES": 2},
                    {"A_W": 8, "B_W": 8, "ACC_W": 20, "OUT_W": 8, "MUL_STAGES": 1},
                    {"A_W": 8, "B_W": 8, "ACC_W": 30, "OUT_W": 30, "MUL_STAGES": 2, "REQUANT": 0, "INIT": 0,
                     "LANES": 5}],
    "tg_addr_gen": [{"DIMS": 1}, {"DIMS": 4, "ADDR_W": 20, "COUNT_W": 6}],
    "tg_lut_act": [{"IN_W": 8, "DEPTH": 4096, "OFFSET_W": 4}, {"IN_W": 32, "OUT_W": 8, "DEPTH": 100}],
    "tg_ram_dp": [{"WIDTH": 1, "DEPTH": 2}, {"WIDTH": 72, "DEPTH": 1000}],
    "tg_ram_banked": [{"WIDTH": 14, "DEPTH": 1000, "BANKS": 16, "RD": 16, "WR": 4},
                      {"WIDTH": 8, "DEPTH": 3, "BANKS": 2, "RD": 1, "WR": 2}],
    "tb_host_copy": [{"DEPTH": 1024}],
}


def lint(top: str, parameters: dict[str, int]) -> subprocess.CompletedProcess:
    flags = [f"-G{name}={value}" for name, value in parameters.items()]
    files = [str(p) for p in rtl_sources() + TEST_TOPS]
    return subprocess.run([str(verilator_executable()), "--lint-only", "-Wall", "--top-module", top,
                           *flags, *files], capture_output=True, text=True)


CASES = [(path.stem, {}) for path in rtl_sources() + TEST_TOPS]
CASES += [(top, params) for top, variants in VARIANTS.items() for params in variants]


@pytest.mark.parametrize("top, parameters", CASES, ids=[f"{t}-{i}" for i, (t, _) in enumerate(CASES)])
def test_lint_clean(top, parameters):
    result = lint(top, parameters)
    assert result.returncode == 0 and "%Warning" not in result.stderr, result.stderr


def test_every_rtl_module_has_lint_variants():
    stems = {path.stem for path in RTL_DIR.glob("*.sv")}
    assert stems == {stem for stem in VARIANTS if stem.startswith("tg_")}


def test_lint_catches_a_width_mismatch(tmp_path):
    sloppy = tmp_path / "sloppy.sv"
    sloppy.write_text("module sloppy (input logic [7:0] a, output logic [3:0] y);\n"
                      "  assign y = a;\nendmodule\n")
    result = subprocess.run([str(verilator_executable()), "--lint-only", "-Wall", str(sloppy)],
                            capture_output=True, text=True)
    assert result.returncode != 0 and "WIDTHTRUNC" in result.stderr
