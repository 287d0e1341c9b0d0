"""Linear maps ``y = W x`` in integer arithmetic, step by step as the hardware runs them.

A dense map is one GEMM.  A decomposed map (``tt``, ``bt``, ``ht``) is one tensor
network per term (one, or one per BT block), each contracted by a sequence of pairwise
*steps*; every step is one GEMM ``O = A · B`` over the labels it sums.  The steps come
from the map's ``schedule`` meta entry when ``order-contractions`` attached one, else
from the network's default order (``networks()[k].path``).  That sequence is part of the
contract: the integer result depends on it, because every step but the last rounds.

Integer semantics of one application, ``x`` codes of format ``fix<wx,fx>``:

* Operands carry a fraction-bit count: the input ``fx``, a weight tensor its format's
  ``frac``.  A step multiplies and sums exactly in a wide accumulator, whose fraction
  bits are the sum of its operands'.
* Every step except the last of a network narrows its accumulator to that step's format
  (``MapQuant.steps``) with one ``requantize`` (round, then saturate).  A step that only
  reads weights (a *compile* step of a schedule) is evaluated once, before execution.
* The last step's accumulator is returned unrounded, with its fraction bits, so the
  consumer adds its bias (and, in an LSTM, the other gate terms) before its own single
  round-and-saturate.  BT blocks' accumulators are summed exactly after aligning them to
  the largest fraction-bit count by left shifts.
* The input is zero-padded to ``Πn`` and the result cut to ``out_dim``, as in float.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Any, Callable

import numpy as np
import opt_einsum

from ..errors import VerifyError
from ..ir.contraction.schedule import COMPILE
from ..ir.linear_map import DenseMap, LinearMap
from ..ir.types import FixedType, element_type
from .formats import code_min, requantize

Narrow = Callable[[str, np.ndarray, int, FixedType], np.ndarray]
"""``narrow(name, acc, acc_frac, fmt) -> codes``: the round-and-saturate of a runtime
(``requantize`` plus whatever it records about tensor ``name``)."""


@dataclass(frozen=True)
class PlanStep:
    """One pairwise contraction: operand ids, the labels its result keeps (in order), and
    whether it reads weights only (evaluated once, before execution)."""

    lhs: int
    rhs: int
    output: tuple[str, ...]
    weights_only: bool


@dataclass(frozen=True)
class NetworkPlan:
    """The steps that contract one network.  Operands ``0 … n-1`` are the network's
    tensors (``names``, with labelled axes ``labels``; ``input_index`` is the input),
    step ``i`` produces operand ``n + i``."""

    names: tuple[str, ...]
    labels: tuple[tuple[str, ...], ...]
    input_index: int
    sizes: dict[str, int]
    steps: tuple[PlanStep, ...]

    def operand_labels(self, operand: int) -> tuple[str, ...]:
        count = len(self.names)
        return self.labels[operand] if operand < count else self.steps[operand - count].output

    def equation(self, index: int) -> str:
        """The einsum equation of step ``index`` (one letter per label)."""
        step = self.steps[index]
        symbols = {label: opt_einsum.get_symbol(i) for i, label in enumerate(self.sizes)}
        terms = [self.operand_labels(step.lhs), self.operand_labels(step.rhs), step.output]
        return "{},{}->{}".format(*("".join(symbols[label] for label in term) for term in terms))

    def summed(self, index: int) -> int:
        """``K`` of step ``index``: the product of the sizes of the labels it sums away."""
        step = self.steps[index]
        touched = set(self.operand_labels(step.lhs)) | set(self.operand_labels(step.rhs))
        return math.prod(self.sizes[label] for label in touched - set(step.output))


def network_plans(linear_map: LinearMap) -> list[NetworkPlan]:
    """The contraction plans of a decomposed map: its ``schedule`` if it has one, else
    each network's default order."""
    schedule = getattr(linear_map, "schedule", None)
    if schedule is None:
        return [_plan_from_path(network) for network in linear_map.networks()]
    return [_plan_from_schedule(s) for s in schedule.schedules]


