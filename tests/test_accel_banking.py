"""The banked scratchpad (issue 18 item 1): row groups read A through the banks' read ports,
drain lanes write a cycle's results through their write ports, and the lowering places
values so that a cycle's accesses fall in distinct banks.

A TT-LSTM whose contraction steps have few columns and a small K (the FL-TT-LSTM's shape:
the steps that filled 48 of 64 lanes or waited on the drain's one write a cycle) runs
bit-exact at P = 64 and 128 with groups and drain lanes in use; the GEMM plans' walks cover
every output word once with a cycle's accesses in distinct banks (hypothesis), which the
allocator keeps (a cycle's accesses lie in one region, moved as one); the allocator packs
by liveness without changing what a program computes (hypothesis)."""

from __future__ import annotations

import math

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from tensorgate.backend.verilog import isa
from tensorgate.backend.verilog.allocate import Region, allocate_scratchpad
from tensorgate.backend.verilog.artifact import write_verilog_artifact
from tensorgate.backend.verilog.image import Image
from tensorgate.backend.verilog.isa import Loops, Narrowing
from tensorgate.backend.verilog.lower import GemmPlan, lower
from tensorgate.interpreter import run_fixed
from tensorgate.ir.builder import Builder
from tensorgate.ir.core import Module
from tensorgate.ir.linear_map import DenseMap
from tensorgate.ir.tensor_formats import TTMap
from tensorgate.ir.types import F32, TensorType
from tensorgate.passes.manager import PassManager
from tensorgate.runtime.simulator import Simulator

IN_FACTORS, OUT_FACTORS, RANK = (16, 9, 53), (4, 4, 6), 4
DEEP_IN_FACTORS, DEEP_OUT_FACTORS = (8, 4, 3, 5), (4, 4, 4, 6)  # the FL-TT-LSTM's output factors


def _tt(rng, out_factors, in_factors, rank):
    ranks = [1] + [rank] * (len(out_factors) - 1) + [1]
    return TTMap.from_cores([(rng.standard_normal((ranks[k], m, n, ranks[k + 1])) / np.sqrt(n * ranks[k]))
                             .astype(np.float32) for k, (m, n) in enumerate(zip(out_factors, in_factors))])


def narrow_tt_lstm(tmp_path, in_factors=IN_FACTORS, out_factors=OUT_FACTORS) -> tuple[Module, dict[str, np.ndarray]]:
    """x[1, 1, Πin] -> LSTM (hidden Πout, TT rank 4 per gate on W, dense R), 8-bit; by
    default x[1, 1, 7632] and hidden 96."""
    rng = np.random.default_rng(3)
    inputs, hidden = math.prod(in_factors), math.prod(out_factors)
    module = Module("banked")
    b = Builder(module)
    x = b.input("x", TensorType((1, 1, inputs), F32))
    attrs = {"hidden_size": hidden, "direction": "forward",
             "w": [_tt(rng, out_factors, in_factors, RANK) for _ in range(4)],
             "r": [DenseMap((rng.standard_normal((hidden, hidden)) / np.sqrt(hidden)).astype(np.float32))
                   for _ in range(4)],
             "bias": (0.1 * rng.standard_normal((1, 8 * hidden))).astype(np.float32)}
    module.outputs = list(b.op("lstm", [x, None, None, None], attrs, names=["Y", "Y_h", "Y_c"]).results)
    calibration = tmp_path / "calibration.npz"
    np.savez(calibration, x=np.random.default_rng(7).standard_normal((1, 1, inputs)).astype(np.float32))
    PassManager.parse(f"order-contractions,quantize{{bits=8 calibration={calibration}}}").run(module)
    return module, {"x": np.random.default_rng(1).standard_normal((1, 1, inputs)).astype(np.float32)}


def gemm_lanes(program) -> list[tuple[int, int, int]]:
    """(groups, drain lanes, tiles) of every GEMM."""
    return [(1 << ((int(w[0]) >> 8) & 0xFF), 1 << ((int(w[0]) >> 16) & 0xFF), int(w[isa.B_TILES]))
            for w in program if int(w[0]) & 0xFF == isa.GEMM]


