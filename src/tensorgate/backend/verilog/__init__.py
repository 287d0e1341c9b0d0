"""Verilog backend: hand-written, parameterized RTL leaf modules (package data in ``rtl/``).

Leaf modules (one per file, file name = module name):

* ``tg_ram_dp``   dual-port synchronous RAM, optional ``$readmemh`` image
* ``tg_ram_banked`` a memory in interleaved banks of ``tg_ram_dp``, several read and write
  ports a cycle (the scratchpad)
* ``tg_requant``  round (half-away or half-even) by a run-time shift, saturate
* ``tg_requant_pipe`` the same in four register stages (the drain's and the cell's)
* ``tg_mac_lane`` multiply-accumulate lanes under one shared control, each with a requantizing
  output register (optionally registered operands and product: block RAM and DSP registers)
* ``tg_addr_gen`` nested-loop address generator (strides, one address per cycle)
* ``tg_lut_act``  table-lookup activation over a ``tg_ram_dp``

The accelerator (``accel/``): ``tg_accel`` (top: controller, P lanes, memories, host
port), ``tg_drain`` (the pipelined narrowing every GEMM and EW result is written
through), ``tg_lstm_cell`` and ``tg_gru_rnn_cell`` (the cell units, modulo-scheduled;
``tg_no_cell`` stands in for one a build leaves out), ``tg_act_pipe`` (pipelined σ/tanh, PWL
or LUT).  ``isa`` encodes its instructions, ``lower`` compiles a quantized module to program and memory
images, ``hardware`` names the build, ``artifact`` writes the ``verilog`` target.
"""

from __future__ import annotations

from pathlib import Path

RTL_DIR = Path(__file__).parent / "rtl"


def rtl_sources() -> list[Path]:
    """Every hand-written RTL file, sorted by name (a build or lint takes them all)."""
    return sorted(RTL_DIR.glob("*.sv"))
