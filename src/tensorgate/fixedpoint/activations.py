"""σ and tanh in pure integer arithmetic: piecewise-linear (``pwl``) or table (``lut``) units.

Both kinds share one front end.  The input is a code ``q`` of format ``fix<wi,fi>``;
inputs are clamped to ``[-R, R)`` with ``R = 2^clamp_log2``, i.e. to the codes
``[lo, lo + span)`` where ``lo = -2^(clamp_log2+fi)`` and ``span = 2^(clamp_log2+fi+1)``::

    u = clip(q, lo, lo + span - 1) - lo          # 0 <= u < span
    j = u >> index_shift                         # segment (pwl) or entry (lut) number

``lut``: ``y = table[j]``.  Equivalently, as ``backend/verilog/rtl/tg_lut_act.sv`` indexes,
``j = clamp((q >>> index_shift) + (-lo >> index_shift), 0, size - 1)`` (``lo`` is a
multiple of ``2^index_shift`` whenever ``size > 1``).

``pwl``: with ``r = u & (2^index_shift - 1)``, the offset inside segment ``j``::

    if offset_drop > 0:  t = ((r >> offset_drop) << 1) | 1,  m = index_shift - offset_drop + 1
    else:                t = r,                              m = index_shift
    y = saturate(shift_round((intercept[j] << m) + slope[j] * t, m + guard_bits))

so ``y ≈ a_j + d_j · τ`` with ``τ = t / 2^m`` the position in the segment.  Dropping
the low ``offset_drop`` bits of ``r`` (only when a segment holds more than
``2^MAX_OFFSET_BITS`` codes) evaluates the line at the middle of each ``2^offset_drop``-code
cell and keeps the multiplier at most ``MAX_OFFSET_BITS + 1`` bits wide.  ``intercept``
and ``slope`` carry ``out.frac + guard_bits`` fraction bits; ``shift_round`` uses the
unit's rounding mode and ``saturate`` the output format.

Coefficients come from float64 evaluations of the exact function at build time (a
minimax line per segment, a min-max midpoint per table entry, both rounded to nearest
even); the integers are then the contract, stored in the IR.

Error bound.  The unit's output is constant on *cells* of consecutive codes (a table
entry, or a ``2^offset_drop``-code cell of a segment, extended by the clamped tails),
and σ and tanh are increasing, so the largest error on a cell is at one of its two end
codes.  ``ActivationUnit.max_error`` evaluates every cell's ends: the exact maximum of
``|unit(q) - f(q·2^-fi)|`` over *all* codes of the input format.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Any, Callable

import numpy as np

from ..ir.types import FixedType, element_type
from .formats import (
    MAX_WIDTH, check_format, check_rounding, code_max, code_min, dequantize, quantize, round_float, saturate,
    shift_round, step,
)

KINDS = ("pwl", "lut")
MAX_OFFSET_BITS = 12
"""Most bits of the in-segment offset a PWL unit multiplies by its slope."""
GUARD_BITS = 4
"""Extra fraction bits of PWL coefficients beyond the output format's."""
MAX_SEGMENTS = 1024
MAX_TABLE_SIZE = 1 << 16
MAX_CLAMP_LOG2 = 10


def sigmoid(x: np.ndarray) -> np.ndarray:
    """The logistic function in float64, overflow-free."""
    return 0.5 + 0.5 * np.tanh(0.5 * np.asarray(x, np.float64))


FUNCTIONS: dict[str, Callable[[np.ndarray], np.ndarray]] = {"sigmoid": sigmoid, "tanh": np.tanh}


def _tail_gap(function: str, radius: float) -> float:
    """How far ``f(±radius)`` is from the limit ``f(±∞)``."""
    if function == "sigmoid":
        return 1.0 / (1.0 + math.exp(radius))
    return 2.0 / (math.exp(2.0 * radius) + 1.0)


def saturation_input(function: str, output_fmt: FixedType) -> float:
    """The smallest ``R`` with ``|f(±R) - f(±∞)| <= step(out)/4``: beyond it the unit's
    output is the limit to within a quarter LSB, so inputs need no range past ``±R``."""
    quarter = step(output_fmt) / 4
    if function == "sigmoid":
        return math.log(max(1.0 / quarter - 1.0, 1.0))
    return math.log(max(2.0 / quarter - 1.0, 1.0)) / 2