@pytest.mark.parametrize("pes", [64, 128])
def test_row_groups_and_drain_lanes_run_bit_exact(pes, tmp_path):
    module, inputs = narrow_tt_lstm(tmp_path)
    plans = gemm_lanes(lower(module, pes, {"x": (1, 1, math.prod(IN_FACTORS))}).program)
    assert any(d > 1 for _, d, _ in plans), plans  # the drain writes several results a cycle
    assert any(g > 1 and t > 1 for g, _, t in plans), plans  # row groups with column tiles fill the lanes
    artifact = write_verilog_artifact(module, tmp_path / "artifact", "quantize", "banked", pes)
    outputs, stats = Simulator(artifact, progress=False).run(inputs, raw=True)
    expected = run_fixed(module, inputs, raw=True)
    for key, value in expected.items():
        assert np.array_equal(outputs[key], value), key
    assert stats["gemm_cycles"] * pes >= stats["macs"]


def test_intermediate_laid_out_for_its_consumer_runs_bit_exact(tmp_path):
    """The last TT step of an output factored 4·4·4·6 keeps 4·6 = 24 rows, which its input's
    row-major layout splits into loops of 4 and 6: no loop of 8, so 4 row groups of 32 lanes
    for 16 columns.  Laid out in the order the step writes them, the rows merge into one
    loop of 24 that 8 row groups split."""
    module, inputs = narrow_tt_lstm(tmp_path, DEEP_IN_FACTORS, DEEP_OUT_FACTORS)
    plans = gemm_lanes(lower(module, 128, {"x": (1, 1, math.prod(DEEP_IN_FACTORS))}).program)
    assert any(g == 8 for g, _, _ in plans), plans
    artifact = write_verilog_artifact(module, tmp_path / "artifact", "quantize", "deep", 128)
    outputs, _ = Simulator(artifact, progress=False).run(inputs, raw=True)
    expected = run_fixed(module, inputs, raw=True)
    for key, value in expected.items():
        assert np.array_equal(outputs[key], value), key


# ---------------------------------------------------------------- the plans' walks

def _drain_cycles(words: np.ndarray, index: int) -> np.ndarray:
    """[cycle, lane] addresses the output (or init) walk and the drain lanes reach."""
    drain = 1 << ((int(words[0]) >> 16) & 0xFF)
    first = isa._walk(words, index)
    return first[:, None] + isa._high_signed(words[index]) * np.arange(drain)[None, :]


def _distinct_or_one_word(cycles: np.ndarray, banks: int) -> bool:
    """Whether every cycle's (row's) accesses fall in distinct banks or are all one word."""
    one_word = np.all(cycles == cycles[:, :1], axis=1)
    in_banks = np.sort(cycles % banks, axis=1)
    return bool(np.all(one_word | np.all(np.diff(in_banks, axis=1) != 0, axis=1)))


loops = st.lists(st.tuples(st.sampled_from([1, 2, 3, 4, 6, 8, 16, 24]), st.integers(1, 40)), min_size=1,
                 max_size=2).filter(lambda dims: math.prod(c for c, _ in dims) <= 96)


@settings(max_examples=100, deadline=None)
@given(rows=loops, cols=loops, depth=st.integers(1, 4), pes=st.sampled_from([8, 16, 64, 128]),
       init=st.booleans())
