"""tg_addr_gen under Verilator against a nested-loop reference: random bounds,
signed strides and bases (with wrap-around), zero counts, back-pressure, restarts
and the one-address-per-cycle rate."""

from __future__ import annotations

import itertools

import numpy as np
import pytest

from tensorgate.backend.verilog import rtl_sources
from tensorgate.runtime import verilator as vl

DIMS, ADDR_W, COUNT_W = 6, 12, 8


@pytest.fixture(scope="module")
def gen():
    build = vl.build(vl.RtlDesign.of("tg_addr_gen", rtl_sources(),
                                     {"DIMS": DIMS, "ADDR_W": ADDR_W, "COUNT_W": COUNT_W}))
    with vl.RtlSim(build) as sim:
        sim.reset()
        yield sim


def pack(fields, width: int) -> int:
    """A packed [DIMS-1:0][width-1:0] port value, element 0 in the low bits."""
    return sum((int(value) & ((1 << width) - 1)) << (width * d) for d, value in enumerate(fields))


def expected_walk(base: int, counts, strides) -> list[int]:
    """Addresses of the loop nest, loop 0 innermost, modulo 2**ADDR_W."""
    ranges = [range(max(int(c), 1)) for c in reversed(counts)]
    return [(base + sum(i * s for i, s in zip(reversed(index), strides))) % (1 << ADDR_W)
            for index in itertools.product(*ranges)]


def configure(gen, base, counts, strides) -> None:
    gen.set("base", base)
    gen.set("counts", pack(counts, COUNT_W))
    gen.set("strides", pack(strides, ADDR_W))


def consumed(gen, ready: np.ndarray, start_at: int = 0) -> tuple[list[int], list[int], int]:
    """Drive start at cycle start_at and the given ready pattern; return the addresses
    taken (valid and ready at an edge), their last flags and the cycles with valid high."""
    start = np.zeros(ready.size, np.int64)
    start[start_at] = 1
    out = gen.drive({"start": start, "ready": ready}, ["addr", "valid", "last"])
    taken = (out["valid"] == 1) & (ready == 1)
    return out["addr"][taken].tolist(), out["last"][taken].tolist(), int(out["valid"].sum())


def random_config(rng):
    counts = rng.integers(0, 5, DIMS)
    strides = rng.integers(-(1 << (ADDR_W - 1)), 1 << (ADDR_W - 1), DIMS)
    small = rng.random(DIMS) < 0.6
    strides[small] = rng.integers(-40, 41, small.sum())
    return int(rng.integers(0, 1 << ADDR_W)), counts, strides


def test_random_walks_match_the_loop_nest(gen):
    rng = np.random.default_rng(5)
    for _ in range(60):
        base, counts, strides = random_config(rng)
        configure(gen, base, counts, strides)
        expected = expected_walk(base, counts, strides)
        ready = (rng.random(2 * len(expected) + 40) < 0.6).astype(np.int64)
        ready[-len(expected) - 2:] = 1  # enough ready cycles to finish
        addresses, lasts, _ = consumed(gen, ready)
        assert addresses == expected, (base, counts.tolist(), strides.tolist())
        assert lasts == [0] * (len(expected) - 1) + [1]
        assert gen.get("valid") == 0


def test_one_address_per_cycle_without_back_pressure(gen):
    counts, strides = [3, 4, 2, 1, 5, 2], [1, 3, 12, 0, 24, -7]
    configure(gen, 17, counts, strides)
    total = int(np.prod(counts))
    addresses, _, valid_cycles = consumed(gen, np.ones(total + 3, np.int64))
    assert addresses == expected_walk(17, counts, strides)
    assert valid_cycles == total


def test_transpose_is_a_stride_pattern(gen):
    rows, cols = 5, 7
    configure(gen, 0, [rows, cols, 1, 1, 1, 1], [cols, 1, 0, 0, 0, 0])
    addresses, _, _ = consumed(gen, np.ones(rows * cols + 2, np.int64))
    np.testing.assert_array_equal(addresses, np.arange(rows * cols).reshape(rows, cols).T.ravel())


def test_start_restarts_a_walk_in_progress(gen):
    configure(gen, 100, [4, 4, 1, 1, 1, 1], [1, 10, 0, 0, 0, 0])
    start = np.zeros(30, np.int64)
    start[[0, 6]] = 1
    out = gen.drive({"start": start, "ready": 1}, ["addr", "valid"])
    walk = expected_walk(100, [4, 4], [1, 10])
    assert out["addr"][1:7].tolist() == walk[:6]
    assert out["addr"][7:7 + len(walk)].tolist() == walk
    assert out["valid"][7 + len(walk)] == 0


def test_wide_config_ports_read_back(gen):
    strides = pack([1, -2, 3, 2047, -2048, -1], ADDR_W)
    gen.set("strides", strides)
    assert gen.ports["strides"].width == DIMS * ADDR_W > 64
    assert gen.get("strides") == strides
    gen.set("strides", -1)
    assert gen.get("strides") == (1 << (DIMS * ADDR_W)) - 1
