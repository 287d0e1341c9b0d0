"""QDQ lowering of quantized modules for the ``onnx`` target: onnxruntime computes what
the integer golden model (``interpreter.golden``, arithmetic in ``fixedpoint.programs``) computes, bit for bit.

A value of type ``fix<w,f>`` travels as a float32 tensor of its real values
``code · 2^-f``.  Every operation of the golden model then has an exact float32 form
as long as the integers involved stay below ``2^24`` (float32's exact integers):

* weights (map tensors, biases, peepholes, quantized constants) are stored as their
  integer codes (int8 / int16 / int32 by width) and enter through ``DequantizeLinear``
  with scale ``2^-f``;
* products and sums of codes are float32 ``MatMul`` / ``Einsum`` / ``Add`` / ``Mul``,
  exact while every accumulator, aligned to its largest fraction-bit count, stays below
  ``2^24`` (8-bit formats on the layer sizes of the papers do; 16-bit formats or very
  long dot products may not, and then onnxruntime rounds where the golden model does
  not);
* a round-and-saturate to ``fix<w,f>`` is ``QuantizeLinear`` → ``DequantizeLinear`` with
  scale ``2^-f`` (int8 or int16): ``x / 2^-f`` is exact and QuantizeLinear rounds half to
  even, the golden model's ``nearest-even``.  For ``half-away`` the value is first rounded
  exactly with float ops (``Round``, then ties moved away from zero), so QuantizeLinear
  has nothing left to round.  A width other than 8 or 16 saturates with a ``Clip`` to
  the format's range first (clipping to grid points commutes with rounding);
* the σ and tanh units (PWL or table) are evaluated on the codes as the golden model
  does, with float ops on integer-valued tensors: clamp, index by ``Floor``, ``Gather``
  of the tables, the PWL product and its rounding shift;
* a quantized ``add`` / ``mul`` is float32 ``Add`` / ``Mul`` of the operands' real values
  (exact under the same bound) and one requantize; a ``sigmoid`` / ``tanh`` of its own is
  its unit;
* a recurrent op (``lstm``, ``gru``, ``rnn``) is a ``Scan`` over time whose body is the
  golden model's cell;
* a host region is its own nodes on the real values (``onnx_form.host``), its results
  that are fixed point rounded to their formats as above: the golden model runs the same
  region in onnxruntime, so the two agree as far as onnxruntime computes a region's
  float arithmetic alike in both graphs (it may fuse its nodes differently there).

Module inputs of a fixed-point type take floats, quantized on entry in the module's
rounding mode; outputs are the dequantized values (exact in float32).

``check_exact`` bounds every accumulator over all inputs, as the quantize pass does
(``IntegerMap.bound`` for the maps' steps, aligned sums for biases, the recurrent ops'
pre-activations, an LSTM's cell and hidden products, a GRU's reset products and state
update); a model where one could reach ``2^24`` is refused with an
``ExportError`` naming it, as are formats wider than 16 bits at a rounding point (no
QuantizeLinear target) and weight codes of ``2^24`` or more.  8-bit quantization of
the layers here needs 15-bit accumulators and 12-bit about 23; 16-bit quantization
needs about 31 and is refused: its QDQ model would round where the golden model does not.
"""

from __future__ import annotations

import numpy as np
from onnx import TensorProto

from ..fixedpoint.activations import ActivationUnit
from ..fixedpoint.formats import code_max, code_min
from ..fixedpoint.maps import IntegerMap, MapQuant
from ..fixedpoint.quant_attrs import ActivationQuant, ElementwiseQuant, GRUQuant, LinearQuant, LSTMQuant, RNNQuant
from ..ir.core import Module, Op
from ..ir.linear_map import LinearMap
from ..ir.ops import gate_count
from ..ir.types import FixedType
from ..onnx_form import ExportError, apply_map
from ..onnx_form.host import lower_host
from ..onnx_form.lstm import direction_peepholes
from ..onnx_form.recurrent import ScanCell, lower_recurrent, split_rows

EXACT_FLOAT32 = 1 << 24
"""Integers of smaller magnitude are exact in float32."""

STORAGE = [(8, np.int8), (16, np.int16), (32, np.int32)]


