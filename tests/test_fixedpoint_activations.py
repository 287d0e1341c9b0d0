"""Integer σ/tanh units: the stated maximum error equals a brute-force evaluation over
every input code, the automatically sized units stay within one output LSB, and the
attribute form round-trips."""

from __future__ import annotations

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from tensorgate.fixedpoint.activations import FUNCTIONS, ActivationUnit, build_unit
from tensorgate.fixedpoint.formats import code_max, code_min, dequantize, step
from tensorgate.ir.types import FixedType


def brute_force_error(unit: ActivationUnit) -> float:
    """``max |unit(q) - f(q)|`` over every code of the input format, one by one."""
    codes = np.arange(code_min(unit.input), code_max(unit.input) + 1, dtype=np.int64)
    exact = FUNCTIONS[unit.function](dequantize(codes, unit.input))
    return float(np.abs(dequantize(unit.evaluate(codes), unit.output) - exact).max())


CASES = [  # (input format, output format): 8-bit and 16-bit gates, a 16-bit cell state into 8 bits
    (FixedType(8, 4), FixedType(8, 6)),
    (FixedType(16, 11), FixedType(16, 14)),
    (FixedType(16, 12), FixedType(8, 6)),
]


@pytest.mark.parametrize("function", sorted(FUNCTIONS))
@pytest.mark.parametrize("kind", ["pwl", "lut"])
@pytest.mark.parametrize("formats", CASES, ids=lambda f: f"{f[0]}->{f[1]}")
@pytest.mark.parametrize("rounding", ["nearest-even", "half-away"])
def test_default_units_meet_their_exhaustive_error_bound(function, kind, formats, rounding):
    unit = build_unit(function, kind, *formats, rounding)
    stated = unit.max_error()
    assert brute_force_error(unit) == pytest.approx(stated, rel=0, abs=1e-15)
    assert stated <= step(unit.output)  # the automatic size targets one output LSB
    outputs = unit.evaluate(np.arange(code_min(unit.input), code_max(unit.input) + 1))
    assert outputs.min() >= code_min(unit.output) and outputs.max() <= code_max(unit.output)


@settings(max_examples=30, deadline=None)
@given(st.sampled_from(sorted(FUNCTIONS)), st.sampled_from(["pwl", "lut"]), st.integers(3, 14),
       st.integers(-2, 12), st.integers(3, 16), st.integers(1, 9), st.sampled_from(["nearest-even", "half-away"]))
def test_stated_error_is_the_exact_maximum_for_any_formats_and_size(function, kind, in_width, in_frac, out_width,
                                                                   size_log2, rounding):
    in_fmt, out_fmt = FixedType(in_width, in_frac), FixedType(out_width, out_width - 2)
    unit = build_unit(function, kind, in_fmt, out_fmt, rounding, size=1 << size_log2)
    assert brute_force_error(unit) == pytest.approx(unit.max_error(), rel=0, abs=1e-15)


def test_wide_inputs_drop_offset_bits_and_keep_an_exact_bound():
    unit = build_unit("sigmoid", "pwl", FixedType(20, 14), FixedType(16, 14), "half-away", size=16)
    assert unit.offset_drop > 0  # 2^14 codes per segment, more than the multiplier takes
    assert brute_force_error(unit) == pytest.approx(unit.max_error(), rel=0, abs=1e-15)


def test_inputs_beyond_the_clamp_range_give_the_boundary_output():
    unit = build_unit("tanh", "pwl", FixedType(16, 8), FixedType(8, 6), "nearest-even")
    limit = 1 << (unit.clamp_log2 + 8)
    assert unit.evaluate(np.array([code_max(unit.input)])) == unit.evaluate(np.array([limit - 1]))
    assert unit.evaluate(np.array([code_min(unit.input)])) == unit.evaluate(np.array([-limit]))


def test_more_segments_never_hurt_much_and_reach_the_output_precision():
    errors = [build_unit("tanh", "pwl", FixedType(16, 11), FixedType(16, 14), "nearest-even", size=1 << k).max_error()
              for k in range(2, 11)]
    assert errors[-1] < errors[0] / 100
    assert errors[-1] <= step(FixedType(16, 14))


@pytest.mark.parametrize("kind", ["pwl", "lut"])
def test_attribute_form_round_trips(kind):
    unit = build_unit("sigmoid", kind, FixedType(12, 7), FixedType(10, 8), "half-away", size=64)
    again = ActivationUnit.from_attr(unit.to_attr())
    codes = np.arange(-2048, 2048)
    assert np.array_equal(again.evaluate(codes), unit.evaluate(codes))
    assert again.describe() == unit.describe()


def test_inconsistent_attributes_are_refused():
    attr = build_unit("sigmoid", "pwl", FixedType(8, 4), FixedType(8, 6), "half-away", size=16).to_attr()
    with pytest.raises(ValueError, match="16 entries"):
        ActivationUnit.from_attr(dict(attr, values=attr["values"][:-1]))
    with pytest.raises(ValueError, match="slopes"):
        ActivationUnit.from_attr({k: v for k, v in attr.items() if k != "slopes"})
    with pytest.raises(ValueError, match="'rounding' is missing"):
        ActivationUnit.from_attr({k: v for k, v in attr.items() if k != "rounding"})
    with pytest.raises(ValueError, match="power of two"):
        build_unit("tanh", "lut", FixedType(8, 4), FixedType(8, 6), "half-away", size=24)


@pytest.mark.parametrize("size", [1, 2, 16, 256])
def test_table_index_is_a_shift_plus_offset_clamped_to_the_table(size):
    unit = build_unit("tanh", "lut", FixedType(10, 6), FixedType(8, 6), "nearest-even", size=size)
    codes = np.arange(code_min(unit.input), code_max(unit.input) + 1)
    index = np.clip((codes >> unit.index_shift) + (-unit.lo >> unit.index_shift), 0, unit.size - 1)
    assert np.array_equal(unit.evaluate(codes), unit.values[index])