def default_clamp_log2(function: str, input_fmt: FixedType, output_fmt: FixedType) -> int:
    """The smallest ``R = 2^e`` with ``|f(±R) - f(±∞)| <= step(out)/4``, no larger than the
    input format reaches, and at least one input step (so ``lo`` is an integer)."""
    quarter_step = step(output_fmt) / 4
    needed = next((e for e in range(MAX_CLAMP_LOG2 + 1) if _tail_gap(function, 2.0 ** e) <= quarter_step),
                  MAX_CLAMP_LOG2)
    reach = input_fmt.width - 1 - input_fmt.frac  # inputs lie in [-2^reach, 2^reach)
    return max(min(needed, reach), -input_fmt.frac)


@dataclass(frozen=True, eq=False)
class ActivationUnit:
    """One integer σ or tanh unit: its formats, indexing constants and coefficient tables.

    ``values`` holds the table codes (``lut``) or the intercepts (``pwl``); ``slopes``
    the PWL slopes (``None`` for a table).
    """

    function: str
    kind: str
    input: FixedType
    output: FixedType
    rounding: str
    clamp_log2: int
    index_shift: int
    offset_drop: int
    guard_bits: int
    values: np.ndarray
    slopes: np.ndarray | None

    @property
    def lo(self) -> int:
        """The lowest input code inside the clamp range."""
        return -(1 << (self.clamp_log2 + self.input.frac))

    @property
    def span(self) -> int:
        """The number of input codes inside the clamp range."""
        return 1 << (self.clamp_log2 + self.input.frac + 1)

    @property
    def size(self) -> int:
        """Segments (``pwl``) or entries (``lut``)."""
        return self.span >> self.index_shift

    def evaluate(self, codes: np.ndarray) -> np.ndarray:
        """Output codes for input codes, in integer arithmetic only."""
        u = np.clip(np.asarray(codes, np.int64), self.lo, self.lo + self.span - 1) - self.lo
        j = u >> self.index_shift
        if self.kind == "lut":
            return self.values[j]
        r = u & ((1 << self.index_shift) - 1)
        if self.offset_drop:
            t = ((r >> self.offset_drop) << 1) | 1
            m = self.index_shift - self.offset_drop + 1
        else:
            t, m = r, self.index_shift
        acc = (self.values[j] << m) + self.slopes[j] * t
        return saturate(shift_round(acc, m + self.guard_bits, self.rounding), self.output)

    def _cells(self) -> tuple[np.ndarray, np.ndarray]:
        """First and last input code of every cell on which the output is constant,
        covering exactly the input format's codes."""
        cell = self.index_shift if self.kind == "lut" else self.offset_drop
        first = self.lo + (np.arange(self.span >> cell, dtype=np.int64) << cell)
        last = first + (1 << cell) - 1
        first[0] = min(first[0], code_min(self.input))
        last[-1] = max(last[-1], code_max(self.input))
        first = np.maximum(first, code_min(self.input))
        last = np.minimum(last, code_max(self.input))
        keep = first <= last
        return first[keep], last[keep]

    def max_error(self) -> float:
        """The exact ``max |unit(q) - f(q · 2^-fi)|`` over every code ``q`` of the input
        format (real units; see the module docstring for why the cell ends suffice)."""
        first, last = self._cells()
        y = dequantize(self.evaluate(first), self.output)
        f = FUNCTIONS[self.function]
        low = np.abs(f(dequantize(first, self.input)) - y)
        high = np.abs(f(dequantize(last, self.input)) - y)
        return float(max(low.max(), high.max()))

    def max_error_lsb(self) -> float:
        """``max_error`` in output LSBs."""
        return self.max_error() / step(self.output)

    def describe(self) -> str:
        what = f"{self.size} segments" if self.kind == "pwl" else f"{self.size}-entry table"
        return (f"{self.function} {self.kind} ({what} over ±{2.0 ** self.clamp_log2:g}) "
                f"{self.input} -> {self.output}, max error {self.max_error():.3g} "
                f"({self.max_error_lsb():.2f} LSB)")

    def to_attr(self) -> dict[str, Any]:
        """Plain attribute form for the IR (ints, strings, int64 arrays)."""
        attr: dict[str, Any] = {
            "function": self.function, "kind": self.kind, "input": str(self.input),
            "output": str(self.output), "rounding": self.rounding, "clamp_log2": self.clamp_log2,
            "index_shift": self.index_shift, "offset_drop": self.offset_drop,
            "guard_bits": self.guard_bits, "values": self.values,
        }
        if self.slopes is not None:
            attr["slopes"] = self.slopes
        return attr

    @classmethod
    def from_attr(cls, attr: dict[str, Any]) -> "ActivationUnit":
        """The inverse of ``to_attr``; ``ValueError`` names what is inconsistent."""
        try:
            unit = cls(
                function=attr["function"], kind=attr["kind"],
                input=check_format(element_type(attr["input"])),
                output=check_format(element_type(attr["output"])),
                rounding=check_rounding(attr["rounding"]), clamp_log2=_small_int(attr, "clamp_log2"),
                index_shift=_small_int(attr, "index_shift"), offset_drop=_small_int(attr, "offset_drop"),
                guard_bits=_small_int(attr, "guard_bits"), values=_codes(attr["values"], "values"),
                slopes=None if attr.get("slopes") is None else _codes(attr["slopes"], "slopes"),
            )
        except KeyError as exc:
            raise ValueError(f"activation unit: entry {exc} is missing") from None
        except AttributeError:
            raise ValueError("activation unit: must be a dictionary of its constants") from None
        unit.check()
        return unit

    def check(self) -> None:
        """Raise ``ValueError`` unless the constants describe a unit that can run."""
        if self.function not in FUNCTIONS or self.kind not in KINDS:
            raise ValueError(f"activation unit: unknown function/kind {self.function}/{self.kind}")
        clamp_bits = self.clamp_log2 + self.input.frac
        if not 0 <= clamp_bits <= MAX_WIDTH or not 0 <= self.index_shift <= clamp_bits + 1:
            raise ValueError(f"activation unit: clamp_log2 {self.clamp_log2} / index_shift {self.index_shift} "
                             f"do not fit input {self.input}")
        if self.values.shape != (self.size,):
            raise ValueError(f"activation unit: {self.values.size} values for {self.size} entries")
        if (self.kind == "pwl") != (self.slopes is not None) or (
                self.slopes is not None and self.slopes.shape != (self.size,)):
            raise ValueError(f"activation unit: slopes do not match a {self.kind} unit of {self.size} entries")
        if not 0 <= self.offset_drop <= self.index_shift or not 0 <= self.guard_bits <= MAX_WIDTH:
            raise ValueError("activation unit: offset_drop/guard_bits out of range")


