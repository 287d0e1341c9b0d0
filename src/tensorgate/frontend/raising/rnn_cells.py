"""One written-out RNN cell, recognized by its data flow: an activation of one sum of a
map of a time step, a map of the previous state and constants (``gate_terms``; the
pattern is in ``raise_recurrent``'s docstring)."""

from __future__ import annotations

from dataclasses import dataclass, field

from ...ir.core import Op, Value
from .gate_terms import Gate, Layer, cell_inputs, gate, gate_terms, stack_gates, time_slice
from .notes import NotRaised

ACTIVATIONS = {"tanh": "Tanh", "relu": "Relu", "sigmoid": "Sigmoid"}
"""The activations of an RNN cell, by op kind, as the ONNX RNN names them."""


def rnn_anchor(op: Op) -> tuple[Value] | None:
    """``(h',)`` if ``op`` is an activation of a sum of maps of a time step of a sequence
    and at most one other value: the shape of an RNN step (the first one's recurrent term
    may be folded away; an LSTM's or GRU's gates have this shape too, so those cells are
    matched first and their ops are no anchors)."""
    if op.kind not in ACTIVATIONS or len(op.operands) != 1:
        return None
    try:
        terms = gate_terms(op.operands[0], [])
    except NotRaised:
        return None
    sources = {id(t.source): t.source for t in terms if t.linear_map is not None}
    steps = [v for v in sources.values() if time_slice(v, []) is not None]
    return (op.results[0],) if len(sources) in (1, 2) and len(steps) == 1 else None


@dataclass
class RNNCell:
    """One RNN time step: its state in and out, the input step it reads, its one gate,
    its activation (ONNX name) and every op it was read from."""

    h_new: Value
    h_prev: Value | None
    sequence: Value
    time_axis: int | None
    time: int
    gate: Gate
    activation: str
    ops: list[Op] = field(default_factory=list)
    kind = "rnn"

    @property
    def states_new(self) -> list[Value]:
        return [self.h_new]

    @property
    def states_prev(self) -> list[Value | None]:
        return [self.h_prev]

    @classmethod
    def match(cls, h_new: Value) -> "RNNCell":
        act = h_new.producer
        ops: list[Op] = [act]
        terms = gate_terms(act.operands[0], ops)
        sources = [t.source for t in terms if t.linear_map is not None]
        states = [v for v in sources if time_slice(v, []) is None]
        if states:
            inputs = cell_inputs({"h": terms}, ops, "RNN", states[0])
            x_key, h_prev, (sequence, axis, time) = inputs.x_key, inputs.h_prev, (
                inputs.sequence, inputs.time_axis, inputs.time)
        else:  # the first step, its R·0 folded into constants
            x_key, h_prev, (sequence, axis, time) = id(sources[0]), None, time_slice(sources[0], ops)
        return cls(h_new, h_prev, sequence, axis, time, gate("h", terms, x_key, "RNN"), ACTIVATIONS[act.kind], ops)

    def layer(self, hidden: int) -> Layer:
        """The ``rnn`` attributes this cell implies."""
        r = None if self.gate.r is None else stack_gates([self.gate.r], hidden, "R", "h")
        return Layer(stack_gates([self.gate.w], hidden, "W", "h"), r, [self.gate.x_bias], [self.gate.h_bias],
                     {"activations": [self.activation]})
