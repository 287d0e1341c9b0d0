"""One written-out RNN cell, recognized by its data flow: an activation of one sum of a
map of a time step, a map of the previous state and constants (``gate_terms``; the
pattern is in ``raise_recurrent``'s docstring).  One step alone looks like any layer of
two inputs, so it is a cell only where it is streamed: its state comes in as a module
input and goes out as a module output of the same width (``is_streamed``)."""

from __future__ import annotations

from dataclasses import dataclass, field

from ...ir.core import Module, Op, Value
from .gate_terms import Gate, Layer, cell_inputs, gate, gate_terms, stack_gates, time_slice
from .notes import NotRaised

ACTIVATIONS = {"tanh": "Tanh", "relu": "Relu", "sigmoid": "Sigmoid"}
"""The activations of an RNN cell, by op kind, as the ONNX RNN names them."""


def _mapped_sources(op: Op) -> list[Value] | None:
    """The distinct values that linear maps read in the sum under ``op``, an RNN
    activation; None where ``op`` is no such activation of a sum of maps."""
    if op.kind not in ACTIVATIONS or len(op.operands) != 1:
        return None
    try:
        terms = gate_terms(op.operands[0], [])
    except NotRaised:
        return None
    return list({id(t.source): t.source for t in terms if t.linear_map is not None}.values())


def rnn_anchor(op: Op) -> tuple[Value] | None:
    """``(h',)`` if ``op`` is an activation of a sum of maps of a time step of a sequence
    and at most one other value: the shape of an RNN step (the first one's recurrent term
    may be folded away; an LSTM's or GRU's gates have this shape too, so those cells are
    matched first and their ops are no anchors)."""
    sources = _mapped_sources(op)
    if sources is None:
        return None
    steps = [v for v in sources if time_slice(v, []) is not None]
    return (op.results[0],) if len(sources) in (1, 2) and len(steps) == 1 else None


def streamed_anchor(op: Op, module: Module) -> tuple[Value, Value] | None:
    """``(h', h)`` if ``op`` is an activation of a sum of a map of a value ``x`` that is no
    time step, a map of ``h`` and constants, where exactly one of the two mapped values is
    a streamed state (``is_streamed``): a single RNN step applied to a ``[B, I]`` input,
    as a model that takes its state in and hands it out each call computes it."""
    sources = _mapped_sources(op)
    if sources is None or len(sources) != 2 or any(time_slice(v, []) is not None for v in sources):
        return None
    states = [v for v in sources if is_streamed(v, op.results[0], module)]
    return (op.results[0], states[0]) if len(states) == 1 else None


def is_streamed(h_prev: Value | None, h_new: Value, module: Module) -> bool:
    """Whether ``h_prev`` comes in as a module input and ``h_new`` goes out as a module
    output, both ``[B, H]`` of one static width (or both ``[H]``, seen through the
    ``unsqueeze``/``squeeze`` of axis 0 torch writes around an unbatched ``nn.RNNCell``)."""
    if h_prev is None or h_prev.type.rank != 2 or h_new.type.rank != 2:
        return False
    width, batch = h_new.type.shape[-1], (h_prev.type.shape[0], h_new.type.shape[0])
    if not isinstance(width, int) or h_prev.type.shape[-1] != width:
        return False
    if all(isinstance(b, int) for b in batch) and batch[0] != batch[1]:
        return False
    state_in = h_prev in module.inputs or _leading_axis(h_prev.producer, "unsqueeze", module.inputs)
    state_out = h_new in module.outputs or any(
        _leading_axis(user, "squeeze", module.outputs) for user in module.users(h_new))
    return state_in and state_out


def _leading_axis(op: Op | None, kind: str, values: list[Value]) -> bool:
    """``op`` is a ``kind`` of axis 0 between a rank-1 value in ``values`` and the cell's rank-2 one."""
    if op is None or op.kind != kind or [a % 2 for a in op.attrs["axes"] or []] != [0]:
        return False
    unbatched = op.operands[0] if kind == "unsqueeze" else op.results[0]
    return unbatched.type.rank == 1 and unbatched in values


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
    def match(cls, h_new: Value, state: Value | None = None) -> "RNNCell":
        """The step whose result is ``h_new``; ``state`` names its previous state where
        no mapped value is a time step (a streamed single step)."""
        act = h_new.producer
        ops: list[Op] = [act]
        terms = gate_terms(act.operands[0], ops)
        sources = [t.source for t in terms if t.linear_map is not None]
        states = [v for v in sources if time_slice(v, []) is None]
        if states:
            inputs = cell_inputs({"h": terms}, ops, "RNN", state or states[0])
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
