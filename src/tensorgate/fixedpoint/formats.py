"""Fixed-point formats and the integer operations of the hardware contract.

A format ``fix<w,f>`` (``FixedType(width=w, frac=f)``) is a signed two's-complement
integer *code* ``q`` of ``w`` bits that stands for the real number ``q · 2^-f``:

* codes lie in ``[-2^(w-1), 2^(w-1) - 1]``; the *step* (one LSB) is ``2^-f``;
* ``f`` may be negative (a step larger than 1) or exceed ``w`` (a range below 1).

Codes are held in ``int64`` arrays.  The operations, each exactly what the hardware
does, are:

* ``quantize``: real → code, ``round(x · 2^f)`` then saturate (the only float→int
  step; used for weights and at the model's input boundary);
* ``shift_round``: divide an integer by ``2^s`` with rounding, one add and one
  arithmetic right shift (``s <= 0`` is an exact left shift);
* ``saturate``: clamp to the format's code range;
* ``requantize`` = ``saturate(shift_round(acc, acc_frac - f))``: the single
  round-and-saturate that narrows a wide accumulator to a format.

Rounding modes (``Rounding``), for the exact quotient ``v = a / 2^s``:

* ``nearest-even``: nearest integer, ties to the even one.
  Integer form: ``(a + 2^(s-1) - 1 + ((a >> s) & 1)) >> s``.
* ``half-away``: nearest integer, ties away from zero.
  Integer form: ``(a + 2^(s-1) - [a < 0]) >> s``.

(``>>`` is the arithmetic shift, i.e. floor division by ``2^s``.)
"""

from __future__ import annotations

import math
from typing import Literal, get_args

import numpy as np

from ..ir.types import FIXED_FRACS, FixedType

Rounding = Literal["nearest-even", "half-away"]
ROUNDINGS: tuple[str, ...] = get_args(Rounding)

MAX_WIDTH = 64
"""Widest format a code may have (an ``int64``)."""

MAX_ACCUMULATOR_BITS = 63
"""Widest accumulator the golden model allows: a 63-bit value plus the rounding
constant of ``shift_round`` still fits in ``int64``."""

MAX_FLOAT_WIDTH = 53
"""Widest format ``quantize`` accepts: every code of up to 53 bits is exact in float64."""


def check_format(fmt: FixedType) -> FixedType:
    """``fmt`` itself if its width is in ``[2, MAX_WIDTH]``, else ``ValueError``."""
    if not isinstance(fmt, FixedType) or not 2 <= fmt.width <= MAX_WIDTH:
        raise ValueError(f"{fmt} is not a fixed-point format of 2..{MAX_WIDTH} bits")
    return fmt


def check_rounding(rounding: str) -> str:
    if rounding not in ROUNDINGS:
        raise ValueError(f"rounding '{rounding}' is not one of {', '.join(ROUNDINGS)}")
    return rounding


def code_min(fmt: FixedType) -> int:
    return -(1 << (fmt.width - 1))


def code_max(fmt: FixedType) -> int:
    return (1 << (fmt.width - 1)) - 1


def step(fmt: FixedType) -> float:
    """The real value of one LSB, ``2^-frac``."""
    return math.ldexp(1.0, -fmt.frac)


def real_min(fmt: FixedType) -> float:
    return math.ldexp(code_min(fmt), -fmt.frac)


def real_max(fmt: FixedType) -> float:
    return math.ldexp(code_max(fmt), -fmt.frac)


def round_float(values: np.ndarray, rounding: str) -> np.ndarray:
    """Round float64 values to integral float64 values, exactly (no intermediate rounding)."""
    values = np.asarray(values, np.float64)
    if check_rounding(rounding) == "nearest-even":
        return np.rint(values)
    whole = np.trunc(values)
    with np.errstate(invalid="ignore"):  # inf - inf: infinities stay as they are
        fraction = values - whole  # exact: both share sign and the difference needs fewer bits
        return whole + np.sign(values) * (np.abs(fraction) >= 0.5)