def _plan_from_path(network) -> NetworkPlan:
    """A plan from an ``EinsumNetwork``'s SSA path (operand 0 is the input)."""
    labels = [tuple(term) for term in network.terms]
    live = dict(enumerate(labels))
    reads_input = {index: index == 0 for index in live}
    steps = []
    for position, (a, b) in enumerate(network.path):
        first, second = live.pop(a), live.pop(b)
        if position == len(network.path) - 1:
            output = tuple(network.output)
        else:
            needed = set(network.output).union(*live.values())
            output = tuple(x for x in dict.fromkeys(first + second) if x in needed)
        result = len(labels) + position
        steps.append(PlanStep(a, b, output, not (reads_input[a] or reads_input[b])))
        reads_input[result] = reads_input[a] or reads_input[b]
        live[result] = output
    return NetworkPlan(tuple(network.names), tuple(labels), 0, dict(network.sizes), tuple(steps))


def _plan_from_schedule(schedule) -> NetworkPlan:
    """A plan from an ``ir.contraction.Schedule`` (its input is the last tensor)."""
    network = schedule.network
    steps = tuple(PlanStep(s.lhs, s.rhs, tuple(s.output), s.stage == COMPILE) for s in schedule.steps)
    return NetworkPlan(tuple(t.name for t in network.tensors), tuple(t.labels for t in network.tensors),
                       network.input_index, dict(network.sizes), steps)


def plan_weights(linear_map: LinearMap) -> list[dict[str, np.ndarray]]:
    """Per network, its weight tensors by name, shaped as the plan's labels expect
    (boundary axes of size 1 squeezed, as ``networks()`` gives them)."""
    return [dict(zip(network.names[1:], network.arrays)) for network in linear_map.networks()]


@dataclass(frozen=True)
class MapQuant:
    """The formats of one quantized map: one per stored tensor, and per network one per
    step result except the last (which stays a wide accumulator).  ``order`` records the
    steps (``[lhs, rhs]`` operand pairs per network) the formats were chosen for: the
    formats mean nothing for another order, so reading them back checks the map's
    schedule still has exactly these steps."""

    tensors: dict[str, FixedType]
    steps: tuple[tuple[FixedType, ...], ...] = ()
    order: tuple[tuple[tuple[int, int], ...], ...] = ()

    @classmethod
    def for_map(cls, linear_map: LinearMap, tensors: dict[str, FixedType],
                steps: tuple[tuple[FixedType, ...], ...] = ()) -> "MapQuant":
        return cls(tensors, steps, _order(linear_map))

    def to_attr(self) -> dict[str, Any]:
        attr: dict[str, Any] = {"tensors": {name: str(fmt) for name, fmt in self.tensors.items()}}
        if self.order:
            attr["steps"] = [[str(fmt) for fmt in network] for network in self.steps]
            attr["order"] = [[list(pair) for pair in network] for network in self.order]
        return attr

    @classmethod
    def from_attr(cls, attr: Any, linear_map: LinearMap) -> "MapQuant":
        """Read the attribute form back, checking it against ``linear_map``."""
        if not isinstance(attr, dict) or not isinstance(attr.get("tensors"), dict):
            raise VerifyError("map formats must be a dictionary with 'tensors'")
        if set(attr["tensors"]) != set(linear_map.tensors()):
            raise VerifyError(f"map formats name tensors {sorted(attr['tensors'])}, the {linear_map.format} map "
                              f"has {sorted(linear_map.tensors())}")
        tensors = {name: _fixed(text) for name, text in attr["tensors"].items()}
        steps = tuple(tuple(_fixed(text) for text in network) for network in attr.get("steps", []))
        order = _order(linear_map)
        recorded = tuple(tuple(tuple(pair) for pair in network) for network in attr.get("order", []))
        if recorded != order:
            raise VerifyError(f"the {linear_map.format} map's contraction steps {_text(order)} are not the steps "
                              f"{_text(recorded)} its formats were chosen for; quantize after order-contractions")
        if [len(network) for network in steps] != [len(network) - 1 for network in order]:
            raise VerifyError(f"map formats list {[len(n) for n in steps]} step formats per network, "
                              f"the {linear_map.format} map's steps need {[len(n) - 1 for n in order]}")
        return cls(tensors, steps, order)


