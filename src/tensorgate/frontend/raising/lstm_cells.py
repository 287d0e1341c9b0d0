"""One written-out LSTM cell, recognized by its data flow: the gate pre-activations as
sums of maps, constants and time steps of a sequence, the state update and the output
(the pattern is in ``raise_lstm``'s docstring)."""

from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np

from ...ir.core import Op, Value
from ...ir.linear_map import DenseMap, LinearMap
from ...ir.tensor_formats import TensorizedMap
from .notes import NotRaised
from .rewrite import constant_array

ONNX_GATES = ("i", "o", "f", "g")  # ONNX calls the candidate gate "c"
SIGMOID_GATES = ("i", "f", "o")
FIRST_MODE_TENSORS = {"tt": ("g0", 1), "bt": ("f0", 0), "ht": ("u0", 0)}
"""Per format: the tensor holding the leading output factor m_1 (a BT map's is in each
block, ``b{b}.f0``) and its m_1 axis."""


def cell_anchor(op: Op) -> tuple[Value, Value] | None:
    """``(h', c')`` if ``op`` is ``h' = a * act(c')`` with ``c'`` an add of two products:
    the shape of every LSTM-like cell, checked strictly by ``Cell.match``."""
    if op.kind != "mul":
        return None
    for value in op.operands:
        unary = value.producer
        if unary is not None and len(unary.operands) == 1 and unary.kind in ("tanh", "sigmoid", "relu"):
            c_new = unary.operands[0]
            add = c_new.producer
            if add is not None and add.kind == "add" and all(
                    v.producer is not None and v.producer.kind == "mul" for v in add.operands):
                return op.results[0], c_new
    return None


@dataclass
class Term:
    """One summand of a gate's pre-activation: rows ``[start, stop)`` of a map applied
    to ``source``, or (``source`` ``None``) a constant vector ``bias``."""

    source: Value | None
    linear_map: LinearMap | None = None
    start: int = 0
    stop: int = 0
    bias: np.ndarray | None = None


@dataclass
class _Gate:
    """One gate's pre-activation: ``w`` applied to x_t, ``r`` to h (absent when an
    exporter folded ``R·0``), and the constants: ``x_bias`` (the input map's bias and
    free constants) and ``h_bias`` (the recurrent map's)."""

    w: Term
    r: Term | None
    x_bias: np.ndarray | None
    h_bias: np.ndarray | None


@dataclass
class Cell:
    """One time step: its states in and out, the input step it reads (``time`` along
    ``time_axis`` of ``sequence``; a cell applied once to a ``[B, I]`` value has that
    value as ``sequence``, ``time_axis`` ``None`` and ``time`` 0), its gates and every op
    it was read from."""

    h_new: Value
    c_new: Value
    h_prev: Value | None
    c_prev: Value
    sequence: Value
    time_axis: int | None
    time: int
    gates: dict[str, _Gate]
    ops: list[Op] = field(default_factory=list)

    @classmethod
    def match(cls, h_new: Value, c_new: Value) -> "Cell":
        ops: list[Op] = [h_new.producer, c_new.producer]
        c_act, o_act = _operands_by(h_new.producer, lambda v: v.producer is not None
                                    and v.producer.operands == [c_new])
        _expect(c_act, "tanh", "the new cell state")
        first, second = (v.producer for v in c_new.producer.operands)
        ig, fc = (first, second) if _has_unary(first, "tanh", "relu") else (second, first)
        f_act, c_prev = _operands_by(fc, _is_sigmoid)
        i_act, g_act = _operands_by(ig, _is_sigmoid)
        _expect(g_act, "tanh", "the candidate gate")
        acts = {"i": i_act, "f": f_act, "o": o_act, "g": g_act}
        for role in SIGMOID_GATES:
            _expect(acts[role], "sigmoid", f"gate {role}")
        ops += [fc, ig] + [a.producer for a in acts.values()] + [c_act.producer]
        pieces = {role: _gate_terms(act.producer.operands[0], ops) for role, act in acts.items()}
        return cls._from_terms(h_new, c_new, c_prev, pieces, ops)

    @classmethod
    def _from_terms(cls, h_new, c_new, c_prev, pieces: dict[str, list[Term]], ops) -> "Cell":
        sources = {id(t.source): t.source for terms in pieces.values() for t in terms if t.source is not None}
        state = _stored_in(c_prev)  # h read from the tensor c is read from is a state, not a time step
        slices = {key: None if _stored_in(v) is state else _time_slice(v, ops) for key, v in sources.items()}
        inputs = [key for key, found in slices.items() if found is not None]
        if len(inputs) > 1:
            raise NotRaised(f"the gates apply maps to {len(inputs)} time steps of a sequence, an LSTM cell to one")
        x_key = inputs[0] if inputs else _single_step_input(sources, c_prev, pieces)
        h_keys = [key for key in sources if key != x_key]
        if len(h_keys) > 1:
            raise NotRaised(f"the gates apply maps to {len(sources)} values; an LSTM cell to x_t and h")
        gates = {role: _gate(role, terms, x_key) for role, terms in pieces.items()}
        sequence, axis, time = slices[x_key] or (sources[x_key], None, 0)
        h_prev = sources[h_keys[0]] if h_keys else None
        return cls(h_new, c_new, h_prev, c_prev, sequence, axis, time, gates, ops)

    def layer(self, hidden: int) -> "Layer":
        """The ``lstm`` attributes this cell implies (maps in ONNX gate order)."""
        w = _stack([self.gates[g].w for g in ONNX_GATES], hidden, "W")
        r_terms = [self.gates[g].r for g in ONNX_GATES]
        if any(t is None for t in r_terms) and not all(t is None for t in r_terms):
            raise NotRaised("some gates have a recurrent map and some do not")
        r = None if r_terms[0] is None else _stack(r_terms, hidden, "R")
        return Layer(w, r, [self.gates[g].x_bias for g in ONNX_GATES], [self.gates[g].h_bias for g in ONNX_GATES])