def _pow2(b, exponent: int, role: str) -> str:
    return b.scalar(2.0 ** exponent, np.float32, role)


def dequantized_weights(b, codes: np.ndarray, fmt: FixedType, role: str) -> str:
    """``DequantizeLinear`` of the integer ``codes`` stored in the narrowest fitting type."""
    codes = np.asarray(codes, np.int64)
    if codes.size and np.abs(codes).max() >= EXACT_FLOAT32:
        raise ExportError(f"{role}: codes of {fmt} reach {np.abs(codes).max()}, beyond float32's exact integers")
    storage = next(dtype for width, dtype in STORAGE if fmt.width <= width or width == 32)
    return b.add("DequantizeLinear", [b.init(codes.astype(storage), f"{role}.codes"), _pow2(b, -fmt.frac, f"{role}/scale")],
                 f"{role}/dequantize")


def round_exactly(b, y: str, rounding: str, role: str) -> str:
    """``y`` (float32) rounded to an integer-valued float32, exactly: ``Round`` is half to
    even; for half-away a tie (``|Round(y) - y| = 1/2``, an exact difference) moves away
    from zero instead."""
    rounded = b.add("Round", [y], f"{role}/round")
    if rounding == "nearest-even":
        return rounded
    tie = b.add("Equal", [b.add("Abs", [b.add("Sub", [rounded, y], f"{role}/offset")], f"{role}/distance"),
                          b.scalar(0.5, np.float32, f"{role}/half")], f"{role}/tie")
    away = b.add("Add", [y, b.add("Mul", [b.add("Sign", [y], f"{role}/sign"), b.scalar(0.5, np.float32, f"{role}/half_away")],
                                  f"{role}/to_away")], f"{role}/away")
    return b.add("Where", [tie, away, rounded], f"{role}/rounded")


def requantize(b, x: str, fmt: FixedType, rounding: str, role: str, output: str | None = None) -> str:
    """Round ``x`` to ``fmt``'s grid and saturate: Q → DQ with scale ``2^-frac``."""
    if fmt.width > 16:
        raise ExportError(f"{role}: {fmt} is wider than QuantizeLinear's 16-bit targets")
    dtype, offset = (np.uint8, 1 << 7) if fmt.width <= 8 else (np.uint16, 1 << 15)
    scale = _pow2(b, -fmt.frac, f"{role}/scale")
    if rounding == "half-away":
        scaled = b.add("Mul", [x, _pow2(b, fmt.frac, f"{role}/inverse_scale")], f"{role}/scaled")
        x = b.add("Mul", [round_exactly(b, scaled, rounding, role), scale], f"{role}/on_grid")
    if fmt.width not in (8, 16):
        bounds = [b.scalar(code_min(fmt) * 2.0 ** -fmt.frac, np.float32, f"{role}/low"),
                  b.scalar(code_max(fmt) * 2.0 ** -fmt.frac, np.float32, f"{role}/high")]
        x = b.add("Clip", [x, *bounds], f"{role}/saturate")
    zero = b.init(np.asarray(offset, dtype), f"{role}/zero")
    codes = b.add("QuantizeLinear", [x, scale, zero], f"{role}/quantize")
    return b.add("DequantizeLinear", [codes, scale, zero], f"{role}/dequantize", [output] if output else None)


def apply_quantized_map(b, linear_map: LinearMap, quant: MapQuant, x: str, rank: int, rounding: str,
                        role: str) -> str:
    """The map's exact accumulator (float32): weights dequantized from their codes, every
    contraction step but each network's last rounded to its step format."""

    def weight(name: str, array: np.ndarray, tensor_role: str) -> str:
        return dequantized_weights(b, array, quant.tensors[name], tensor_role)

    def narrow(network: int, step: int, value: str) -> str:
        return requantize(b, value, quant.steps[network][step], rounding, f"{role}/n{network}s{step}")

    return apply_map(b, linear_map, x, rank, np.float32, role, weight=weight, narrow=narrow)


