"""Contraction schedules: the explicit sequence of pairwise steps that applies a map.

Operands are numbered like SSA values: ``0 … n-1`` are the network's tensors in
order, step ``i`` produces operand ``n + i``.  Each step names its two operands
(``lhs`` holds the input's data whenever one of them does, so a step reads as the
GEMM ``O[rows × cols] = A[rows × K] · B[K × cols]`` with ``A = lhs``), the labels it
sums, the labels of its result in order, its multiply-accumulates and the elements
of its result.  A ``compile`` step contracts weights only and is evaluated once,
before execution (precontraction); a ``run`` step is executed on every
application.  The last step yields the network's output, labels in output order.

A ``Schedule`` checks all of this when it is built, so a schedule read back from
IR text is either consistent with its network or rejected with a ``VerifyError``.
``execute`` runs exactly the listed steps, one matrix product of two operands per
step (an ``opt_einsum`` contraction where a label is shared and kept).
"""

from __future__ import annotations

import functools
import math
from dataclasses import dataclass
from typing import Any, Mapping, Sequence, Union

import numpy as np
import opt_einsum

from ...errors import ExecutionError, VerifyError
from .network import TensorNetwork

RUN = "run"
COMPILE = "compile"

Tree = Union[int, tuple["Tree", "Tree"]]


@dataclass(frozen=True)
class Step:
    """One pairwise contraction."""

    lhs: int
    rhs: int
    contracted: tuple[str, ...]
    output: tuple[str, ...]
    macs: int
    size: int
    stage: str = RUN

    def to_list(self) -> list:
        return [self.lhs, self.rhs, list(self.contracted), list(self.output), self.macs, self.size, self.stage]

    @classmethod
    def from_list(cls, item: Sequence) -> "Step":
        try:
            lhs, rhs, contracted, output, macs, size, stage = item
        except (TypeError, ValueError) as exc:
            raise VerifyError(f"contraction step {item!r} is malformed ({exc}); expected "
                              "[lhs, rhs, [contracted], [output], macs, size, stage]") from None
        counts, labels = (lhs, rhs, macs, size), (contracted, output)
        if not all(isinstance(n, int) and not isinstance(n, bool) and n >= 0 for n in counts) or not all(
                isinstance(names, list) and all(isinstance(name, str) for name in names) for names in labels
        ) or not isinstance(stage, str):
            raise VerifyError(f"contraction step {item!r} is malformed: lhs, rhs, macs and size must be "
                              "non-negative integers, contracted and output lists of labels, stage a string")
        return cls(lhs, rhs, tuple(contracted), tuple(output), macs, size, stage)


