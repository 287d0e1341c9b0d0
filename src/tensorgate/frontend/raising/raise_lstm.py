"""Raise an LSTM cell written out step by step, unrolled over time, to one ``lstm`` op.

PyTorch exports a Python loop over time steps as one copy of the cell per step.  A
cell is recognized by its data flow, not by names or gate order::

    pre = W x_t + R h + b          (sums of maps and constants, split into four gates,
                                    or four separate sums)
    c'  = sigmoid(pre_f) * c + sigmoid(pre_i) * tanh(pre_g)
    h'  = sigmoid(pre_o) * tanh(c')

``x_t`` must be a time step of a rank-3 sequence ``X`` (``X[t]``, ``X[:, t]``, a slice
or split of one step), ``W`` and ``R`` linear maps (the raised ``tt``/``bt``/``ht`` maps or
dense layers), and the cells a chain: each takes the previous one's ``h'`` and ``c'``,
at time steps ``0..T-1`` (a forward LSTM) or ``T-1..0`` (a reverse one), all with the
same maps and biases (compared exactly).  The first cell's ``h``/``c`` are zeros
(``initial_h``/``initial_c`` left out) or values of shape ``[B, H]`` (passed as the initial
states).  An exporter that folded the first step's ``R·0 + b`` into a constant is
understood too.

The chain becomes ``lstm(X)`` (``X`` transposed to time-major and cut to ``T`` steps
where needed), semantically the ONNX LSTM: the gates in ONNX order ``i, o, f, c``,
every bias folded into ``bias = [Wb, Rb]`` (``Wb`` from the input side and free
constants, ``Rb`` from the recurrent map).  How the model's gate order is reordered:

* four separate maps per side (one per gate): the list is reordered, cores untouched;
* one stacked ``4H`` map whose gates are already ``i, o, f, c``: kept as it is;
* one stacked map in another order (PyTorch's ``i, f, g, o``): a dense matrix has its
  row blocks permuted; a decomposed map must hold the gate in its leading output
  factor (``m_1`` a multiple of 4), and the slices of the one tensor holding ``m_1``
  (TT core 0, each BT block's factor 0, HT leaf 0) are permuted along ``m_1`` — values
  moved, none changed; every other tensor is the model's own.

The per-step hidden states the graph uses become slices of ``Y`` (a ``torch.stack`` of
all of them becomes ``Y`` itself), the last ``h``/``c`` ``Y_h``/``Y_c``.  Whatever does
not fit stays as generic ops, with a note.
"""

from __future__ import annotations

from collections import defaultdict
from dataclasses import dataclass, field

import numpy as np

from ...errors import VerifyError
from ...ir.core import Module, Op, Value
from ...ir.linear_map import DenseMap, LinearMap
from ...ir.ops import OP_SPECS, const_values
from ...ir.tensor_formats import TensorizedMap
from .notes import Notes, NotRaised, place_of
from .rewrite import constant_array, remove_dead, topological_order

ONNX_GATES = ("i", "o", "f", "g")  # ONNX calls the candidate gate "c"
SIGMOID_GATES = ("i", "f", "o")
FIRST_MODE_TENSORS = {"tt": ("g0", 1), "bt": ("f0", 0), "ht": ("u0", 0)}
"""Per format: the tensor holding the leading output factor m_1 (a BT map's is in each
block, ``b{b}.f0``) and its m_1 axis."""


def raise_lstms(module: Module, notes: Notes) -> None:
    """Rewrite ``module`` in place; adds to ``notes`` the cells left as they were."""
    cells = []
    for op in list(module.ops):
        anchor = _cell_anchor(op)
        if anchor is None:
            continue
        try:
            cells.append(_Cell.match(*anchor))
        except NotRaised as exc:
            notes.add("LSTM cell", place_of([exc.where or op]), str(exc))
    for chain in _chains(cells, notes):
        try:
            _raise_chain(module, chain)
        except NotRaised as exc:
            notes.add("LSTM", place_of([exc.where or chain[0].h_new.producer]), str(exc))


def _cell_anchor(op: Op) -> tuple[Value, Value] | None:
    """``(h', c')`` if ``op`` is ``h' = a * act(c')`` with ``c'`` an add of two products:
    the shape of every LSTM-like cell, checked strictly by ``_Cell.match``."""
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


