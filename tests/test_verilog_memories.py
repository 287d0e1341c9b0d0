"""tg_ram_dp and tg_lut_act under Verilator: $readmemh images, read-first dual-port
semantics on random traffic, table lookups with run-time shift/offset/clamp, and
bit-exact agreement with the golden model's sigma/tanh table units over every
input code."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

from tensorgate.backend.verilog import rtl_sources
from tensorgate.fixedpoint import build_unit
from tensorgate.ir.types import FixedType
from tensorgate.runtime import verilator as vl

RAM_IMAGE = Path(__file__).parent / "rtl" / "ram_init.hex"
RAM_WIDTH, RAM_DEPTH = 16, 48
LUT_IN_W, LUT_OUT_W, LUT_DEPTH, LUT_SHIFT_W, LUT_OFFSET_W = 16, 16, 1024, 5, 16


@pytest.fixture(scope="module")
def ram():
    build = vl.build(vl.RtlDesign.of("tg_ram_dp", rtl_sources(), {
        "WIDTH": RAM_WIDTH, "DEPTH": RAM_DEPTH, "INIT_FILE": str(RAM_IMAGE)}))
    return build


@pytest.fixture(scope="module")
def lut():
    build = vl.build(vl.RtlDesign.of("tg_lut_act", rtl_sources(), {
        "IN_W": LUT_IN_W, "OUT_W": LUT_OUT_W, "DEPTH": LUT_DEPTH, "SHIFT_W": LUT_SHIFT_W,
        "OFFSET_W": LUT_OFFSET_W}))
    with vl.RtlSim(build) as sim:
        sim.reset()
        yield sim


def image_words() -> list[int]:
    return [int(line, 16) for line in RAM_IMAGE.read_text().split()]


def read_all(sim, port: str) -> np.ndarray:
    addresses = np.r_[np.arange(RAM_DEPTH), 0]
    got = sim.drive({f"{port}_en": 1, f"{port}_we": 0, f"{port}_addr": addresses}, [f"{port}_rdata"])
    return got[f"{port}_rdata"][1:]


def test_ram_starts_from_its_readmemh_image(ram):
    with vl.RtlSim(ram) as sim:
        np.testing.assert_array_equal(read_all(sim, "a"), image_words())
        np.testing.assert_array_equal(read_all(sim, "b"), image_words())


def ram_model(stimulus: dict[str, np.ndarray]) -> dict[str, np.ndarray]:
    """Read-first dual-port RAM: rdata as seen before each edge."""
    words = image_words()
    count = len(stimulus["a_addr"])
    rdata = {"a": 0, "b": 0}
    record = {"a_rdata": np.zeros(count, np.int64), "b_rdata": np.zeros(count, np.int64)}
    for t in range(count):
        record["a_rdata"][t], record["b_rdata"][t] = rdata["a"], rdata["b"]
        before = list(words)
        for port in "ab":
            if stimulus[f"{port}_en"][t]:
                addr = stimulus[f"{port}_addr"][t]
                rdata[port] = before[addr]
                if stimulus[f"{port}_we"][t]:
                    words[addr] = int(stimulus[f"{port}_wdata"][t])
    return record


def test_ram_dual_port_random_traffic_is_read_first(ram):
    rng = np.random.default_rng(6)
    count = 4_000
    stimulus = {}
    for port in "ab":
        stimulus[f"{port}_en"] = (rng.random(count) < 0.8).astype(np.int64)
        stimulus[f"{port}_we"] = (rng.random(count) < 0.4).astype(np.int64)
        stimulus[f"{port}_addr"] = rng.integers(0, RAM_DEPTH, count)
        stimulus[f"{port}_wdata"] = rng.integers(0, 1 << RAM_WIDTH, count)
    # Two writes to one word on one edge are undefined: drop port B's.
    clash = ((stimulus["a_en"] & stimulus["a_we"] & stimulus["b_en"]).astype(bool)
             & (stimulus["a_addr"] == stimulus["b_addr"]))
    stimulus["b_we"][clash] = 0
    with vl.RtlSim(ram) as sim:
        got = sim.drive(stimulus, ["a_rdata", "b_rdata"])
    expected = ram_model(stimulus)
    for name in expected:
        np.testing.assert_array_equal(got[name], expected[name], err_msg=name)


def load_table(sim, table: np.ndarray) -> None:
    sim.drive({"tbl_en": 1, "tbl_we": 1, "tbl_addr": np.arange(table.size), "tbl_wdata": table}, [])
    sim.set("tbl_en", 0)
    sim.set("tbl_we", 0)


def lookup(sim, x, shift, offset, lo, hi) -> tuple[np.ndarray, np.ndarray]:
    """Drive inputs for len(x) cycles plus one; return (y, out_valid) aligned with x."""
    extend = (lambda v: np.r_[v, v[-1]] if np.ndim(v) else v)
    got = sim.drive({"in_valid": np.r_[np.ones(len(x), np.int64), 0], "x": extend(np.asarray(x)),
                     "shift": extend(shift), "offset": extend(offset), "idx_lo": extend(lo),
                     "idx_hi": extend(hi)}, ["y", "out_valid"], signed=["y"])
    return got["y"][1:], got["out_valid"][1:]


def test_lut_index_is_clamped_shift_plus_offset(lut):
    rng = np.random.default_rng(7)
    table = rng.integers(-(1 << (LUT_OUT_W - 1)), 1 << (LUT_OUT_W - 1), LUT_DEPTH)
    load_table(lut, table)
    count = 6_000
    x = rng.integers(-(1 << (LUT_IN_W - 1)), 1 << (LUT_IN_W - 1), count)
    shift = rng.integers(0, 1 << LUT_SHIFT_W, count)
    offset = rng.integers(-(1 << (LUT_OFFSET_W - 1)), 1 << (LUT_OFFSET_W - 1), count)
    offset[: count // 2] = rng.integers(-2 * LUT_DEPTH, 2 * LUT_DEPTH, count // 2)
    lo = rng.integers(0, LUT_DEPTH, count)
    hi = np.minimum(lo + rng.integers(0, LUT_DEPTH, count), LUT_DEPTH - 1)
    y, valid = lookup(lut, x, shift, offset, lo, hi)
    index = np.clip((x >> shift) + offset, lo, hi)
    assert valid.all()
    np.testing.assert_array_equal(y, table[index])
    assert (index == lo).any() and (index == hi).any() and ((index > lo) & (index < hi)).any()


def test_lut_table_reads_back_through_its_load_port(lut):
    table = np.arange(LUT_DEPTH) * 37 % (1 << LUT_OUT_W)
    load_table(lut, table)
    got = lut.drive({"tbl_en": 1, "tbl_we": 0, "tbl_addr": np.r_[np.arange(LUT_DEPTH), 0]}, ["tbl_rdata"])
    np.testing.assert_array_equal(got["tbl_rdata"][1:], table)


def test_lut_implements_golden_sigmoid_and_tanh_tables_exactly(lut):
    """Both units share one table memory (sigmoid at 0, tanh at 512); the golden
    index clip(q, lo, lo+span-1) - lo >> k equals clamp((q >> k) + offset) with
    offset = -(lo >> k) + region base."""
    input_fmt, output_fmt = FixedType(LUT_IN_W, 11), FixedType(LUT_OUT_W, 14)
    units = [build_unit(f, "lut", input_fmt, output_fmt, "nearest-even", size=512) for f in ("sigmoid", "tanh")]
    load_table(lut, np.concatenate([u.values for u in units]))
    codes = np.arange(-(1 << (LUT_IN_W - 1)), 1 << (LUT_IN_W - 1))
    for region, unit in enumerate(units):
        base = region * 512
        y, _ = lookup(lut, codes, unit.index_shift, base - (unit.lo >> unit.index_shift), base,
                      base + unit.size - 1)
        np.testing.assert_array_equal(y, unit.evaluate(codes), err_msg=unit.function)
