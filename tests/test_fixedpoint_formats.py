"""Fixed-point formats: quantization error and saturation, both rounding modes against
exact rational arithmetic, idempotence, requantization, and accumulator widths that
never overflow on worst-case inputs."""

from __future__ import annotations

import math
from fractions import Fraction

import numpy as np
import pytest
from hypothesis import assume, given, settings
from hypothesis import strategies as st

from tensorgate.fixedpoint.formats import (
    ROUNDINGS, accumulator_width, code_max, code_min, count_saturated, dequantize, fit_format,
    gemm_bound, quantize, real_max, real_min, requantize, shift_round, step,
)
from tensorgate.ir.types import FIXED_FRACS, FixedType

SETTINGS = settings(max_examples=200, deadline=None)
formats = st.builds(FixedType, st.integers(2, 32), st.integers(-8, 40))
roundings = st.sampled_from(ROUNDINGS)


def reference_round(value: Fraction, rounding: str) -> int:
    """Exact rounding of a rational to an integer."""
    if rounding == "nearest-even":
        return round(value)  # Fraction.__round__ rounds half to even
    magnitude = math.floor(abs(value) + Fraction(1, 2))
    return magnitude if value >= 0 else -magnitude


def reference_quantize(x: float, fmt: FixedType, rounding: str) -> int:
    code = reference_round(Fraction(x) * Fraction(2) ** fmt.frac, rounding)
    return min(max(code, code_min(fmt)), code_max(fmt))


@st.composite
def format_and_value(draw):
    """A format and a float near its range: anywhere, on a tie, or just outside."""
    fmt = draw(formats)
    bound = 2.0 * abs(real_min(fmt))
    how = draw(st.sampled_from(["any", "tie", "outside"]))
    if how == "tie":
        code = draw(st.integers(code_min(fmt) - 2, code_max(fmt) + 1))
        x = math.ldexp(code + 0.5, -fmt.frac)
    elif how == "outside":
        x = draw(st.floats(abs(real_min(fmt)), 1e300)) * draw(st.sampled_from([-1.0, 1.0]))
    else:
        x = draw(st.floats(-bound, bound))
    return fmt, x


@SETTINGS
@given(format_and_value(), roundings)
def test_quantize_error_is_half_a_step_inside_the_range_and_saturates_outside(case, rounding):
    fmt, x = case
    code = int(quantize(x, fmt, rounding))
    assert code == reference_quantize(x, fmt, rounding)
    if real_min(fmt) <= x <= real_max(fmt):
        assert abs(x - float(dequantize(code, fmt))) <= step(fmt) / 2
    elif x > real_max(fmt):
        assert code == code_max(fmt)
    else:
        assert code == code_min(fmt)


@pytest.mark.parametrize("rounding", ROUNDINGS)
def test_ties_follow_the_rounding_mode(rounding):
    fmt = FixedType(8, 1)
    x = np.array([0.25, 0.75, -0.25, -0.75, 1.25])  # codes 0.5, 1.5, -0.5, -1.5, 2.5
    expected = [0, 2, 0, -2, 2] if rounding == "nearest-even" else [1, 2, -1, -2, 3]
    assert quantize(x, fmt, rounding).tolist() == expected


def test_infinities_saturate_and_nan_is_refused():
    fmt = FixedType(8, 4)
    assert quantize([np.inf, -np.inf], fmt, "half-away").tolist() == [127, -128]
    assert count_saturated([np.inf, 0.0, -9.0, 7.9375, 7.96875], fmt, "nearest-even") == 3
    with pytest.raises(ValueError, match="NaN"):
        quantize([np.nan], fmt, "nearest-even")


@SETTINGS
@given(format_and_value(), roundings)
def test_requantizing_is_idempotent(case, rounding):
    fmt, x = case
    code = quantize(x, fmt, rounding)
    assert quantize(dequantize(code, fmt), fmt, rounding) == code
    assert requantize(code, fmt.frac, fmt, rounding) == code