def quantize(x, fmt: FixedType, rounding: str) -> np.ndarray:
    """Real values → codes of ``fmt``: ``saturate(round(x · 2^frac))`` as ``int64``.

    Scaling by a power of two is exact in float64, so the only rounding is the chosen
    one.  ``±inf`` saturate; NaN is a ``ValueError``.
    """
    check_format(fmt)
    if fmt.width > MAX_FLOAT_WIDTH:
        raise ValueError(f"cannot quantize floats to {fmt}: codes wider than {MAX_FLOAT_WIDTH} bits "
                         "are not exact in float64")
    values = np.asarray(x, np.float64)
    if np.isnan(values).any():
        raise ValueError("cannot quantize NaN")
    return np.clip(_scaled(values, fmt, rounding), code_min(fmt), code_max(fmt)).astype(np.int64)


def _scaled(values: np.ndarray, fmt: FixedType, rounding: str) -> np.ndarray:
    """``round(x · 2^frac)`` in float64; values beyond float64's range become ±inf."""
    with np.errstate(over="ignore"):
        return round_float(np.ldexp(np.asarray(values, np.float64), fmt.frac), rounding)


def count_saturated(x, fmt: FixedType, rounding: str) -> int:
    """How many of ``x`` fall outside ``fmt``'s range after rounding (``quantize`` clamps them)."""
    scaled = _scaled(x, fmt, rounding)
    return int(np.count_nonzero((scaled < code_min(fmt)) | (scaled > code_max(fmt))))


def dequantize(codes, fmt: FixedType) -> np.ndarray:
    """Codes → real values as float64 (exact for codes of up to 53 bits)."""
    return np.ldexp(np.asarray(codes, np.int64).astype(np.float64), -fmt.frac)


def saturate(values: np.ndarray, fmt: FixedType) -> np.ndarray:
    """Clamp integers to ``fmt``'s code range."""
    return np.clip(np.asarray(values, np.int64), code_min(fmt), code_max(fmt))


def shift_round(acc: np.ndarray, shift: int, rounding: str) -> np.ndarray:
    """``acc / 2^shift`` rounded to an integer (``shift > 0``), or ``acc · 2^-shift``
    (``shift <= 0``, exact).  The caller guarantees the result fits ``int64``; for a
    right shift ``|acc| < 2^62`` is enough (``MAX_ACCUMULATOR_BITS``)."""
    acc = np.asarray(acc, np.int64)
    if shift <= 0:
        return acc << -shift
    if shift >= MAX_WIDTH - 1:  # |acc| < 2^62: the quotient is below 1/2 and rounds to 0
        if (np.abs(acc) >= 1 << 62).any():
            raise ValueError(f"cannot shift values of 63 bits or more right by {shift}")
        return np.zeros_like(acc)
    half = np.int64(1) << (shift - 1)
    if check_rounding(rounding) == "nearest-even":
        offset = half - 1 + ((acc >> shift) & 1)
    else:
        offset = half - (acc < 0)
    return (acc + offset) >> shift


def requantize(acc: np.ndarray, acc_frac: int, fmt: FixedType, rounding: str) -> np.ndarray:
    """Narrow integers with ``acc_frac`` fraction bits to ``fmt``: one rounding shift by
    ``acc_frac - fmt.frac`` bits, then saturation (the hardware's round-and-saturate)."""
    return saturate(narrowing_shift(acc, acc_frac, fmt, rounding), fmt)


def narrowing_shift(acc: np.ndarray, acc_frac: int, fmt: FixedType, rounding: str) -> np.ndarray:
    """``requantize`` before its saturation: the rounded shift, where a value out of
    ``fmt``'s range stays out of it (so saturations can be counted).  A left shift
    (``fmt`` has more fraction bits) first clamps ``acc`` to just beyond the values that
    can survive saturation, so it never overflows int64; the saturated result is the same."""
    shift = acc_frac - fmt.frac
    acc = np.asarray(acc, np.int64)
    if shift < 0:
        lift = min(-shift, fmt.width)  # lifting a nonzero value by >= width bits saturates anyway
        acc = np.clip(acc, code_min(fmt) >> lift, (code_max(fmt) >> lift) + 1)
        return acc << lift
    return shift_round(acc, shift, rounding)