# --- one cell --------------------------------------------------------------------------


@dataclass
class _Term:
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

    w: _Term
    r: _Term | None
    x_bias: np.ndarray | None
    h_bias: np.ndarray | None


@dataclass
class _Cell:
    """One time step: its states in and out, the input step it reads (``time`` along
    ``time_axis`` of ``sequence``), its gates and every op it was read from."""

    h_new: Value
    c_new: Value
    h_prev: Value | None
    c_prev: Value
    sequence: Value
    time_axis: int
    time: int
    gates: dict[str, _Gate]
    ops: list[Op] = field(default_factory=list)

    @classmethod
    def match(cls, h_new: Value, c_new: Value) -> "_Cell":
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
    def _from_terms(cls, h_new, c_new, c_prev, pieces: dict[str, list[_Term]], ops) -> "_Cell":
        sources = {id(t.source): t.source for terms in pieces.values() for t in terms if t.source is not None}
        slices = {key: _time_slice(v, ops) for key, v in sources.items()}
        inputs = [key for key, found in slices.items() if found is not None]
        if len(inputs) != 1:
            raise NotRaised(f"the gates apply maps to {len(inputs)} time steps of a sequence, an LSTM cell to one")
        x_key = inputs[0]
        h_keys = [key for key in sources if key != x_key]
        if len(h_keys) > 1:
            raise NotRaised(f"the gates apply maps to {len(sources)} values; an LSTM cell to x_t and h")
        gates = {role: _gate(role, terms, x_key) for role, terms in pieces.items()}
        sequence, axis, time = slices[x_key]
        h_prev = sources[h_keys[0]] if h_keys else None
        return cls(h_new, c_new, h_prev, c_prev, sequence, axis, time, gates, ops)

    def layer(self, hidden: int) -> "_Layer":
        """The ``lstm`` attributes this cell implies (maps in ONNX gate order)."""
        w = _stack([self.gates[g].w for g in ONNX_GATES], hidden, "W")
        r_terms = [self.gates[g].r for g in ONNX_GATES]
        if any(t is None for t in r_terms) and not all(t is None for t in r_terms):
            raise NotRaised("some gates have a recurrent map and some do not")
        r = None if r_terms[0] is None else _stack(r_terms, hidden, "R")
        return _Layer(w, r, [self.gates[g].x_bias for g in ONNX_GATES], [self.gates[g].h_bias for g in ONNX_GATES])


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


def _gate_terms(pre: Value, ops: list[Op]) -> list[_Term]:
    """The summands of one gate's pre-activation."""
    rows = pre.type.shape[-1] if pre.type.rank else None
    if not isinstance(rows, int) or pre.type.rank != 2:
        raise NotRaised("a gate's pre-activation is not a [batch, width] value of static width")
    terms: list[_Term] = []
    _collect(pre, 0, rows, terms, ops)
    return terms


def _collect(value: Value, start: int, stop: int, terms: list[_Term], ops: list[Op]) -> None:
    """Append the summands of rows ``[start, stop)`` of ``value`` (its last axis)."""
    constant = constant_array(value)
    if constant is not None:
        terms.append(_Term(None, bias=_rows(constant, start, stop)))
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
        terms.append(_Term(op.operands[0], op.attrs["weight"], start, stop))
        if op.attrs["bias"] is not None:
            terms.append(_Term(op.operands[0], bias=op.attrs["bias"][start:stop]))
    else:
        raise NotRaised(f"a gate's pre-activation has a '{op.kind}' op, not only sums of linear maps and "
                        "constants", op)


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


def _gate(role: str, terms: list[_Term], x_key: int) -> _Gate:
    maps = [t for t in terms if t.linear_map is not None]
    w = [t for t in maps if id(t.source) == x_key]
    r = [t for t in maps if id(t.source) != x_key]
    if len(w) != 1 or len(r) > 1:
        raise NotRaised(f"gate {role} sums {len(w)} maps of x_t and {len(r)} of h; an LSTM gate one of each")
    x_bias = _sum([t.bias for t in terms if t.bias is not None and (t.source is None or id(t.source) == x_key)])
    h_bias = _sum([t.bias for t in terms if t.bias is not None and t.source is not None and id(t.source) != x_key])
    return _Gate(w[0], r[0] if r else None, x_bias, h_bias)


