"""What the gates of a written-out recurrent cell are made of: each gate's
pre-activation as a sum of maps (the raised ``tt``/``bt``/``ht`` maps or dense layers)
applied to a time step ``x_t`` of a sequence or to the previous state ``h``, and
constants; which value is ``x_t``; and the maps and biases of the recurrent op they
imply, in ONNX gate order (``lstm_cells`` and ``gru_cells`` match the cells).
"""

from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np

from ...ir.core import Op, Value
from ...ir.linear_map import DenseMap, LinearMap
from ...ir.tensor_formats import TensorizedMap
from .notes import NotRaised
from .rewrite import constant_array

FIRST_MODE_TENSORS = {"tt": ("g0", 1), "bt": ("f0", 0), "ht": ("u0", 0)}
"""Per format: the tensor holding the leading output factor m_1 (a BT map's is in each
block, ``b{b}.f0``) and its m_1 axis."""


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
class Gate:
    """One gate's pre-activation: ``w`` applied to x_t, ``r`` to h (absent when an
    exporter folded ``R·0``), and the constants: ``x_bias`` (the input map's bias and
    free constants) and ``h_bias`` (the recurrent map's)."""

    w: Term
    r: Term | None
    x_bias: np.ndarray | None
    h_bias: np.ndarray | None


def operands_by(op: Op, pick) -> tuple[Value, Value]:
    """``op``'s two operands, the one ``pick`` accepts first."""
    if op.kind != "mul" or len(op.operands) != 2:
        raise NotRaised("the cell update has an op that is not a product of two values", op)
    a, b = op.operands
    if pick(a):
        return a, b
    if pick(b):
        return b, a
    raise NotRaised("a product in the cell update does not take the values an LSTM cell multiplies", op)


def is_sigmoid(value: Value) -> bool:
    return value.producer is not None and value.producer.kind == "sigmoid"


def has_unary(op: Op, *kinds: str) -> bool:
    return any(v.producer is not None and v.producer.kind in kinds for v in op.operands)


def expect(value: Value, kind: str, what: str, cell: str) -> None:
    """``NotRaised`` unless ``value`` is made by a ``kind`` op (as an ONNX ``cell`` makes it)."""
    if value.producer is None or value.producer.kind != kind:
        got = value.producer.kind if value.producer is not None else "an input"
        raise NotRaised(f"{what} goes through {got}, an ONNX {cell} applies {kind}")


def gate_terms(pre: Value, ops: list[Op]) -> list[Term]:
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


def gate(role: str, terms: list[Term], x_key: int, kind: str = "LSTM") -> Gate:
    """Gate ``role`` of a ``kind`` cell from its pre-activation's terms: the map of
    ``x_t`` (the source ``x_key``), the map of ``h`` (if any), and the constants on
    either side."""
    maps = [t for t in terms if t.linear_map is not None]
    w = [t for t in maps if id(t.source) == x_key]
    r = [t for t in maps if id(t.source) != x_key]
    if len(w) != 1 or len(r) > 1:
        raise NotRaised(f"gate {role} sums {len(w)} maps of x_t and {len(r)} of h; an {kind} gate one of each")
    biases = [t for t in terms if t.bias is not None]
    x_bias = vector_sum([t.bias for t in biases if t.source is None or id(t.source) == x_key])
    h_bias = vector_sum([t.bias for t in biases if t.source is not None and id(t.source) != x_key])
    return Gate(w[0], r[0] if r else None, x_bias, h_bias)


@dataclass
class CellInputs:
    """What a cell's gates read: step ``time`` along ``time_axis`` of ``sequence`` (the
    value ``x_key`` stands for) and the previous state ``h_prev`` (``None`` when no gate
    applies a map to one: an exporter folded ``R·0``)."""

    x_key: int
    h_prev: Value | None
    sequence: Value
    time_axis: int | None
    time: int


def cell_inputs(pieces: dict[str, list[Term]], ops: list[Op], kind: str, state: Value) -> CellInputs:
    """The inputs of a ``kind`` cell whose gates have the terms ``pieces`` and whose state
    comes in as ``state`` (an LSTM's ``c``, a GRU's ``h``): at most one source is a time
    step of a sequence (a value read from the tensor ``state`` comes from is a state, not
    a time step), at most one other is the previous ``h``.  A cell applied once (no time
    step) reads the other value as ``x``, with ``time_axis`` ``None``."""
    sources = {id(t.source): t.source for terms in pieces.values() for t in terms if t.source is not None}
    origin = _stored_in(state)
    slices = {key: None if _stored_in(v) is origin else time_slice(v, ops) for key, v in sources.items()}
    inputs = [key for key, found in slices.items() if found is not None]
    if len(inputs) > 1:
        raise NotRaised(f"the gates apply maps to {len(inputs)} time steps of a sequence, an {kind} cell to one")
    x_key = inputs[0] if inputs else _single_step_input(sources, state, pieces)
    h_keys = [key for key in sources if key != x_key]
    if len(h_keys) > 1:
        raise NotRaised(f"the gates apply maps to {len(sources)} values; an {kind} cell to x_t and h")
    sequence, axis, time = slices[x_key] or (sources[x_key], None, 0)
    return CellInputs(x_key, sources[h_keys[0]] if h_keys else None, sequence, axis, time)


