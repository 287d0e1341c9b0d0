"""tg_requant and tg_mac_lane under Verilator against the golden model's
requantize (tensorgate.fixedpoint) and an independent exact-rational reference,
on random vectors plus the edge cases: saturation, ties of both signs, shifts of
zero, negative shifts (exact lifts) and shifts beyond the accumulator width."""

from __future__ import annotations

import math
from fractions import Fraction

import numpy as np
import pytest

from tensorgate.backend.verilog import rtl_sources
from tensorgate.fixedpoint import requantize
from tensorgate.ir.types import FixedType
from tensorgate.runtime import verilator as vl

ROUNDINGS = {0: "half-away", 1: "nearest-even"}

IN_W, OUT_W, SHIFT_W = 40, 8, 7
REQUANT_PIPE_LATENCY = 4
A_W, B_W, ACC_W, LANE_OUT_W = 8, 8, 20, 12
LANES = 3


@pytest.fixture(scope="module")
def requant():
    build = vl.build(vl.RtlDesign.of("tg_requant", rtl_sources(),
                                     {"IN_W": IN_W, "OUT_W": OUT_W, "SHIFT_W": SHIFT_W}))
    with vl.RtlSim(build) as sim:
        yield sim


@pytest.fixture(scope="module")
def requant_pipe():
    build = vl.build(vl.RtlDesign.of("tg_requant_pipe", rtl_sources(),
                                     {"IN_W": IN_W, "OUT_W": OUT_W, "SHIFT_W": SHIFT_W}))
    with vl.RtlSim(build) as sim:
        yield sim


@pytest.fixture(scope="module")
def lane():
    build = vl.build(vl.RtlDesign.of("tg_mac_lane", rtl_sources(),
                                     {"A_W": A_W, "B_W": B_W, "ACC_W": ACC_W, "OUT_W": LANE_OUT_W,
                                      "SHIFT_W": SHIFT_W}))
    with vl.RtlSim(build) as sim:
        yield sim


@pytest.fixture(scope="module")
def lanes():
    build = vl.build(vl.RtlDesign.of("tg_mac_lane", rtl_sources(),
                                     {"A_W": A_W, "B_W": B_W, "ACC_W": ACC_W, "OUT_W": LANE_OUT_W,
                                      "SHIFT_W": SHIFT_W, "LANES": LANES}))
    with vl.RtlSim(build) as sim:
        yield sim


@pytest.fixture(scope="module", params=[1, 2])
def piped_lane(request):
    build = vl.build(vl.RtlDesign.of("tg_mac_lane", rtl_sources(),
                                     {"A_W": A_W, "B_W": B_W, "ACC_W": ACC_W, "OUT_W": LANE_OUT_W,
                                      "SHIFT_W": SHIFT_W, "MUL_STAGES": request.param}))
    with vl.RtlSim(build) as sim:
        yield sim, request.param


def exact_requant(value: int, shift: int, round_even: int, out_w: int) -> tuple[int, bool]:
    """round(value * 2**-shift) by rational arithmetic, then saturation; (result, saturated)."""
    quotient = Fraction(value) / Fraction(2) ** shift
    floor = math.floor(quotient)
    fraction = quotient - floor
    if fraction == Fraction(1, 2):
        up = floor % 2 == 1 if round_even else value > 0
    else:
        up = fraction > Fraction(1, 2)
    rounded = floor + up
    top = (1 << (out_w - 1)) - 1
    clamped = min(max(rounded, -top - 1), top)
    return clamped, clamped != rounded


def golden_requant(values: np.ndarray, shifts: np.ndarray, modes: np.ndarray, out_w: int) -> np.ndarray:
    """The fixed-point runtime's requantize, grouped by (shift, rounding)."""
    fmt = FixedType(out_w, 0)
    result = np.zeros(values.size, np.int64)
    for shift in np.unique(shifts):
        for mode, rounding in ROUNDINGS.items():
            pick = (shifts == shift) & (modes == mode)
            result[pick] = requantize(values[pick], int(shift), fmt, rounding)
    return result