def test_gemm_plans_write_every_result_once_in_distinct_banks(rows, cols, depth, pes, init):
    row_m = isa.merge_dims([(c, (s, s * 7 + 1, s * 3)) for c, s in rows])
    col_m = isa.merge_dims([(c, (s, s * 5)) for c, s in cols])
    columns = math.prod(c for c, _ in col_m)
    banks, groups, drains = isa.scratch_banks(pes), isa.row_groups(pes), isa.drain_lanes(pes)
    plans = [GemmPlan(pes, depth, columns, row_m, col_m, g, split, interleaved, d)
             for g in (1, 2, 4, 8, 16) if g <= groups for split in range(max(1, len(row_m)))
             for interleaved in (True, False) for d in (1, 2, 4) if d <= drains
             if g == 1 or row_m and row_m[split][0] % g == 0]
    for plan in [p for p in plans if p.fits(1, banks, init)]:
        words = isa.gemm(Loops(0, ((depth, 1),)), Loops(100_000, tuple(plan.walk(1))),
                         Loops(1_000_000, tuple(plan.walk(2))) if init else None, 0, depth, plan.tiles,
                         math.prod(c for c, _ in row_m), columns, Narrowing(0, 0, 0, -1, 1, False), plan.lanes)
        out = _drain_cycles(words, isa.O_BASE) - 100_000
        expected = (np.array([0]) if not row_m else isa._walk(isa.elementwise(
            Loops(0, tuple((c, s[1]) for c, s in row_m)), Loops(0, ()), None, Narrowing(0, 0, 0, 0, 0, False)),
            isa.A_BASE))[:, None] + (isa._walk(isa.elementwise(Loops(0, tuple((c, s[0]) for c, s in col_m)),
                                                              Loops(0, ()), None, Narrowing(0, 0, 0, 0, 0, False)),
                                               isa.A_BASE) if col_m else np.array([0]))[None, :]
        assert np.array_equal(np.sort(out.ravel()), np.sort(expected.ravel()))  # every result, once
        assert _distinct_or_one_word(out, banks)
        if init:
            assert _distinct_or_one_word(_drain_cycles(words, isa.I_BASE), banks)
        a_reads = isa._walk(words, isa.A_BASE)[:, None] + plan.lanes.a_group_stride * np.arange(plan.groups)
        assert _distinct_or_one_word(a_reads, banks)


# ---------------------------------------------------------------- the allocator

def _run_copies(image: Image) -> dict[str, np.ndarray]:
    """The words an EW-only program leaves at the image's outputs (each EW a copy)."""
    words = np.array(image.scratch + [0] * 64, np.int64)
    for addresses in image.inputs.values():
        words[addresses] = 1000 + np.arange(addresses.size)
    for instruction in image.program:
        if int(instruction[0]) & 0xFF == isa.EW:
            words[isa._walk(instruction, isa.O_BASE)] = words[isa._walk(instruction, isa.A_BASE)]
    return {name: words[addresses] for name, (addresses, _) in image.outputs.items()}


@settings(max_examples=150, deadline=None)
@given(sizes=st.lists(st.integers(1, 20), min_size=2, max_size=12), data=st.data())
def test_allocator_keeps_what_the_program_computes(sizes, data):
    """Copies through regions (each from an earlier one; constants among them) compute the
    same outputs after packing: a live region's words given to another would change them."""
    image = Image(16)
    regions = []
    for index, size in enumerate(sizes):
        base = len(image.scratch)
        constant = index > 0 and data.draw(st.booleans())
        image.scratch.extend(list(range(base, base + size)) if constant else [0] * size)
        regions.append(Region(base, size, constant))
    image.inputs["x"] = regions[0].base + np.arange(regions[0].size)
    written = {0: regions[0].size}
    for index in range(1, len(regions)):
        if regions[index].constant:
            written[index] = regions[index].size
            continue
        source = data.draw(st.integers(0, index - 1))
        count = min(written[source], regions[index].size)
        written[index] = count
        image.program.append(isa.elementwise(Loops(regions[source].base, ((count, 1),)),
                                             Loops(regions[index].base, ((count, 1),)), None,
                                             Narrowing(0, 0, 0, isa.WIDE_LO, isa.WIDE_HI, False)))
    for index in (len(regions) - 1, len(regions) // 2):  # outputs: the host reads them at the end
        image.outputs[f"y{index}"] = (regions[index].base + np.arange(written[index]), None)
    image.program.append(isa.end())
    packed = allocate_scratchpad(image, regions)
    before, after = _run_copies(image), _run_copies(packed)
    assert all(np.array_equal(before[name], after[name]) for name in before)