def _small_int(attr: dict[str, Any], key: str) -> int:
    """An integer constant of a unit: a shift or a log2, so within ``±MAX_WIDTH`` bits."""
    value = attr[key]
    if not isinstance(value, (int, np.integer)) or isinstance(value, bool) or not -MAX_WIDTH <= value <= MAX_WIDTH:
        raise ValueError(f"activation unit: {key} {value!r} must be an integer in -{MAX_WIDTH}..{MAX_WIDTH}")
    return int(value)


def _codes(value: Any, key: str) -> np.ndarray:
    """A unit's table: an integer vector (its length is checked against the unit's size)."""
    array = np.asarray(value) if isinstance(value, (np.ndarray, list)) else None
    if array is None or array.dtype.kind not in "iu" or array.ndim != 1:
        raise ValueError(f"activation unit: {key} must be a vector of integer codes")
    return array.astype(np.int64, copy=False)


def build_unit(function: str, kind: str, input_fmt: FixedType, output_fmt: FixedType, rounding: str,
               size: int | None = None, clamp_log2: int | None = None) -> ActivationUnit:
    """An integer unit for ``function`` (``sigmoid``/``tanh``) of ``kind`` (``pwl``/``lut``).

    ``size`` is the number of segments or table entries, a power of two (capped at the
    number of codes in the clamp range); ``None`` picks the smallest power of two whose
    exact maximum error is at most one output LSB (or the most accurate allowed size if
    none is).  ``clamp_log2`` defaults to ``default_clamp_log2``.
    """
    if function not in FUNCTIONS or kind not in KINDS:
        raise ValueError(f"no {kind} unit for {function}")
    check_format(input_fmt)
    check_format(output_fmt)
    check_rounding(rounding)
    if clamp_log2 is None:
        clamp_log2 = default_clamp_log2(function, input_fmt, output_fmt)
    span_log2 = clamp_log2 + input_fmt.frac + 1
    if span_log2 < 1:
        raise ValueError(f"clamp range ±2^{clamp_log2} is below one step of {input_fmt}")
    limit = MAX_SEGMENTS if kind == "pwl" else MAX_TABLE_SIZE
    if size is not None:
        if not 1 <= size <= limit or size & (size - 1):
            raise ValueError(f"{kind} size must be a power of two in [1, {limit}], got {size}")
        index_shift = span_log2 - min(size.bit_length() - 1, span_log2)
        return _build(function, kind, input_fmt, output_fmt, rounding, clamp_log2, index_shift)
    best = None
    for size_log2 in range(1, min(limit.bit_length() - 1, span_log2) + 1):
        unit = _build(function, kind, input_fmt, output_fmt, rounding, clamp_log2, span_log2 - size_log2)
        error = unit.max_error()
        if best is None or error < best[0]:
            best = (error, unit)
        if error <= step(output_fmt):
            return unit
    return best[1]


