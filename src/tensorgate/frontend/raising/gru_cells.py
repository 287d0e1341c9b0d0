"""One written-out GRU cell, recognized by its data flow: the state update, the reset
gate's product in either ``linear_before_reset`` form, and the gate pre-activations as
sums of maps, constants and time steps of a sequence (``gate_terms``; the pattern is in
``raise_recurrent``'s docstring)."""

from __future__ import annotations

from dataclasses import dataclass, field

from ...ir.core import Op, Value
from .gate_terms import Gate, Layer, Term, cell_inputs, expect, gate, gate_terms, is_sigmoid, stack_gates, vector_sum
from .notes import NotRaised
from .rewrite import constant_array

ONNX_GATES = ("z", "r", "h")


def gru_anchor(op: Op) -> tuple[Value, Value, Value, Value] | None:
    """``(h', z, n, h)`` if ``op`` is a GRU state update ``h' = (1 - z)·n + z·h`` or
    ``h' = n + z·(h - n)`` (products and sums in either order) with ``z`` a sigmoid and
    ``n`` a tanh; the cell is checked strictly by ``GRUCell.match``."""
    if op.kind != "add" or len(op.operands) != 2:
        return None
    for first, second in (op.operands, op.operands[::-1]):
        found = _blend(first, second) or _lerp(first, second)
        if found is not None:
            return (op.results[0], *found)
    return None


def _blend(keep: Value, carry: Value) -> tuple[Value, Value, Value] | None:
    """``(z, n, h)`` of ``keep = (1 - z)·n``, ``carry = z·h``."""
    keep_factors, carry_factors = _factors(keep), _factors(carry)
    if keep_factors is None or carry_factors is None:
        return None
    for one_minus, n in (keep_factors, keep_factors[::-1]):
        z = _one_minus(one_minus)
        if z is not None and is_sigmoid(z) and z in carry_factors and n.producer is not None:
            h = carry_factors[1] if carry_factors[0] is z else carry_factors[0]
            return z, n, h
    return None


def _lerp(n: Value, step: Value) -> tuple[Value, Value, Value] | None:
    """``(z, n, h)`` of ``n + z·(h - n)``."""
    factors = _factors(step)
    if factors is None:
        return None
    for z, difference in (factors, factors[::-1]):
        op = difference.producer
        if is_sigmoid(z) and op is not None and op.kind == "sub" and op.operands[1] is n:
            return z, n, op.operands[0]
    return None


def _factors(value: Value) -> tuple[Value, Value] | None:
    op = value.producer
    return (op.operands[0], op.operands[1]) if op is not None and op.kind == "mul" and len(op.operands) == 2 else None


def _one_minus(value: Value) -> Value | None:
    """``z`` if ``value`` is ``1 - z``."""
    op = value.producer
    if op is None or op.kind != "sub":
        return None
    one = constant_array(op.operands[0])
    return op.operands[1] if one is not None and one.size and (one == 1).all() else None


@dataclass
class GRUCell:
    """One GRU time step: its state in and out, the input step it reads, its gates,
    ``linear_before_reset`` (whether the reset gate multiplies ``R_h·h + Rb_h`` rather
    than ``h``) and every op it was read from."""

    h_new: Value
    h_prev: Value
    sequence: Value
    time_axis: int | None
    time: int
    gates: dict[str, Gate]
    linear_before_reset: int
    ops: list[Op] = field(default_factory=list)
    kind = "gru"

    @property
    def states_new(self) -> list[Value]:
        return [self.h_new]

    @property
    def states_prev(self) -> list[Value | None]:
        return [self.h_prev]

    @classmethod
    def match(cls, h_new: Value, z: Value, n: Value, h_prev: Value) -> "GRUCell":
        ops: list[Op] = [h_new.producer]
        for value in h_new.producer.operands:  # the products, and 1 - z or h - n
            if value is not n and value.producer is not None:
                ops.append(value.producer)
                ops += [f.producer for f in _factors(value) or ()
                        if f.producer is not None and f.producer.kind == "sub"]
        if h_prev.producer is not None and h_prev.producer.kind == "tanh" and (
                n.producer is None or n.producer.kind != "tanh"):
            raise NotRaised("the update gate weighs the candidate by z and the state by 1 - z; an ONNX GRU "
                            "computes (1 - z)·n + z·h")
        expect(n, "tanh", "the candidate", "GRU")
        ops += [z.producer, n.producer]
        candidate, reset, rn_terms = _candidate(n.producer.operands[0], h_prev, ops)
        pieces = {"z": gate_terms(z.producer.operands[0], ops), "r": gate_terms(reset.producer.operands[0], ops),
                  "h": candidate + rn_terms}
        ops.append(reset.producer)
        inputs = cell_inputs(pieces, ops, "GRU", h_prev)
        if inputs.h_prev is not None and inputs.h_prev is not h_prev:
            raise NotRaised("the gates apply maps to another state than the one the update carries")
        gates = {role: gate(role, pieces[role], inputs.x_key, "GRU") for role in ("z", "r")}
        gates["h"] = _candidate_gate(candidate, rn_terms, inputs.x_key) if rn_terms else gate(
            "h", candidate, inputs.x_key, "GRU")
        return cls(h_new, h_prev, inputs.sequence, inputs.time_axis, inputs.time, gates, int(bool(rn_terms)), ops)

    def layer(self, hidden: int) -> Layer:
        """The ``gru`` attributes this cell implies (maps in ONNX gate order z, r, h)."""
        r_terms = [self.gates[g].r for g in ONNX_GATES]
        if any(t is None for t in r_terms):
            raise NotRaised("a gate of the GRU cell has no recurrent map")
        return Layer(stack_gates([self.gates[g].w for g in ONNX_GATES], hidden, "W", "z, r, h"),
                     stack_gates(r_terms, hidden, "R", "z, r, h"),
                     [self.gates[g].x_bias for g in ONNX_GATES], [self.gates[g].h_bias for g in ONNX_GATES],
                     {"linear_before_reset": self.linear_before_reset})


