"""One written-out LSTM cell, recognized by its data flow: the gate pre-activations as
sums of maps, constants and time steps of a sequence (``gate_terms``), the state update
and the output (the pattern is in ``raise_recurrent``'s docstring)."""

from __future__ import annotations

from dataclasses import dataclass, field

from ...ir.core import Op, Value
from .gate_terms import (
    Gate, Layer, Term, cell_inputs, expect, gate, gate_terms, has_unary, is_sigmoid, operands_by, stack_gates,
)
from .notes import NotRaised

ONNX_GATES = ("i", "o", "f", "g")  # ONNX calls the candidate gate "c"
SIGMOID_GATES = ("i", "f", "o")


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
class Cell:
    """One LSTM time step: its states in and out, the input step it reads (``time``
    along ``time_axis`` of ``sequence``; a cell applied once to a ``[B, I]`` value has
    that value as ``sequence``, ``time_axis`` ``None`` and ``time`` 0), its gates and
    every op it was read from."""

    h_new: Value
    c_new: Value
    h_prev: Value | None
    c_prev: Value
    sequence: Value
    time_axis: int | None
    time: int
    gates: dict[str, Gate]
    ops: list[Op] = field(default_factory=list)
    kind = "lstm"

    @property
    def states_new(self) -> list[Value]:
        return [self.h_new, self.c_new]

    @property
    def states_prev(self) -> list[Value | None]:
        return [self.h_prev, self.c_prev]

    @classmethod
    def match(cls, h_new: Value, c_new: Value) -> "Cell":
        ops: list[Op] = [h_new.producer, c_new.producer]
        c_act, o_act = operands_by(h_new.producer, lambda v: v.producer is not None
                                   and v.producer.operands == [c_new])
        expect(c_act, "tanh", "the new cell state", "LSTM")
        first, second = (v.producer for v in c_new.producer.operands)
        ig, fc = (first, second) if has_unary(first, "tanh", "relu") else (second, first)
        f_act, c_prev = operands_by(fc, is_sigmoid)
        i_act, g_act = operands_by(ig, is_sigmoid)
        expect(g_act, "tanh", "the candidate gate", "LSTM")
        acts = {"i": i_act, "f": f_act, "o": o_act, "g": g_act}
        for role in SIGMOID_GATES:
            expect(acts[role], "sigmoid", f"gate {role}", "LSTM")
        ops += [fc, ig] + [a.producer for a in acts.values()] + [c_act.producer]
        pieces = {role: gate_terms(act.producer.operands[0], ops) for role, act in acts.items()}
        return cls._from_terms(h_new, c_new, c_prev, pieces, ops)

    @classmethod
    def _from_terms(cls, h_new, c_new, c_prev, pieces: dict[str, list[Term]], ops) -> "Cell":
        inputs = cell_inputs(pieces, ops, "LSTM", c_prev)
        gates = {role: gate(role, terms, inputs.x_key) for role, terms in pieces.items()}
        return cls(h_new, c_new, inputs.h_prev, c_prev, inputs.sequence, inputs.time_axis, inputs.time, gates, ops)

    def layer(self, hidden: int) -> Layer:
        """The ``lstm`` attributes this cell implies (maps in ONNX gate order)."""
        w = stack_gates([self.gates[g].w for g in ONNX_GATES], hidden, "W")
        r_terms = [self.gates[g].r for g in ONNX_GATES]
        if any(t is None for t in r_terms) and not all(t is None for t in r_terms):
            raise NotRaised("some gates have a recurrent map and some do not")
        r = None if r_terms[0] is None else stack_gates(r_terms, hidden, "R")
        return Layer(w, r, [self.gates[g].x_bias for g in ONNX_GATES], [self.gates[g].h_bias for g in ONNX_GATES])