def _single_step_input(sources: dict[int, Value], state: Value, pieces: dict[str, list[Term]]) -> int:
    """The key of x in a cell applied once (no source is a time step of a sequence): of
    the two values the gates map, h is the one read from the tensor ``state`` comes from
    (``state[0]``, ``state[1]``), else the only one its map takes at the state's width."""
    if len(sources) != 2 or any(v.type.rank != 2 for v in sources.values()):
        raise NotRaised("the gates read no time step of a sequence, and not one [batch, features] input and "
                        "one hidden state")
    keys = list(sources)
    origin = _stored_in(state)
    from_state = [k for k in keys if origin is not None and _stored_in(sources[k]) is origin]
    if len(from_state) == 1:
        return next(k for k in keys if k != from_state[0])
    hidden = state.type.shape[-1]
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


def vector_sum(vectors: list[np.ndarray]) -> np.ndarray | None:
    total = None
    for vector in vectors:
        total = vector if total is None else total + vector
    return total


def time_slice(value: Value, ops: list[Op]) -> tuple[Value, int, int] | None:
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
    """What a cell says about its recurrent op: maps in ONNX order, biases per gate, and
    the op kind's own attributes (a GRU's ``linear_before_reset``)."""

    w: list[LinearMap]
    r: list[LinearMap] | None
    x_bias: list[np.ndarray | None]
    h_bias: list[np.ndarray | None]
    attrs: dict = field(default_factory=dict)

    def same_as(self, other: "Layer") -> bool:
        return (_same_maps(self.w, other.w) and _same_maps(self.r, other.r) and self.attrs == other.attrs
                and _same_biases(self.x_bias, other.x_bias) and _same_biases(self.h_bias, other.h_bias))


def _same_maps(a, b) -> bool:
    return (a is None) == (b is None) and (a is None or len(a) == len(b) and all(x == y for x, y in zip(a, b)))


def _same_biases(a, b) -> bool:
    return all((x is None) == (y is None) and (x is None or np.array_equal(x, y)) for x, y in zip(a, b))


def stack_gates(terms: list[Term], hidden: int, side: str, onnx_order: str = "i, o, f, c") -> list[LinearMap]:
    """The maps of one side (terms in ONNX gate order) as the recurrent op takes them:
    one map per gate, one stacked map with its row blocks in ONNX order, or (dense maps
    whose rows the gates take in another grouping) one dense map per gate."""
    maps = [t.linear_map for t in terms]
    count = len(terms)
    if all(m.out_dim == hidden and (t.start, t.stop) == (0, hidden) for m, t in zip(maps, terms)):
        return maps
    stacked = maps[0]
    pieces = [t.start // hidden for t in terms]
    one_map = all(m is stacked or m == stacked for m in maps)  # equal maps: one matmul cut by a split
    if one_map and stacked.out_dim == count * hidden and sorted(pieces) == list(range(count)) \
            and all((t.start, t.stop) == (p * hidden, (p + 1) * hidden) for t, p in zip(terms, pieces)):
        return [stacked if pieces == list(range(count)) else _reorder_gates(stacked, pieces, side, onnx_order)]
    if all(isinstance(m, DenseMap) and t.stop - t.start == hidden for m, t in zip(maps, terms)):
        return [DenseMap(np.ascontiguousarray(m.matrix[t.start:t.stop])) for m, t in zip(maps, terms)]
    raise NotRaised(f"the gates' {side} maps are neither one stacked {count}H map nor one map per gate")


def _reorder_gates(linear_map: LinearMap, pieces: list[int], side: str, onnx_order: str) -> LinearMap:
    """``linear_map`` with its row blocks (one per gate) in the order ``pieces``."""
    count = len(pieces)
    if isinstance(linear_map, DenseMap):
        blocks = np.split(linear_map.matrix, count)
        return DenseMap(np.concatenate([blocks[p] for p in pieces]))
    if not isinstance(linear_map, TensorizedMap) or linear_map.format not in FIRST_MODE_TENSORS:
        raise NotRaised(f"the stacked {side} map of format {linear_map.format} cannot be reordered to {onnx_order}")
    leading = linear_map.out_factors[0]
    if linear_map.out_pad or leading % count:
        raise NotRaised(f"the stacked {side} {linear_map.format} map has its gates in another order than "
                        f"{onnx_order} and its leading output factor {leading} is not a multiple of {count}, so "
                        "the gate is not an index of one core")
    block = leading // count
    index = np.concatenate([np.arange(p * block, (p + 1) * block) for p in pieces])
    suffix, axis = FIRST_MODE_TENSORS[linear_map.format]
    tensors = {name: np.take(t, index, axis=axis) if name.split(".")[-1] == suffix else t
               for name, t in linear_map.tensors().items()}
    meta = {key: value for key, value in linear_map.meta().items() if key != "schedule"}
    return type(linear_map).from_parts(meta, tensors)