def _build(function, kind, input_fmt, output_fmt, rounding, clamp_log2, index_shift) -> ActivationUnit:
    lo = -(1 << (clamp_log2 + input_fmt.frac))
    count = 1 << (clamp_log2 + input_fmt.frac + 1 - index_shift)
    starts = lo + (np.arange(count, dtype=np.int64) << index_shift)
    f = FUNCTIONS[function]
    if kind == "lut":
        ends = starts + (1 << index_shift) - 1
        middle = (f(dequantize(starts, input_fmt)) + f(dequantize(ends, input_fmt))) / 2
        values = quantize(middle, output_fmt, "nearest-even")
        return ActivationUnit(function, kind, input_fmt, output_fmt, rounding, clamp_log2, index_shift, 0, 0,
                              values, None)
    offset_drop = max(0, index_shift - MAX_OFFSET_BITS)
    intercepts, slopes = _fit_lines(f, input_fmt, starts, index_shift, offset_drop)
    scale = output_fmt.frac + GUARD_BITS
    values = round_float(np.ldexp(intercepts, scale), "nearest-even").astype(np.int64)
    slope_codes = round_float(np.ldexp(slopes, scale), "nearest-even").astype(np.int64)
    return ActivationUnit(function, kind, input_fmt, output_fmt, rounding, clamp_log2, index_shift, offset_drop,
                          GUARD_BITS, values, slope_codes)


def _fit_lines(f, input_fmt: FixedType, starts: np.ndarray, index_shift: int, offset_drop: int,
               samples: int = 129) -> tuple[np.ndarray, np.ndarray]:
    """Per segment, the line ``a + d·τ`` (``τ`` = offset / segment length) through the
    first and last evaluated points, shifted by half its largest deviation from ``f`` on
    up to ``samples`` evaluated points: the minimax line where ``f`` is convex or concave
    on the segment (σ and tanh are, on each side of 0, and 0 is a segment boundary)."""
    if offset_drop:
        offsets = ((np.arange(1 << (index_shift - offset_drop), dtype=np.int64) << 1) | 1) << (offset_drop - 1)
    else:
        offsets = np.arange(1 << index_shift, dtype=np.int64)
    picked = np.unique(np.linspace(0, offsets.size - 1, min(samples, offsets.size)).round().astype(np.int64))
    offsets = offsets[picked]
    tau = np.ldexp(offsets.astype(np.float64), -index_shift)
    x = dequantize(starts[:, None] + offsets[None, :], input_fmt)
    y = f(x)
    if tau.size > 1:
        slopes = (y[:, -1] - y[:, 0]) / (tau[-1] - tau[0])
    else:
        slopes = np.zeros(starts.size)
    base = y[:, 0] - slopes * tau[0]
    deviation = y - (base[:, None] + slopes[:, None] * tau[None, :])
    extreme = np.take_along_axis(deviation, np.abs(deviation).argmax(axis=1)[:, None], axis=1)[:, 0]
    return base + extreme / 2, slopes
