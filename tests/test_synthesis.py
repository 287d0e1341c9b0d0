"""``tensorgate synth``: reading yosys's and nextpnr's reports (stored ones), the device
budgets and the fit, yosys and nextpnr on a tiny design, and the one-line errors."""

from __future__ import annotations

import csv
import json
import shutil
import sys
from pathlib import Path

import pytest
from accel_models import AccelCase, quantized
from hypothesis import given, settings
from hypothesis import strategies as st

from tensorgate.backend.artifact import write_numpy_artifact
from tensorgate.backend.verilog import rtl_sources
from tensorgate.backend.verilog.artifact import write_verilog_artifact
from tensorgate.backend.verilog.hardware import (
    BLOCK_RAMS,
    BRAM,
    LUTRAM,
    URAM,
    AccelConfig,
    Memory,
    accel_sources,
    bank_depth,
    block_ram_tiling,
    block_rams,
    multipliers,
)
from tensorgate.cli import main
from tensorgate.runtime.synthesis import (
    DEVICES,
    SYNTH_JSON,
    SynthesisError,
    SynthesisTimeout,
    SynthOptions,
    device_named,
    flow,
    kind_counts,
    memory_budgets,
    read_nextpnr_report,
    read_yosys_cells,
    synthesize,
    tools,
)
from tensorgate.runtime.synthesis.flow import fit, memory_check, place_and_route, run_yosys

DATA = Path(__file__).parent / "data" / "synthesis"
TEST_RTL = Path(__file__).parent / "rtl"
XCKU5P, ECP5 = DEVICES["xcku5p"], DEVICES["ecp5-85k"]


# ------------------------------------------------------------------ stored reports

def test_reads_a_stored_yosys_stat_report():
    cells = read_yosys_cells(DATA / "mult_reg_ecp5_stat.json", "t")
    assert cells == {"MULT18X18D": 1, "TRELLIS_FF": 32}
    counts = {r.name: r.count(cells) for r in ECP5.resources}
    assert counts == {"LUT4": 0, "TRELLIS_FF": 32, "MULT18X18D": 1, "ALU54B": 0, "DP16KD": 0}


def test_reads_a_stored_nextpnr_report():
    placed = read_nextpnr_report(DATA / "mult_reg_ecp5_nextpnr.json")
    assert placed.clock == "clk" and placed.fmax_mhz == 149.12 and placed.target_mhz == 100 and placed.timing_met
    path = placed.critical_path
    assert path.start == "ra_TRELLIS_FF_Q.Q" and path.end == "y_TRELLIS_FF_Q_5.M"
    assert path.delay_ns == pytest.approx(path.logic_ns + path.routing_ns, abs=2e-3)
    assert path.logic_ns == pytest.approx(0.525 + 3.927, abs=1e-3) and path.routing_ns == pytest.approx(2.254, abs=1e-3)
    assert path.logic_levels == 1 and [s["type"] for s in path.steps] == ["clk-to-q", "routing", "logic", "routing",
                                                                           "setup"]
    assert placed.utilization["MULT18X18D"] == {"used": 1, "available": 156}
    assert placed.utilization["TRELLIS_COMB"]["available"] == 83_640


def test_a_report_without_cells_is_refused(tmp_path):
    (tmp_path / "stat.json").write_text(json.dumps({"modules": {}}))
    with pytest.raises(SynthesisError, match="no cell counts for 'top'"):
        read_yosys_cells(tmp_path / "stat.json", "top")
    (tmp_path / "broken.json").write_text("{")
    with pytest.raises(SynthesisError, match="not valid JSON"):
        read_nextpnr_report(tmp_path / "broken.json")


# ------------------------------------------------------------------ devices, budgets, fit

def test_device_budgets_are_the_chips():
    budgets = {b.name: b.available for b in XCKU5P.budgets}
    assert budgets == {"LUT": 216_960, "FF": 433_920, "DSP": 1_824, "BRAM36 (RAMB18 = 1/2)": 480, "URAM": 64}
    stored = read_nextpnr_report(DATA / "mult_reg_ecp5_nextpnr.json").utilization
    for budget in ECP5.budgets:
        resource = next(r for r in ECP5.resources if r.name == budget.name)
        assert stored[resource.pnr_name]["available"] == budget.available


