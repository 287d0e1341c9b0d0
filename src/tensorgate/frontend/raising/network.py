"""Linear tensor networks traced through IR ops.

A value computed from a *root* ``x[..., N]`` by layout ops (reshape, transpose,
squeeze, unsqueeze, flatten) and contractions with constants (einsum, matmul, linear)
is a tensor network: the constants are its terms, each axis of each term carries a
label, and so does each axis of the input and of the value.  ``Network`` tracks that:

* every axis of the root, the value and the terms is a *group* of labels (row-major),
  so a reshape only regroups labels; where a reshape cuts through a label, the label is
  split everywhere it occurs (terms are reshaped, never copied or changed);
* the root's leading axes are batch labels, which no term may touch; its last axis is
  the input, whose labels end up as the input modes ``n_1..n_d``;
* a symbolic batch size is stood in for by a distinct large prime, so shape arithmetic
  stays exact integer arithmetic and a reshape can never split a batch label.

``Traced`` is what a value is: a sum of networks (one per summand of an ``add``) and a
bias vector added last.  Anything outside this model raises ``NotRaised`` with the reason.
"""

from __future__ import annotations

import itertools
import math
from dataclasses import dataclass, field

import numpy as np

from ...ir.ops import einsum_terms
from ...ir.types import TensorType
from .notes import NotRaised

SYMBOLIC_SIZES = (2**61 - 1, 2**89 - 1, 2**107 - 1, 2**127 - 1)
"""Stand-ins for symbolic batch sizes: primes far above any real dim."""


@dataclass(frozen=True)
class Term:
    """A constant of the network, each axis labelled."""

    array: np.ndarray
    labels: tuple[str, ...]