def _single_step_input(sources: dict[int, Value], c_prev: Value, pieces: dict[str, list[Term]]) -> int:
    """The key of x in a cell applied once (no source is a time step of a sequence): of
    the two values the gates map, h is the one read from the tensor ``c`` comes from
    (``state[0]``, ``state[1]``), else the only one its map takes at the state's width."""
    if len(sources) != 2 or any(v.type.rank != 2 for v in sources.values()):
        raise NotRaised("the gates read no time step of a sequence, and not one [batch, features] input and "
                        "one hidden state")
    keys = list(sources)
    origin = _stored_in(c_prev)
    from_state = [k for k in keys if origin is not None and _stored_in(sources[k]) is origin]
    if len(from_state) == 1:
        return next(k for k in keys if k != from_state[0])
    hidden = c_prev.type.shape[-1]
    widths = {k: {t.linear_map.in_dim for terms in pieces.values() for t in terms if id(t.source) == k
                  and t.linear_map is not None} for k in keys}
    at_state_width = [k for k in keys if widths[k] == {hidden}]
    if len(at_state_width) == 1:
        return next(k for k in keys if k != at_state_width[0])
    raise NotRaised("a cell applied once maps two values of the state's width, and neither comes from the "
                    "tensor the cell state is read from: which is the input is not known")


def _stored_in(value: Value) -> Value:
    """The value ``value`` is read from through data movement (itself if none)."""
    while value.producer is not None and value.producer.kind in ("gather", "slice", "squeeze", "split", "reshape"):
        value = value.producer.operands[0]
    return value


def _operands_by(op: Op, pick) -> tuple[Value, Value]:
    """``op``'s two operands, the one ``pick`` accepts first."""
    if op.kind != "mul" or len(op.operands) != 2:
        raise NotRaised("the cell update has an op that is not a product of two values", op)
    a, b = op.operands
    if pick(a):
        return a, b
    if pick(b):
        return b, a
    raise NotRaised("a product in the cell update does not take the values an LSTM cell multiplies", op)


def _is_sigmoid(value: Value) -> bool:
    return value.producer is not None and value.producer.kind == "sigmoid"


def _has_unary(op: Op, *kinds: str) -> bool:
    return any(v.producer is not None and v.producer.kind in kinds for v in op.operands)


def _expect(value: Value, kind: str, what: str) -> None:
    if value.producer is None or value.producer.kind != kind:
        got = value.producer.kind if value.producer is not None else "an input"
        raise NotRaised(f"{what} goes through {got}, an ONNX LSTM applies {kind}")


def _gate_terms(pre: Value, ops: list[Op]) -> list[Term]:
    """The summands of one gate's pre-activation."""
    rows = pre.type.shape[-1] if pre.type.rank else None
    if not isinstance(rows, int) or pre.type.rank != 2:
        raise NotRaised("a gate's pre-activation is not a [batch, width] value of static width")
    terms: list[Term] = []
    _collect(pre, 0, rows, terms, ops)
    return terms


