"""The accelerator's valid/ready streams: inputs sent through the input stream and outputs
received from the output stream, with random stalls on both sides, equal the host port's
and the integer golden model's bit for bit; every word arrives once, in order; a word
offered on the output stays offered, unchanged, until taken; the streams yield to the host
port and take no new words while a program runs, except for its INPUT instructions (a
sequence streamed one time step at a time, several codes to a stream word in a build of
several write ports: ``isa.input_pack``), whose stream of the next step runs in the
background while the step before computes, through long stalls."""

from __future__ import annotations

import numpy as np
import pytest

from accel_models import AccelCase, quantized
from dataclasses import replace

from tensorgate.backend.verilog import isa
from tensorgate.backend.verilog.artifact import write_verilog_artifact
from tensorgate.backend.verilog.hardware import AccelConfig, module_code_width
from tensorgate.backend.verilog.isa import Loops, Narrowing
from tensorgate.backend.verilog.lower import lower
from tensorgate.errors import TensorgateError
from tensorgate.interpreter import FixedExecutor, run_fixed
from tensorgate.runtime.simulator import (PROGRAM, SCRATCH, Simulator, accel_design, load_image, read_codes,
                                          stream_in, stream_out)
from tensorgate.runtime.verilator import RtlSim, build

PES = 4
CONFIG = AccelConfig(PES, code_width=8, scratch_width=64)
"""The build the 8-bit BT models need (their block sums are wide accumulators)."""
PACKED = replace(CONFIG, drain_lanes=4, banks=4)
"""The same with four scratchpad write ports: an INPUT instruction takes four codes a stream word."""


@pytest.fixture(scope="module")
def accel():
    return build(accel_design(CONFIG), progress=False)


@pytest.fixture(scope="module")
def packed_accel():
    return build(accel_design(PACKED), progress=False)


def test_packed_build_takes_four_codes_a_word():
    assert (CONFIG.input_pack, PACKED.input_pack) == (1, 4)


def stalls(rng: np.random.Generator, probability: float, length: int = 1 << 14) -> np.ndarray:
    """A random on/off pattern: off with ``probability`` each cycle."""
    return rng.random(length) >= probability


@pytest.mark.parametrize("case", [AccelCase(lens=True, initial=True), AccelCase(fmt="tt", head="dense")],
                         ids=["dense-states-lens", "tt-head"])
def test_simulator_stream_io_equals_host_io_and_golden(case, tmp_path):
    module, inputs = quantized(case, tmp_path)
    artifact = write_verilog_artifact(module, tmp_path / "artifact", "quantize", "stream", PES)
    simulator = Simulator(artifact, progress=False)
    streamed, stream_stats = simulator.run(inputs, raw=True, io="stream")
    hosted, host_stats = simulator.run(inputs, raw=True)
    expected = run_fixed(module, inputs, raw=True)
    assert streamed.keys() == hosted.keys() == expected.keys()
    for key, value in expected.items():
        assert np.array_equal(streamed[key], value), key
        assert np.array_equal(hosted[key], value), key
    assert stream_stats["cycles"] == host_stats["cycles"]


@pytest.mark.parametrize("packed", [False, True], ids=["one-code-a-word", "four-codes-a-word"])
@pytest.mark.parametrize("seed, batch, cell", [(0, 2, "lstm"), (1, 1, "lstm"), (2, 1, "lstm"), (3, 1, "gru"),
                                               (4, 2, "rnn")])