def unit(b, unit: ActivationUnit, x: str, role: str) -> str:
    """The integer σ/tanh unit on the codes of ``x`` (see ``ActivationUnit.evaluate``)."""
    _check_unit(unit, role)
    code = b.add("Mul", [x, _pow2(b, unit.input.frac, f"{role}/in_scale")], f"{role}/code")
    clamped = b.add("Clip", [code, b.scalar(unit.lo, np.float32, f"{role}/lo"),
                             b.scalar(unit.lo + unit.span - 1, np.float32, f"{role}/hi")], f"{role}/clamp")
    u = b.add("Sub", [clamped, b.scalar(unit.lo, np.float32, f"{role}/origin")], f"{role}/u")
    j = b.add("Floor", [b.add("Mul", [u, _pow2(b, -unit.index_shift, f"{role}/cell")], f"{role}/position")],
              f"{role}/j")
    index = b.add("Cast", [j], f"{role}/index", to=TensorProto.INT64)
    values = b.add("Gather", [b.init(unit.values.astype(np.float32), f"{role}.values"), index], f"{role}/value")
    if unit.kind == "lut":
        out = values
    else:
        r = b.add("Sub", [u, b.add("Mul", [j, _pow2(b, unit.index_shift, f"{role}/cell_size")], f"{role}/start")],
                  f"{role}/r")
        if unit.offset_drop:
            dropped = b.add("Floor", [b.add("Mul", [r, _pow2(b, -unit.offset_drop, f"{role}/drop")], f"{role}/coarse")],
                            f"{role}/dropped")
            t = b.add("Add", [b.add("Mul", [dropped, b.scalar(2, np.float32, f"{role}/two")], f"{role}/doubled"),
                              b.scalar(1, np.float32, f"{role}/one")], f"{role}/t")
            m = unit.index_shift - unit.offset_drop + 1
        else:
            t, m = r, unit.index_shift
        slopes = b.add("Gather", [b.init(unit.slopes.astype(np.float32), f"{role}.slopes"), index], f"{role}/slope")
        acc = b.add("Add", [b.add("Mul", [values, _pow2(b, m, f"{role}/lift")], f"{role}/intercept"),
                            b.add("Mul", [slopes, t], f"{role}/rise")], f"{role}/acc")
        shifted = b.add("Mul", [acc, _pow2(b, -(m + unit.guard_bits), f"{role}/shift")], f"{role}/shifted")
        out = b.add("Clip", [round_exactly(b, shifted, unit.rounding, role),
                             b.scalar(code_min(unit.output), np.float32, f"{role}/out_low"),
                             b.scalar(code_max(unit.output), np.float32, f"{role}/out_high")], f"{role}/saturate")
    return b.add("Mul", [out, _pow2(b, -unit.output.frac, f"{role}/out_scale")], role)


def _check_unit(unit: ActivationUnit, role: str) -> None:
    if unit.kind == "lut":
        largest = int(np.abs(unit.values).max())
    else:
        m = unit.index_shift - unit.offset_drop + 1 if unit.offset_drop else unit.index_shift
        largest = (int(np.abs(unit.values).max()) << m) + int(np.abs(unit.slopes).max()) * (1 << m)
    if largest >= EXACT_FLOAT32:
        raise ExportError(f"{role}: the {unit.function} unit's products reach {largest}, beyond float32's exact integers")


# --- ops ------------------------------------------------------------------------------------


def lower_quantized(b, op: Op, inputs: list[str], results: list[str]) -> None:
    """The QDQ lowering of a quantized ``const``, ``linear`` or recurrent op (the float
    Scan lowering with the cells of ``QUANTIZED_CELLS``)."""
    if op.kind in QUANTIZED_CELLS:
        lower_recurrent(b, op, inputs, results, QUANTIZED_CELLS[op.kind])
        return
    if op.kind == "host":
        _quantized_host(b, op, inputs, results)
        return
    if op.kind == "const":
        fmt = op.results[0].type.dtype
        dequantized_weights(b, op.attrs["value"], fmt, "const")
        b.nodes[-1].output[0] = results[0]
        return
    if op.kind in ("add", "mul"):
        quant = ElementwiseQuant.of(op)
        exact = b.add(op.kind.capitalize(), inputs, "exact")
        requantize(b, exact, quant.output, quant.rounding, "out", results[0])
        return
    if op.kind in ("sigmoid", "tanh"):
        out = unit(b, ActivationQuant.of(op).unit, inputs[0], op.kind)
        b.add("Identity", [out], "out", [results[0]])
        return
    quant = LinearQuant.of(op)
    x = op.operands[0]
    acc = apply_quantized_map(b, op.attrs["weight"], quant.weight, inputs[0], x.type.rank, quant.rounding, "weight")
    if op.attrs["bias"] is not None:
        acc = b.add("Add", [acc, dequantized_weights(b, op.attrs["bias"], quant.bias, "bias")], "biased")
    requantize(b, acc, quant.output, quant.rounding, "out", results[0])


