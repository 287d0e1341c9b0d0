"""Memories sized from the model: words at the quantized widths, recurrent weights stored
once, a scratchpad packed by liveness whose size does not grow with the sequence length
when the input is streamed one time step at a time, and the analytical block-RAM estimate
the synthesis counts are compared with.  (That the packed, streamed programs still compute
the golden model's bits is test_accel_bitexact's and test_accel_stream's.)"""

from __future__ import annotations

import numpy as np
import pytest

from accel_models import AccelCase, quantized
from tensorgate.backend.verilog import isa
from tensorgate.backend.verilog.allocate import Region, allocate_scratchpad
from tensorgate.backend.verilog.hardware import AccelConfig, Memory, module_code_width
from tensorgate.backend.verilog.image import Image
from tensorgate.backend.verilog.isa import Loops, LoweringError, Narrowing
from tensorgate.backend.verilog.lower import lower

COPY = Narrowing(0, 0, 0, isa.WIDE_LO, isa.WIDE_HI, True)


def lowered(case: AccelCase, tmp_path, steps: int, pes: int = 4) -> Image:
    module, _ = quantized(case, tmp_path)
    shapes = {v.name: (steps,) + tuple(v.type.shape[1:]) if v.name == "x" else tuple(v.type.shape)
              for v in module.inputs}
    return lower(module, pes, shapes)


@pytest.mark.parametrize("case", [AccelCase(fmt="tt", head="dense"), AccelCase(hidden=8, inputs=16, batch=1, head="dense"),
                                  AccelCase(fmt="tt", cell="gru", head="dense"), AccelCase(cell="rnn", batch=1, head="dense")],
                         ids=["tt-head", "dense-batch1", "gru-tt-head", "rnn-batch1"])
def test_streamed_sequence_needs_the_same_memory_for_any_length(case, tmp_path):
    short, long = lowered(case, tmp_path, 2), lowered(case, tmp_path, 9)
    assert short.streamed == long.streamed == ["x"] and "x" not in long.inputs
    assert len(long.scratch) == len(short.scratch)
    assert len(long.weight_rows) == len(short.weight_rows)
    inputs = [w for w in long.program if int(w[0]) & 0xFF == isa.INPUT]
    assert len(inputs) == 9 and {int(w[2]) for w in inputs} == {case.batch * case.inputs}


@pytest.mark.parametrize("cell", ["lstm", "gru", "rnn"])
@pytest.mark.parametrize("direction", ["reverse", "bidirectional"])
def test_reverse_sweeps_stream_their_steps_in_the_order_they_take_them(cell, direction, tmp_path):
    """A reverse sweep takes the last step first, and a bidirectional layer takes the
    sequence twice (forward, then reversed): their INPUTs name those steps, and the memory
    does not grow with the length."""
    case = AccelCase(direction=direction, cell=cell, head="dense")
    short, long = lowered(case, tmp_path, 2), lowered(case, tmp_path, 9)
    assert long.streamed == ["x"] and "x" not in long.inputs
    assert len(long.scratch) == len(short.scratch)
    steps = [int(w[isa.INPUT_STEP]) for w in long.program if int(w[0]) & 0xFF == isa.INPUT]
    backward = list(range(8, -1, -1))
    assert steps == (backward if direction == "reverse" else list(range(9)) + backward)


def test_8_bit_models_store_8_bit_weights_and_narrow_scratchpad_words(tmp_path):
    module, _ = quantized(AccelCase(head="dense"), tmp_path)
    image = lower(module, 4, {v.name: tuple(v.type.shape) for v in module.inputs})
    config = AccelConfig.sized(image, module_code_width(module))
    assert config.code_width == 8 and config.scratch_width == 16  # biases are wider than the codes
    assert (config.w_depth, config.s_depth, config.prog_depth) == (len(image.weight_rows), len(image.scratch),
                                                                  len(image.program) * isa.WORDS)