def fit_format(max_abs: float, width: int, rounding: str = "nearest-even") -> FixedType:
    """The ``width``-bit format with the most fraction bits in which ``±max_abs`` does
    not saturate (``frac = width - 1`` for an all-zero tensor), within ``FIXED_FRACS``: a
    tensor too small for the finest format rounds to zero in it, one too large for the
    coarsest is a ``ValueError``."""
    if not 2 <= width <= MAX_WIDTH:
        raise ValueError(f"width {width} is outside 2..{MAX_WIDTH}")
    max_abs = float(max_abs)
    if not math.isfinite(max_abs) or max_abs < 0:
        raise ValueError(f"cannot fit a format to the range ±{max_abs}")
    if max_abs == 0.0:
        return FixedType(width, width - 1)
    _, exponent = math.frexp(max_abs)  # max_abs = m · 2^exponent, 0.5 <= m < 1
    frac = width - 1 - exponent
    limit = (1 << (width - 1)) - 1
    if round_float(math.ldexp(max_abs, frac), rounding) > limit:
        frac -= 1
    if frac < FIXED_FRACS.start:
        raise ValueError(f"the range ±{max_abs:g} needs {frac} fraction bits, fewer than the {FIXED_FRACS.start} "
                         "a fixed-point type may have")
    return FixedType(width, min(frac, FIXED_FRACS.stop - 1))


def signed_width(max_abs: int) -> int:
    """Fewest two's-complement bits that hold every integer in ``[-max_abs, max_abs]``."""
    return int(max_abs).bit_length() + 1


def accumulator_width(x_width: int, w_width: int, terms: int) -> int:
    """Accumulator bits that can never overflow: ``w_a = w_x + w_w + ⌈log2 K⌉``.

    Proof.  A ``w``-bit two's-complement code ``q`` has ``|q| <= 2^(w-1)`` (the bound is
    reached only by ``-2^(w-1)``).  So one product obeys
    ``|x·w| <= 2^(w_x-1) · 2^(w_w-1) = 2^(w_x+w_w-2)``, and a sum of ``K`` products
    ``|S| <= K · 2^(w_x+w_w-2) <= 2^(⌈log2 K⌉ + w_x + w_w - 2) = 2^(w_a - 2)``.
    A ``w_a``-bit accumulator holds ``[-2^(w_a-1), 2^(w_a-1) - 1]``, which contains
    ``[-2^(w_a-2), 2^(w_a-2)]`` because ``2^(w_a-2) <= 2^(w_a-1) - 1`` for ``w_a >= 2``.
    Every partial sum is itself a sum of at most ``K`` products, so no intermediate
    value overflows either, whatever the accumulation order.  ∎

    ``w_x + w_w + ⌈log2 K⌉ - 1`` bits would not do: ``K`` (a power of two) products
    of two most-negative codes sum to exactly ``2^(w_a-1)``, one past the top code.
    """
    if terms < 1:
        raise ValueError(f"a sum needs at least one term, got {terms}")
    return x_width + w_width + (terms - 1).bit_length()


def gemm_bound(x_fmt: FixedType, weights: np.ndarray, contracted_axes: tuple[int, ...]) -> int:
    """The largest ``|Σ x·w|`` any input codes of ``x_fmt`` can produce, given the
    integer ``weights`` summed over ``contracted_axes``: ``2^(w_x-1) · max Σ|w|``.

    Since ``|x_k| <= 2^(w_x-1)``, ``|Σ_k x_k w_k| <= 2^(w_x-1) Σ_k |w_k|`` for every row; the
    bound is reached when a row's weights share one sign (all ``x_k = -2^(w_x-1)``).  It is
    never larger than the ``accumulator_width`` rule, and usually a few bits smaller.
    """
    row_sums = np.abs(np.asarray(weights, np.int64)).sum(axis=contracted_axes, dtype=np.int64)
    largest = int(row_sums.max()) if row_sums.size else 0
    return largest << (x_fmt.width - 1)