def requant_vectors(rng, count: int):
    low, high = -(1 << (IN_W - 1)), (1 << (IN_W - 1)) - 1
    shifts = rng.integers(-(1 << (SHIFT_W - 1)), 1 << (SHIFT_W - 1), count)
    shifts[: count // 2] = rng.integers(-OUT_W - 2, IN_W + 3, count // 2)  # the interesting range
    magnitude_bits = rng.integers(0, IN_W, count)
    values = rng.integers(-(1 << 62), 1 << 62, count) >> (63 - magnitude_bits)
    # Exact ties: odd multiples of 2**(shift-1), both signs.
    ties = rng.random(count) < 0.25
    positive = np.clip(shifts, 1, IN_W - 2)
    odd = 2 * rng.integers(-(1 << 8), 1 << 8, count) + 1
    values[ties] = (odd << (positive - 1))[ties]
    shifts[ties] = positive[ties]
    corners = np.array([low, low + 1, -1, 0, 1, high - 1, high])
    values[: corners.size * 4] = np.tile(corners, 4)
    values = np.clip(values, low, high)
    modes = rng.integers(0, 2, count)
    return values, shifts, modes


def test_requant_matches_golden_model_on_random_vectors_and_edges(requant):
    rng = np.random.default_rng(1)
    values, shifts, modes = requant_vectors(rng, 20_000)
    got = requant.drive({"value": values, "shift": shifts, "round_even": modes}, ["result"], signed=["result"])
    np.testing.assert_array_equal(got["result"], golden_requant(values, shifts, modes, OUT_W))


def test_requant_matches_exact_rational_rounding(requant):
    rng = np.random.default_rng(2)
    values, shifts, modes = requant_vectors(rng, 5_000)
    got = requant.drive({"value": values, "shift": shifts, "round_even": modes}, ["result", "saturated"],
                        signed=["result"])
    expected = [exact_requant(*case, OUT_W) for case in zip(values.tolist(), shifts.tolist(), modes.tolist())]
    np.testing.assert_array_equal(got["result"], [result for result, _ in expected])
    saturated = [flag for _, flag in expected]
    np.testing.assert_array_equal(got["saturated"].astype(bool), saturated)
    assert any(saturated) and not all(saturated)


def test_pipelined_requant_equals_the_combinational_one_four_edges_later(requant, requant_pipe):
    """Each value with its shift given a cycle earlier: the combinational result, four edges later."""
    rng = np.random.default_rng(5)
    values, shifts, modes = requant_vectors(rng, 20_000)
    stimulus = {"value": values, "shift": shifts, "round_even": modes}
    want = requant.drive(stimulus, ["result", "saturated"], signed=["result"])
    tail = np.zeros(REQUANT_PIPE_LATENCY, np.int64)
    padded = {"shift": np.r_[shifts, 0, tail], "value": np.r_[0, values, tail], "round_even": np.r_[0, modes, tail],
              "en": 1}
    got = requant_pipe.drive(padded, ["result", "saturated"], signed=["result"])
    for name in ("result", "saturated"):
        np.testing.assert_array_equal(got[name][1 + REQUANT_PIPE_LATENCY:], want[name], err_msg=name)
    assert want["saturated"].any()


def test_pipelined_requant_compares_its_result_with_the_bounds(requant, requant_pipe):
    """below / above pick lo or hi: the clamp of the result (saturated or not) to bounds lo <= hi
    anywhere in the OUT_W range, its extremes included, as a multiplexer."""
    rng = np.random.default_rng(6)
    values, shifts, modes = requant_vectors(rng, 20_000)
    top = (1 << (OUT_W - 1)) - 1
    bounds = np.sort(rng.integers(-top - 1, top + 1, (2, values.size)), axis=0)
    bounds[:, :8] = [[-top - 1, -top - 1, 0, top, -top - 1, -3, -top - 1, 5], [top, -top - 1, 0, top, 0, 7, top, 5]]
    want = requant.drive({"value": values, "shift": shifts, "round_even": modes}, ["result"], signed=["result"])
    tail = np.zeros(REQUANT_PIPE_LATENCY, np.int64)
    # The bounds are static for an instruction in the accelerator; here each value's are given
    # when the saturation stage reads them, 3 edges after the value.
    early, late = np.zeros(1 + 3, np.int64), np.zeros(REQUANT_PIPE_LATENCY - 3, np.int64)
    padded = {"shift": np.r_[shifts, 0, tail], "value": np.r_[0, values, tail], "round_even": np.r_[0, modes, tail],
              "lo": np.r_[early, bounds[0], late], "hi": np.r_[early, bounds[1], late], "en": 1}
    got = requant_pipe.drive(padded, ["result", "below", "above"], signed=["result"])
    lag = slice(1 + REQUANT_PIPE_LATENCY, None)
    below, above = got["below"][lag].astype(bool), got["above"][lag].astype(bool)
    clamped = np.where(below, bounds[0], np.where(above, bounds[1], got["result"][lag]))
    np.testing.assert_array_equal(clamped, np.clip(want["result"], bounds[0], bounds[1]))
    inside = (want["result"] > bounds[0]) & (want["result"] < bounds[1])
    assert not (below | above)[inside].any() and below.any() and above.any()


def test_pipelined_requant_moves_only_on_enabled_edges(requant_pipe):
    """With en low on some edges the pipe holds: what it shows after t edges is what an
    always-enabled pipe shows after the enabled ones among them, given only their inputs
    (past the first LATENCY + 1 enabled edges, which still show values from before)."""
    rng = np.random.default_rng(7)
    values, shifts, modes = requant_vectors(rng, 5_000)
    enabled = rng.random(values.size) < 0.6
    stimulus = {"value": values, "shift": shifts, "round_even": modes}
    outputs = ["result", "saturated", "below", "above"]
    got = requant_pipe.drive({**stimulus, "en": enabled.astype(np.int64), "lo": -100, "hi": 100}, outputs,
                             signed=["result"])
    kept = requant_pipe.drive({**{name: v[enabled] for name, v in stimulus.items()}, "en": 1, "lo": -100,
                               "hi": 100}, outputs, signed=["result"])
    edges = np.r_[0, np.cumsum(enabled)[:-1]]
    settled = edges > REQUANT_PIPE_LATENCY + 1
    for name in outputs:
        np.testing.assert_array_equal(got[name][settled], kept[name][edges[settled]], err_msg=name)
    assert not enabled.all() and got["saturated"][settled].any()


@pytest.mark.parametrize("value, shift, even, expected", [
    (5, 1, 0, 3), (5, 1, 1, 2), (-5, 1, 0, -3), (-5, 1, 1, -2), (7, 1, 1, 4), (-7, 1, 1, -4),
    (-3, 1, 0, -2), (3, 1, 0, 2), (6, 2, 1, 2), (-6, 2, 0, -2), (-6, 2, 1, -2), (-2, 2, 1, 0),
    (255, 1, 0, 127), (-257, 1, 1, -128), (1000, 0, 0, 127), (-3, -2, 0, -12), (40, -2, 0, 127),
    (-(1 << 39), 41, 0, 0), (-(1 << 39), 40, 0, -1), (-(1 << 39), 40, 1, 0), (-(1 << 39), 63, 0, 0),
])
def test_requant_named_cases(requant, value, shift, even, expected):
    requant.set("value", value)
    requant.set("shift", shift)
    requant.set("round_even", even)
    requant.eval()
    assert requant.get("result", signed=True) == expected


def lane_model(stimulus: dict[str, np.ndarray]) -> dict[str, np.ndarray]:
    """Cycle model of tg_mac_lane: outputs as seen before each edge."""
    count = len(stimulus["a"])
    acc, out, valid, saturated = 0, 0, 0, 0
    record = {name: np.zeros(count, np.int64) for name in ("acc", "out", "out_valid", "out_saturated")}
    wrap = 1 << ACC_W
    for t in range(count):
        s = {name: int(column[t]) for name, column in stimulus.items()}
        record["acc"][t], record["out"][t] = acc, out
        record["out_valid"][t], record["out_saturated"][t] = valid, saturated
        if s["emit"]:
            out, saturated = exact_requant(acc, s["shift"], s["round_even"], LANE_OUT_W)
        if s["rst"]:
            acc, valid = 0, 0
            continue
        base = s["acc_init"] if s["clear"] else acc
        acc = (base + (s["a"] * s["b"] if s["acc_en"] else 0) + wrap // 2) % wrap - wrap // 2
        valid = s["emit"]
    return record


def test_mac_lane_matches_cycle_model_on_random_streams(lane):
    rng = np.random.default_rng(3)
    count = 5_000
    extreme_a = np.array([-(1 << (A_W - 1)), (1 << (A_W - 1)) - 1])
    stimulus = {
        "rst": (rng.random(count) < 0.01).astype(np.int64),
        "acc_en": (rng.random(count) < 0.8).astype(np.int64),
        "clear": (rng.random(count) < 0.1).astype(np.int64),
        "acc_init": rng.integers(-(1 << 12), 1 << 12, count),
        "a": np.where(rng.random(count) < 0.2, rng.choice(extreme_a, count),
                      rng.integers(-(1 << (A_W - 1)), 1 << (A_W - 1), count)),
        "b": rng.integers(-(1 << (B_W - 1)), 1 << (B_W - 1), count),
        "emit": (rng.random(count) < 0.2).astype(np.int64),
        "shift": rng.integers(-3, ACC_W + 2, count),
        "round_even": rng.integers(0, 2, count),
    }
    stimulus["rst"][0] = 1
    got = lane.drive(stimulus, ["acc", "out", "out_valid", "out_saturated"], signed=["acc", "out"])
    expected = lane_model(stimulus)
    for name in expected:
        np.testing.assert_array_equal(got[name][1:], expected[name][1:], err_msg=name)
    assert expected["out_saturated"].any()


@pytest.mark.parametrize("rounding_mode", [0, 1])
def test_mac_lane_back_to_back_dot_products_need_no_idle_cycle(lane, rounding_mode):
    """Dot products of length K issued back to back: the emit of one sum shares its
    edge with the clear of the next, and every result equals the golden requantize."""
    rng = np.random.default_rng(4 + rounding_mode)
    sums, k, shift = 40, 9, 5
    a = rng.integers(-(1 << (A_W - 1)), 1 << (A_W - 1), (sums, k))
    b = rng.integers(-(1 << (B_W - 1)), 1 << (B_W - 1), (sums, k))
    bias = rng.integers(-(1 << 10), 1 << 10, sums)
    count = sums * k + 2
    clear = np.zeros(count, np.int64)
    clear[0:sums * k:k] = 1
    emit = np.zeros(count, np.int64)
    emit[k:sums * k + 1:k] = 1
    acc_init = np.zeros(count, np.int64)
    acc_init[0:sums * k:k] = bias
    stimulus = {"rst": 0, "acc_en": np.r_[np.ones(sums * k, np.int64), 0, 0], "clear": clear,
                "acc_init": acc_init, "a": np.r_[a.ravel(), 0, 0], "b": np.r_[b.ravel(), 0, 0],
                "emit": emit, "shift": shift, "round_even": rounding_mode}
    lane.reset()
    got = lane.drive(stimulus, ["out", "out_valid"], signed=["out"])
    results = got["out"][got["out_valid"] == 1]
    exact = (a * b).sum(axis=1) + bias
    expected = requantize(exact, shift, FixedType(LANE_OUT_W, 0), ROUNDINGS[rounding_mode])
    np.testing.assert_array_equal(results, expected)


def test_pipelined_mac_lane_is_the_lane_delayed_by_its_stages(piped_lane):
    """With MUL_STAGES registers in the multiply, every output is the plain lane's for the
    same stream, MUL_STAGES edges later."""
    sim, stages = piped_lane
    rng = np.random.default_rng(6)
    count = 3_000
    stimulus = {
        "rst": np.r_[1, np.zeros(count - 1, np.int64)],
        "acc_en": (rng.random(count) < 0.8).astype(np.int64),
        "clear": (rng.random(count) < 0.1).astype(np.int64),
        "acc_init": rng.integers(-(1 << 12), 1 << 12, count),
        "a": rng.integers(-(1 << (A_W - 1)), 1 << (A_W - 1), count),
        "b": rng.integers(-(1 << (B_W - 1)), 1 << (B_W - 1), count),
        "emit": (rng.random(count) < 0.2).astype(np.int64),
        "shift": rng.integers(-3, ACC_W + 2, count),
        "round_even": rng.integers(0, 2, count),
    }
    padded = {name: np.r_[column, np.zeros(stages, np.int64)] for name, column in stimulus.items()}
    padded["acc_en"][1:1 + stages] = 0  # the reset edge is not delayed: nothing may be in flight over it
    padded["emit"][1:1 + stages] = 0
    got = sim.drive(padded, ["acc", "out", "out_valid", "out_saturated"], signed=["acc", "out"])
    delayed = {name: np.r_[column[:1], np.zeros(stages, np.int64), column[1:]] for name, column in padded.items()}
    want = lane_model({name: column[:count + stages] for name, column in delayed.items()})
    for name in want:
        np.testing.assert_array_equal(got[name][1 + stages:], want[name][1 + stages:], err_msg=name)
    assert want["out_valid"].sum() > 100


def packed(columns: list[np.ndarray], width: int) -> np.ndarray:
    """Per-lane values (two's complement) as the packed port that holds lane l at bits [l*width +: width]."""
    mask = (1 << width) - 1
    return sum((column.astype(np.int64) & mask) << (lane * width) for lane, column in enumerate(columns))


def unpacked(port: np.ndarray, width: int, lanes: int, signed: bool) -> list[np.ndarray]:
    """The lanes' fields of a packed port, sign-extended when ``signed``."""
    fields = [(port.astype(np.uint64) >> np.uint64(lane * width)) & np.uint64((1 << width) - 1)
              for lane in range(lanes)]
    fields = [field.astype(np.int64) for field in fields]
    return [np.where(f >= 1 << (width - 1), f - (1 << width), f) if signed else f for f in fields]


def test_lanes_under_one_control_are_each_the_single_lane(lanes):
    """LANES lanes share acc_en, clear, emit, shift and round_even; each lane's accumulator and
    output register are the single lane's cycle model on its own operands and init."""
    rng = np.random.default_rng(8)
    count = 3_000
    shared = {
        "rst": np.r_[1, (rng.random(count - 1) < 0.01).astype(np.int64)],
        "acc_en": (rng.random(count) < 0.8).astype(np.int64),
        "clear": (rng.random(count) < 0.1).astype(np.int64),
        "emit": (rng.random(count) < 0.2).astype(np.int64),
        "shift": rng.integers(-3, ACC_W + 2, count),
        "round_even": rng.integers(0, 2, count),
    }
    own = [{"acc_init": rng.integers(-(1 << 12), 1 << 12, count),
            "a": rng.integers(-(1 << (A_W - 1)), 1 << (A_W - 1), count),
            "b": rng.integers(-(1 << (B_W - 1)), 1 << (B_W - 1), count)} for _ in range(LANES)]
    widths = {"acc_init": ACC_W, "a": A_W, "b": B_W}
    stimulus = dict(shared, **{name: packed([lane[name] for lane in own], width) for name, width in widths.items()})
    got = lanes.drive(stimulus, ["acc", "out", "out_valid", "out_saturated"])
    fields = {"acc": unpacked(got["acc"], ACC_W, LANES, True), "out": unpacked(got["out"], LANE_OUT_W, LANES, True),
              "out_saturated": unpacked(got["out_saturated"], 1, LANES, False)}
    for lane in range(LANES):
        want = lane_model(dict(shared, **own[lane]))
        for name, columns in fields.items():
            np.testing.assert_array_equal(columns[lane][1:], want[name][1:], err_msg=f"lane {lane} {name}")
        np.testing.assert_array_equal(got["out_valid"][1:], want["out_valid"][1:])
