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

``gru``, per direction, with X, GX, PS (z and r), PT (the candidate), G, H as above and,
with ``linear_before_reset``, RN (``candidate``: ``R_h·h + Rb_h``).  The projection is the
LSTM's (``b`` holds ``Wb + Rb`` of z and r, and of h without ``linear_before_reset``)::

    gx = requantize(W·x + align(b), GX)                      # [T, B, 3H], gates z, r, h

then each time step::

    pre_z = clip(requantize(R_z·h + gx_z, PS));  z = σ(pre_z)
    pre_r = clip(requantize(R_r·h + gx_r, PS));  r = σ(pre_r)
    linear_before_reset = 0:
        rh = requantize(r ⊙ h, G.frac + H.frac, H)
        pre_h = clip(requantize(R_h·rh + gx_h, PT))
    linear_before_reset = 1:
        rn = requantize(R_h·h + align(Rb_h), RN)
        pre_h = clip(requantize(r ⊙ rn + gx_h, PT))            # fractions G+RN and GX, aligned
    n = tanh(pre_h)
    h' = requantize((ONE - z) ⊙ n + z ⊙ h, H)                  # fractions 2G and G+H, aligned

``R_z·h`` and ``R_r·h`` (and ``R_h·h``) come from one application of R to ``h``; without
``linear_before_reset`` the candidate's ``R_h`` reads ``rh``: per-gate maps apply
``R_h`` alone, a dense stacked R is split into its rows (exact), a decomposed stacked
one is applied to ``rh`` whole and its last H rows kept.

``rnn``, per direction, with X, GX, P (``pre``) and H::

    gx = requantize(W·x + align(b), GX)
    pre = clip(requantize(R·h + gx, P));  h' = f(pre)

``f`` is the op's σ or tanh unit (P -> H), or Relu, ``max(pre, 0)`` with P = H.

``add`` and ``mul`` of two fixed-point values A and B (NumPy broadcasting; an operand
may be a quantized constant), result format O from calibration::

    add:  y = requantize(align(a) + align(b), O)         # the exact sum at max(A.frac, B.frac)
    mul:  y = requantize(a · b, A.frac + B.frac, O)      # the exact product

``sigmoid`` and ``tanh`` on their own apply the op's unit (the operand's format -> O).

Every narrowed value above is one round-and-saturate of an exact wide accumulation, in
this order, which is what an accelerator must reproduce.  ``LinearProgram``,
``LSTMProgram``, ``GRUProgram``, ``RNNProgram``, ``ElementwiseProgram`` and
``ActivationProgram`` are these computations for one op,
prepared once (integer maps, bias blocks, clip limits); the golden model
(``interpreter.golden.FixedExecutor``) calls them and the Verilog lowering reads their
prepared fields.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Callable

import numpy as np

from ..errors import VerifyError
from ..ir.core import Op
from ..ir.linear_map import DenseMap
from ..ir.ops import RECURRENT, gate_count, num_directions, sequence_lengths
from ..ir.types import FixedType
from .formats import code_max, narrowing_shift, saturate
from .maps import IntegerMap
from .quant_attrs import ActivationQuant, ElementwiseQuant, GRUQuant, LinearQuant, LSTMQuant, RNNQuant


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


class ElementwiseProgram:
    """``add``: the aligned exact sum, ``mul``: the exact product, each narrowed once to
    the result's format."""

    def __init__(self, op: Op):
        self.quant = ElementwiseQuant.of(op)
        self.name = op.results[0].name
        self.kind = op.kind

    def accumulate(self, a: np.ndarray, b: np.ndarray) -> tuple[np.ndarray, int]:
        """The exact result before narrowing: ``(integers, fraction bits)``."""
        fa, fb = (fmt.frac for fmt in self.quant.inputs)
        if self.kind == "mul":
            return np.asarray(a, np.int64) * np.asarray(b, np.int64), fa + fb
        return aligned_sum((a, fa), (b, fb))

    def __call__(self, args, narrow: Narrowing) -> list:
        return [narrow(self.name, *self.accumulate(args[0], args[1]), self.quant.output)]