def test_stalled_streams_through_a_model_run_are_bit_exact(seed, batch, cell, packed, accel, packed_accel, tmp_path):
    """A step of batch 1 is 6 codes: in four-code words its last word is half empty."""
    rng = np.random.default_rng(seed)
    module, inputs = quantized(AccelCase(fmt="bt", lens=True, seed=seed, batch=batch, cell=cell), tmp_path)
    codes = FixedExecutor(module).input_codes(inputs)
    image = lower(module, PES, {name: np.shape(array) for name, array in codes.items()})
    assert AccelConfig.for_image(image, module_code_width(module)) == CONFIG
    expected = run_fixed(module, inputs, raw=True)
    config = PACKED if packed else CONFIG
    with RtlSim(packed_accel if packed else accel) as sim:
        sim.reset()
        load_image(sim, image)
        for name, addresses in image.inputs.items():
            stream_in(sim, int(addresses.flat[0]), np.asarray(codes[name], np.int64).ravel(),
                      valid=stalls(rng, 0.4))
        assert image.streamed == ["x"]  # the sequence goes in a time step at a time while the program runs
        words = image.stream_words(codes, config.input_pack)
        assert len(words) == -(-codes["x"][0].size // config.input_pack) * len(codes["x"])
        sim.push_stream(words)
        sim.run(1 << 20, start=True)
        assert sim.push_stream([]) == 0, "the program left words of the sequence in the stream"
        for name, (addresses, _) in image.outputs.items():
            low, high = int(addresses.min()), int(addresses.max())
            streamed = stream_out(sim, low, high - low + 1, ready=stalls(rng, 0.5))[addresses - low]
            assert np.array_equal(streamed, expected[name]), name
            assert np.array_equal(read_codes(sim, addresses), expected[name]), name


@pytest.mark.parametrize("seed", [3, 4])
def test_output_stream_holds_each_word_until_taken_and_yields_to_host_reads(seed, accel):
    rng = np.random.default_rng(seed)
    words = rng.integers(-(1 << 62), 1 << 62, 200)
    base = 100
    cycles = 1200
    ready = stalls(rng, 0.6, cycles)
    host_read = rng.random(cycles) < 0.2
    host_addr = rng.integers(0, base, cycles)
    background = rng.integers(-1000, 1000, base)
    with RtlSim(accel) as sim:
        sim.reset()
        sim.write_memory(SCRATCH, background)
        sim.write_memory(SCRATCH, words, base)
        sim.drive({"out_arm": 1, "out_base": base, "out_count": len(words)}, [], cycles=1)
        trace = sim.drive({"out_ready": ready.astype(np.int64), "host_en": host_read.astype(np.int64),
                           "host_we": 0, "host_mem": SCRATCH, "host_addr": host_addr, "out_arm": 0},
                          ["out_valid", "out_data", "host_rdata"], signed=["out_data", "host_rdata"])
    valid, data = trace["out_valid"].astype(bool), trace["out_data"]
    taken = valid & ready
    assert np.array_equal(data[taken], words), "words lost, duplicated or reordered"
    waiting = valid[:-1] & ~ready[:-1]
    assert valid[1:][waiting].all() and np.array_equal(data[1:][waiting], data[:-1][waiting])
    read_cycles = np.flatnonzero(host_read[:-1])
    assert np.array_equal(trace["host_rdata"][read_cycles + 1], background[host_addr[read_cycles]])


def test_input_stream_writes_exactly_its_region(accel):
    rng = np.random.default_rng(5)
    words = rng.integers(-(1 << 40), 1 << 40, 50)
    base = 20
    with RtlSim(accel) as sim:
        sim.reset()
        sim.write_memory(SCRATCH, np.full(100, 7))
        assert sim.get("in_ready") == 0, "ready before the stream was armed"
        assert stream_in(sim, base, words, valid=stalls(rng, 0.5)) >= len(words)
        sim.set("in_valid", 1)
        sim.eval()
        assert sim.get("in_ready") == 0, "ready after the last word"
        sim.step(3)
        memory = sim.read_memory(SCRATCH, 100, signed=True)
    assert np.array_equal(memory[base:base + len(words)], words)
    assert (memory[:base] == 7).all() and (memory[base + len(words):] == 7).all()


def test_streams_are_closed_while_a_program_runs(accel):
    """A program without INPUT instructions (one long copy) leaves the armed streams shut."""
    copy = Narrowing(0, 0, 0, isa.WIDE_LO, isa.WIDE_HI, True)
    program = [isa.elementwise(Loops(0, ((1000, 1),)), Loops(1000, ((1000, 1),)), None, copy), isa.end()]
    with RtlSim(accel) as sim:
        sim.reset()
        sim.write_memory(PROGRAM, np.concatenate(program))
        sim.drive({"in_arm": 1, "in_base": 0, "in_count": 4, "out_arm": 1, "out_base": 0, "out_count": 4}, [],
                  cycles=1)
        cycles = 200
        trace = sim.drive({"start": np.r_[1, np.zeros(cycles - 1, np.int64)], "in_arm": 0, "out_arm": 0,
                           "in_valid": 1, "out_ready": 0}, ["in_ready", "out_valid", "done"])
    running = slice(1, cycles)
    assert trace["in_ready"][0] == 1
    assert not trace["done"][running].any(), "the program finished within the window"
    assert not trace["in_ready"][running].any(), "input stream open while running"
    assert trace["out_valid"][2:].all(), "the word fetched before start was dropped"  # two edges from fetch


def test_unknown_io_mode_is_refused(tmp_path):
    module, inputs = quantized(AccelCase(), tmp_path)
    artifact = write_verilog_artifact(module, tmp_path / "artifact", "quantize", "io", PES)
    with pytest.raises(TensorgateError, match="io mode 'axi'"):
        Simulator(artifact, progress=False).run(inputs, io="axi")


def run_input_instruction(sim: RtlSim, base: int, codes: np.ndarray, pack: int) -> int:
    """Run a program of one INPUT instruction of ``codes`` (packed ``pack`` a word) to
    scratchpad words ``base`` on; the cycles it took."""
    sim.write_memory(PROGRAM, np.concatenate([isa.stream_input(base, len(codes)), isa.end()]))
    sim.push_stream(isa.pack_input(codes, pack))
    cycles = sim.run(1 << 16, start=True)
    assert sim.push_stream([]) == 0, "words left in the stream"
    return cycles


@pytest.mark.parametrize("count", [1, 3, 4, 9, 64])
def test_packed_input_instruction_writes_exactly_its_codes(count, packed_accel):
    rng = np.random.default_rng(count)
    codes = rng.integers(-128, 128, count)
    base = 37
    with RtlSim(packed_accel) as sim:
        sim.reset()
        sim.write_memory(SCRATCH, np.full(200, 7))
        run_input_instruction(sim, base, codes, PACKED.input_pack)
        memory = sim.read_memory(SCRATCH, 200, signed=True)
    assert np.array_equal(memory[base:base + count], codes)
    assert (memory[:base] == 7).all() and (memory[base + count:] == 7).all()


@pytest.mark.parametrize("packed", [False, True], ids=["one-code-a-word", "four-codes-a-word"])
def test_input_instruction_takes_one_stream_word_a_cycle(packed, accel, packed_accel):
    pack = PACKED.input_pack if packed else 1
    rng = np.random.default_rng(6)
    with RtlSim(packed_accel if packed else accel) as sim:
        sim.reset()
        short, long = (run_input_instruction(sim, 0, rng.integers(-128, 128, words * pack), pack)
                       for words in (100, 200))  # past the next instruction's fetch (65 cycles)
    assert long - short == 100


def run_with_stalled_input(sim: RtlSim, words: np.ndarray, valid: np.ndarray) -> int:
    """Run the loaded program from start to done, its INPUT instructions' stream offering
    ``words`` in order on the cycles ``valid`` says; the cycles it took."""
    sim.set("start", 1)
    sim.step()
    sim.set("start", 0)
    sent = cycles = 0
    while not sim.get("done"):
        offer = sent < len(words) and bool(valid[cycles % len(valid)])
        sim.set("in_valid", int(offer))
        sim.set("in_data", int(words[sent]) if offer else 0)
        sim.eval()
        sent += int(offer and sim.get("in_ready"))
        sim.step()
        cycles += 1
        assert cycles < 1 << 18, "the program did not finish"
    sim.set("in_valid", 0)
    assert sent == len(words), "the program left words of the sequence in the stream"
    return cycles


@pytest.mark.parametrize("seed, cell, direction", [(0, "lstm", "forward"), (3, "gru", "forward"),
                                                   (5, "lstm", "bidirectional"), (6, "rnn", "reverse")])
def test_program_input_stream_with_long_stalls_is_bit_exact(seed, cell, direction, packed_accel, tmp_path):
    """The background stream of the next step stops for tens of cycles at a time, during
    the step before's GEMMs and cells and during the waits for it (a reverse sweep's steps
    last first, a bidirectional layer's sequence twice)."""
    rng = np.random.default_rng(seed)
    case = AccelCase(fmt="bt", seed=seed, batch=1, cell=cell, steps=4, direction=direction)
    module, inputs = quantized(case, tmp_path)
    codes = FixedExecutor(module).input_codes(inputs)
    image = lower(module, PES, {name: np.shape(array) for name, array in codes.items()})
    assert image.streamed == ["x"]
    valid = np.repeat(rng.random(256) < 0.5, rng.integers(1, 40, 256))
    with RtlSim(packed_accel) as sim:
        sim.reset()
        load_image(sim, image)
        for name, addresses in image.inputs.items():
            stream_in(sim, int(addresses.flat[0]), np.asarray(codes[name], np.int64).ravel())
        run_with_stalled_input(sim, image.stream_words(codes, PACKED.input_pack), valid)
        expected = run_fixed(module, inputs, raw=True)
        for name, (addresses, _) in image.outputs.items():
            assert np.array_equal(read_codes(sim, addresses), expected[name]), name


def test_later_steps_stream_while_the_step_before_computes(tmp_path):
    """Each step's INPUT arms the next step's stream in the background, so a step after the
    first waits (almost) nothing for its codes: four more steps of 1024 codes (1024 stream
    cycles each) add less than one step's stream to the cycles outside GEMM, EW and cell."""
    runs = {}
    for steps in (2, 6):
        module, inputs = quantized(AccelCase(inputs=1024, hidden=8, batch=1, steps=steps), tmp_path)
        artifact = write_verilog_artifact(module, tmp_path / f"artifact{steps}", "quantize", "overlap", PES)
        outputs, runs[steps] = Simulator(artifact, progress=False).run(inputs, raw=True)
        expected = run_fixed(module, inputs, raw=True)
        assert all(np.array_equal(outputs[key], value) for key, value in expected.items())
    assert runs[6]["overhead_cycles"] - runs[2]["overhead_cycles"] < 1024