@dataclass
class Network:
    """One tensor network from the root to the current value (see the module docstring)."""

    sizes: dict[str, int]
    batch: tuple[str, ...]
    root: list[list[str]]
    terms: list[Term]
    axes: list[list[str]]
    counter: itertools.count = field(default_factory=itertools.count)

    @classmethod
    def start(cls, root: TensorType) -> "Network":
        """The identity network of a root value ``[..., N]``."""
        *batch_dims, features = root.shape
        if not isinstance(features, int):
            raise NotRaised(f"the input's last dim '{features}' is not static")
        symbolic = iter(SYMBOLIC_SIZES)
        sizes = {}
        for k, dim in enumerate(batch_dims):
            if not isinstance(dim, int):
                dim = next(symbolic, None)
                if dim is None:
                    raise NotRaised(f"the input has more than {len(SYMBOLIC_SIZES)} symbolic dims")
            sizes[f"batch{k}"] = dim
        sizes["in"] = features
        batch = tuple(sizes)[:-1]
        return cls(sizes, batch, [[b] for b in batch] + [["in"]], [], [[b] for b in batch] + [["in"]])

    def copy(self) -> "Network":
        count = next(self.counter)
        return Network(dict(self.sizes), self.batch, [list(g) for g in self.root], list(self.terms),
                       [list(g) for g in self.axes], itertools.count(count))

    def shape(self) -> tuple[int, ...]:
        return tuple(math.prod(self.sizes[label] for label in group) for group in self.axes)

    def fresh(self, size: int) -> str:
        label = f"l{next(self.counter)}"
        self.sizes[label] = int(size)
        return label

    # --- layout ---------------------------------------------------------------------------

    def reshape(self, target: list[int | str], symbolic_names: dict[str, str]) -> "Network":
        """Regroup the labels into axes of sizes ``target``: ints, or symbolic names,
        of which those not in ``symbolic_names`` (a dim name -> batch label) count as
        unknown; at most one may be unknown."""
        net = self.copy()
        dims = [net.sizes[symbolic_names[d]] if isinstance(d, str) and d in symbolic_names else d for d in target]
        unknown = [k for k, d in enumerate(dims) if not isinstance(d, int)]
        total = math.prod(math.prod(net.sizes[label] for label in group) for group in net.axes)
        if total == 0:
            raise NotRaised("a reshape of an empty tensor")
        if len(unknown) > 1:
            raise NotRaised(f"a reshape to {list(target)} has more than one dim of unknown size")
        if unknown:
            known = math.prod(d for d in dims if isinstance(d, int))
            if known == 0 or total % known:
                raise NotRaised(f"a reshape to {list(target)} does not fit {total} elements")
            dims[unknown[0]] = total // known
        if math.prod(dims) != total:
            raise NotRaised(f"a reshape to {list(target)} does not fit the value's {total} elements")
        flat = [label for group in net.axes for label in group if net.sizes[label] != 1]
        net._refine(flat, [d for d in dims if d != 1])
        flat = [label for group in net.axes for label in group if net.sizes[label] != 1]
        owner, position = {}, 0
        for index, dim in enumerate(dims):
            size = 1
            while size < dim:
                owner[flat[position]] = index
                size *= net.sizes[flat[position]]
                position += 1
        owner.update(net._unit_owners(dims))
        net.axes = net._grouped(owner, len(dims))
        return net

    def _unit_owners(self, dims: list[int]) -> dict[str, int]:
        """Size-1 labels paired with size-1 target dims at the same place (after the
        same product of larger sizes), in order: a rank-1 bond keeps its own axis."""
        def places(sizes):
            product, found = 1, []
            for key, size in sizes:
                if size == 1:
                    found.append((product, key))
                product *= size
            return found

        labels = places((label, self.sizes[label]) for group in self.axes for label in group)
        slots = places(enumerate(dims))
        owner = {}
        for product, label in labels:
            match = next((slot for slot in slots if slot[0] == product), None)
            if match is not None:
                owner[label] = match[1]
                slots.remove(match)
        return owner

    def _grouped(self, owner: dict[str, int], count: int) -> list[list[str]]:
        """The current labels in ``count`` groups as ``owner`` assigns them; a size-1
        label it does not assign joins the next assigned label (a size-1 bond stays
        next to the index it was merged with); a group left empty gets a new size-1
        label."""
        groups: list[list[str]] = [[] for _ in range(count)]
        waiting: list[str] = []
        last = None
        for label in (label for group in self.axes for label in group):
            if label in owner:
                last = owner[label]
                groups[last] += waiting + [label]
                waiting = []
            else:
                waiting.append(label)
        if last is not None:
            groups[last] += waiting
        return [group or [self.fresh(1)] for group in groups]

    def _refine(self, flat: list[str], dims: list[int]) -> None:
        """Split labels of ``flat`` so that every boundary between ``dims`` (row-major)
        falls between labels."""
        bounds = set(itertools.accumulate(dims, lambda a, b: a * b))
        start = 1
        for label in flat:
            end = start * self.sizes[label]
            inner = sorted(b for b in bounds if start < b < end)
            if inner:
                cuts = [start] + inner + [end]
                if any(b % a for a, b in zip(cuts, cuts[1:])):
                    raise NotRaised("a reshape regroups the axes in a way that is not a refinement "
                                    "of the factors (its dims do not divide each other)")
                if label in self.batch:
                    raise NotRaised("a reshape splits a batch axis")
                self._split(label, [b // a for a, b in zip(cuts, cuts[1:])])
            start = end

    def _split(self, label: str, parts: list[int]) -> None:
        """Replace ``label`` by new labels of sizes ``parts`` (row-major) everywhere."""
        new = [self.fresh(p) for p in parts]

        def regroup(group: list[str]) -> list[str]:
            return [x for old in group for x in (new if old == label else [old])]

        self.root = [regroup(g) for g in self.root]
        self.axes = [regroup(g) for g in self.axes]
        terms = []
        for term in self.terms:
            if label in term.labels:
                shape = [s for old, s in zip(term.labels, term.array.shape) for s in (parts if old == label else [s])]
                term = Term(term.array.reshape(shape), tuple(regroup(list(term.labels))))
            terms.append(term)
        self.terms = terms

    def transpose(self, perm: list[int]) -> "Network":
        net = self.copy()
        net.axes = [net.axes[p] for p in perm]
        return net

    def squeeze(self, axes: list[int]) -> "Network":
        net = self.copy()
        axes = {a % len(net.axes) for a in axes}
        net.axes = [group for k, group in enumerate(net.axes) if k not in axes]
        return net

    def unsqueeze(self, axes: list[int]) -> "Network":
        net = self.copy()
        rank = len(net.axes) + len(axes)
        axes = {a % rank for a in axes}
        rest = iter(net.axes)
        net.axes = [[net.fresh(1)] if k in axes else next(rest) for k in range(rank)]
        return net

    # --- contraction ----------------------------------------------------------------------

    def einsum(self, equation: str, operands: list[np.ndarray | None]) -> "Network":
        """Contract with constants: ``operands`` holds the constant arrays in their
        places and ``None`` where this network's value goes."""
        net = self.copy()
        ranks = [len(net.axes) if a is None else a.ndim for a in operands]
        try:
            terms, output = einsum_terms(equation, ranks)
        except ValueError as exc:
            raise NotRaised(str(exc)) from None
        if any(len(set(term)) != len(term) for term in terms):
            raise NotRaised(f"einsum '{equation}' takes a diagonal (a label repeated in one operand)")
        (mine,) = [term for term, a in zip(terms, operands) if a is None]
        groups = dict(zip(mine, net.axes))
        for term, array in zip(terms, operands):
            if array is not None:
                net._add_term(array, term, groups)
        for letter in set(mine) - set(output) - set("".join(t for t, a in zip(terms, operands) if a is not None)):
            if any(net.sizes[label] != 1 for label in groups[letter]):
                raise NotRaised(f"einsum '{equation}' sums over an axis of the input without a constant")
        net.axes = [groups[letter] for letter in output]
        return net

    def _add_term(self, array: np.ndarray, term: str, groups: dict[str, list[str]]) -> None:
        shape, labels = [], []
        for letter, size in zip(term, array.shape):
            group = groups.get(letter)
            if group is None:
                group = groups[letter] = [self.fresh(size)]
            sizes = [self.sizes[label] for label in group]
            if set(group) & set(self.batch):
                raise NotRaised("a constant is contracted with a batch axis of the input")
            if math.prod(sizes) != size:
                raise NotRaised(f"a constant's axis of size {size} meets an axis of size {math.prod(sizes)}")
            shape += sizes
            labels += group
        self.terms = self.terms + [Term(array.reshape(shape), tuple(labels))]


def matmul_equation(a_shape: tuple, b_shape: tuple) -> str:
    """The einsum equation of NumPy's ``matmul`` for operands of these shapes.  Batch
    dims broadcast: equal dims share a letter; a dim of 1 against another gets its own
    letter and leaves the other's in the result."""
    letters = iter("abcdefghlmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ")
    width = max(len(a_shape), len(b_shape), 2) - 2
    a_batch = [None] * (width - len(a_shape[:-2])) + list(a_shape[:-2])
    b_batch = [None] * (width - len(b_shape[:-2])) + list(b_shape[:-2])
    a_term, b_term, out = "", "", ""
    for da, db in zip(a_batch, b_batch):
        la, lb = next(letters), next(letters)
        if da is not None and db is not None and da != 1 and db != 1:
            lb = la
        a_term += la if da is not None else ""
        b_term += lb if db is not None else ""
        out += lb if da is None or da == 1 and db is not None else la
    a_term += "ij" if len(a_shape) > 1 else "j"
    b_term += "jk" if len(b_shape) > 1 else "j"
    out += ("i" if len(a_shape) > 1 else "") + ("k" if len(b_shape) > 1 else "")
    return f"{a_term},{b_term}->{out}"


@dataclass
class Traced:
    """A value linear in the root: the sum of ``networks``, plus ``bias`` ([M]) if any."""

    networks: list[Network]
    bias: np.ndarray | None = None

    def map(self, fn) -> "Traced":
        """Apply a linear step to every summand (not allowed once a bias is added)."""
        if self.bias is not None:
            raise NotRaised("a map is applied after a bias was added")
        return Traced([fn(net) for net in self.networks])

    def plus(self, other: "Traced") -> "Traced":
        if self.networks[0].shape() != other.networks[0].shape():
            raise NotRaised("an add sums values of different shapes")
        bias = self.bias if other.bias is None else other.bias if self.bias is None else self.bias + other.bias
        return Traced(self.networks + other.networks, bias)

    def plus_bias(self, constant: np.ndarray) -> "Traced | None":
        """Add a constant that is the same for every batch row (a scalar, ``[M]``,
        ``[1, .., M]``); ``None`` for any other constant, whose add is then no part of
        the map."""
        width = self.networks[0].shape()[-1]
        rank = len(self.networks[0].axes)
        if constant.ndim > rank or math.prod(constant.shape[:-1]) != 1 or constant.size not in (1, width):
            return None
        vector = np.broadcast_to(constant.reshape(-1), (width,))
        return Traced(self.networks, vector.copy() if self.bias is None else self.bias + vector)
