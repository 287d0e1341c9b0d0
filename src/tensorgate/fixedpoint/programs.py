"""The integer arithmetic of the quantized ops: what the golden model computes and what
the accelerator's lowering reproduces, bit for bit.

Every real-valued tensor is an ``int64`` array of codes of its ``fix<w,f>`` type; nothing
is computed in floating point.  Operations (``fixedpoint.formats``):

* products and sums are exact, in an accumulator with ``fa + fb`` fraction bits;
* terms with different fraction bits are added after aligning them to the largest
  count by left shifts (exact);
* a result is narrowed to its format by one ``requantize``: a rounding right shift
  (the module's rounding mode) then saturation; no other rounding happens;
* σ and tanh are the integer units stored in the op (``fixedpoint.activations``).

``linear`` (``y = W x + b``)::

    acc, F = W·x                      # fixedpoint.maps.IntegerMap: GEMM / contraction steps
    y = requantize(acc + align(b), F, out)

``lstm``, per direction, with the formats of its ``quant``: X (the input's type), GX
(``gates_x``), PS / PT (pre-activations of the σ gates i, o, f / of the tanh gate c),
G (``gate``, σ and tanh outputs), C (``cell``) and H (``hidden``).  The input projection
of all time steps runs first, one map application per map of ``w``::

    gx = requantize(W·x + align(b), GX)                      # [T, B, 4H], gates i, o, f, c

then each time step (``·`` a product of codes, ``⊙`` elementwise, all sums exact)::

    r = R·h                                                    # accumulators, per gate block
    pre_i = clip(requantize(r_i + gx_i [+ p_i ⊙ c], PS))       # peephole terms only with P
    pre_f = clip(requantize(r_f + gx_f [+ p_f ⊙ c], PS))
    pre_c = clip(requantize(r_c + gx_c, PT))
    i = σ(pre_i)   f = σ(pre_f) (ONE - i with input_forget)   g = tanh(pre_c)   # codes of G
    c' = requantize(f ⊙ c + i ⊙ g, C)                          # fractions G+C and 2G, aligned
    pre_o = clip(requantize(r_o + gx_o [+ p_o ⊙ c'], PS));  o = σ(pre_o)
    h' = requantize(o ⊙ tanh_cell(c'), 2·G.frac, H)

``clip`` (the ONNX attribute) clamps codes to ``±floor(clip · 2^frac)`` of PS / PT;
``ONE = 2^G.frac``.  σ, tanh and tanh_cell are the op's units (PS -> G, PT -> G, C -> G).
Rows past their ``sequence_lens`` keep their state and output 0, as in float.  A
bidirectional LSTM runs its reverse direction from the last step down, with its own
weights and the same formats.

``LinearProgram`` and ``LSTMProgram`` are these computations for one op, prepared once
(integer maps, bias blocks, clip limits); the golden model
(``interpreter.golden.FixedExecutor``) calls them and the Verilog lowering reads their
prepared fields.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Callable

import numpy as np

from ..ir.core import Op
from ..ir.ops import num_directions
from ..ir.types import FixedType
from .formats import code_max, narrowing_shift, saturate
from .maps import IntegerMap
from .quant_attrs import LinearQuant, LSTMQuant


@dataclass
class TensorStats:
    """What the golden model saw of one narrowed tensor: its format, how many values were
    narrowed, how many of them saturated, and the range of the exact values before
    rounding (real units)."""

    format: FixedType
    count: int = 0
    saturated: int = 0
    low: float = float("inf")
    high: float = float("-inf")


@dataclass
class Narrowing:
    """The round-and-saturate of one run: ``requantize`` in the run's rounding mode, and,
    if ``stats`` is given, a record of every narrowed tensor by name."""

    rounding: str
    stats: dict[str, TensorStats] | None = field(default=None)

    def __call__(self, name: str, acc: np.ndarray, acc_frac: int, fmt: FixedType) -> np.ndarray:
        rounded = narrowing_shift(acc, acc_frac, fmt, self.rounding)
        codes = saturate(rounded, fmt)
        if self.stats is not None and acc.size:
            record = self.stats.setdefault(name, TensorStats(fmt))
            record.count += int(acc.size)
            record.saturated += int(np.count_nonzero(codes != rounded))
            record.low = min(record.low, float(np.ldexp(float(acc.min()), -acc_frac)))
            record.high = max(record.high, float(np.ldexp(float(acc.max()), -acc_frac)))
        return codes


def aligned_sum(*terms: tuple[np.ndarray, int]) -> tuple[np.ndarray, int]:
    """Exact sum of ``(integers, fraction bits)`` terms at the largest fraction-bit count."""
    frac = max(f for _, f in terms)
    return sum(np.asarray(a, np.int64) << (frac - f) for a, f in terms), frac


Program = Callable[[list, Narrowing], list]


class LinearProgram:
    """``y = requantize(W·x + b, out)``."""

    def __init__(self, op: Op):
        self.quant = LinearQuant.of(op)
        self.name = op.results[0].name
        self.weight = IntegerMap(op.attrs["weight"], self.quant.weight, self.quant.rounding)
        self.x_frac = op.operands[0].type.dtype.frac
        bias = op.attrs["bias"]
        self.bias = None if bias is None else (np.asarray(bias, np.int64), self.quant.bias.frac)

    def __call__(self, args, narrow: Narrowing) -> list:
        acc = self.weight.apply(args[0], self.x_frac, narrow, f"{self.name}.weight")
        if self.bias is not None:
            acc = aligned_sum(acc, self.bias)
        return [narrow(self.name, *acc, self.quant.output)]


GATES = ("i", "o", "f", "c")


class LSTMProgram:
    """The integer LSTM of the module docstring."""

    def __init__(self, op: Op):
        self.quant = q = LSTMQuant.of(op)
        attrs = op.attrs
        self.name = op.results[0].name
        self.hidden = attrs["hidden_size"]
        self.layout = attrs["layout"]
        self.dirs = num_directions(op)
        self.reverse = [attrs["direction"] == "reverse" or d == 1 for d in range(self.dirs)]
        self.input_forget = bool(attrs["input_forget"])
        self.x_frac = op.operands[0].type.dtype.frac
        self.per_dir = per_dir = len(attrs["w"]) // self.dirs
        w = [IntegerMap(m, mq, q.rounding) for m, mq in zip(attrs["w"], q.w)]
        r = [IntegerMap(m, mq, q.rounding) for m, mq in zip(attrs["r"], q.r)]
        self.w = [w[d * per_dir:(d + 1) * per_dir] for d in range(self.dirs)]
        self.r = [r[d * per_dir:(d + 1) * per_dir] for d in range(self.dirs)]
        bias = attrs["bias"]
        self.bias = None if bias is None else [
            [(block, fmt.frac) for block, fmt in zip(np.split(np.asarray(bias[d], np.int64), per_dir),
                                                     q.bias[d * per_dir:(d + 1) * per_dir])]
            for d in range(self.dirs)]
        peep = attrs["peepholes"]
        self.peepholes = None if peep is None else [np.split(np.asarray(peep[d], np.int64), 3)
                                                    for d in range(self.dirs)]
        clip = attrs["clip"]
        self.clip = {fmt: None if clip is None else min(int(np.floor(np.ldexp(clip, fmt.frac))), code_max(fmt))
                     for fmt in (q.pre_sigmoid, q.pre_tanh)}
        self.one = 1 << q.gate.frac

    def __call__(self, args, narrow: Narrowing) -> list:
        x, seq_lens, h0, c0 = (list(args) + [None] * 4)[:4]
        if self.layout:
            x = np.swapaxes(x, 0, 1)
            h0 = None if h0 is None else np.swapaxes(h0, 0, 1)
            c0 = None if c0 is None else np.swapaxes(c0, 0, 1)
        steps, batch = x.shape[0], x.shape[1]
        lens = np.full(batch, steps, np.int64) if seq_lens is None else np.asarray(seq_lens, np.int64)
        outputs = [self._direction(d, x, lens, None if h0 is None else h0[d], None if c0 is None else c0[d], narrow)
                   for d in range(self.dirs)]
        y = np.stack([o[0] for o in outputs], axis=1)
        h = np.stack([o[1] for o in outputs])
        c = np.stack([o[2] for o in outputs])
        if self.layout:
            return [np.transpose(y, (2, 0, 1, 3)), np.swapaxes(h, 0, 1), np.swapaxes(c, 0, 1)]
        return [y, h, c]

    def _projection(self, d: int, x: np.ndarray, narrow: Narrowing) -> np.ndarray:
        """``gx = requantize(W·x + b, GX)`` for every time step at once: ``[T, B, 4H]``."""
        steps, batch, _ = x.shape
        rows = x.reshape(steps * batch, -1)
        blocks = []
        for index, imap in enumerate(self.w[d]):
            acc = imap.apply(rows, self.x_frac, narrow, f"{self.name}.w{d * self.per_dir + index}")
            if self.bias is not None:
                acc = aligned_sum(acc, self.bias[d][index])
            blocks.append(narrow(f"{self.name}.gates_x", *acc, self.quant.gates_x))
        return np.concatenate(blocks, axis=-1).reshape(steps, batch, 4 * self.hidden)

    def _recurrent(self, d: int, h: np.ndarray, narrow: Narrowing) -> list[tuple[np.ndarray, int]]:
        """``R·h`` as four gate blocks ``(accumulator, fraction bits)`` in order i, o, f, c."""
        hidden = self.hidden
        blocks = []
        for index, imap in enumerate(self.r[d]):
            acc, frac = imap.apply(h, self.quant.hidden.frac, narrow, f"{self.name}.r{d * self.per_dir + index}")
            blocks += [(acc[:, k * hidden:(k + 1) * hidden], frac) for k in range(acc.shape[-1] // hidden)]
        return blocks

    def _pre(self, terms, fmt: FixedType, narrow: Narrowing) -> np.ndarray:
        """A gate pre-activation: the aligned sum narrowed to ``fmt``, then clipped."""
        name = "pre_sigmoid" if fmt is self.quant.pre_sigmoid else "pre_tanh"
        codes = narrow(f"{self.name}.{name}", *aligned_sum(*terms), fmt)
        limit = self.clip[fmt]
        return codes if limit is None else np.clip(codes, -limit, limit)

    def _direction(self, d, x, lens, h0, c0, narrow: Narrowing):
        q, hidden = self.quant, self.hidden
        steps, batch, _ = x.shape
        gx = self._projection(d, x, narrow)
        h = np.zeros((batch, hidden), np.int64) if h0 is None else np.asarray(h0, np.int64)
        c = np.zeros((batch, hidden), np.int64) if c0 is None else np.asarray(c0, np.int64)
        y = np.zeros((steps, batch, hidden), np.int64)
        peep = self.peepholes[d] if self.peepholes is not None else None
        peep_frac = q.peepholes.frac + q.cell.frac if peep is not None else 0
        gx_frac = q.gates_x.frac
        ragged = bool((lens < steps).any())
        for t in (range(steps - 1, -1, -1) if self.reverse[d] else range(steps)):
            r_i, r_o, r_f, r_c = self._recurrent(d, h, narrow)
            g_i, g_o, g_f, g_c = (gx[t][:, k * hidden:(k + 1) * hidden] for k in range(4))
            pre_i = self._pre([r_i, (g_i, gx_frac)] + ([(peep[0] * c, peep_frac)] if peep is not None else []),
                              q.pre_sigmoid, narrow)
            i = q.sigmoid.evaluate(pre_i)
            if self.input_forget:
                f = self.one - i
            else:
                pre_f = self._pre([r_f, (g_f, gx_frac)] + ([(peep[2] * c, peep_frac)] if peep is not None else []),
                                  q.pre_sigmoid, narrow)
                f = q.sigmoid.evaluate(pre_f)
            g = q.tanh.evaluate(self._pre([r_c, (g_c, gx_frac)], q.pre_tanh, narrow))
            c_new = narrow(f"{self.name}.cell", *aligned_sum((f * c, q.gate.frac + q.cell.frac),
                                                            (i * g, 2 * q.gate.frac)), q.cell)
            pre_o = self._pre([r_o, (g_o, gx_frac)] + ([(peep[1] * c_new, peep_frac)] if peep is not None else []),
                              q.pre_sigmoid, narrow)
            o = q.sigmoid.evaluate(pre_o)
            h_new = narrow(f"{self.name}.hidden", o * q.tanh_cell.evaluate(c_new), 2 * q.gate.frac, q.hidden)
            if ragged:
                active = (t < lens)[:, None]
                h, c = np.where(active, h_new, h), np.where(active, c_new, c)
                y[t] = np.where(active, h_new, 0)
            else:
                h, c = h_new, c_new
                y[t] = h
        return y, h, c
