"""Recognize a traced tensor network as a ``tt``, ``bt``, ``ht`` or ``dense`` map.

The network's output modes ``m_1..m_d`` are the labels of the value's last axis and its
input modes ``n_1..n_d`` the labels of the root's last axis, both row-major; mode ``k``
pairs ``m_k`` with ``n_k`` and both must sit in one tensor (a TT core, a BT factor, an
HT leaf).  The rest of the structure decides the format:

* ``tt``: one network of ``d`` cores, core ``k`` sharing one bond with core ``k+1`` and
  none with any other (a bond from the last core back to the first is a tensor ring,
  which is not a format here);
* ``bt``: each summand one Tucker block: ``d`` factors and a core whose ``d`` axes are
  bonds to them, every block tensorized alike;
* ``ht``: ``d`` leaves and ``d - 1`` transfer tensors forming a binary tree whose root
  has a rank-1 (size-1, dangling) parent axis; of a transfer's two children the one
  holding the lower mode is the left (so the tree does not depend on how an exporter
  happened to permute the stored axes);
* ``dense``: one network of one matrix.

The stored arrays become the map's tensors with their values untouched: only axes are
permuted into the format's layout and size-1 axes added or dropped (a core a model
stores as ``(m, n, r)`` is the format's ``(1, m, n, r)``).  Size-1 labels that do not
link two tensors are squeezed first.
"""

from __future__ import annotations

import math
from collections import Counter
from dataclasses import dataclass

import numpy as np

from ...errors import VerifyError
from ...ir.linear_map import DenseMap, LinearMap
from ...ir.tensor_formats import BTMap, HTMap, TTMap
from .network import Network, Term, Traced
from .notes import NotRaised


@dataclass
class _Modes:
    """One network reduced to what the formats look at."""

    rows: list[str]
    cols: list[str]
    terms: list[Term]
    had_dangling: list[bool]
    sizes: dict[str, int]

    def term_of(self, label: str) -> int:
        return next(k for k, term in enumerate(self.terms) if label in term.labels)

    def bonds(self, index: int) -> list[str]:
        return [label for label in self.terms[index].labels if label not in self.rows and label not in self.cols]

    def mode_terms(self) -> list[int]:
        """The tensor holding each mode, checking that ``m_k`` and ``n_k`` share it."""
        found = []
        for k, (row, col) in enumerate(zip(self.rows, self.cols)):
            if self.term_of(row) != self.term_of(col):
                raise NotRaised(f"output mode {k} and input mode {k} are in different tensors")
            found.append(self.term_of(row))
        if len(set(found)) != len(found):
            raise NotRaised("one tensor holds several modes")
        return found

    def arranged(self, index: int, order: list[str]) -> np.ndarray:
        """Term ``index``'s array with its axes in ``order``."""
        term = self.terms[index]
        if sorted(order) != sorted(term.labels):
            raise NotRaised("a tensor has axes that its place in the format does not account for")
        return np.transpose(term.array, [term.labels.index(label) for label in order])


def match_map(traced: Traced) -> LinearMap:
    """The map ``traced`` computes (its bias aside), or ``NotRaised`` saying why not."""
    nets = [_modes(net) for net in traced.networks]
    try:
        if len(nets) > 1:
            linear_map = _match_bt(nets)
        else:
            linear_map = _match_single(nets[0])
        linear_map.verify()
    except VerifyError as exc:
        raise NotRaised(str(exc)) from None
    return linear_map


def _match_single(net: _Modes) -> LinearMap:
    if len(net.terms) == 1:
        matrix = net.arranged(0, net.rows + net.cols)
        return DenseMap(matrix.reshape(math.prod(matrix.shape[:len(net.rows)]), -1))
    modes = net.mode_terms()
    others = [k for k in range(len(net.terms)) if k not in modes]
    if not others:
        return _match_tt(net, modes)
    if len(others) == 1:
        core = others[0]
        # Two modes: an HT root (1, r, r) and a 2-mode Tucker core (R, R) look alike
        # but for the root's size-1 parent axis, if the graph still shows it.
        if len(modes) == 2 and net.had_dangling[core] and len(net.terms[core].labels) == 2:
            return _match_ht(net, modes, others)
        return _match_bt([net])
    return _match_ht(net, modes, others)