def _collect(value: Value, start: int, stop: int, terms: list[Term], ops: list[Op]) -> None:
    """Append the summands of rows ``[start, stop)`` of ``value`` (its last axis)."""
    constant = constant_array(value)
    if constant is not None:
        terms.append(Term(None, bias=_rows(constant, start, stop)))
        return
    op = value.producer
    if op is None:
        raise NotRaised("a gate adds a module input, which is no map of x_t or h")
    if value.type.rank == 0 or any(v.type.rank == 0 for v in op.inputs):
        raise NotRaised("a gate's pre-activation is computed from scalars", op)
    ops.append(op)
    width = value.type.shape[-1]
    if op.kind == "split" and _last_axis(op, op.attrs["axis"]):
        offset = sum(op.attrs["sizes"][:op.results.index(value)])
        _collect(op.operands[0], offset + start, offset + stop, terms, ops)
    elif op.kind == "slice" and _plain_last_axis_slice(op):
        offset = range(*slice(op.attrs["starts"][0], op.attrs["ends"][0]).indices(op.operands[0].type.shape[-1]))
        _collect(op.operands[0], offset.start + start, offset.start + stop, terms, ops)
    elif op.kind == "concat" and _last_axis(op, op.attrs["axis"]):
        low = 0
        for part in op.operands:
            high = low + part.type.shape[-1]
            if low <= start and stop <= high:
                _collect(part, start - low, stop - low, terms, ops)
                return
            low = high
        raise NotRaised("a gate's rows span two concatenated values")
    elif op.kind == "add":
        if any(v.type.shape[-1] != width for v in op.operands if constant_array(v) is None):
            raise NotRaised("an add broadcasts a value across the gates", op)
        for operand in op.operands:
            _collect(operand, start, stop, terms, ops)
    elif op.kind == "linear":
        terms.append(Term(op.operands[0], op.attrs["weight"], start, stop))
        if op.attrs["bias"] is not None:
            terms.append(Term(op.operands[0], bias=op.attrs["bias"][start:stop]))
    elif op.kind == "matmul" and _constant_matrix(op.operands[1]) is not None:
        terms.append(Term(op.operands[0], DenseMap(np.ascontiguousarray(_constant_matrix(op.operands[1]).T)),
                          start, stop))
    else:
        raise NotRaised(f"a gate's pre-activation has a '{op.kind}' op, not only sums of linear maps and "
                        "constants", op)


def _constant_matrix(value: Value) -> np.ndarray | None:
    """A 2-D constant seen through layout ops (dynamo writes ``x @ W.T`` as a MatMul by a Transpose of W)."""
    matrix = constant_array(value)
    return matrix if matrix is not None and matrix.ndim == 2 and matrix.dtype.kind == "f" else None


def _last_axis(op: Op, axis: int) -> bool:
    return axis % op.operands[0].type.rank == op.operands[0].type.rank - 1


def _plain_last_axis_slice(op: Op) -> bool:
    axes = op.attrs["axes"] or list(range(len(op.attrs["starts"])))
    return (len(axes) == 1 and _last_axis(op, axes[0]) and (op.attrs["steps"] or [1]) == [1]
            and isinstance(op.operands[0].type.shape[-1], int))


def _rows(constant: np.ndarray, start: int, stop: int) -> np.ndarray:
    """Rows ``[start, stop)`` of a constant added to the gates, as a vector: a scalar, a
    ``[W]`` vector, or a ``[.., W]`` array whose rows are all equal (an exporter's fold of
    ``R·0 + b`` for a static batch)."""
    flat = constant.reshape(-1, constant.shape[-1]) if constant.ndim else constant.reshape(1, 1)
    if not np.all(flat == flat[0]):
        raise NotRaised("a constant added to the gates differs from one batch row to the next")
    row = flat[0]
    return np.broadcast_to(row, (stop - start,)).copy() if row.size == 1 else row[start:stop]


def _gate(role: str, terms: list[Term], x_key: int) -> _Gate:
    maps = [t for t in terms if t.linear_map is not None]
    w = [t for t in maps if id(t.source) == x_key]
    r = [t for t in maps if id(t.source) != x_key]
    if len(w) != 1 or len(r) > 1:
        raise NotRaised(f"gate {role} sums {len(w)} maps of x_t and {len(r)} of h; an LSTM gate one of each")
    x_bias = vector_sum([t.bias for t in terms if t.bias is not None and (t.source is None or id(t.source) == x_key)])
    h_bias = vector_sum([t.bias for t in terms if t.bias is not None and t.source is not None and id(t.source) != x_key])
    return _Gate(w[0], r[0] if r else None, x_bias, h_bias)


def vector_sum(vectors: list[np.ndarray]) -> np.ndarray | None:
    total = None
    for vector in vectors:
        total = vector if total is None else total + vector
    return total