def test_fit_counts_half_a_bram36_per_bram18():
    counts = {"LUT": 1000, "FF": 10, "DSP": 1_824, "BRAM36": 479, "BRAM18": 2, "URAM": 0}
    assert fit(XCKU5P, counts)["fits"]  # 479 + 2/2 = 480
    assert not fit(XCKU5P, counts | {"BRAM18": 3})["fits"]
    assert not fit(XCKU5P, counts | {"DSP": 1_825})["fits"]
    shares = {b["name"]: b["share"] for b in fit(XCKU5P, counts)["budgets"]}
    assert shares["DSP"] == 1.0 and shares["URAM"] == 0.0


def test_unknown_device_is_a_usage_error():
    with pytest.raises(Exception, match="unknown device 'xc7z020'; expected one of xcku5p, ecp5-25k"):
        device_named("xc7z020")


# ------------------------------------------------------------------ the model's estimate

@settings(max_examples=80, deadline=None)
@given(depth=st.integers(1, 40_000), width=st.integers(1, 128), family=st.sampled_from(sorted(BLOCK_RAMS)),
       simple=st.booleans())
def test_block_ram_estimate_holds_the_bits_and_no_more_than_a_column_per_bit(depth, width, family, simple):
    estimate = block_rams(depth, width, family, simple)
    _, cost, shapes, wide = BLOCK_RAMS[family][0]
    block_bits = max(d * w for d, w in shapes + (wide,))
    assert estimate >= cost * depth * width / block_bits - 1e-9
    assert estimate <= cost * width * -(-depth // shapes[0][0])
    assert block_rams(depth, width, family, True) <= block_rams(depth, width, family, False)


def test_multiplier_estimate():
    assert multipliers(16, 16, "xcup") == multipliers(8, 8, "ecp5") == multipliers(18, 18, "ecp5") == 1
    assert multipliers(27, 18, "xcup") == 1 and multipliers(27, 27, "xcup") == 2 and multipliers(36, 36, "ecp5") == 4


@settings(max_examples=60, deadline=None)
@given(depth=st.integers(1, 40_000), width=st.integers(1, 128), family=st.sampled_from(sorted(BLOCK_RAMS)))
def test_block_ram_tiling_names_the_cells_of_the_estimate(depth, width, family):
    cell, cost, count = block_ram_tiling(depth, width, family)
    assert cost * count == block_rams(depth, width, family)
    assert cell in {name for name, *_ in BLOCK_RAMS[family]}
    memory = Memory("m", 3, depth, width)
    if depth > 64:
        assert memory.blocks(BRAM, family).cells == {cell: 3 * count}
        assert memory.blocks(URAM, "xcup").uram == 3 * -(-depth // 4096) * -(-width // 72)
        per_row = 8 if width <= 9 else 4 if width <= 18 else 2 if width <= 36 else 1
        packed = Memory("m", 3, depth, width, write_port_reads=False)
        assert packed.blocks(URAM, "xcup").uram == 3 * -(-depth // (4096 * per_row)) * -(-width // 72)


def test_uram_holds_4k_words_of_72_bits():
    assert Memory("m", 1, 4096, 72).blocks(URAM, "xcup").cells == {"URAM288": 1}
    assert Memory("m", 1, 4097, 72).blocks(URAM, "xcup").uram == 2
    assert Memory("m", 2, 7040, 73).blocks(URAM, "xcup").uram == 8
    assert Memory("m", 16, 6521, 16).blocks(URAM, "xcup").uram == 32
    packed = lambda copies, depth, width: Memory("m", copies, depth, width, write_port_reads=False)  # noqa: E731
    assert packed(16, 6521, 16).blocks(URAM, "xcup").uram == 16  # 4 words of 16 bits a row
    assert packed(1, 32768, 8).blocks(URAM, "xcup").uram == 1 and packed(1, 32769, 8).blocks(URAM, "xcup").uram == 2
    assert Memory("m", 1, 64, 64).primitives("xcup") == (LUTRAM,) and Memory("m", 1, 65, 64).primitives("ecp5") == (BRAM,)


FL_P128 = AccelConfig(128, code_width=8, scratch_width=16, prog_depth=7040, w_depth=7820, s_depth=104331, t_depth=56,
                      groups=16, drain_lanes=4, banks=16, gru_rnn_cell=False)
"""The FL-TT-LSTM (T = 6) build at P = 128, as the compiler sizes it."""


def test_memory_map_of_the_fl_tt_lstm_at_p128_fills_the_xcku5p_least():
    """All in block RAM it is 382 BRAM36 of 480; the program (7,040 x 64: 14 BRAM36 or 2
    URAM) and both scratchpad copies (16 banks of 6,521 x 16 each: 56 BRAM36 or 16 URAM)
    move to URAM: 256 of 480 BRAM36 (53%) and 34 of 64 URAM (53%).  The 128 weight
    memories (7,820 x 8) would take 128 URAM."""
    assert FL_P128.memory_estimate()["bram36"] == 382
    primitives = FL_P128.memory_map("xcup", *memory_budgets(XCKU5P))
    assert primitives == {"program": URAM, "weights": BRAM, "scratchpad_operands": URAM, "scratchpad_init": URAM,
                          "activation_tables": LUTRAM}
    estimate = FL_P128.memory_estimate("xcup", primitives)
    assert (estimate["bram36"], estimate["uram"]) == (256, 34)
    assert FL_P128.memory_map("ecp5", *memory_budgets(ECP5)) == FL_P128.all_block_ram("ecp5")


@settings(max_examples=40, deadline=None)
@given(pes=st.sampled_from([2, 16, 64, 128]), prog=st.integers(2, 20_000), weights=st.integers(2, 20_000),
       scratch=st.integers(2, 200_000), banks=st.sampled_from([1, 2, 8, 16]), bram=st.integers(1, 960),
       urams=st.integers(0, 128))
def test_memory_map_is_no_fuller_than_all_block_ram_or_all_uram(pes, prog, weights, scratch, banks, bram, urams):
    config = AccelConfig(pes, code_width=8, scratch_width=16, prog_depth=prog, w_depth=weights, s_depth=scratch,
                         t_depth=56, banks=banks)
    assert AccelConfig.from_parameters(config.parameters()) == config

    def fullness(primitives):
        estimate = config.memory_estimate("xcup", primitives)
        return max(estimate["bram36"] / bram, estimate["uram"] / urams if urams else 0.0)

    chosen = config.memory_map("xcup", bram, urams)
    assert fullness(chosen) <= fullness(config.all_block_ram())
    if urams:
        assert fullness(chosen) <= fullness(config.memory_map("xcup", bram, urams, "on"))
    else:
        assert URAM not in chosen.values()
    assert URAM not in config.memory_map("xcup", bram, urams, "off").values()
    assert set(config.memory_map("xcup", bram, urams, "on").values()) <= {URAM, LUTRAM}


def synthesize_rtl(tmp_path: Path, top: str, parameters: dict, device, uram: bool = False) -> dict[str, float | None]:
    """The LUT, FF, DSP, block-RAM and URAM counts of ``top`` (package RTL and test tops)
    synthesized for ``device`` through the stock frontend (``uram``: synth_xilinx -uram)."""
    files = rtl_sources() + sorted(TEST_RTL.glob("*.sv"))
    for path in files:
        shutil.copyfile(path, tmp_path / path.name)
    cells, _, _ = run_yosys(tmp_path, [p.name for p in files], top, parameters, device, uram)
    return kind_counts(device, {r.name: r.count(cells) for r in device.resources})


@pytest.mark.parametrize("depth, width", [(4096, 64), (256, 64), (560, 16)])
@pytest.mark.parametrize("device", [XCKU5P, ECP5], ids=lambda d: d.name)
def test_yosys_maps_a_memory_to_the_estimated_block_rams(tmp_path, device, depth, width):
    """A memory as the accelerator has them (engine port reads, host port reads and writes)."""
    counts = synthesize_rtl(tmp_path, "tb_ram_read_port", {"WIDTH": width, "DEPTH": depth}, device)
    assert counts["bram"] == block_rams(depth, width, device.family)
    assert counts["lut"] <= 4  # the memory is block RAM, not logic


@pytest.mark.parametrize("depth, width", [(7040, 64), (6521, 16)])
def test_yosys_maps_a_memory_to_the_estimated_urams(tmp_path, depth, width):
    """A memory asked into UltraRAM whose host port reads and writes: deep ones cascade,
    a word a row (6,521 x 16 takes two URAM288)."""
    counts = synthesize_rtl(tmp_path, "tb_ram_read_port", {"WIDTH": width, "DEPTH": depth, "STYLE": "ultra"},
                            XCKU5P, uram=True)
    assert counts["uram"] == Memory("m", 1, depth, width).blocks(URAM, "xcup").uram and counts["bram"] == 0


@pytest.mark.parametrize("depth, width, banks", [(2 * 6521, 16, 2), (20_000, 8, 1)])
def test_yosys_packs_a_banked_scratchpads_words_into_urams(tmp_path, depth, width, banks):
    """A bank's write port only writes, so yosys puts narrow words side by side in a URAM
    row (byte enables): a bank of 6,521 x 16 or 20,000 x 8 takes one URAM288."""
    counts = synthesize_rtl(tmp_path, "tg_ram_banked", {"WIDTH": width, "DEPTH": depth, "BANKS": banks, "RD": 2,
                                                        "WR": 1, "STYLE": "ultra"}, XCKU5P, uram=True)
    bank = Memory("m", banks, bank_depth(depth, banks), width, write_port_reads=False)
    assert counts["uram"] == bank.blocks(URAM, "xcup").uram == banks and counts["bram"] == 0


@pytest.mark.parametrize("device, depth, width", [(XCKU5P, 8192, 16), (ECP5, 8192, 16), (ECP5, 1364, 64)],
                         ids=["xcku5p-16", "ecp5-85k-16", "ecp5-85k-64"])
def test_yosys_maps_a_banked_scratchpad_to_the_estimated_block_rams(tmp_path, device, depth, width):
    """The banked scratchpad (4 banks, a read port per row group, 2 drain write ports): each
    bank the block RAMs of its rows, as the build's memory estimate counts them (on the
    ECP5 a bank of 341 x 64 in the pseudo-dual-port 512 x 36 shape: 2 DP16KDs, not 4)."""
    banks = 4
    counts = synthesize_rtl(tmp_path, "tg_ram_banked", {"WIDTH": width, "DEPTH": depth, "BANKS": banks, "RD": 4,
                                                        "WR": 2}, device)
    bank = Memory("m", banks, bank_depth(depth, banks), width, write_port_reads=False)
    assert counts["bram"] == bank.blocks(BRAM, device.family).bram36


@pytest.mark.parametrize("device, code_width", [(XCKU5P, 16), (ECP5, 8)], ids=["xcku5p-16", "ecp5-85k-8"])
def test_yosys_maps_a_mac_lane_to_the_estimated_multipliers(tmp_path, device, code_width):
    parameters = {"A_W": code_width, "B_W": code_width, "ACC_W": 2 * code_width + 8, "OUT_W": code_width,
                  "SHIFT_W": 6, "MUL_STAGES": 2}
    counts = synthesize_rtl(tmp_path, "tg_mac_lane", parameters, device)
    assert counts["dsp"] == multipliers(code_width, code_width, device.family)


SMALL_BUILD = AccelConfig(2, code_width=8, scratch_width=16, prog_depth=128, w_depth=128, s_depth=256, t_depth=128,
                          groups=2, drain_lanes=2, banks=2, gru_rnn_cell=False)
"""The smallest build with every memory in block RAM (deeper than LUT RAM): program,
2 lanes' weights, two copies of a 2-bank scratchpad with 2 read and 2 write ports, and
the LSTM cell's activation table."""
MIXED = {"program": URAM, "weights": BRAM, "scratchpad_operands": URAM, "scratchpad_init": BRAM,
         "activation_tables": BRAM}
"""Both primitives on the XCKU5P: a single-ported-read memory, a banked copy and the
dual-ported weights and table."""


def synthesize_accelerator(work: Path, config: AccelConfig, primitives: dict[str, str], device) -> dict[str, int]:
    """yosys's cells of the whole accelerator at ``config`` with each memory in its primitive."""
    for path in accel_sources():
        shutil.copyfile(path, work / path.name)
    parameters = config.parameters() | config.style_parameters(primitives)
    cells, _, _ = run_yosys(work, [p.name for p in accel_sources()], "tg_accel", parameters, device,
                            URAM in primitives.values())
    return cells


@pytest.mark.parametrize("device, primitives", [
    (XCKU5P, MIXED), pytest.param(ECP5, SMALL_BUILD.all_block_ram("ecp5"), marks=pytest.mark.slow)],
    ids=["xcku5p-bram-and-uram", "ecp5-85k"])
def test_yosys_maps_a_whole_accelerator_to_the_sum_of_its_memory_estimates(tmp_path, device, primitives):
    """Every RAM cell of the synthesized accelerator is one of its memories: the block-RAM
    and URAM counts equal the sums of the per-memory estimates (no memory inferred from
    other logic, none mapped otherwise than asked).  About 90 s of one core on the XCKU5P
    (the LSTM cell unit is most of the logic; without it the table's unread port would make
    it a single-port memory, which is not what a real build has); the ECP5 run is as long,
    so it is in the slow set (the single-memory tests check DP16KD estimates)."""
    cells = synthesize_accelerator(tmp_path, SMALL_BUILD, primitives, device)
    estimate = SMALL_BUILD.memory_estimate(device.family, primitives)
    resources = {r.name: r.count(cells) for r in device.resources}
    check = memory_check(device, {"uram": "test", "parameters": {}, "estimate": estimate}, resources)
    assert check["estimate_equals_synthesis"], check["counts"]
    assert check["counts"]["bram"]["synthesized"] == estimate["bram36"] > 0
    assert check["counts"]["uram"]["synthesized"] == (estimate["uram"] if device.family == "xcup" else None)


def test_reads_a_stored_whole_accelerator_report():
    """yosys's stat of SMALL_BUILD with MIXED on the XCKU5P (stored from the test above):
    its RAM cells, the budget columns, and the check against the estimate."""
    cells = read_yosys_cells(DATA / "accel_small_xcup_stat.json", "tg_accel")
    resources = {r.name: r.count(cells) for r in XCKU5P.resources}
    estimate = SMALL_BUILD.memory_estimate("xcup", MIXED)
    assert {cell: cells.get(cell, 0) for cell in estimate["cells"]} == estimate["cells"]
    memories = {"uram": "test", "parameters": {}, "estimate": estimate}
    assert memory_check(XCKU5P, memories, resources)["estimate_equals_synthesis"]
    fewer = memory_check(XCKU5P, memories, resources | {"URAM": resources["URAM"] - 1})
    assert not fewer["estimate_equals_synthesis"] and fewer["counts"]["uram"]["estimate"] == estimate["uram"]


# ------------------------------------------------------------------ the tools on a tiny design

def test_yosys_and_nextpnr_on_a_registered_multiplier(tmp_path):
    """A registered 8x8 multiply through synth_ecp5 and nextpnr: one MULT18X18D, its
    registers, and a placed clock whose critical path runs register to register."""
    shutil.copyfile(DATA / "mult_reg.v", tmp_path / "mult_reg.v")
    cells, command, _ = run_yosys(tmp_path, ["mult_reg.v"], "t", {}, ECP5)
    assert command.startswith("synth_ecp5") and cells["MULT18X18D"] == 1 and cells["TRELLIS_FF"] >= 16
    placed, _ = place_and_route(ECP5, tmp_path, SynthOptions(freq_mhz=50), lambda step: None)
    assert placed.clock == "clk" and placed.target_mhz == 50 and placed.fmax_mhz > 0
    assert placed.timing_met == (placed.fmax_mhz >= 50)
    path = placed.critical_path
    assert 1000 / placed.fmax_mhz == pytest.approx(path.delay_ns, rel=0.05)
    assert "TRELLIS_FF" in path.start and path.steps[0]["type"] == "clk-to-q" and path.steps[-1]["type"] == "setup"
    assert placed.utilization["MULT18X18D"]["used"] == 1


# ------------------------------------------------------------------ the accelerator end to end

@pytest.fixture(scope="module")
def small_artifact(tmp_path_factory):
    """A 2-lane build of a tiny 8-bit LSTM."""
    directory = tmp_path_factory.mktemp("synth")
    module, _ = quantized(AccelCase(hidden=4, inputs=6, steps=2, batch=1), directory)
    return write_verilog_artifact(module, directory / "hw", "quantize", "model.onnx", 2)


@pytest.mark.slow
def test_synth_of_the_accelerator(small_artifact, tmp_path):
    """The artifact's own RTL at its parameters through yosys for the XCKU5P: a multiplier
    per lane at least (the cell unit's come on top), the fit, and nothing else written."""
    artifact = tmp_path / "hw"
    shutil.copytree(small_artifact, artifact)
    before = {p.name: p.read_bytes() for p in artifact.rglob("*") if p.is_file()}
    assert main(["synth", str(artifact), "--device", "xcku5p"]) == 0
    result = json.loads((artifact / SYNTH_JSON).read_text())
    parameters = json.loads((artifact / "manifest.json").read_text())["hardware"]["parameters"]
    assert result["device"] == "xcku5p" and result["parameters"] == parameters and result["top"] == "tg_accel"
    assert result["fit"]["fits"] and result["timing"] is None and "no place-and-route" in result["notes"][0]
    assert result["resources"]["DSP"] >= parameters["P"] * multipliers(parameters["CODE_W"], parameters["CODE_W"], "xcup")
    assert result["resources"]["LUT"] > 0 and result["resources"]["FF"] > 0
    memories = result["memories"]
    assert memories["uram"] == "auto" and memories["estimate_equals_synthesis"], memories["counts"]
    assert {m["primitive"] for m in memories["estimate"]["by_memory"].values()} <= {LUTRAM, BRAM, URAM}
    after = {p.name: p.read_bytes() for p in artifact.rglob("*") if p.is_file() and p.name != SYNTH_JSON}
    assert after == before


# ------------------------------------------------------------------ errors

def test_a_numpy_artifact_is_refused(tmp_path, capsys):
    module, _ = quantized(AccelCase(), tmp_path)
    artifact = write_numpy_artifact(module, tmp_path / "np", "quantize", "model.onnx")
    code = main(["synth", str(artifact), "--device", "xcku5p"])
    err = capsys.readouterr().err
    assert code == 1 and err.startswith("error: ") and len(err.strip().splitlines()) == 1
    assert "is a numpy artifact, not verilog" in err
    assert not (artifact / SYNTH_JSON).exists()


def test_a_tampered_rtl_file_is_refused(small_artifact, tmp_path, capsys):
    artifact = tmp_path / "hw"
    shutil.copytree(small_artifact, artifact)
    (artifact / "rtl" / "tg_mac_lane.sv").write_text("module broken;\n")
    code = main(["synth", str(artifact), "--device", "ecp5-85k"])
    err = capsys.readouterr().err
    assert code == 1 and "tg_mac_lane.sv" in err and len(err.strip().splitlines()) == 1
    assert not (artifact / SYNTH_JSON).exists()


def test_unknown_device_on_the_command_line(small_artifact, capsys):
    assert main(["synth", str(small_artifact), "--device", "nope"]) == 2
    assert "unknown device 'nope'" in capsys.readouterr().err


def test_a_missing_tool_names_its_package(monkeypatch):
    monkeypatch.setattr(tools.shutil, "which", lambda name: None)
    with pytest.raises(SynthesisError, match=r"yowasp-absent is not installed: install it with `pip install"):
        tools.executable("yowasp-absent")


def test_a_tool_past_its_time_limit_is_stopped(tmp_path, monkeypatch):
    monkeypatch.setattr(tools, "executable", lambda tool: sys.executable)
    with pytest.raises(SynthesisTimeout, match=r"did not finish within 0.5 s \(--timeout\)"):
        tools.run_tool("sleeper", ["-c", "import time; time.sleep(60)"], tmp_path, tmp_path / "log", 0.5)


def test_a_failing_tool_reports_its_first_error(tmp_path, monkeypatch):
    monkeypatch.setattr(tools, "executable", lambda tool: sys.executable)
    script = "print('Info: reading'); print('ERROR: Design uses 300 DP16KD, device has 208'); raise SystemExit(1)"
    with pytest.raises(SynthesisError, match="failed: ERROR: Design uses 300 DP16KD, device has 208$"):
        tools.run_tool("nextpnr", ["-c", script], tmp_path, tmp_path / "log", 60)


def test_synthesis_options_are_checked(small_artifact):
    with pytest.raises(Exception, match="uram must be auto, on or off"):
        synthesize(small_artifact, XCKU5P, SynthOptions(uram="maybe"))
    with pytest.raises(Exception, match="ecp5-85k has no UltraRAM"):
        synthesize(small_artifact, ECP5, SynthOptions(uram="on"))
    assert flow.yosys_step("12.42. Executing TECHMAP pass (map to technology primitives).") == \
        "TECHMAP pass (map to technology primitives)"


# ------------------------------------------------------------------ explore --synth

def test_explore_synth_adds_resource_columns(tmp_path, monkeypatch):
    """``explore --synth DEVICE`` synthesizes each quantized point's artifact (here a stand-in
    that reports figures from the artifact's own lane count) and fills the resource, fit
    and Fmax columns; float points have no accelerator and leave them empty."""
    from tensorgate.demo import demo_files
    from tensorgate.runtime import synthesis

    seen = []

    def fake_synthesize(artifact, device, options):
        pes = json.loads((Path(artifact) / "manifest.json").read_text())["hardware"]["pes"]
        seen.append((device.name, options.freq_mhz, pes))
        resources = {"LUT4": 1000 * pes, "TRELLIS_FF": 500, "MULT18X18D": pes, "ALU54B": 0, "DP16KD": 300}
        return {"resources": resources, "fit": fit(device, resources),
                "timing": {"fmax_mhz": 87.5 if pes == 2 else 61.25}}

    monkeypatch.setattr(synthesis, "synthesize", fake_synthesize)
    model, inputs = demo_files()
    out = tmp_path / "out"
    assert main(["explore", str(model), "--data", str(inputs), "--methods", "dense", "--bits", "none,8",
                 "--pes", "2,4", "--synth", "ecp5-85k", "--synth-freq", "75", "--workers", "1", "-o", str(out)]) == 0
    assert sorted(seen) == [("ecp5-85k", 75.0, 2), ("ecp5-85k", 75.0, 4)]
    with open(out / "explore.csv", newline="") as stream:
        rows = list(csv.DictReader(stream))
    floats = [row for row in rows if row["bits"] == "none"]
    assert floats and all(row[c] == "" for row in floats for c in ("lut", "bram", "fits", "fmax_mhz"))
    fixed = {row["pes"]: row for row in rows if row["bits"] == "8"}
    assert fixed["2"]["lut"] == "2000" and fixed["4"]["dsp"] == "4" and fixed["4"]["bram"] == "300"
    assert fixed["2"]["fits"] == "false" and fixed["2"]["fmax_mhz"] == "87.5"  # 300 DP16KD > 208
    png = (out / "pareto.png").read_bytes()
    width, height = int.from_bytes(png[16:20], "big"), int.from_bytes(png[20:24], "big")
    assert png.startswith(b"\x89PNG") and height / width > 0.5  # a second row of panels: quality vs resources


def test_explore_synth_refuses_an_unknown_device(tmp_path, capsys):
    from tensorgate.demo import demo_files

    model, inputs = demo_files()
    assert main(["explore", str(model), "--data", str(inputs), "--synth", "xc7a35t", "-o", str(tmp_path / "o")]) == 2
    assert "unknown device 'xc7a35t'" in capsys.readouterr().err and not (tmp_path / "o").exists()