def _modes(net: Network) -> _Modes:
    """Check the network maps the root's batch axes through and reduce it to modes."""
    *batch_axes, out_group = net.axes
    if len(batch_axes) != len(net.batch):
        raise NotRaised(f"the result has rank {len(net.axes)}, the input {len(net.batch) + 1}")
    for group, label in zip(batch_axes, net.batch):
        real = [x for x in group if net.sizes[x] != 1]
        if real != ([label] if net.sizes[label] != 1 else []):
            raise NotRaised("the result's leading axes are not the input's batch axes")
    rows = [x for x in out_group if net.sizes[x] != 1]
    cols = [x for x in net.root[-1] if net.sizes[x] != 1]
    uses = Counter(label for term in net.terms for label in term.labels)
    open_labels = {label for group in net.axes for label in group}
    if any(uses[label] != 1 for label in rows + cols):
        raise NotRaised("an input or output mode is shared by several tensors or by none")
    terms, had_dangling = [], []
    for term in net.terms:
        keep = [k for k, label in enumerate(term.labels)
                if net.sizes[label] != 1 or uses[label] == 2 and label not in out_group]
        if any(uses[label] > 2 for label in term.labels):
            raise NotRaised("an index is shared by more than two tensors")
        for label in term.labels:
            if uses[label] == 1 and net.sizes[label] != 1 and label not in rows + cols:
                raise NotRaised("a tensor has an axis summed on its own")
        shape = [term.array.shape[k] for k in keep]
        terms.append(Term(term.array.reshape(shape), tuple(term.labels[k] for k in keep)))
        had_dangling.append(any(uses[label] == 1 and net.sizes[label] == 1 and label not in open_labels
                                for label in term.labels))
    if len(rows) != len(cols):
        raise NotRaised(f"the input splits into {len(cols)} modes and the output into {len(rows)}; "
                        "a tt/bt/ht map pairs them one to one")
    return _Modes(rows, cols, terms, had_dangling, net.sizes)


def _factors(net: _Modes) -> tuple[list[int], list[int]]:
    return [net.sizes[r] for r in net.rows], [net.sizes[c] for c in net.cols]


def _match_tt(net: _Modes, modes: list[int]) -> TTMap:
    d = len(modes)
    links: list[list[str]] = [[] for _ in range(d)]
    for k in range(d):
        for j in range(k + 1, d):
            shared = set(net.bonds(modes[k])) & set(net.bonds(modes[j]))
            if shared and j != k + 1:
                raise NotRaised("the first and last cores share a bond (a tensor ring)" if (k, j) == (0, d - 1)
                                else f"cores {k} and {j} share a bond but are not neighbours")
            if j == k + 1:
                if len(shared) > 1:
                    raise NotRaised(f"cores {k} and {k + 1} share {len(shared)} bonds, a tensor train needs 1")
                links[k] = list(shared)
    cores = []
    for k, index in enumerate(modes):
        before = links[k - 1] if k else []
        after = links[k]
        if len(net.bonds(index)) != len(before) + len(after):
            raise NotRaised(f"core {k} has an axis that links it to no neighbour")
        core = net.arranged(index, before + [net.rows[k], net.cols[k]] + after)
        core = core if before else core[np.newaxis]  # no bond: rank 1 (the boundary, or a Kronecker factor)
        cores.append(core if after else core[..., np.newaxis])
    return TTMap.from_cores(cores)