def _time_slice(value: Value, ops: list[Op]) -> tuple[Value, int, int] | None:
    """``(X, axis, t)`` if ``value`` is step ``t`` of the rank-3 sequence ``X`` along
    ``axis`` (0 or 1): ``gather`` of a scalar index, or a one-step ``slice``/``split``
    then ``squeeze``."""
    op = value.producer
    if op is None:
        return None
    if op.kind == "gather":
        index = constant_array(op.operands[1])
        if index is None or index.ndim != 0:
            return None
        return _step_of(op.operands[0], op.attrs["axis"], int(index), [op], ops)
    if op.kind != "squeeze" or len(op.attrs["axes"]) != 1 or op.operands[0].producer is None:
        return None
    inner = op.operands[0].producer
    axis = op.attrs["axes"][0]
    if inner.kind == "split" and set(inner.attrs["sizes"]) == {1} and inner.attrs["axis"] % 3 == axis % 3:
        return _step_of(inner.operands[0], axis, inner.results.index(op.operands[0]), [op, inner], ops)
    if inner.kind == "slice" and len(inner.attrs["starts"]) == 1 and (inner.attrs["steps"] or [1]) == [1]:
        start, end = inner.attrs["starts"][0], inner.attrs["ends"][0]
        if (inner.attrs["axes"] or [0])[0] % 3 == axis % 3 and 0 <= start and end == start + 1:
            return _step_of(inner.operands[0], axis, start, [op, inner], ops)
    return None


def _step_of(sequence: Value, axis: int, time: int, used: list[Op], ops: list[Op]):
    if sequence.type.rank != 3 or axis % 3 not in (0, 1):
        return None
    steps = sequence.type.shape[axis % 3]
    if time < 0:
        if not isinstance(steps, int):
            return None
        time += steps
    ops.extend(used)
    return sequence, axis % 3, time


@dataclass
class Layer:
    """What a cell says about the ``lstm`` op: maps in ONNX order, biases per gate."""

    w: list[LinearMap]
    r: list[LinearMap] | None
    x_bias: list[np.ndarray | None]
    h_bias: list[np.ndarray | None]

    def same_as(self, other: "Layer") -> bool:
        return (_same_maps(self.w, other.w) and _same_maps(self.r, other.r)
                and _same_biases(self.x_bias, other.x_bias) and _same_biases(self.h_bias, other.h_bias))


def _same_maps(a, b) -> bool:
    return (a is None) == (b is None) and (a is None or len(a) == len(b) and all(x == y for x, y in zip(a, b)))


def _same_biases(a, b) -> bool:
    return all((x is None) == (y is None) and (x is None or np.array_equal(x, y)) for x, y in zip(a, b))


def _stack(terms: list[Term], hidden: int, side: str) -> list[LinearMap]:
    """The maps of one side (terms in ONNX gate order) as ``lstm`` takes them: four
    per-gate maps, or one stacked map with its row blocks in ONNX order."""
    maps = [t.linear_map for t in terms]
    if all(m.out_dim == hidden and (t.start, t.stop) == (0, hidden) for m, t in zip(maps, terms)):
        return maps
    stacked = maps[0]
    pieces = [t.start // hidden for t in terms]
    one_map = all(m is stacked or m == stacked for m in maps)  # equal maps: one matmul cut by a split
    if one_map and stacked.out_dim == 4 * hidden and sorted(pieces) == [0, 1, 2, 3] and all(
            (t.start, t.stop) == (p * hidden, (p + 1) * hidden) for t, p in zip(terms, pieces)):
        return [stacked if pieces == [0, 1, 2, 3] else _reorder_gates(stacked, pieces, side)]
    raise NotRaised(f"the gates' {side} maps are neither one stacked 4H map nor one map per gate")


def _reorder_gates(linear_map: LinearMap, pieces: list[int], side: str) -> LinearMap:
    """``linear_map`` with its four row blocks in the order ``pieces``."""
    if isinstance(linear_map, DenseMap):
        blocks = np.split(linear_map.matrix, 4)
        return DenseMap(np.concatenate([blocks[p] for p in pieces]))
    if not isinstance(linear_map, TensorizedMap) or linear_map.format not in FIRST_MODE_TENSORS:
        raise NotRaised(f"the stacked {side} map of format {linear_map.format} cannot be reordered to i, o, f, c")
    leading = linear_map.out_factors[0]
    if linear_map.out_pad or leading % 4:
        raise NotRaised(f"the stacked {side} {linear_map.format} map has its gates in another order than "
                        f"i, o, f, c and its leading output factor {leading} is not a multiple of 4, so "
                        "the gate is not an index of one core")
    block = leading // 4
    index = np.concatenate([np.arange(p * block, (p + 1) * block) for p in pieces])
    suffix, axis = FIRST_MODE_TENSORS[linear_map.format]
    tensors = {name: np.take(t, index, axis=axis) if name.split(".")[-1] == suffix else t
               for name, t in linear_map.tensors().items()}
    meta = {key: value for key, value in linear_map.meta().items() if key != "schedule"}
    return type(linear_map).from_parts(meta, tensors)