def _quantized_host(b, op: Op, inputs: list[str], results: list[str]) -> None:
    """The region on real values (the graph holds fixed-point values as their real
    values), then its results that are fixed point rounded to their formats."""
    rounding = op.attrs["quant"]["rounding"]
    fixed = [isinstance(v.type.dtype, FixedType) for v in op.results]
    raw = [b.values.fresh(f"{name}/real") if is_fixed else name for name, is_fixed in zip(results, fixed)]
    lower_host(b, op, inputs, raw)
    for value, name, real in zip(op.results, results, raw):
        if real != name:
            requantize(b, real, value.type.dtype, rounding, f"{name}/boundary", name)


class QuantizedCell(ScanCell):
    """What the quantized recurrent cells share: the input projection ``gx =
    requantize(W·x + b, GX)`` per map, ``R·h`` as gate blocks, and a pre-activation's
    round-and-saturate with its clip, as ``fixedpoint.programs.RecurrentProgram`` computes them."""

    def __init__(self, op: Op, quant, clipped: tuple[FixedType, ...]):
        super().__init__(op)
        self.quant = quant
        self.per_dir, self.r_per_dir = len(op.attrs["w"]) // self.dirs, len(op.attrs["r"]) // self.dirs
        clip = op.attrs["clip"]
        self.limit = {fmt: None if clip is None else min(int(np.floor(np.ldexp(clip, fmt.frac))), code_max(fmt))
                      for fmt in clipped}

    def projection(self, b, d: int, x: str) -> str:
        """``gx = requantize(W·x + b, GX)`` per map of direction ``d``, gates concatenated."""
        q, attrs = self.quant, self.op.attrs
        rows = gate_count(self.op) * self.hidden // self.per_dir
        blocks = []
        for k in range(self.per_dir):
            index = d * self.per_dir + k
            role = f"w{index}"
            acc = apply_quantized_map(b, attrs["w"][index], q.w[index], x, 3, q.rounding, role)
            if attrs["bias"] is not None:
                codes = np.asarray(attrs["bias"][d])[k * rows:(k + 1) * rows]
                bias = dequantized_weights(b, codes, q.bias[index], f"{role}.bias")
                acc = b.add("Add", [acc, bias], f"{role}/biased")
            blocks.append(requantize(b, acc, q.gates_x, q.rounding, f"{role}/gates_x"))
        return blocks[0] if len(blocks) == 1 else b.add("Concat", blocks, f"gates_x{d}", axis=-1)

    def blocks(self, b, d: int, h: str, positions=None, role: str = "r") -> list[str]:
        """``R·h`` of direction ``d`` (its maps at ``positions`` within the direction, all
        by default) as ``H``-wide gate blocks, exact accumulators."""
        q, attrs, hidden = self.quant, self.op.attrs, self.hidden
        blocks = []
        for position in (positions if positions is not None else range(self.r_per_dir)):
            index = d * self.r_per_dir + position
            acc = apply_quantized_map(b, attrs["r"][index], q.r[index], h, 2, q.rounding, f"{role}{index}")
            gates = int(attrs["r"][index].out_dim // hidden)
            blocks += [acc] if gates == 1 else split_rows(b, acc, [hidden] * gates, f"{role}{index}_gates")
        return blocks

    def pre(self, b, d: int, terms: list[str], fmt: FixedType, role: str) -> str:
        """``clip(requantize(Σ terms, fmt))``."""
        total = terms[0]
        for k, term in enumerate(terms[1:]):
            total = b.add("Add", [total, term], f"{role}{d}_sum{k}" if k else f"{role}{d}_sum")
        codes = requantize(b, total, fmt, self.quant.rounding, f"{role}{d}")
        if self.limit[fmt] is None:
            return codes
        bound = self.limit[fmt] * 2.0 ** -fmt.frac
        return b.add("Clip", [codes, b.scalar(-bound, np.float32, f"{role}{d}_clip_low"),
                              b.scalar(bound, np.float32, f"{role}{d}_clip_high")], f"{role}{d}_clipped")


class QuantizedLSTM(QuantizedCell):
    """The cell of a quantized ``lstm``'s Scan lowering: the peepholes and the cell of the
    golden model."""

    def __init__(self, op: Op):
        q = LSTMQuant.of(op)
        super().__init__(op, q, (q.pre_sigmoid, q.pre_tanh))
        self.peepholes: list[list[str] | None] = [None] * self.dirs

    def prepare(self, b) -> None:
        peep = self.op.attrs["peepholes"]
        if peep is not None:
            codes = dequantized_weights(b, peep, self.quant.peepholes, "P")
            self.peepholes = [direction_peepholes(b, codes, d, self.hidden) for d in range(self.dirs)]

    def step(self, b, d: int, states: list[str], gates_x: str) -> list[str]:
        """One step of direction ``d``: ``(h', c')`` (see ``fixedpoint.programs``)."""
        q, attrs, peepholes = self.quant, self.op.attrs, self.peepholes[d]
        h, c = states
        r_blocks = self.blocks(b, d, h)
        gx = split_rows(b, gates_x, [self.hidden] * 4, f"gx{d}_gates")

        def pre(gate: int, fmt: FixedType, state: str | None, role: str) -> str:
            """Gate ``gate``'s pre-activation; i, o and f add their peephole of ``state``."""
            extra = [] if peepholes is None or state is None else [
                b.add("Mul", [peepholes[gate], state], f"peephole{gate}_{d}")]
            return self.pre(b, d, [r_blocks[gate], gx[gate]] + extra, fmt, role)

        i = unit(b, q.sigmoid, pre(0, q.pre_sigmoid, c, "pre_i"), f"i{d}")
        if attrs["input_forget"]:
            f = b.add("Sub", [b.scalar(1, np.float32, f"one{d}"), i], f"f{d}")
        else:
            f = unit(b, q.sigmoid, pre(2, q.pre_sigmoid, c, "pre_f"), f"f{d}")
        g = unit(b, q.tanh, pre(3, q.pre_tanh, None, "pre_c"), f"g{d}")
        cell_sum = b.add("Add", [b.add("Mul", [f, c], f"keep{d}"), b.add("Mul", [i, g], f"write{d}")], f"cell{d}_sum")
        c_new = requantize(b, cell_sum, q.cell, q.rounding, f"c{d}")
        o = unit(b, q.sigmoid, pre(1, q.pre_sigmoid, c_new, "pre_o"), f"o{d}")
        product = b.add("Mul", [o, unit(b, q.tanh_cell, c_new, f"tanh_c{d}")], f"h{d}_product")
        return [requantize(b, product, q.hidden, q.rounding, f"h{d}"), c_new]


class QuantizedGRU(QuantizedCell):
    """The cell of a quantized ``gru``'s Scan lowering (``fixedpoint.programs.GRUProgram``;
    a stacked R is applied whole and its rows picked, which for a dense R gives the codes
    the golden model's row split gives)."""

    def __init__(self, op: Op):
        q = GRUQuant.of(op)
        super().__init__(op, q, (q.pre_sigmoid, q.pre_tanh))
        self.lbr = op.attrs["linear_before_reset"]
        self.recurrent_bias: list[str | None] = [None] * self.dirs

    def prepare(self, b) -> None:
        bias = self.op.attrs["bias"]
        if self.lbr and bias is not None:
            self.recurrent_bias = [dequantized_weights(b, np.asarray(bias[d])[5 * self.hidden:],
                                                       self.quant.recurrent_bias, f"rb_h{d}")
                                   for d in range(self.dirs)]

    def step(self, b, d: int, states: list[str], gates_x: str) -> list[str]:
        q, hidden = self.quant, self.hidden
        (h,) = states
        g_z, g_r, g_h = split_rows(b, gates_x, [hidden] * 3, f"gx{d}_gates")
        per_gate = self.r_per_dir == 3
        blocks = self.blocks(b, d, h, range(2) if per_gate and not self.lbr else None)
        z = unit(b, q.sigmoid, self.pre(b, d, [blocks[0], g_z], q.pre_sigmoid, "pre_z"), f"z{d}")
        r = unit(b, q.sigmoid, self.pre(b, d, [blocks[1], g_r], q.pre_sigmoid, "pre_r"), f"r{d}")
        if self.lbr:
            acc = blocks[2] if self.recurrent_bias[d] is None else b.add(
                "Add", [blocks[2], self.recurrent_bias[d]], f"candidate{d}_biased")
            rn = requantize(b, acc, q.candidate, q.rounding, f"candidate{d}")
            candidate = b.add("Mul", [r, rn], f"reset{d}")
        else:
            rh = requantize(b, b.add("Mul", [r, h], f"reset{d}_product"), q.hidden, q.rounding, f"reset{d}")
            candidate = self.blocks(b, d, rh, range(2, 3) if per_gate else None, "rh")[0 if per_gate else 2]
        n = unit(b, q.tanh, self.pre(b, d, [candidate, g_h], q.pre_tanh, "pre_h"), f"n{d}")
        update = b.add("Sub", [b.scalar(1, np.float32, f"one{d}"), z], f"update{d}")
        total = b.add("Add", [b.add("Mul", [update, n], f"write{d}"), b.add("Mul", [z, h], f"carry{d}")],
                      f"h{d}_sum")
        return [requantize(b, total, q.hidden, q.rounding, f"h{d}")]


class QuantizedRNN(QuantizedCell):
    """The cell of a quantized ``rnn``'s Scan lowering (``fixedpoint.programs.RNNProgram``)."""

    def __init__(self, op: Op):
        q = RNNQuant.of(op)
        super().__init__(op, q, (q.pre,))

    def step(self, b, d: int, states: list[str], gates_x: str) -> list[str]:
        q = self.quant
        pre = self.pre(b, d, [*self.blocks(b, d, states[0]), gates_x], q.pre, "pre")
        return [b.add("Relu", [pre], f"h{d}") if q.activation is None else unit(b, q.activation, pre, f"h{d}")]


QUANTIZED_CELLS = {"lstm": QuantizedLSTM, "gru": QuantizedGRU, "rnn": QuantizedRNN}


# --- exactness ------------------------------------------------------------------------------


def check_exact(module: Module) -> None:
    """``ExportError`` unless every accumulator of the golden model stays below ``2^24``
    in magnitude for all inputs, so the float32 QDQ arithmetic is exact."""
    for op in module.ops:
        if op.attrs.get("quant") is None or op.kind in ("const", "host"):
            continue
        if op.kind == "linear":
            quant = LinearQuant.of(op)
            term = _map_bound(op.attrs["weight"], quant.weight, quant.rounding, op.operands[0].type.dtype,
                              f"{op.describe()} weight")
            bias = [] if op.attrs["bias"] is None else [(_largest(op.attrs["bias"]), quant.bias.frac)]
            _check(f"{op.describe()}: the output accumulator", _aligned([term] + bias))
        elif op.kind in ("add", "mul"):
            a, c = ElementwiseQuant.of(op).inputs
            bound = (code_min(a) * code_min(c), 0) if op.kind == "mul" else _aligned(
                [(-code_min(a), a.frac), (-code_min(c), c.frac)])
            _check(f"{op.describe()}: the exact {'product' if op.kind == 'mul' else 'sum'}", bound)
        elif op.kind in {"lstm", "gru", "rnn"}:
            {"lstm": _check_lstm, "gru": _check_gru, "rnn": _check_rnn}[op.kind](op)


def _recurrent_terms(op: Op, q) -> list[tuple[int, int]]:
    """Check the input projections' accumulators (maps, biases); return ``(bound, frac)``
    of each map of R applied to ``h``."""
    attrs, where = op.attrs, op.describe()
    w_terms = [_map_bound(m, mq, q.rounding, op.operands[0].type.dtype, f"{where} w[{k}]")
               for k, (m, mq) in enumerate(zip(attrs["w"], q.w))]
    if attrs["bias"] is not None:
        rows = gate_count(op) * attrs["hidden_size"]
        blocks = np.split(np.asarray(attrs["bias"], np.int64)[:, :rows].reshape(-1), len(w_terms))
        w_terms = [_aligned([term, (_largest(block), fmt.frac)]) for term, block, fmt in zip(w_terms, blocks, q.bias)]
    for k, term in enumerate(w_terms):
        _check(f"{where}: gates_x of w[{k}]", term[0])
    return [_map_bound(m, mq, q.rounding, q.hidden, f"{where} r[{k}]")
            for k, (m, mq) in enumerate(zip(attrs["r"], q.r))]


def _check_lstm(op: Op) -> None:
    q, attrs, where = LSTMQuant.of(op), op.attrs, op.describe()
    r_terms = _recurrent_terms(op, q)
    pre = [(-code_min(q.gates_x), q.gates_x.frac)]
    if attrs["peepholes"] is not None:
        pre.append((_largest(attrs["peepholes"]) * -code_min(q.cell), q.peepholes.frac + q.cell.frac))
    for k, term in enumerate(r_terms):
        _check(f"{where}: the pre-activations of r[{k}]", _aligned([term] + pre)[0])
    gate, cell = -code_min(q.gate), -code_min(q.cell)
    _check(f"{where}: the cell update", _aligned([(gate * cell, q.gate.frac + q.cell.frac), (gate * gate, 2 * q.gate.frac)])[0])
    _check(f"{where}: the hidden product", gate * gate)


def _check_gru(op: Op) -> None:
    q, attrs, where = GRUQuant.of(op), op.attrs, op.describe()
    r_terms = _recurrent_terms(op, q)
    gx = (-code_min(q.gates_x), q.gates_x.frac)
    gate, hidden = -code_min(q.gate), -code_min(q.hidden)
    for k, term in enumerate(r_terms):
        _check(f"{where}: the pre-activations of r[{k}]", _aligned([term, gx])[0])
    if q.candidate is not None:
        recurrent_bias = [] if attrs["bias"] is None else [
            (_largest(np.asarray(attrs["bias"])[:, 5 * attrs["hidden_size"]:]), q.recurrent_bias.frac)]
        for k, term in enumerate(r_terms):
            _check(f"{where}: the candidate of r[{k}]", _aligned([term] + recurrent_bias)[0])
        _check(f"{where}: the candidate's pre-activation",
               _aligned([(gate * -code_min(q.candidate), q.gate.frac + q.candidate.frac), gx])[0])
    else:
        _check(f"{where}: the reset product", gate * hidden)
    one = 1 << q.gate.frac
    _check(f"{where}: the hidden update", _aligned([((one + gate) * gate, 2 * q.gate.frac),
                                                    (gate * hidden, q.gate.frac + q.hidden.frac)])[0])


def _check_rnn(op: Op) -> None:
    q, where = RNNQuant.of(op), op.describe()
    for k, term in enumerate(_recurrent_terms(op, q)):
        _check(f"{where}: the pre-activation of r[{k}]", _aligned([term, (-code_min(q.gates_x), q.gates_x.frac)])[0])


def _map_bound(linear_map: LinearMap, quant: MapQuant, rounding: str, x_fmt: FixedType, where: str) -> tuple[int, int]:
    """``(bound, frac)`` of the map's output accumulator; its steps are checked too."""
    bound, frac, steps = IntegerMap(linear_map, quant, rounding).bound(x_fmt)
    for index, step in enumerate(steps):
        _check(f"{where}: contraction step {index}", step)
    return bound, frac


def _aligned(terms: list[tuple[int, int]]) -> tuple[int, int]:
    frac = max(f for _, f in terms)
    return sum(bound << (frac - f) for bound, f in terms), frac


def _largest(codes) -> int:
    return int(np.abs(np.asarray(codes, np.int64)).max(initial=0))


def _check(what: str, bound) -> None:
    bound = bound[0] if isinstance(bound, tuple) else bound
    if bound >= EXACT_FLOAT32:
        raise ExportError(f"{what} can reach {int(bound).bit_length()} bits, more than the 24 that float32 holds "
                     "exactly: the QDQ model would round where the golden model does not (quantize to fewer bits)")