@SETTINGS
@given(st.integers(-(1 << 61), 1 << 61), st.integers(-2, 60), roundings)
def test_shift_round_is_exact_rational_rounding(acc, shift, rounding):
    assume(shift > 0 or abs(acc) << -shift < 1 << 63)  # shift_round's precondition: a left shift fits int64
    result = int(shift_round(np.int64(acc), shift, rounding))
    assert result == reference_round(Fraction(acc) / Fraction(2) ** shift, rounding)


@SETTINGS
@given(st.integers(-(1 << 61), 1 << 61), st.integers(-30, 70), formats, roundings)
def test_requantize_rounds_once_then_saturates(acc, acc_frac, fmt, rounding):
    exact = reference_round(Fraction(acc) * Fraction(2) ** (fmt.frac - acc_frac), rounding)
    expected = min(max(exact, code_min(fmt)), code_max(fmt))
    assert int(requantize(np.int64(acc), acc_frac, fmt, rounding)) == expected


@SETTINGS
@given(st.floats(0, 1e12), st.integers(2, 32), roundings)
def test_fit_format_keeps_the_range_with_the_most_fraction_bits(max_abs, width, rounding):
    fmt = fit_format(max_abs, width, rounding)
    assert fmt.width == width
    assert count_saturated([max_abs, -max_abs], fmt, rounding) == 0
    if max_abs > 0 and fmt.frac < FIXED_FRACS.stop - 1:  # the finest format a type may have
        finer = FixedType(width, fmt.frac + 1)
        assert count_saturated([max_abs], finer, rounding) == 1


def test_fit_format_stays_within_the_fraction_bits_a_type_may_have():
    assert fit_format(1e-200, 8) == FixedType(8, FIXED_FRACS.stop - 1)
    with pytest.raises(ValueError, match="fraction bits"):
        fit_format(1e300, 8)


@SETTINGS
@given(st.integers(2, 24), st.integers(2, 24), st.integers(1, 1 << 16))
def test_accumulator_width_holds_every_worst_case_sum(x_width, w_width, terms):
    width = accumulator_width(x_width, w_width, terms)
    low, high = -(1 << (width - 1)), (1 << (width - 1)) - 1
    most_negative_x, most_negative_w = -(1 << (x_width - 1)), -(1 << (w_width - 1))
    largest = terms * most_negative_x * most_negative_w
    smallest = terms * most_negative_x * ((1 << (w_width - 1)) - 1)
    assert low <= smallest and largest <= high
    if terms & (terms - 1) == 0:  # one bit fewer overflows for a power-of-two K
        assert largest > (1 << (width - 2)) - 1


@settings(max_examples=40, deadline=None)
@given(st.integers(2, 16), st.integers(2, 16), st.integers(1, 300), st.integers(0, 2**32 - 1))
def test_worst_case_inputs_stay_within_the_gemm_bound_without_overflow(x_width, w_width, terms, seed):
    rng = np.random.default_rng(seed)
    x_fmt = FixedType(x_width, x_width - 1)
    weights = rng.integers(-(1 << (w_width - 1)), 1 << (w_width - 1), size=(5, terms))
    bound = gemm_bound(x_fmt, weights, (1,))
    assert bound <= 1 << (accumulator_width(x_width, w_width, terms) - 2)
    for row in weights:  # the input that drives this row's sum furthest from zero
        x = np.where(row > 0, code_min(x_fmt), code_max(x_fmt))
        sums = weights @ x
        assert sums.tolist() == [sum(int(w) * int(v) for w, v in zip(r, x)) for r in weights]
        assert np.abs(sums).max() <= bound
    same_sign = np.abs(weights)  # here the bound is reached: every x at the most negative code
    sums = same_sign @ np.full(terms, code_min(x_fmt))
    assert np.abs(sums).max() == gemm_bound(x_fmt, same_sign, (1,))