def _order(linear_map: LinearMap) -> tuple[tuple[tuple[int, int], ...], ...]:
    """The ``(lhs, rhs)`` operand pairs of every step of every network (none for dense)."""
    if isinstance(linear_map, DenseMap):
        return ()
    return tuple(tuple((step.lhs, step.rhs) for step in plan.steps) for plan in network_plans(linear_map))


def _text(order) -> str:
    return str([[list(pair) for pair in network] for network in order])


def _fixed(text: Any) -> FixedType:
    try:
        fmt = element_type(text)
    except (ValueError, TypeError, AttributeError):
        fmt = None
    if not isinstance(fmt, FixedType):
        raise VerifyError(f"'{text}' is not a fixed-point format fix<w,f>")
    return fmt


class IntegerMap:
    """A map whose tensors hold integer codes, applied to integer inputs (see the module
    docstring).  Weight-only steps run once, here."""

    def __init__(self, linear_map: LinearMap, quant: MapQuant, rounding: str):
        self.map = linear_map
        self.quant = quant
        if isinstance(linear_map, DenseMap):
            self.plans: list[NetworkPlan] = []
            self.matrix = np.asarray(linear_map.matrix, np.int64)
            return
        self.plans = network_plans(linear_map)
        self.stored: list[dict[int, tuple[np.ndarray, int]]] = []
        for plan, formats, weights in zip(self.plans, quant.steps, plan_weights(linear_map)):
            values = {i: (np.asarray(weights[name], np.int64), quant.tensors[name].frac)
                      for i, name in enumerate(plan.names) if i != plan.input_index}
            for index, step in enumerate(plan.steps):
                if step.weights_only:
                    (a, fa), (b, fb) = values.pop(step.lhs), values.pop(step.rhs)
                    acc = opt_einsum.contract(plan.equation(index), a, b)
                    values[len(plan.names) + index] = (requantize(acc, fa + fb, formats[index], rounding),
                                                       formats[index].frac)
            self.stored.append(values)

    def apply(self, x: np.ndarray, x_frac: int, narrow: Narrow, name: str) -> tuple[np.ndarray, int]:
        """``(acc, frac)``: the exact accumulator ``W x`` of the last step(s), ``[..., out_dim]``,
        and its fraction bits.  Intermediate steps are narrowed by ``narrow`` under the
        names ``{name}.n{network}.s{step}``."""
        if not self.plans:
            return np.asarray(x, np.int64) @ self.matrix.T, x_frac + self.quant.tensors["w"].frac
        m = self.map
        rows = np.asarray(x, np.int64).reshape(-1, m.in_dim)
        if m.in_pad:
            rows = np.concatenate([rows, np.zeros((rows.shape[0], m.in_pad), np.int64)], axis=1)
        tensor = rows.reshape((rows.shape[0],) + tuple(m.in_factors))
        terms = []
        for k, (plan, stored, formats) in enumerate(zip(self.plans, self.stored, self.quant.steps)):
            values = {**stored, plan.input_index: (tensor, x_frac)}
            for index, step in enumerate(plan.steps):
                if step.weights_only:
                    continue
                (a, fa), (b, fb) = values.pop(step.lhs), values.pop(step.rhs)
                acc = opt_einsum.contract(plan.equation(index), a, b)
                if index == len(plan.steps) - 1:
                    terms.append((acc, fa + fb))
                else:
                    fmt = formats[index]
                    values[len(plan.names) + index] = (narrow(f"{name}.n{k}.s{index}", acc, fa + fb, fmt), fmt.frac)
        frac = max(f for _, f in terms)
        total = sum(acc << (frac - f) for acc, f in terms)
        y = total.reshape(rows.shape[0], -1)[:, : m.out_dim]
        return y.reshape(np.shape(x)[:-1] + (m.out_dim,)), frac

    def bound(self, x_fmt: FixedType) -> tuple[int, int, list[int]]:
        """Worst case over every input code of ``x_fmt``: ``(bound, frac, step_bounds)``,
        ``bound`` the largest ``|acc|`` ``apply`` can return (at ``frac`` fraction bits) and
        ``step_bounds`` the largest ``|acc|`` of every step in plan order (what sizes the
        hardware's accumulators).  Intermediate results may take any code of their format
        (saturation included), so the bounds hold for all inputs.  ``OverflowError`` (with
        the bits needed) if an accumulator could need more than 63 bits."""
        magnitude = 1 << (x_fmt.width - 1)
        if not self.plans:
            rows = _magnitude_product("ij,j->i", np.abs(self.matrix), np.full(self.map.in_dim, magnitude, np.int64))
            largest = int(rows.max(initial=0))
            return largest, x_fmt.frac + self.quant.tensors["w"].frac, [largest]
        step_bounds: list[int] = []
        terms = []
        for plan, formats, weights in zip(self.plans, self.quant.steps, plan_weights(self.map)):
            values = {}
            for i, name in enumerate(plan.names):
                if i == plan.input_index:
                    shape = tuple(1 if label == plan.labels[i][0] else plan.sizes[label] for label in plan.labels[i])
                    values[i] = (np.full(shape, magnitude, np.int64), x_fmt.frac)
                else:
                    values[i] = (np.abs(np.asarray(weights[name], np.int64)), self.quant.tensors[name].frac)
            for index, step in enumerate(plan.steps):
                (a, fa), (b, fb) = values.pop(step.lhs), values.pop(step.rhs)
                acc = _magnitude_product(plan.equation(index), a, b)
                step_bounds.append(int(acc.max(initial=0)))
                if index == len(plan.steps) - 1:
                    terms.append((step_bounds[-1], fa + fb))
                else:
                    fmt = formats[index]
                    values[len(plan.names) + index] = (np.full(acc.shape, -code_min(fmt), np.int64), fmt.frac)
        frac = max(f for _, f in terms)
        return sum(largest << (frac - f) for largest, f in terms), frac, step_bounds