def _candidate(pre: Value, h_prev: Value, ops: list[Op]) -> tuple[list[Term], Value, list[Term]]:
    """The candidate's pre-activation: its terms other than the reset product (the map
    of ``r ⊙ h`` among them, as a map of ``h``, without ``linear_before_reset``), the
    reset gate ``r``, and with ``linear_before_reset`` the terms of ``R_h·h + Rb_h``."""
    terms: list[Term] = []
    product = None
    for leaf in _sum_leaves(pre, ops):
        factors = _factors(leaf)
        if factors is not None and any(is_sigmoid(f) for f in factors):
            if product is not None:
                raise NotRaised("the candidate adds two products of a sigmoid")
            product = factors if is_sigmoid(factors[0]) else factors[::-1]
            ops.append(leaf.producer)
            continue
        terms += gate_terms(leaf, ops)
    if product is not None:
        reset, rn = product
        return terms, reset, gate_terms(rn, ops)
    resets = [t for t in terms if t.linear_map is not None and _reset_of(t.source, h_prev) is not None]
    if len(resets) != 1:
        raise NotRaised("the candidate has no reset gate: neither r ⊙ (R_h·h + b) nor a map of r ⊙ h")
    reset = _reset_of(resets[0].source, h_prev)
    ops.append(resets[0].source.producer)
    resets[0].source = h_prev
    for term in terms:  # the map's own bias: Rb_h
        if term.source is not None and _reset_of(term.source, h_prev) is not None:
            term.source = h_prev
    return terms, reset, []


def _reset_of(value: Value | None, h_prev: Value) -> Value | None:
    """``r`` if ``value`` is ``r ⊙ h`` with ``r`` a sigmoid."""
    factors = None if value is None else _factors(value)
    if factors is None or h_prev not in factors:
        return None
    other = factors[1] if factors[0] is h_prev else factors[0]
    return other if is_sigmoid(other) else None


def _sum_leaves(value: Value, ops: list[Op]) -> list[Value]:
    """The summands of ``value`` through its adds."""
    op = value.producer
    if op is None or op.kind != "add" or any(constant_array(v) is not None for v in op.operands):
        return [value]
    ops.append(op)
    return [leaf for operand in op.operands for leaf in _sum_leaves(operand, ops)]


def _candidate_gate(candidate: list[Term], rn_terms: list[Term], x_key: int) -> Gate:
    """The candidate of ``linear_before_reset``: the map of ``x_t`` and the constants
    outside the reset product (``Wb_h``), the map of ``h`` and the constants inside it
    (``Rb_h``)."""
    w = [t for t in candidate if t.linear_map is not None]
    r = [t for t in rn_terms if t.linear_map is not None]
    if len(w) != 1 or id(w[0].source) != x_key or len(r) != 1 or id(r[0].source) == x_key:
        raise NotRaised("the candidate of linear_before_reset is not a map of x_t plus r ⊙ (a map of h + b)")
    return Gate(w[0], r[0], vector_sum([t.bias for t in candidate if t.bias is not None]),
                vector_sum([t.bias for t in rn_terms if t.bias is not None]))
