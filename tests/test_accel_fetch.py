"""Instruction prefetch: the next instruction is fetched while the current one runs, so
the cycles between instructions are the 2 of taking and decoding it wherever an
instruction runs longer than the 65-cycle fetch (a serial fetch costs 67 an instruction)."""

from __future__ import annotations

import numpy as np

from accel_models import AccelCase, quantized
from tensorgate.backend.verilog import isa
from tensorgate.backend.verilog.artifact import write_verilog_artifact
from tensorgate.backend.verilog.lower import lower
from tensorgate.interpreter import run_fixed
from tensorgate.runtime.simulator import Simulator

SERIAL_FETCH = isa.WORDS + 3


def test_fetch_hides_behind_long_instructions(tmp_path):
    case = AccelCase(hidden=16, inputs=12, steps=2, batch=1)
    module, inputs = quantized(case, tmp_path)
    instructions = len(lower(module, 1, {name: np.shape(v) for name, v in inputs.items()}).program)
    artifact = write_verilog_artifact(module, tmp_path / "artifact", "quantize", "fetch", 1)
    outputs, stats = Simulator(artifact, progress=False).run(inputs, raw=True)
    expected = run_fixed(module, inputs, raw=True)
    assert all(np.array_equal(outputs[key], value) for key, value in expected.items())
    between = stats["overhead_cycles"]
    assert between < SERIAL_FETCH * instructions / 3, (between, instructions)