def test_packing_reuses_dead_regions_and_keeps_constants_inputs_and_outputs():
    image = Image(1)
    image.scratch = [0] * 4 + [7, 8] + [0] * 8
    regions = [Region(0, 4), Region(4, 2, constant=True), Region(6, 4), Region(10, 4)]  # x, c, t, y
    image.inputs = {"x": np.arange(4)}
    walk = lambda base: Loops(base, ((4, 1),))  # noqa: E731
    image.program = [isa.elementwise(walk(0), walk(6), None, COPY),  # t = x
                     isa.elementwise(walk(6), walk(10), Loops(4, ((4, 0),)), COPY),  # y = t + c[0]: x is dead
                     isa.end()]
    image.outputs = {"y": (10 + np.arange(4), None)}
    packed = allocate_scratchpad(image, regions)
    first, second = packed.program[0], packed.program[1]
    x, t, y, c = int(first[isa.A_BASE]), int(first[isa.O_BASE]), int(second[isa.O_BASE]), int(second[isa.I_BASE])
    assert int(second[isa.A_BASE]) == t and packed.inputs["x"][0] == x and packed.outputs["y"][0][0] == y
    assert len(packed.scratch) == 10 and packed.scratch[c:c + 2] == [7, 8]
    words = {"x": set(range(x, x + 4)), "t": set(range(t, t + 4)), "y": set(range(y, y + 4)), "c": {c, c + 1}}
    live_together = [("x", "t"), ("x", "c"), ("t", "c"), ("t", "y"), ("c", "y")]
    assert all(not words[a] & words[b] for a, b in live_together)
    assert words["y"] == words["x"]  # y takes the words of x, dead by then


def test_a_region_read_before_it_is_written_keeps_its_zeros():
    image = Image(1)
    image.scratch = [0] * 8
    regions = [Region(0, 4), Region(4, 4)]
    walk = lambda base: Loops(base, ((4, 1),))  # noqa: E731
    image.program = [isa.elementwise(walk(4), walk(0), None, COPY), isa.end()]  # reads zeros, writes a temporary
    image.outputs = {"y": (np.arange(4), None)}
    packed = allocate_scratchpad(image, regions)
    assert len(packed.scratch) == 8 and packed.scratch == [0] * 8


def test_a_walk_outside_every_region_is_refused():
    image = Image(1)
    image.scratch = [0] * 4
    image.program = [isa.elementwise(Loops(2, ((4, 1),)), Loops(0, ((4, 1),)), None, COPY), isa.end()]
    with pytest.raises(LoweringError, match="outside every allocated region"):
        allocate_scratchpad(image, [Region(0, 4)])


@pytest.mark.parametrize("memory, bram36", [
    (Memory("m", 1, 4096, 9), 1.0), (Memory("m", 1, 4097, 8), 1.5), (Memory("m", 1, 2048, 9), 0.5),
    (Memory("m", 1, 64, 64), 0.0), (Memory("m", 16, 39864, 8), 160.0), (Memory("m", 2, 512, 72), 4.0),
    (Memory("m", 1, 100_000, 16), 49.0)])
def test_block_ram_estimate_tiles_each_copy_by_the_cheapest_true_dual_port_shape(memory, bram36):
    assert memory.bram36 == bram36


def test_memory_estimate_sums_its_memories():
    config = AccelConfig(64, code_width=8, scratch_width=16, prog_depth=1280, w_depth=12004, s_depth=103691,
                         t_depth=48, groups=8, drain_lanes=2, banks=8)
    estimate = config.memory_estimate()
    assert estimate["bits"] == sum(config.memory_bits().values())
    assert estimate["bram36"] == sum(m["bram36"] for m in estimate["by_memory"].values())
    # two copies of 8 banks of 12,962 rows: RAMB18s of 1024 x 18, 13 a bank
    for copy in ("scratchpad_operands", "scratchpad_init"):
        assert estimate["by_memory"][copy] == {"copies": 8, "depth": 12962, "width": 16, "bits": 8 * 12962 * 16,
                                               "primitive": "bram", "cells": {"RAMB18E2": 104}, "bram36": 52.0,
                                               "uram": 0}