def _sum(vectors: list[np.ndarray]) -> np.ndarray | None:
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


# --- from cells to a layer ---------------------------------------------------------------


@dataclass
class _Layer:
    """What a cell says about the ``lstm`` op: maps in ONNX order, biases per gate."""

    w: list[LinearMap]
    r: list[LinearMap] | None
    x_bias: list[np.ndarray | None]
    h_bias: list[np.ndarray | None]

    def same_as(self, other: "_Layer") -> bool:
        return (_same_maps(self.w, other.w) and _same_maps(self.r, other.r)
                and _same_biases(self.x_bias, other.x_bias) and _same_biases(self.h_bias, other.h_bias))


def _same_maps(a, b) -> bool:
    return (a is None) == (b is None) and (a is None or len(a) == len(b) and all(x == y for x, y in zip(a, b)))


def _same_biases(a, b) -> bool:
    return all((x is None) == (y is None) and (x is None or np.array_equal(x, y)) for x, y in zip(a, b))


def _stack(terms: list[_Term], hidden: int, side: str) -> list[LinearMap]:
    """The maps of one side (terms in ONNX gate order) as ``lstm`` takes them: four
    per-gate maps, or one stacked map with its row blocks in ONNX order."""
    maps = [t.linear_map for t in terms]
    if all(m.out_dim == hidden and (t.start, t.stop) == (0, hidden) for m, t in zip(maps, terms)):
        return maps
    stacked = maps[0]
    pieces = [t.start // hidden for t in terms]
    if all(m is stacked for m in maps) and stacked.out_dim == 4 * hidden and sorted(pieces) == [0, 1, 2, 3] and all(
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


# --- chains ----------------------------------------------------------------------------


def _chains(cells: list[_Cell], notes: Notes) -> list[list[_Cell]]:
    """Cells linked by their states into sequences, first step first."""
    by_c = {id(cell.c_new): cell for cell in cells}
    followers = defaultdict(list)
    for cell in cells:
        if id(cell.c_prev) in by_c:
            followers[id(by_c[id(cell.c_prev)])].append(cell)
    chains = []
    for cell in cells:
        if id(cell.c_prev) in by_c:
            continue
        chain = [cell]
        while len(followers[id(chain[-1])]) == 1:
            chain.append(followers[id(chain[-1])][0])
        if followers[id(chain[-1])]:
            notes.add("LSTM", place_of([chain[-1].h_new.producer]), "a cell state feeds several next steps")
            continue
        chains.append(chain)
    return chains


def _raise_chain(module: Module, chain: list[_Cell]) -> None:
    first = chain[0]
    hidden = first.c_new.type.shape[-1]
    if not isinstance(hidden, int):
        raise NotRaised("the cell state has no static width")
    for prev, cell in zip(chain, chain[1:]):
        if cell.h_prev is not prev.h_new:
            raise NotRaised("a step's hidden state does not come from the previous step")
        if (cell.sequence, cell.time_axis) != (first.sequence, first.time_axis):
            raise NotRaised("the steps read different input sequences")
    times = [cell.time for cell in chain]
    steps = len(chain)
    if times not in (list(range(steps)), list(range(steps))[::-1]):
        raise NotRaised(f"the steps read time indices {times}, not 0..{steps - 1} in order or reversed")
    layers = [cell.layer(hidden) for cell in chain]
    layer = layers[-1]
    if layer.r is None:
        raise NotRaised("the last step has no recurrent map")
    for k, other in enumerate(layers):
        if k == 0 and other.r is None:
            other = _folded_first_step(other, layer)
        if not other.same_as(layer):
            raise NotRaised(f"step {k} uses other maps or biases than the last step")
    _Rewriter(module, chain, layer, hidden, reverse=times[0] != 0).run()


def _folded_first_step(first: _Layer, later: _Layer) -> _Layer:
    """The first step as the later ones see it, when an exporter folded its recurrent
    term ``R·0 + Rb`` (zero initial state, static batch) into a constant: its constants
    must then equal the later steps' ``Wb + Rb`` exactly."""
    totals = [_sum([x for x in pair if x is not None]) for pair in zip(later.x_bias, later.h_bias)]
    if not all(_equal_or_zero(a, b) for a, b in zip(first.x_bias, totals)):
        raise NotRaised("the first step has no recurrent map and its constants are not the later steps' biases")
    return _Layer(first.w, later.r, later.x_bias, later.h_bias)


def _equal_or_zero(a: np.ndarray | None, b: np.ndarray | None) -> bool:
    """Equal biases, an absent one counting as zeros."""
    if a is None or b is None:
        present = b if a is None else a
        return present is None or not np.any(present)
    return np.array_equal(a, b)


def _is_zero(value: Value | None) -> bool:
    """Zeros: a constant, or an ``expand`` of a constant, that is all 0."""
    if value is None:
        return True
    constant = constant_array(value)
    if constant is None and value.producer is not None and value.producer.kind == "expand":
        constant = constant_array(value.producer.operands[0])
    return constant is not None and not np.any(constant)


class _Rewriter:
    """Builds the ``lstm`` op for a chain and gives the chain's outputs to its users."""

    def __init__(self, module: Module, chain: list[_Cell], layer: _Layer, hidden: int, reverse: bool):
        self.module = module
        self.chain = chain
        self.layer = layer
        self.hidden = hidden
        self.reverse = reverse
        self.new_ops: list[Op] = []
        self.loc = chain[0].h_new.producer.loc
        self.taken = {v.name for v in module.values()}
        self.inside = {id(op) for cell in chain for op in cell.ops}

    def run(self) -> None:
        first, last = self.chain[0], self.chain[-1]
        outside = {id(cell.h_new): self._outside_users(cell.h_new) for cell in self.chain}
        for cell in self.chain[:-1]:
            if self._outside_users(cell.c_new):
                raise NotRaised("the cell state of a step before the last is used outside the recurrence")
        h0 = None if first.h_prev is None or _is_zero(first.h_prev) else first.h_prev
        c0 = None if _is_zero(first.c_prev) else first.c_prev
        for state in (h0, c0):
            if state is not None and (state.type.rank != 2 or state.type.shape[-1] != self.hidden):
                raise NotRaised(f"the initial state %{state.name} has type {state.type}, expected [batch, {self.hidden}]")
        y, y_h, y_c = self._lstm(h0, c0)
        old = [cell.h_new.producer for cell in self.chain] + [cell.c_new.producer for cell in self.chain]
        self._stack_outputs(y, outside, old)
        if self._outside_users(last.c_new):
            self._emit("squeeze", [y_c], {"axes": [0]}, last.c_new)
        if outside[id(last.h_new)]:
            self._emit("squeeze", [y_h], {"axes": [0]}, last.h_new)
        for cell in self.chain[:-1]:
            if outside[id(cell.h_new)]:
                step = self._emit("slice", [y], {"starts": [cell.time], "ends": [cell.time + 1], "axes": [0]})
                self._emit("squeeze", [step], {"axes": [0, 1]}, cell.h_new)
        self._install(old)

    def _outside_users(self, value: Value) -> list[Op]:
        users = [op for op in self.module.users(value) if id(op) not in self.inside]
        return users + [None] * sum(v is value for v in self.module.outputs)

    def _lstm(self, h0: Value | None, c0: Value | None) -> list[Value]:
        first = self.chain[0]
        x = first.sequence
        if first.time_axis == 1:
            x = self._emit("transpose", [x], {"perm": [1, 0, 2]})
        if x.type.shape[0] != len(self.chain):
            x = self._emit("slice", [x], {"starts": [0], "ends": [len(self.chain)], "axes": [0]})
        states = [None if s is None else self._emit("unsqueeze", [s], {"axes": [0]}) for s in (h0, c0)]
        layer = self.layer
        attrs = {"hidden_size": self.hidden, "direction": "reverse" if self.reverse else "forward",
                 "w": layer.w, "r": layer.r, "bias": self._bias()}
        return self._op("lstm", [x, None, *states], attrs, [None] * 3, roles=["Y", "Y_h", "Y_c"]).results

    def _bias(self) -> np.ndarray | None:
        layer = self.layer
        parts = layer.x_bias + layer.h_bias
        if all(p is None for p in parts):
            return None
        dtype = layer.w[0].dtype
        return np.concatenate([np.zeros(self.hidden, dtype) if p is None else p.astype(dtype) for p in parts])[None]

    def _stack_outputs(self, y: Value, outside: dict[int, list[Op | None]], old: list[Op]) -> None:
        """Give ``concat(unsqueeze(h_t, a) for t in time order, axis=a)`` (``torch.stack``)
        the value ``Y`` itself (time axis moved to ``a``)."""
        for user in outside[id(self.chain[0].h_new)]:
            if user is None or user.kind != "unsqueeze" or len(user.attrs["axes"]) != 1:
                continue
            axis = user.attrs["axes"][0] % 3
            concats = self.module.users(user.results[0])
            if len(concats) != 1 or not self._stacks_steps(concats[0], axis):
                continue
            concat = concats[0]
            stacked = self._emit("squeeze", [y], {"axes": [1]}, None if axis else concat.results[0])
            if axis:
                self._emit("transpose", [stacked], {"perm": [[1, 0, 2], [1, 2, 0]][axis - 1]}, concat.results[0])
            old.append(concat)
            steps = {id(v.producer) for v in concat.operands}
            for cell in self.chain:
                outside[id(cell.h_new)] = [u for u in outside[id(cell.h_new)] if u is None or id(u) not in steps]
            return

    def _stacks_steps(self, concat: Op, axis: int) -> bool:
        """``concat`` joins ``unsqueeze(h_t, axis)`` of every step in time order along ``axis``."""
        if concat.kind != "concat" or concat.attrs["axis"] % 3 != axis or len(concat.operands) != len(self.chain):
            return False
        for value, cell in zip(concat.operands, sorted(self.chain, key=lambda c: c.time)):
            step = value.producer
            if (step is None or step.kind != "unsqueeze" or [a % 3 for a in step.attrs["axes"]] != [axis]
                    or step.operands[0] is not cell.h_new or len(self.module.users(value)) != 1
                    or value in self.module.outputs):
                return False
        return True

    def _emit(self, kind: str, operands: list, attrs: dict, result: Value | None = None) -> Value:
        return self._op(kind, operands, attrs, [result]).results[0]

    def _op(self, kind: str, operands: list, attrs: dict, results: list[Value | None],
            roles: list[str] | None = None) -> Op:
        """A new op, placed by ``_install``: a result given in ``results`` is taken over
        there (its name and type kept), a ``None`` one is created as ``<loc>:<role>``.
        Nothing in the module changes before ``_install``."""
        spec = OP_SPECS[kind]
        op = Op(kind, operands, [], {**spec.attrs, **attrs}, self.loc)
        consts = const_values(v.producer for v in op.inputs if v.producer is not None)
        try:
            types = spec.infer(op, consts)
        except VerifyError as exc:
            raise NotRaised(f"the {kind} op that would replace the cells does not fit: {exc}") from None
        values = []
        for index, (value, inferred) in enumerate(zip(results, types)):
            if value is None:
                value = Value(self._name(f"{self.loc}:{roles[index] if roles else kind}"), inferred, op)
            values.append(value)
        op.results = values
        self.new_ops.append(op)
        return op

    def _name(self, hint: str) -> str:
        name, counter = hint, 0
        while name in self.taken:
            counter += 1
            name = f"{hint}_{counter}"
        self.taken.add(name)
        return name

    def _install(self, old: list[Op]) -> None:
        """Put the new ops in, drop the ``old`` ops whose results they took over, remove
        what the old cells leave unused, and restore a valid order."""
        for op in self.new_ops:
            for value in op.results:
                value.producer = op
        taken_over = {id(op) for op in old if any(r.producer is not op for r in op.results)}
        self.module.ops = [op for op in self.module.ops if id(op) not in taken_over] + self.new_ops
        producers = [v.producer for op in old for v in op.inputs if v.producer is not None]
        remove_dead(self.module, [op for cell in self.chain for op in cell.ops] + producers)
        topological_order(self.module)
