"""Raise a recurrent cell (LSTM, GRU or RNN) written out step by step, unrolled over time,
to one ``lstm``, ``gru`` or ``rnn`` op.

PyTorch exports a Python loop over time steps as one copy of the cell per step.  A
cell is recognized by its data flow, not by names or gate order::

    LSTM:  pre = W x_t + R h + b          (sums of maps and constants, split into four
                                          gates, or four separate sums)
           c'  = sigmoid(pre_f) * c + sigmoid(pre_i) * tanh(pre_g)
           h'  = sigmoid(pre_o) * tanh(c')

    GRU:   z = sigmoid(W_z x_t + R_z h + b_z)      r = sigmoid(W_r x_t + R_r h + b_r)
           n = tanh(W_h x_t + r * (R_h h + b_hn) + b_in)      (linear_before_reset = 1)
           n = tanh(W_h x_t + R_h (r * h) + b_h)              (linear_before_reset = 0)
           h' = (1 - z) * n + z * h        or      h' = n + z * (h - n)

    RNN:   h' = f(W x_t + R h + b)          f one of tanh, relu, sigmoid; at least two
                                          steps, or one streamed step (below)

``x_t`` must be a time step of a rank-3 sequence ``X`` (``X[t]``, ``X[:, t]``, a slice
or split of one step), ``W`` and ``R`` linear maps (the raised ``tt``/``bt``/``ht`` maps or
dense layers), and the cells a chain: each takes the previous one's states (``h'``, and
``c'`` for an LSTM), at time steps ``0..T-1`` (a forward op) or ``T-1..0`` (a reverse
one), all with the same maps and biases (compared exactly).  The first cell's states
are zeros (the initial-state operands left out) or values of shape ``[B, H]`` (passed
as the initial states).  A single RNN step looks like any layer of two inputs and is
raised only where it is streamed: ``h`` is a module input and ``h'`` a module output of
the same width ``[B, H]`` (a model that takes its state in and hands it out each call),
``x`` a time step or any other ``[B, I]`` value; a single step from zeros or a constant
state stays generic ops, without a note.  An exporter that folded an LSTM's or RNN's first step
``R·0 + b`` into a constant is understood too; a GRU's first step folded that way (a
static batch with a zero initial state) is not, and its chain stays generic ops, with a
note.

The chain becomes ``lstm(X)``, ``gru(X)`` or ``rnn(X)`` (``X`` transposed to time-major and cut to
``T`` steps where needed), semantically the ONNX op: the gates in ONNX order (LSTM
``i, o, f, c``, GRU ``z, r, h``), every bias folded into ``bias = [Wb, Rb]`` (``Wb`` from
the input side and free constants, ``Rb`` from the recurrent map, and for the GRU's
candidate with linear_before_reset the constants inside the reset product).  How the
model's gate order is reordered:

* one map per gate per side: the list is reordered, cores untouched;
* one stacked map whose gates are already in ONNX order: kept as it is;
* one stacked map in another order (PyTorch's LSTM ``i, f, g, o``, GRU ``r, z, n``): a
  dense matrix has its row blocks permuted; a decomposed map must hold the gate in its
  leading output factor (``m_1`` a multiple of the gate count), and the slices of the
  one tensor holding ``m_1`` (TT core 0, each BT block's factor 0, HT leaf 0) are
  permuted along ``m_1`` — values moved, none changed; every other tensor is the
  model's own;
* dense maps whose rows the gates take in another grouping (a GRU's ``z, r`` from one
  layer and ``h`` from another): one dense map per gate, its rows.

The per-step hidden states the graph uses become slices of ``Y`` (a ``torch.stack`` of
all of them becomes ``Y`` itself), the last states ``Y_h``/``Y_c``.  Whatever does not
fit stays as generic ops, with a note.
"""

from __future__ import annotations

from collections import defaultdict

import numpy as np

from ...errors import VerifyError
from ...ir.core import Module, Op, Value
from ...ir.ops import OP_SPECS, const_values
from .gate_terms import Layer, vector_sum
from .gru_cells import GRUCell, gru_anchor
from .lstm_cells import Cell, cell_anchor
from .notes import Notes, NotRaised, place_of
from .rewrite import constant_array, remove_dead, topological_order
from .rnn_cells import RNNCell, is_streamed, rnn_anchor, streamed_anchor

CELL_NAMES = {"lstm": "LSTM", "gru": "GRU", "rnn": "RNN"}


def raise_recurrent(module: Module, notes: Notes) -> None:
    """Rewrite ``module`` in place; adds to ``notes`` the cells left as they were."""
    cells = []
    for op in list(module.ops):
        for kind, anchor, match in (("lstm", cell_anchor(op), Cell.match), ("gru", gru_anchor(op), GRUCell.match)):
            if anchor is None:
                continue
            try:
                cells.append(match(*anchor))
            except NotRaised as exc:
                notes.add(f"{CELL_NAMES[kind]} cell", place_of([exc.where or op]), str(exc))
    cells += _rnn_cells(module, {id(op) for cell in cells for op in cell.ops}, notes)
    for chain in _chains(cells, notes):
        if chain[0].kind == "rnn" and len(chain) < 2 and not is_streamed(chain[0].h_prev, chain[0].h_new, module):
            continue
        try:
            _raise_chain(module, chain)
        except NotRaised as exc:
            notes.add(CELL_NAMES[chain[0].kind], place_of([exc.where or chain[0].h_new.producer]), str(exc))