class ActivationProgram:
    """A ``sigmoid`` or ``tanh`` on its own: the op's integer unit."""

    def __init__(self, op: Op):
        self.quant = ActivationQuant.of(op)

    def __call__(self, args, narrow: Narrowing) -> list:
        return [self.quant.unit.evaluate(np.asarray(args[0], np.int64))]


class RecurrentProgram:
    """What the integer recurrent ops share: the integer maps of each direction, the bias
    blocks of the input projection, the clip limits, the projection of all steps, and the
    sweep over directions, layout and time (rows past their length keep their states and
    output 0).  A subclass gives ``step`` (one time step) and the formats."""

    quant: "LSTMQuant | GRUQuant | RNNQuant"

    def __init__(self, op: Op, quant, clipped: tuple[FixedType, ...]):
        self.quant = q = quant
        attrs = op.attrs
        self.name = op.results[0].name
        self.hidden = attrs["hidden_size"]
        self.layout = attrs["layout"]
        self.dirs = num_directions(op)
        self.states = len(RECURRENT[op.kind].states)
        self.reverse = [attrs["direction"] == "reverse" or d == 1 for d in range(self.dirs)]
        self.x_frac = op.operands[0].type.dtype.frac
        self.per_dir = per_dir = len(attrs["w"]) // self.dirs
        w = [IntegerMap(m, mq, q.rounding) for m, mq in zip(attrs["w"], q.w)]
        r = [IntegerMap(m, mq, q.rounding) for m, mq in zip(attrs["r"], q.r)]
        self.w = [w[d * per_dir:(d + 1) * per_dir] for d in range(self.dirs)]
        self.r = [r[d * (len(r) // self.dirs):(d + 1) * (len(r) // self.dirs)] for d in range(self.dirs)]
        bias = attrs["bias"]
        rows = gate_count(op) * self.hidden
        self.bias = None if bias is None else [
            [(block, fmt.frac) for block, fmt in zip(np.split(np.asarray(bias[d][:rows], np.int64), per_dir),
                                                     q.bias[d * per_dir:(d + 1) * per_dir])]
            for d in range(self.dirs)]
        clip = attrs["clip"]
        self.clip = {fmt: None if clip is None else min(int(np.floor(np.ldexp(clip, fmt.frac))), code_max(fmt))
                     for fmt in clipped}

    def __call__(self, args, narrow: Narrowing) -> list:
        x, seq_lens, *initial = (list(args) + [None] * (2 + self.states))[:2 + self.states]
        if self.layout:
            x = np.swapaxes(x, 0, 1)
            initial = [None if s is None else np.swapaxes(s, 0, 1) for s in initial]
        steps, batch = x.shape[0], x.shape[1]
        lens = sequence_lengths(seq_lens, steps, batch)
        outputs = [self._direction(d, x, lens, [None if s is None else s[d] for s in initial], narrow)
                   for d in range(self.dirs)]
        y = np.stack([o[0] for o in outputs], axis=1)
        finals = [np.stack([o[1][k] for o in outputs]) for k in range(self.states)]
        if self.layout:
            return [np.transpose(y, (2, 0, 1, 3))] + [np.swapaxes(s, 0, 1) for s in finals]
        return [y] + finals

    def projection(self, d: int, x: np.ndarray, narrow: Narrowing) -> np.ndarray:
        """``gx = requantize(W·x + b, GX)`` for every time step at once: ``[T, B, gates·H]``."""
        steps, batch, _ = x.shape
        rows = x.reshape(steps * batch, -1)
        blocks = []
        for index, imap in enumerate(self.w[d]):
            acc = imap.apply(rows, self.x_frac, narrow, f"{self.name}.w{d * self.per_dir + index}")
            if self.bias is not None:
                acc = aligned_sum(acc, self.bias[d][index])
            blocks.append(narrow(f"{self.name}.gates_x", *acc, self.quant.gates_x))
        return np.concatenate(blocks, axis=-1).reshape(steps, batch, -1)

    def recurrent(self, d: int, h: np.ndarray, narrow: Narrowing, maps: range | None = None
                  ) -> list[tuple[np.ndarray, int]]:
        """``R·h`` (the direction's maps, or those of ``maps``, positions within the
        direction) as ``H``-wide gate blocks ``(accumulator, fraction bits)`` in ONNX order."""
        hidden, per_dir = self.hidden, len(self.r[d])
        blocks = []
        for index in (maps if maps is not None else range(per_dir)):
            imap = self.r[d][index]
            acc, frac = imap.apply(h, self.quant.hidden.frac, narrow, f"{self.name}.r{d * per_dir + index}")
            blocks += [(acc[:, k * hidden:(k + 1) * hidden], frac) for k in range(acc.shape[-1] // hidden)]
        return blocks

    def pre(self, terms, fmt: FixedType, name: str, narrow: Narrowing) -> np.ndarray:
        """A pre-activation: the aligned sum narrowed to ``fmt``, then clipped."""
        codes = narrow(f"{self.name}.{name}", *aligned_sum(*terms), fmt)
        limit = self.clip[fmt]
        return codes if limit is None else np.clip(codes, -limit, limit)

    def _direction(self, d, x, lens, initial, narrow: Narrowing):
        steps, batch, _ = x.shape
        gx = self.projection(d, x, narrow)
        states = [np.zeros((batch, self.hidden), np.int64) if s is None else np.asarray(s, np.int64) for s in initial]
        y = np.zeros((steps, batch, self.hidden), np.int64)
        ragged = bool((lens < steps).any())
        for t in (range(steps - 1, -1, -1) if self.reverse[d] else range(steps)):
            new = self.step(d, states, gx[t], narrow)
            if ragged:
                active = (t < lens)[:, None]
                states = [np.where(active, n, s) for n, s in zip(new, states)]
                y[t] = np.where(active, new[0], 0)
            else:
                states = new
                y[t] = new[0]
        return y, states

    def step(self, d: int, states: list[np.ndarray], gx: np.ndarray, narrow: Narrowing) -> list[np.ndarray]:
        raise NotImplementedError

    def gate_blocks(self, gx: np.ndarray) -> list[np.ndarray]:
        """``gates_x[t]`` as its ``H``-wide gate blocks, in ONNX order."""
        return [gx[:, k * self.hidden:(k + 1) * self.hidden] for k in range(gx.shape[-1] // self.hidden)]


class LSTMProgram(RecurrentProgram):
    """The integer LSTM of the module docstring."""

    def __init__(self, op: Op):
        q = LSTMQuant.of(op)
        super().__init__(op, q, (q.pre_sigmoid, q.pre_tanh))
        self.input_forget = bool(op.attrs["input_forget"])
        peep = op.attrs["peepholes"]
        self.peepholes = None if peep is None else [np.split(np.asarray(peep[d], np.int64), 3)
                                                    for d in range(self.dirs)]
        self.one = 1 << q.gate.frac

    def step(self, d, states, gx, narrow: Narrowing):
        q = self.quant
        h, c = states
        peep = self.peepholes[d] if self.peepholes is not None else None
        peep_frac = q.peepholes.frac + q.cell.frac if peep is not None else 0
        gx_frac = q.gates_x.frac
        r_i, r_o, r_f, r_c = self.recurrent(d, h, narrow)
        g_i, g_o, g_f, g_c = self.gate_blocks(gx)

        def sigmoid_pre(r_term, g_term, p, state):
            extra = [(p * state, peep_frac)] if p is not None else []
            return self.pre([r_term, (g_term, gx_frac)] + extra, q.pre_sigmoid, "pre_sigmoid", narrow)

        i = q.sigmoid.evaluate(sigmoid_pre(r_i, g_i, peep and peep[0], c))
        f = self.one - i if self.input_forget else q.sigmoid.evaluate(sigmoid_pre(r_f, g_f, peep and peep[2], c))
        g = q.tanh.evaluate(self.pre([r_c, (g_c, gx_frac)], q.pre_tanh, "pre_tanh", narrow))
        c_new = narrow(f"{self.name}.cell", *aligned_sum((f * c, q.gate.frac + q.cell.frac),
                                                        (i * g, 2 * q.gate.frac)), q.cell)
        o = q.sigmoid.evaluate(sigmoid_pre(r_o, g_o, peep and peep[1], c_new))
        h_new = narrow(f"{self.name}.hidden", o * q.tanh_cell.evaluate(c_new), 2 * q.gate.frac, q.hidden)
        return [h_new, c_new]


class GRUProgram(RecurrentProgram):
    """The integer GRU of the module docstring."""

    def __init__(self, op: Op):
        q = GRUQuant.of(op)
        super().__init__(op, q, (q.pre_sigmoid, q.pre_tanh))
        self.lbr = bool(op.attrs["linear_before_reset"])
        self.one = 1 << q.gate.frac
        hidden = self.hidden
        bias = op.attrs["bias"]
        self.recurrent_bias = None
        if self.lbr and bias is not None:
            codes = np.asarray(bias, np.int64)
            if np.any(codes[:, 3 * hidden:5 * hidden]):
                raise VerifyError(f"{op.describe()}: a quantized GRU's Rb_z and Rb_r are folded into its input "
                                  "bias codes; their own codes must be 0")
            self.recurrent_bias = [(codes[d, 5 * hidden:], q.recurrent_bias.frac) for d in range(self.dirs)]
        # Which maps of a direction give the z, r rows (``zr_maps``) and the candidate's
        # (``h_maps``): R's positions within the direction, all of them where ``None``.
        # With linear_before_reset one application of R·h gives all three gates; without
        # it the candidate's R_h reads r ⊙ h: per-gate maps are split as such, a dense
        # stacked R into its rows, and a decomposed stacked R is applied anew, its last
        # H rows kept (``ir.ops.applies_stacked_r_twice``).
        self.zr_maps = self.h_maps = None
        self.candidate_block = 0
        if not self.lbr and len(self.r[0]) == 3:
            self.zr_maps, self.h_maps = range(2), range(2, 3)
        elif not self.lbr and all(imap.map.format == "dense" for imaps in self.r for imap in imaps):
            self.r = [[IntegerMap(DenseMap(m.matrix[rows]), q.r[d], q.rounding)
                       for rows in (slice(0, 2 * hidden), slice(2 * hidden, None))]
                      for d, m in enumerate(op.attrs["r"])]
            self.zr_maps, self.h_maps = range(1), range(1, 2)
        elif not self.lbr:
            self.candidate_block = 2

    def step(self, d, states, gx, narrow: Narrowing):
        q = self.quant
        (h,) = states
        gx_frac = q.gates_x.frac
        g_z, g_r, g_h = self.gate_blocks(gx)
        blocks = self.recurrent(d, h, narrow, self.zr_maps)
        z = q.sigmoid.evaluate(self.pre([blocks[0], (g_z, gx_frac)], q.pre_sigmoid, "pre_sigmoid", narrow))
        r = q.sigmoid.evaluate(self.pre([blocks[1], (g_r, gx_frac)], q.pre_sigmoid, "pre_sigmoid", narrow))
        if self.lbr:
            acc = blocks[2] if self.recurrent_bias is None else aligned_sum(blocks[2], self.recurrent_bias[d])
            rn = narrow(f"{self.name}.candidate", *acc, q.candidate)
            candidate = (r * rn, q.gate.frac + q.candidate.frac)
        else:
            rh = narrow(f"{self.name}.reset_hidden", r * h, q.gate.frac + q.hidden.frac, q.hidden)
            candidate = self.recurrent(d, rh, narrow, self.h_maps)[self.candidate_block]
        n = q.tanh.evaluate(self.pre([candidate, (g_h, gx_frac)], q.pre_tanh, "pre_tanh", narrow))
        h_new = narrow(f"{self.name}.hidden", *aligned_sum(((self.one - z) * n, 2 * q.gate.frac),
                                                          (z * h, q.gate.frac + q.hidden.frac)), q.hidden)
        return [h_new]


class RNNProgram(RecurrentProgram):
    """The integer RNN of the module docstring."""

    def __init__(self, op: Op):
        q = RNNQuant.of(op)
        super().__init__(op, q, (q.pre,))

    def step(self, d, states, gx, narrow: Narrowing):
        q = self.quant
        (r_term,) = self.recurrent(d, states[0], narrow)
        pre = self.pre([r_term, (gx, q.gates_x.frac)], q.pre, "pre", narrow)
        return [np.maximum(pre, 0) if q.activation is None else q.activation.evaluate(pre)]