def _match_bt(nets: list[_Modes]) -> BTMap:
    blocks, factors = [], None
    for b, net in enumerate(nets):
        modes = net.mode_terms()
        others = [k for k in range(len(net.terms)) if k not in modes]
        if len(others) != 1:
            raise NotRaised(f"summand {b} of {len(nets)} is not one Tucker block (a core and one factor per mode)")
        core = others[0]
        links: list[str | None] = []  # None: no bond, a Tucker rank of 1
        for k, index in enumerate(modes):
            bond = net.bonds(index)
            if len(bond) > 1 or bond and bond[0] not in net.terms[core].labels:
                raise NotRaised(f"block {b}: factor {k} is not linked to the core by one axis")
            links.append(bond[0] if bond else None)
        if len(net.terms[core].labels) != sum(link is not None for link in links):
            raise NotRaised(f"block {b}: the core has axes that link it to no factor")
        if factors is not None and _factors(net) != factors:
            raise NotRaised(f"block {b} is tensorized as {_factors(net)}, block 0 as {factors}")
        factors = _factors(net)
        present = [link for link in links if link is not None]
        core_array = net.arranged(core, present).reshape([net.sizes[link] if link else 1 for link in links])
        blocks.append((core_array, [_with_bond(net.arranged(index, [net.rows[k], net.cols[k]] + [links[k]] * bool(links[k])))
                                    for k, index in enumerate(modes)]))
    return BTMap.from_blocks(blocks)


def _with_bond(factor: np.ndarray) -> np.ndarray:
    """A BT factor ``(m, n, R)``; one stored without its rank axis has ``R = 1``."""
    return factor if factor.ndim == 3 else factor[..., np.newaxis]


def _match_ht(net: _Modes, modes: list[int], transfers: list[int]) -> HTMap:
    d = len(modes)
    roots = [k for k in transfers if len(net.terms[k].labels) == 2]
    if len(transfers) != d - 1 or len(roots) != 1 or any(len(net.terms[k].labels) not in (2, 3) for k in transfers):
        raise NotRaised(f"{len(transfers)} tensors beside the {d} that hold the modes form no tensor train, "
                        "Tucker block or hierarchical Tucker tree")
    if not _is_tree(net):
        raise NotRaised("the tensors linked by their bonds do not form a tree")
    leaf_mode = {index: k for k, index in enumerate(modes)}
    arrays: dict[str, np.ndarray] = {}
    leaves: dict[int, np.ndarray] = {}

    def build(index: int, parent: str | None, path: str):
        if index in leaf_mode:
            k = leaf_mode[index]
            if len(net.bonds(index)) != 1:
                raise NotRaised(f"the tensor of mode {k} has {len(net.bonds(index))} bonds, an HT leaf has 1")
            leaves[k] = net.arranged(index, [net.rows[k], net.cols[k], parent])
            return k
        children = sorted((label for label in net.terms[index].labels if label != parent),
                          key=lambda label: _first_mode(net, _other_term(net, label, index), label, leaf_mode))
        array = net.arranged(index, ([parent] if parent else []) + children)
        arrays[path] = array if parent else array[np.newaxis]
        return [build(_other_term(net, label, index), label, path + side) for side, label in zip("01", children)]

    tree = build(roots[0], None, "")
    return HTMap.from_tree(tree, [leaves[k] for k in range(d)], arrays)


def _is_tree(net: _Modes) -> bool:
    """The tensors with their bonds as edges are connected and have no cycle."""
    bonds = {label for k in range(len(net.terms)) for label in net.bonds(k)}
    reached, frontier = {0}, [0]
    while frontier:
        index = frontier.pop()
        for label in net.bonds(index):
            other = _other_term(net, label, index)
            if other not in reached:
                reached.add(other)
                frontier.append(other)
    return len(reached) == len(net.terms) and len(bonds) == len(net.terms) - 1


def _first_mode(net: _Modes, index: int, parent: str, leaf_mode: dict[int, int]) -> int:
    """The lowest mode in the subtree under tensor ``index`` (reached through ``parent``)."""
    if index in leaf_mode:
        return leaf_mode[index]
    return min(_first_mode(net, _other_term(net, label, index), label, leaf_mode)
               for label in net.terms[index].labels if label != parent)


def _other_term(net: _Modes, label: str, index: int) -> int:
    return next(k for k, term in enumerate(net.terms) if label in term.labels and k != index)