def _rnn_cells(module: Module, claimed: set[int], notes: Notes) -> list[RNNCell]:
    """The RNN steps among the ops no LSTM or GRU cell holds (their gates look alike)."""
    cells = []
    for op in module.ops:
        anchor = None if id(op) in claimed else rnn_anchor(op) or streamed_anchor(op, module)
        if anchor is not None:
            try:
                cells.append(RNNCell.match(*anchor))
            except NotRaised as exc:
                notes.add("RNN cell", place_of([exc.where or op]), str(exc))
    return cells


# --- chains ----------------------------------------------------------------------------


def _chains(cells: list, notes: Notes) -> list[list]:
    """Cells linked by their states into sequences, first step first (linked by the
    cell state ``c`` of an LSTM, whose first ``h`` may be folded away, ``h`` of a GRU)."""
    by_state = {id(cell.states_new[-1]): cell for cell in cells}
    followers = defaultdict(list)
    for cell in cells:
        if id(cell.states_prev[-1]) in by_state:
            followers[id(by_state[id(cell.states_prev[-1])])].append(cell)
    chains = []
    for cell in cells:
        if id(cell.states_prev[-1]) in by_state:
            continue
        chain = [cell]
        while len(followers[id(chain[-1])]) == 1:
            chain.append(followers[id(chain[-1])][0])
        if followers[id(chain[-1])]:
            notes.add(CELL_NAMES[cell.kind], place_of([chain[-1].h_new.producer]),
                      "a cell state feeds several next steps")
            continue
        chains.append(chain)
    return chains


def _raise_chain(module: Module, chain: list) -> None:
    first = chain[0]
    hidden = first.states_new[-1].type.shape[-1]
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
        if k == 0 and other.r is None and first.kind in ("lstm", "rnn"):
            other = _folded_first_step(other, layer)
        if not other.same_as(layer):
            raise NotRaised(f"step {k} uses other maps or biases than the last step")
    _Rewriter(module, chain, layer, hidden, reverse=times[0] != 0).run()


def _folded_first_step(first: Layer, later: Layer) -> Layer:
    """The first step as the later ones see it, when an exporter folded its recurrent
    term ``R·0 + Rb`` (zero initial state, static batch) into a constant: its constants
    must then equal the later steps' ``Wb + Rb`` exactly."""
    totals = [vector_sum([x for x in pair if x is not None]) for pair in zip(later.x_bias, later.h_bias)]
    if not all(_equal_or_zero(a, b) for a, b in zip(first.x_bias, totals)):
        raise NotRaised("the first step has no recurrent map and its constants are not the later steps' biases")
    return Layer(first.w, later.r, later.x_bias, later.h_bias, first.attrs)


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
    """Builds the ``lstm``, ``gru`` or ``rnn`` op for a chain and gives the chain's outputs to its users."""

    def __init__(self, module: Module, chain: list, layer: Layer, hidden: int, reverse: bool):
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
            if any(self._outside_users(state) for state in cell.states_new[1:]):
                raise NotRaised("the cell state of a step before the last is used outside the recurrence")
        initial = [None if state is None or _is_zero(state) else state for state in first.states_prev]
        for state in initial:
            if state is not None and (state.type.rank != 2 or state.type.shape[-1] != self.hidden):
                raise NotRaised(f"the initial state %{state.name} has type {state.type}, expected [batch, {self.hidden}]")
        y, y_h, *finals = self._recurrent(initial)
        old = [state.producer for cell in self.chain for state in cell.states_new]
        self._stack_outputs(y, outside, old)
        for state, final in zip(last.states_new[1:], finals):
            if self._outside_users(state):
                self._emit("squeeze", [final], {"axes": [0]}, state)
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

    def _recurrent(self, initial: list[Value | None]) -> list[Value]:
        """The ``lstm``, ``gru`` or ``rnn`` op over the chain's sequence; its results."""
        first = self.chain[0]
        x = first.sequence
        if first.time_axis is None:
            x = self._emit("unsqueeze", [x], {"axes": [0]})
        elif first.time_axis == 1:
            x = self._emit("transpose", [x], {"perm": [1, 0, 2]})
        if x.type.shape[0] != len(self.chain):
            x = self._emit("slice", [x], {"starts": [0], "ends": [len(self.chain)], "axes": [0]})
        states = [None if s is None else self._emit("unsqueeze", [s], {"axes": [0]}) for s in initial]
        layer = self.layer
        attrs = {"hidden_size": self.hidden, "direction": "reverse" if self.reverse else "forward",
                 "w": layer.w, "r": layer.r, "bias": self._bias(), **layer.attrs}
        roles = ["Y", "Y_h", "Y_c"][:len(initial) + 1]
        return self._op(first.kind, [x, None, *states], attrs, [None] * len(roles), roles=roles).results

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