class Schedule:
    """A network and the ordered pairwise steps that contract it to its output."""

    def __init__(self, network: TensorNetwork, steps: Sequence[Step]):
        self.network = network
        self.steps = tuple(steps)
        self._check()

    def _check(self) -> None:
        network = self.network
        count = len(network.tensors)
        labels = {i: t.labels for i, t in enumerate(network.tensors)}
        covers = {i: 1 << i for i in range(count)}
        compiled = {i: i != network.input_index for i in range(count)}
        if len(self.steps) != count - 1:
            raise VerifyError(f"schedule: {count} tensors need {count - 1} pairwise steps, got {len(self.steps)}")
        for index, step in enumerate(self.steps):
            where = f"schedule step {index}"
            if step.lhs == step.rhs or step.lhs not in labels or step.rhs not in labels:
                raise VerifyError(f"{where}: operands {step.lhs}, {step.rhs} are not two distinct available operands")
            mask = covers.pop(step.lhs) | covers.pop(step.rhs)
            touched = _union(labels.pop(step.lhs), labels.pop(step.rhs))
            kept = open_labels(network, mask)
            if sorted(step.output) != sorted(kept):
                raise VerifyError(f"{where}: result labels {list(step.output)} should be {sorted(kept)}")
            if sorted(step.contracted) != sorted(set(touched) - kept):
                raise VerifyError(f"{where}: contracted labels {list(step.contracted)} should be "
                                  f"{sorted(set(touched) - kept)}")
            if step.macs != network.size_of(touched) or step.size != network.size_of(step.output):
                raise VerifyError(f"{where}: costs macs={step.macs} size={step.size} should be "
                                  f"macs={network.size_of(touched)} size={network.size_of(step.output)}")
            if step.stage not in (RUN, COMPILE):
                raise VerifyError(f"{where}: stage '{step.stage}' is neither '{RUN}' nor '{COMPILE}'")
            if step.stage == COMPILE and not (compiled[step.lhs] and compiled[step.rhs]):
                raise VerifyError(f"{where}: a compile step may only read weights and compile-step results")
            result = count + index
            labels[result], covers[result] = step.output, mask
            compiled[result] = step.stage == COMPILE
        if self.steps[-1].output != network.output:
            raise VerifyError(f"schedule: last step yields {list(self.steps[-1].output)}, "
                              f"the network's output is {list(network.output)}")

    @classmethod
    def from_pairs(cls, network: TensorNetwork,
                   pairs: Sequence[tuple[int, int, str, Sequence[str] | None]]) -> "Schedule":
        """Build the steps from ``(lhs, rhs, stage, output labels or None)``; ``None`` picks the
        canonical order: the kept labels of ``lhs`` then those of ``rhs`` (the network's
        output order for the last step)."""
        count = len(network.tensors)
        labels = {i: t.labels for i, t in enumerate(network.tensors)}
        covers = {i: 1 << i for i in range(count)}
        steps = []
        for index, (lhs, rhs, stage, output) in enumerate(pairs):
            if lhs not in labels or rhs not in labels or lhs == rhs:
                raise VerifyError(f"schedule step {index}: operands {lhs}, {rhs} are not available")
            mask = covers.pop(lhs) | covers.pop(rhs)
            touched = _union(labels.pop(lhs), labels.pop(rhs))
            kept = open_labels(network, mask)
            if output is None:
                output = network.output if index == count - 2 else tuple(x for x in touched if x in kept)
            contracted = tuple(x for x in touched if x not in kept)
            steps.append(Step(lhs, rhs, contracted, tuple(output), network.size_of(touched),
                              network.size_of(output), stage))
            labels[count + index], covers[count + index] = tuple(output), mask
        return cls(network, steps)

    @classmethod
    def from_tree(cls, network: TensorNetwork, tree: Tree, fold_weights: bool) -> "Schedule":
        """The schedule of a contraction tree (nested pairs of tensor indices).

        With ``fold_weights`` every node that holds weights only is a compile step.
        Compile steps come first, then run steps, each group in post-order.
        """
        count = len(network.tensors)
        input_bit = 1 << network.input_index
        compile_nodes: list[tuple[Tree, Tree, int]] = []
        run_nodes: list[tuple[Tree, Tree, int]] = []

        def walk(node: Tree) -> int:
            if isinstance(node, int):
                return 1 << node
            left, right = node
            mask = walk(left) | walk(right)
            weight_only = not mask & input_bit
            (compile_nodes if fold_weights and weight_only else run_nodes).append((left, right, mask))
            return mask

        walk(tree)
        ids: dict[int, int] = {1 << i: i for i in range(count)}
        pairs = []
        for stage, nodes in ((COMPILE, compile_nodes), (RUN, run_nodes)):
            for left, right, mask in nodes:
                lhs, rhs = ids[tree_mask(left)], ids[tree_mask(right)]
                if tree_mask(right) & input_bit:
                    lhs, rhs = rhs, lhs
                ids[mask] = count + len(pairs)
                pairs.append((lhs, rhs, stage, None))
        return cls.from_pairs(network, pairs)

    def tree(self) -> Tree:
        """The contraction tree of the steps (inverse of ``from_tree`` up to operand order)."""
        nodes: dict[int, Tree] = {i: i for i in range(len(self.network.tensors))}
        for index, step in enumerate(self.steps):
            nodes[len(self.network.tensors) + index] = (nodes.pop(step.lhs), nodes.pop(step.rhs))
        return next(iter(nodes.values()))

    def with_batch(self, rows: int) -> "Schedule":
        """The same steps, costed for ``rows`` input rows."""
        pairs = [(s.lhs, s.rhs, s.stage, s.output) for s in self.steps]
        return Schedule.from_pairs(self.network.with_batch(rows), pairs)

    @property
    def run_steps(self) -> tuple[Step, ...]:
        return tuple(s for s in self.steps if s.stage == RUN)

    @property
    def compile_steps(self) -> tuple[Step, ...]:
        return tuple(s for s in self.steps if s.stage == COMPILE)

    @property
    def macs(self) -> int:
        """MACs of one application (the run steps), for ``network.batch`` input rows."""
        return sum(s.macs for s in self.run_steps)

    @property
    def compile_macs(self) -> int:
        """MACs spent once, at compile time, precontracting weights."""
        return sum(s.macs for s in self.compile_steps)

    @property
    def peak(self) -> int:
        """Elements of the largest run-step result (the final output included)."""
        return max(s.size for s in self.run_steps)

    def cycles(self, pes: int, overhead: int) -> int:
        """PE-array cycles: ``⌈macs/pes⌉ + overhead`` per run step."""
        return sum(-(-s.macs // pes) + overhead for s in self.run_steps)

    def stored_operands(self) -> list[int]:
        """Operand ids of the weights that run steps read: the tensors to keep in memory."""
        count = len(self.network.tensors)
        produced_at_compile = {count + i for i, s in enumerate(self.steps) if s.stage == COMPILE}
        read = [op for s in self.run_steps for op in (s.lhs, s.rhs)]
        return [op for op in read if (op < count and op != self.network.input_index) or op in produced_at_compile]

    @property
    def params(self) -> int:
        """Weight elements stored for execution: unfolded tensors plus precontracted results."""
        return sum(math.prod(self.operand_shape(op)) for op in self.stored_operands())

    def operand_labels(self, operand: int) -> tuple[str, ...]:
        count = len(self.network.tensors)
        return self.network.tensors[operand].labels if operand < count else self.steps[operand - count].output

    def operand_shape(self, operand: int) -> tuple[int, ...]:
        return tuple(self.network.sizes[label] for label in self.operand_labels(operand))

    def to_dict(self) -> dict[str, Any]:
        """Plain lists, strings and ints; ``from_dict`` reads it back."""
        return {"network": self.network.to_dict(), "steps": [s.to_list() for s in self.steps]}

    @classmethod
    def from_dict(cls, data: Mapping[str, Any]) -> "Schedule":
        if not isinstance(data, Mapping) or "network" not in data or "steps" not in data:
            raise VerifyError("schedule: expected a mapping with 'network' and 'steps'")
        return cls(TensorNetwork.from_dict(data["network"]), [Step.from_list(s) for s in data["steps"]])

    def describe(self) -> list[str]:
        """One line per step, for reports: ``%5 = contract %4[b,n1,…] %0[…] over {n2} -> [...]``."""
        lines = []
        count = len(self.network.tensors)
        for index, step in enumerate(self.steps):
            names = [self._operand_name(op) for op in (step.lhs, step.rhs)]
            lines.append(f"{step.stage:7} t{count + index} = {names[0]} * {names[1]} "
                         f"sum {{{','.join(step.contracted)}}} -> [{','.join(step.output)}] "
                         f"macs={step.macs} size={step.size}")
        return lines

    def _operand_name(self, operand: int) -> str:
        count = len(self.network.tensors)
        return self.network.tensors[operand].name if operand < count else f"t{operand}"

    def __eq__(self, other: object) -> bool:
        if not isinstance(other, Schedule):
            return NotImplemented
        return self.to_dict() == other.to_dict()

    __hash__ = None  # type: ignore[assignment]

    def __repr__(self) -> str:
        return f"<Schedule {len(self.steps)} steps, macs={self.macs}, peak={self.peak}>"


def open_labels(network: TensorNetwork, mask: int) -> set[str]:
    """Labels of the tensors in ``mask`` still needed outside it (by other tensors or the output)."""
    inside: set[str] = set()
    outside: set[str] = set(network.output)
    for i, tensor in enumerate(network.tensors):
        (inside if mask >> i & 1 else outside).update(tensor.labels)
    return inside & outside


def tree_mask(node: Tree) -> int:
    """Bitmask of the tensors under a tree node."""
    return 1 << node if isinstance(node, int) else tree_mask(node[0]) | tree_mask(node[1])


def _union(first: Sequence[str], second: Sequence[str]) -> tuple[str, ...]:
    return tuple(first) + tuple(x for x in second if x not in first)


def fold_weights(schedule: Schedule, weights: Mapping[str, np.ndarray]) -> dict[int, np.ndarray]:
    """Run the compile steps; return the stored operands (id -> array) that the run steps read."""
    values = _load(schedule, weights, with_input=False)
    _run_steps(schedule, values, COMPILE)
    return {op: values[op] for op in schedule.stored_operands()}


def execute(schedule: Schedule, arrays: Mapping[str, np.ndarray],
            stored: Mapping[int, np.ndarray] | None = None) -> np.ndarray:
    """Contract the network exactly as scheduled; the result has the output labels in order.

    ``arrays`` maps tensor names to arrays of the right number of elements (they are
    reshaped to the labels' sizes; the input's batch size is taken from its array).
    ``stored`` (from ``fold_weights``) replaces the weights and skips the compile steps.
    """
    if stored is None:
        values = _load(schedule, arrays, with_input=True)
        _run_steps(schedule, values, COMPILE)
    else:
        values = {**stored, **_load(schedule, arrays, with_input=True, weights=False)}
    _run_steps(schedule, values, RUN)
    return values[len(schedule.network.tensors) + len(schedule.steps) - 1]


def _load(schedule: Schedule, arrays: Mapping[str, np.ndarray], with_input: bool,
          weights: bool = True) -> dict[int, np.ndarray]:
    network = schedule.network
    values = {}
    for index, tensor in enumerate(network.tensors):
        is_input = index == network.input_index
        if (is_input and not with_input) or (not is_input and not weights):
            continue
        if tensor.name not in arrays:
            raise ExecutionError(f"contraction: no array given for tensor '{tensor.name}'")
        array = np.asarray(arrays[tensor.name])
        shape = [-1 if is_input and label == network.batch_label else network.sizes[label]
                 for label in tensor.labels]
        try:
            values[index] = array.reshape(shape)
        except ValueError:
            raise ExecutionError(f"contraction: tensor '{tensor.name}' of shape {array.shape} does not "
                                 f"fit labels {list(tensor.labels)} = {shape}") from None
    return values


def _run_steps(schedule: Schedule, values: dict[int, np.ndarray], stage: str) -> None:
    count = len(schedule.network.tensors)
    for index, step in enumerate(schedule.steps):
        if step.stage != stage:
            continue
        terms = tuple(schedule.operand_labels(op) for op in (step.lhs, step.rhs, count + index))
        lhs, rhs = values.pop(step.lhs), values.pop(step.rhs)
        values[count + index] = _pairwise(*terms, lhs.shape, rhs.shape)(lhs, rhs)


@functools.lru_cache(maxsize=4096)
def _pairwise(lhs_labels: tuple[str, ...], rhs_labels: tuple[str, ...], output: tuple[str, ...],
              lhs_shape: tuple[int, ...], rhs_shape: tuple[int, ...]):
    """A planned two-operand contraction: planning costs far more than a small step
    itself, and a step recurs every time step (and every application)."""
    shared = set(lhs_labels) & set(rhs_labels)
    if shared & set(output) or len(set(lhs_labels)) < len(lhs_labels) or len(set(rhs_labels)) < len(rhs_labels):
        symbols = {label: opt_einsum.get_symbol(i) for i, label in enumerate(dict.fromkeys(lhs_labels + rhs_labels))}
        equation = "{},{}->{}".format(*("".join(symbols[label] for label in term)
                                        for term in (lhs_labels, rhs_labels, output)))
        return opt_einsum.contract_expression(equation, lhs_shape, rhs_shape, optimize=[(0, 1)])
    return _MatmulStep(lhs_labels, rhs_labels, output, lhs_shape, rhs_shape)


class _MatmulStep:
    """``lhs ⋆ rhs`` as one matrix product: ``lhs`` with its kept axes first and the summed
    ones last, times ``rhs`` with the summed axes first (in ``lhs``'s order), the result
    seen in the output's label order.  The output order is a view: the next step's
    reshape copies at most once, and not at all when the order already fits, as in a TT
    chain contracted from one end."""

    def __init__(self, lhs_labels, rhs_labels, output, lhs_shape, rhs_shape):
        summed = [label for label in lhs_labels if label in rhs_labels]
        lhs_kept = [label for label in lhs_labels if label not in summed]
        rhs_kept = [label for label in rhs_labels if label not in summed]
        self.lhs_perm = _perm(lhs_labels, lhs_kept + summed)
        self.rhs_perm = _perm(rhs_labels, summed + rhs_kept)
        size = dict(zip(lhs_labels, lhs_shape)) | dict(zip(rhs_labels, rhs_shape))
        self.inner = math.prod(size[label] for label in summed)
        self.lhs_rows = math.prod(size[label] for label in lhs_kept)
        self.result_shape = tuple(size[label] for label in lhs_kept + rhs_kept)
        self.out_perm = _perm(lhs_kept + rhs_kept, list(output))

    def __call__(self, lhs: np.ndarray, rhs: np.ndarray) -> np.ndarray:
        a = _transposed(lhs, self.lhs_perm).reshape(self.lhs_rows, self.inner)
        b = _transposed(rhs, self.rhs_perm).reshape(self.inner, -1)
        return _transposed((a @ b).reshape(self.result_shape), self.out_perm)


def _perm(labels, order) -> tuple[int, ...] | None:
    """The axes of ``labels`` in ``order`` (``None`` when already in it)."""
    perm = tuple(list(labels).index(label) for label in order)
    return None if perm == tuple(range(len(perm))) else perm


def _transposed(array: np.ndarray, perm: tuple[int, ...] | None) -> np.ndarray:
    return array if perm is None else array.transpose(perm)
