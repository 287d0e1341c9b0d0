"""The tensor network of a decomposed linear map applied to a batch of inputs.

Applying ``y = W x`` with ``W`` in TT, BT or HT format is the contraction of the
input ``x`` (reshaped to ``[batch, n1, …, nd]``) with the map's cores.  A
``TensorNetwork`` names each tensor, gives every axis a label (``"m1"``, ``"n2"``,
``"r1"`` …) and every label a size, and says which labels the result keeps and in
which order.  Exactly one tensor is the *input* (it carries the batch label); all
the others are *weights*, known at compile time.

Conventions (those of ``ir/tensor_formats.py``): ``W`` is ``M × N``, rows are
``m = (m1 … md)`` row-major, columns ``n = (n1 … nd)`` row-major, so the input
tensor is labelled ``(b, n1, …, nd)`` and the result ``(b, m1, …, md)``.  Axes of
size one that appear in only one tensor (the TT boundary ranks ``r0``, ``rd``, the
HT root rank) are dropped: every label of a network appears in at least two
tensors or in the result, so every pairwise step is a plain contraction.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Any, Mapping, Sequence

from opt_einsum import get_symbol

from ...errors import VerifyError

BATCH = "b"
INPUT = "x"


@dataclass(frozen=True)
class NetworkTensor:
    """One tensor of a network: its name and the labels of its axes, in order."""

    name: str
    labels: tuple[str, ...]


class TensorNetwork:
    """Tensors with labelled axes, label sizes, the result labels and which tensor is the input."""

    def __init__(
        self,
        tensors: Sequence[NetworkTensor],
        sizes: Mapping[str, int],
        output: Sequence[str],
        input_name: str = INPUT,
        batch_label: str = BATCH,
    ):
        self.tensors = tuple(tensors)
        self.sizes = dict(sizes)
        self.output = tuple(output)
        self.input_name = input_name
        self.batch_label = batch_label
        self._check()

    def _check(self) -> None:
        names = [t.name for t in self.tensors]
        if len(set(names)) != len(names):
            raise VerifyError(f"tensor network: tensor names repeat: {names}")
        if len(self.tensors) < 2:
            raise VerifyError("tensor network: needs the input and at least one weight tensor")
        if names.count(self.input_name) != 1:
            raise VerifyError(f"tensor network: no input tensor '{self.input_name}' among {names}")
        counts: dict[str, int] = {}
        for tensor in self.tensors:
            if len(set(tensor.labels)) != len(tensor.labels):
                raise VerifyError(f"tensor network: tensor '{tensor.name}' repeats a label: {tensor.labels}")
            for label in tensor.labels:
                counts[label] = counts.get(label, 0) + 1
        for label in counts:
            size = self.sizes.get(label)
            if not isinstance(size, int) or isinstance(size, bool) or size < 1:
                raise VerifyError(f"tensor network: label '{label}' needs a positive integer size, got {size!r}")
        if len(set(self.output)) != len(self.output) or not set(self.output) <= counts.keys():
            raise VerifyError(f"tensor network: output labels {self.output} must be distinct labels of the tensors")
        dangling = [label for label, count in counts.items() if count < 2 and label not in self.output]
        if dangling:
            raise VerifyError(f"tensor network: labels {dangling} appear in one tensor only and not in the output")
        if self.batch_label not in self.input.labels or self.batch_label not in self.output:
            raise VerifyError(f"tensor network: batch label '{self.batch_label}' must label the input and the output")
        if any(self.batch_label in t.labels for t in self.tensors if t.name != self.input_name):
            raise VerifyError(f"tensor network: batch label '{self.batch_label}' labels a weight tensor")

    @property
    def input_index(self) -> int:
        return next(i for i, t in enumerate(self.tensors) if t.name == self.input_name)

    @property
    def input(self) -> NetworkTensor:
        return self.tensors[self.input_index]

    @property
    def batch(self) -> int:
        """The number of input rows the costs are computed for."""
        return self.sizes[self.batch_label]

    def shape(self, index: int) -> tuple[int, ...]:
        return tuple(self.sizes[label] for label in self.tensors[index].labels)

    def size_of(self, labels) -> int:
        """Number of elements of a tensor with these labels."""
        return math.prod(self.sizes[label] for label in labels)

    def with_batch(self, rows: int) -> "TensorNetwork":
        """The same network with the batch label sized ``rows``."""
        return TensorNetwork(self.tensors, {**self.sizes, self.batch_label: rows}, self.output,
                             self.input_name, self.batch_label)

    def weight_params(self) -> int:
        """Elements stored in the weight tensors."""
        return sum(self.size_of(t.labels) for t in self.tensors if t.name != self.input_name)

    def dense_macs(self) -> int:
        """MACs of the dense matrix product: batch × (result elements per row) × (input elements per row)."""
        reduced = [label for label in self.input.labels if label not in self.output]
        return self.size_of(self.output) * self.size_of(reduced)

    def einsum_equation(self) -> str:
        """The whole contraction as an einsum equation (one letter per label)."""
        symbols = self.symbols()
        terms = ["".join(symbols[label] for label in t.labels) for t in self.tensors]
        return ",".join(terms) + "->" + "".join(symbols[label] for label in self.output)

    def symbols(self) -> dict[str, str]:
        """One einsum letter per label, in order of first appearance."""
        labels = dict.fromkeys(label for t in self.tensors for label in t.labels)
        return {label: get_symbol(i) for i, label in enumerate(labels)}

    def to_dict(self) -> dict[str, Any]:
        """Plain lists, strings and ints (for the IR text form and manifests)."""
        return {
            "tensors": [[t.name, list(t.labels)] for t in self.tensors],
            "sizes": [[label, self.sizes[label]] for label in dict.fromkeys(
                label for t in self.tensors for label in t.labels)],
            "output": list(self.output),
            "input": self.input_name,
            "batch": self.batch_label,
        }

    @classmethod
    def from_dict(cls, data: Mapping[str, Any]) -> "TensorNetwork":
        try:
            tensors = [NetworkTensor(str(name), tuple(map(str, labels))) for name, labels in data["tensors"]]
            sizes = {str(label): size for label, size in data["sizes"]}
            return cls(tensors, sizes, [str(x) for x in data["output"]], str(data["input"]), str(data["batch"]))
        except (KeyError, TypeError, ValueError) as exc:
            raise VerifyError(f"tensor network: malformed description ({exc})") from None

    def __eq__(self, other: object) -> bool:
        if not isinstance(other, TensorNetwork):
            return NotImplemented
        return self.to_dict() == other.to_dict()

    __hash__ = None  # type: ignore[assignment]

    def __repr__(self) -> str:
        return f"<TensorNetwork {self.einsum_equation()} batch={self.batch}>"


def _mode_labels(out_factors: Sequence[int], in_factors: Sequence[int]) -> tuple[list[str], list[str], dict]:
    if len(out_factors) != len(in_factors) or not out_factors:
        raise VerifyError(f"tensor network: out factors {list(out_factors)} and in factors "
                          f"{list(in_factors)} need the same non-zero length")
    d = len(out_factors)
    m = [f"m{k + 1}" for k in range(d)]
    n = [f"n{k + 1}" for k in range(d)]
    return m, n, {**dict(zip(m, out_factors)), **dict(zip(n, in_factors))}


def _with_input(weights: list[NetworkTensor], sizes: dict, m: list[str], n: list[str],
                batch: int) -> TensorNetwork:
    tensors = weights + [NetworkTensor(INPUT, (BATCH, *n))]
    return TensorNetwork(tensors, {**sizes, BATCH: batch}, (BATCH, *m))


def network_for_tt(out_factors: Sequence[int], in_factors: Sequence[int], ranks: Sequence[int],
                   batch: int = 1) -> TensorNetwork:
    """TT-matrix: cores ``core{k}`` of shape ``(r_k, m_{k+1}, n_{k+1}, r_{k+1})``, ``ranks = [1, r1, …, 1]``.

    Tensor order (and so the naive order): ``core0 … core{d-1}``, then the input.
    """
    m, n, sizes = _mode_labels(out_factors, in_factors)
    d = len(m)
    if len(ranks) != d + 1 or ranks[0] != 1 or ranks[-1] != 1:
        raise VerifyError(f"tensor network: TT ranks {list(ranks)} must be [1, …, 1] of length {d + 1}")
    r = [f"r{k}" for k in range(d + 1)]
    sizes.update(zip(r, ranks))
    cores = []
    for k in range(d):
        labels = ([r[k]] if k > 0 else []) + [m[k], n[k]] + ([r[k + 1]] if k < d - 1 else [])
        cores.append(NetworkTensor(f"core{k}", tuple(labels)))
    return _with_input(cores, {label: sizes[label] for label in m + n + r[1:d]}, m, n, batch)


def network_for_bt(out_factors: Sequence[int], in_factors: Sequence[int], ranks: Sequence[int],
                   blocks: int = 1, batch: int = 1) -> TensorNetwork:
    """Block term: ``blocks`` Tucker blocks with core ranks ``(R1 … Rd)`` and factors ``(m_k, n_k, R_k)``.

    The blocks are stacked along a label ``blk`` shared by the core and all factors
    (so ``core`` is ``(blk, R1 … Rd)`` and ``factor{k}`` is ``(blk, m_k, n_k, R_k)``);
    summing over ``blk`` is the sum of the blocks.  With one block ``blk`` is dropped.
    Tensor order: ``core``, ``factor0 … factor{d-1}``, the input.
    """
    m, n, sizes = _mode_labels(out_factors, in_factors)
    d = len(m)
    if len(ranks) != d or blocks < 1:
        raise VerifyError(f"tensor network: BT needs {d} core ranks and at least one block, "
                          f"got ranks {list(ranks)} and {blocks} blocks")
    block = ["blk"] if blocks > 1 else []
    rank_labels = [f"R{k + 1}" for k in range(d)]
    sizes.update(zip(rank_labels, ranks), blk=blocks)
    weights = [NetworkTensor("core", tuple(block + rank_labels))]
    weights += [NetworkTensor(f"factor{k}", tuple(block + [m[k], n[k], rank_labels[k]])) for k in range(d)]
    return _with_input(weights, {label: sizes[label] for label in m + n + rank_labels + block}, m, n, batch)


def network_for_ht(out_factors: Sequence[int], in_factors: Sequence[int], tree: Any,
                   ranks: Mapping[tuple[int, ...], int], batch: int = 1) -> TensorNetwork:
    """Hierarchical Tucker over a binary dimension tree.

    ``tree`` nests two-element lists down to mode numbers, e.g. ``[[0, 1], [2, 3]]``.
    ``ranks`` maps each node, named by the tuple of its modes in tree order
    (``(0,)``, ``(0, 1)``, …), to its rank; the root's rank is 1 and may be left out.
    Nodes are numbered in pre-order (root 0); node ``t`` has edge label ``h{t}`` to
    its parent.  Leaf of mode ``k``: ``leaf{k}`` = ``(m_k, n_k, h_t)``; inner node
    ``t``: ``transfer{t}`` = ``(h_t, h_left, h_right)`` (no ``h_t`` at the root).
    Tensor order: transfers and leaves in pre-order, then the input.
    """
    m, n, sizes = _mode_labels(out_factors, in_factors)
    weights: list[NetworkTensor] = []
    seen_modes: list[int] = []

    def modes_of(node) -> tuple[int, ...]:
        if isinstance(node, int):
            return (node,)
        if not isinstance(node, (list, tuple)) or len(node) != 2:
            raise VerifyError(f"tensor network: HT tree node {node!r} is neither a mode nor a pair")
        return modes_of(node[0]) + modes_of(node[1])

    def rank_of(node) -> int:
        key = modes_of(node)
        if key not in ranks:
            raise VerifyError(f"tensor network: HT ranks lack node {key}")
        return ranks[key]

    def visit(node, edge: str | None) -> None:
        if isinstance(node, int):
            if not 0 <= node < len(m):
                raise VerifyError(f"tensor network: HT tree mode {node} is out of range")
            seen_modes.append(node)
            weights.append(NetworkTensor(f"leaf{node}", (m[node], n[node], edge)))
            return
        index = len(weights)
        child_labels = []
        child_index = index + 1
        for child in node:
            child_labels.append(f"h{child_index}")
            sizes[f"h{child_index}"] = rank_of(child)
            child_index += 2 * len(modes_of(child)) - 1
        weights.append(NetworkTensor(f"transfer{index}", tuple(([edge] if edge else []) + child_labels)))
        for child, label in zip(node, child_labels):
            visit(child, label)

    if isinstance(tree, int):
        raise VerifyError("tensor network: an HT tree needs at least two modes")
    root_rank = ranks.get(modes_of(tree), 1)
    if root_rank != 1:
        raise VerifyError(f"tensor network: HT root rank must be 1, got {root_rank}")
    visit(tree, None)
    if sorted(seen_modes) != list(range(len(m))):
        raise VerifyError(f"tensor network: HT tree {tree!r} must hold each mode 0…{len(m) - 1} once")
    return _with_input(weights, sizes, m, n, batch)