def _magnitude_product(equation: str, a: np.ndarray, b: np.ndarray) -> np.ndarray:
    """``einsum`` of two non-negative integer arrays, exact in int64; ``OverflowError``
    when a result could reach ``2^62`` (checked first in float64)."""
    rough = opt_einsum.contract(equation, a.astype(np.float64), b.astype(np.float64))
    if rough.size and rough.max() >= 2.0 ** 61:
        raise OverflowError(int(rough.max()).bit_length() + 1)
    return opt_einsum.contract(equation, a, b)


def apply_float_steps(linear_map: LinearMap, x: np.ndarray) -> tuple[np.ndarray, list[list[float]]]:
    """``W x`` in float64, contracted in the same steps as ``IntegerMap``, and the largest
    ``|value|`` of every step result but the last, per network: what calibration fits
    the step formats to.  A dense map has no steps."""
    x = np.asarray(x, np.float64)
    if isinstance(linear_map, DenseMap):
        return x @ np.asarray(linear_map.matrix, np.float64).T, []
    m = linear_map
    rows = x.reshape(-1, m.in_dim)
    if m.in_pad:
        rows = np.concatenate([rows, np.zeros((rows.shape[0], m.in_pad))], axis=1)
    tensor = rows.reshape((rows.shape[0],) + tuple(m.in_factors))
    total = 0.0
    maxima = []
    for plan, weights in zip(network_plans(m), plan_weights(m)):
        values = {i: np.asarray(weights[name], np.float64) for i, name in enumerate(plan.names)
                  if i != plan.input_index}
        values[plan.input_index] = tensor
        largest = []
        for index, step in enumerate(plan.steps):
            result = opt_einsum.contract(plan.equation(index), values.pop(step.lhs), values.pop(step.rhs))
            values[len(plan.names) + index] = result
            if index < len(plan.steps) - 1:
                largest.append(float(np.abs(result).max(initial=0.0)))
        total = total + values[len(plan.names) + len(plan.steps) - 1]
        maxima.append(largest)
    y = total.reshape(rows.shape[0], -1)[:, : m.out_dim]
    return y.reshape(x.shape[:-1] + (m.out_dim,)), maxima
