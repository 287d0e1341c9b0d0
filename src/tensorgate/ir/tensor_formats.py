"""Decomposed linear-map formats: tensor train (``tt``), block term (``bt``) and
hierarchical Tucker (``ht``).

Conventions shared by the formats, the decomposition algorithms and the backends:

* ``W`` is ``out_dim × in_dim`` and ``y = W x``.  It is *tensorized* by
  ``out_factors = (m_1..m_d)`` and ``in_factors = (n_1..n_d)``: the row index
  ``i = (i_1..i_d)`` is row-major over ``m``, the column index ``j = (j_1..j_d)`` row-major
  over ``n``, and mode ``k`` pairs ``i_k`` with ``j_k``.
* Padding: ``Πm = out_dim + out_pad`` and ``Πn = in_dim + in_pad``.  The input is
  zero-padded to ``Πn`` and the output truncated to its first ``out_dim`` entries, so
  ``out_dim``/``in_dim`` are the logical sizes.
* ``tt``: cores ``g{k}`` of shape ``(r_{k-1}, m_k, n_k, r_k)`` with ``r_0 = r_d = 1``;
  ``W[i, j] = g0[:, i_1, j_1, :] ⋯ g{d-1}[:, i_d, j_d, :]``.  ``ranks = [r_0..r_d]``.
* ``bt``: blocks ``b``, each a core ``b{b}.core`` of shape ``(R_1..R_d)`` and factors
  ``b{b}.f{k}`` of shape ``(m_k, n_k, R_k)``;
  ``W[i, j] = Σ_b Σ_r core_b[r] Π_k f_b^{(k)}[i_k, j_k, r_k]``.  ``ranks`` lists each
  block's ``[R_1..R_d]``.
* ``ht``: a binary dimension ``tree`` over modes ``0..d-1`` as nested lists (a leaf is a
  mode number, an inner node a pair, e.g. ``[[0, 1], [2, 3]]``).  A node is named by its
  path from the root (``"0"`` left child, ``"1"`` right child, ``""`` the root).  Leaf
  frames ``u{k}`` have shape ``(m_k, n_k, r_t)``; the inner node at path ``p`` holds the
  transfer tensor ``t{p}`` of shape ``(r_t, r_left, r_right)``; the root's rank is 1.
  ``ranks`` lists ``r_t`` for the nodes in pre-order (root first).

Applying a map contracts the (reshaped) input with the cores as a tensor network, never
rebuilding ``W``.  ``networks()`` exposes each network in einsum form with its default
pairwise contraction order (the fewest multiply-accumulates per input vector), so that
other orders can be costed (``EinsumNetwork.macs``) and run (``EinsumNetwork.contract``)
on the same network.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Any, Iterator, Sequence

import numpy as np
import opt_einsum
from opt_einsum.paths import DynamicProgramming, linear_to_ssa, ssa_to_linear

from ..errors import ExecutionError, VerifyError
from .contraction.map_schedule import MapSchedule
from .linear_map import LinearMap, register_format

FLOAT_DTYPES = (np.dtype(np.float32), np.dtype(np.float64))
TENSOR_DTYPES = FLOAT_DTYPES + (np.dtype(np.int64),)
"""Dtypes a map's tensors may have: float, or int64 fixed-point codes after ``quantize``."""

SSAPath = tuple[tuple[int, int], ...]
"""A pairwise contraction order: operand ids ``0..n-1`` (``0`` is the input), and each
contraction's result takes the next free id (opt_einsum's "SSA path")."""


@dataclass(frozen=True)
class EinsumNetwork:
    """One tensor network ``y = x ⋆ arrays`` in einsum form.

    ``terms[0]`` labels the input reshaped to ``(batch, n_1..n_d)``; ``terms[k]`` labels
    ``arrays[k - 1]``, the tensor named ``names[k]`` (boundary axes of size 1 — a TT's
    ``r_0``/``r_d``, an HT root's rank — are squeezed out of the arrays).  ``output``
    labels the result ``(batch, m_1..m_d)``.  ``sizes`` gives every label's dimension,
    with batch 1.  ``path`` is the default contraction order.
    """

    names: tuple[str, ...]
    terms: tuple[str, ...]
    arrays: tuple[np.ndarray, ...]
    output: str
    sizes: dict[str, int]
    path: SSAPath

    @property
    def equation(self) -> str:
        return ",".join(self.terms) + "->" + self.output

    def contract(self, x: np.ndarray, path: SSAPath | None = None) -> np.ndarray:
        """Apply the network to ``x[batch, n_1..n_d]`` in the order ``path``."""
        order = ssa_to_linear(list(path if path is not None else self.path))
        return opt_einsum.contract(self.equation, x, *self.arrays, optimize=order)

    def macs(self, path: SSAPath | None = None) -> int:
        """Multiply-accumulates per input vector: each pairwise contraction costs the
        product of the dimensions of all labels its two operands carry."""
        live = {index: frozenset(term) for index, term in enumerate(self.terms)}
        next_id = len(self.terms)
        total = 0
        for a, b in path if path is not None else self.path:
            joined = live.pop(a) | live.pop(b)
            total += math.prod(self.sizes[label] for label in joined)
            still_needed = frozenset(self.output).union(*live.values())
            live[next_id] = joined & still_needed
            next_id += 1
        return total

    def dense(self) -> np.ndarray:
        """The network without its input: the tensor ``W[i_1..i_d, j_1..j_d]`` as a
        ``Πm × Πn`` matrix (for analysis and tests)."""
        rows = self.output[1:]
        cols = self.terms[0][1:]
        full = opt_einsum.contract(",".join(self.terms[1:]) + "->" + rows + cols, *self.arrays,
                                   optimize="greedy")
        return full.reshape(math.prod(self.sizes[c] for c in rows), math.prod(self.sizes[c] for c in cols))


class _Labels:
    """Hands out distinct einsum labels and records their sizes."""

    def __init__(self) -> None:
        self.sizes: dict[str, int] = {}

    def new(self, size: int) -> str:
        label = opt_einsum.get_symbol(len(self.sizes))
        self.sizes[label] = int(size)
        return label


OUTER_PRODUCT_SEARCH_LIMIT = 10
"""Networks with at most this many operands search orders with outer products too (the
search grows as 3^n); larger ones only orders that contract connected tensors."""


def best_path(terms: Sequence[str], output: str, sizes: dict[str, int]) -> SSAPath:
    """The order with the fewest multiply-accumulates per input vector: opt_einsum's
    dynamic programming, whose cost of a pairwise step is the product of the sizes of all
    labels of its two operands (``EinsumNetwork.macs``).  Deterministic."""
    if len(terms) == 2:
        return ((0, 1),)
    shapes = [tuple(sizes[label] for label in term) for term in terms]
    search = DynamicProgramming(search_outer=len(terms) <= OUTER_PRODUCT_SEARCH_LIMIT)
    linear, _ = opt_einsum.contract_path(",".join(terms) + "->" + output, *shapes, shapes=True, optimize=search)
    return tuple(tuple(pair) for pair in linear_to_ssa(linear))


class TensorizedMap(LinearMap):
    """What the decomposed formats share: the tensorization, padding and application.

    ``schedule`` is the contraction schedule chosen by ``order-contractions`` (a
    ``ir.contraction.map_schedule.MapSchedule``, kept in ``meta()["schedule"]``) or ``None``;
    when set, ``apply`` executes exactly its steps instead of the default order.
    ``rel_error`` is the relative Frobenius error ``‖W − Ŵ‖/‖W‖`` of the decomposition
    that produced the map (set by ``decompose``, kept in ``meta()["rel_error"]``), or
    ``None`` when unknown (e.g. cores imported as trained).
    """

    def __init__(self, out_factors: Sequence[int], in_factors: Sequence[int], out_pad: int = 0, in_pad: int = 0):
        self.out_factors = tuple(out_factors)
        self.in_factors = tuple(in_factors)
        self.out_pad = out_pad
        self.in_pad = in_pad
        self._paths: dict[int, SSAPath] = {}
        self.schedule = None
        self.rel_error: float | None = None

    @property
    def d(self) -> int:
        """Number of modes."""
        return len(self.out_factors)

    @property
    def out_dim(self) -> int:
        return math.prod(self.out_factors) - self.out_pad

    @property
    def in_dim(self) -> int:
        return math.prod(self.in_factors) - self.in_pad

    def networks(self) -> list[EinsumNetwork]:
        """The tensor networks whose results add up to ``W x`` (one, or one per BT block),
        each with its default contraction order, ``best_path`` (found once per map)."""
        raise NotImplementedError

    def _network(self, index: int, names: Sequence[str], terms: Sequence[str], arrays: Sequence[np.ndarray],
                 output: str, sizes: dict[str, int]) -> EinsumNetwork:
        if index not in self._paths:
            self._paths[index] = best_path(terms, output, sizes)
        return EinsumNetwork(tuple(names), tuple(terms), tuple(arrays), output, sizes, self._paths[index])

    def apply(self, x: np.ndarray) -> np.ndarray:
        x = np.asarray(x)
        if x.ndim == 0 or x.shape[-1] != self.in_dim:
            raise ExecutionError(f"{self.format} map {self.out_dim}x{self.in_dim}: input of shape "
                                 f"{x.shape} does not end in {self.in_dim}")
        rows = x.reshape(-1, self.in_dim)
        if self.in_pad:
            rows = np.concatenate([rows, np.zeros((rows.shape[0], self.in_pad), rows.dtype)], axis=1)
        tensor = rows.reshape((rows.shape[0],) + self.in_factors)
        if self.schedule is not None:
            y = self.schedule.apply(self, tensor)
        else:
            y = sum(network.contract(tensor) for network in self.networks())
        y = y.reshape(rows.shape[0], -1)[:, : self.out_dim]
        return y.reshape(x.shape[:-1] + (self.out_dim,))

    def to_dense(self) -> np.ndarray:
        full = sum(network.dense() for network in self.networks())
        return full[: self.out_dim, : self.in_dim]

    def macs(self) -> int:
        """Multiply-accumulates per input vector in the scheduled order if there is a
        schedule, else the default order (padding included; the additions of BT blocks
        are not counted)."""
        if self.schedule is not None:
            return self.schedule.macs_per_vector()
        return sum(network.macs() for network in self.networks())

    def _annotation_meta(self) -> dict[str, Any]:
        meta: dict[str, Any] = {} if self.rel_error is None else {"rel_error": self.rel_error}
        if self.schedule is not None:
            meta["schedule"] = self.schedule.to_meta()
        return meta

    def _with_annotations(self, meta: dict[str, Any]) -> "TensorizedMap":
        """``self`` with the error and schedule of ``meta`` attached (the schedule checked
        against this map)."""
        self.rel_error = meta.get("rel_error")
        if "schedule" in meta:
            self.verify()
            self.schedule = MapSchedule.from_meta(self, meta["schedule"])
        return self

    def _tensorization_meta(self) -> dict[str, Any]:
        meta: dict[str, Any] = {"out_factors": list(self.out_factors), "in_factors": list(self.in_factors)}
        if self.out_pad:
            meta["out_pad"] = self.out_pad
        if self.in_pad:
            meta["in_pad"] = self.in_pad
        return meta

    @classmethod
    def _tensorization_parts(cls, meta: dict[str, Any]) -> dict[str, Any]:
        return {"out_factors": _required(cls.format, meta, "out_factors"),
                "in_factors": _required(cls.format, meta, "in_factors"),
                "out_pad": meta.get("out_pad", 0), "in_pad": meta.get("in_pad", 0)}

    def _verify_tensorization(self) -> None:
        for key in ("out_factors", "in_factors"):
            factors = getattr(self, key)
            if not factors or not all(_is_int(f) and f >= 1 for f in factors):
                raise VerifyError(f"{self.format} map: {key} {list(factors)} must be one or more positive integers")
        if len(self.out_factors) != len(self.in_factors):
            raise VerifyError(f"{self.format} map: out_factors {list(self.out_factors)} and in_factors "
                              f"{list(self.in_factors)} have different numbers of modes")
        for key, factors in (("out_pad", self.out_factors), ("in_pad", self.in_factors)):
            pad, total = getattr(self, key), math.prod(factors)
            if not (_is_int(pad) and 0 <= pad < total):
                raise VerifyError(f"{self.format} map: {key} {pad} must be an integer in [0, {total}) "
                                  f"(the product of {list(factors)})")

    def _verify_tensors(self, expected: dict[str, tuple[int, ...]], source: str) -> None:
        """Check each tensor's dtype and its shape against ``expected`` (derived from ``source``)."""
        tensors = self.tensors()
        for name, shape in expected.items():
            array = tensors[name]
            if not isinstance(array, np.ndarray) or array.dtype not in TENSOR_DTYPES:
                kind = array.dtype if isinstance(array, np.ndarray) else type(array).__name__
                raise VerifyError(f"{self.format} map: tensor '{name}' has type {kind}, expected float32 or "
                                  "float64 (or int64 fixed-point codes)")
            if array.shape != shape:
                raise VerifyError(f"{self.format} map: tensor '{name}' has shape {array.shape}, "
                                  f"expected {shape} from {source}")
        dtypes = sorted({str(t.dtype) for t in tensors.values()})
        if len(dtypes) > 1:
            raise VerifyError(f"{self.format} map: tensors mix dtypes {', '.join(dtypes)}")

    def _verify_rank_list(self, key: str, ranks: Any, length: int) -> None:
        well_formed = isinstance(ranks, (list, tuple)) and len(ranks) == length
        if not well_formed or not all(_is_int(r) and r >= 1 for r in ranks):
            raise VerifyError(f"{self.format} map: {key} {ranks} must be {length} positive integers")


def _is_int(value: Any) -> bool:
    return isinstance(value, (int, np.integer)) and not isinstance(value, (bool, np.bool_))


def _required(format_name: str, meta: dict[str, Any], key: str) -> Any:
    if key not in meta:
        raise VerifyError(f"{format_name} map: meta entry '{key}' is missing")
    return meta[key]


def _take_tensors(format_name: str, tensors: dict[str, np.ndarray], names: list[str]) -> list[np.ndarray]:
    """The tensors ``names`` in order; any missing or unexpected name is an error."""
    missing = [n for n in names if n not in tensors]
    extra = sorted(set(tensors) - set(names))
    if missing or extra:
        problem = f"missing {', '.join(missing)}" if missing else f"unexpected {', '.join(extra)}"
        raise VerifyError(f"{format_name} map: tensors {problem} (expected {', '.join(names)})")
    return [tensors[n] for n in names]


def _squeezed(array: np.ndarray, drop: Sequence[int]) -> np.ndarray:
    """``array`` without the (size-1) axes ``drop``."""
    return array.reshape(tuple(s for axis, s in enumerate(array.shape) if axis not in drop))


@register_format
class TTMap(TensorizedMap):
    """Tensor train (TT-matrix): cores ``g{k}`` of shape ``(r_{k-1}, m_k, n_k, r_k)``."""

    format = "tt"

    def __init__(self, cores: Sequence[np.ndarray], *, out_factors: Sequence[int], in_factors: Sequence[int],
                 ranks: Sequence[int], out_pad: int = 0, in_pad: int = 0):
        super().__init__(out_factors, in_factors, out_pad, in_pad)
        self.cores = [np.asarray(c) for c in cores]
        self.ranks = tuple(ranks)

    @classmethod
    def from_cores(cls, cores: Sequence[np.ndarray], out_pad: int = 0, in_pad: int = 0) -> "TTMap":
        """A map whose factors and ranks are read off the cores' shapes."""
        cores = [np.asarray(c) for c in cores]
        if not cores or any(c.ndim != 4 for c in cores):
            raise VerifyError(f"tt map: cores must be 4-d, got shapes {[c.shape for c in cores]}")
        return cls(cores, out_factors=[c.shape[1] for c in cores], in_factors=[c.shape[2] for c in cores],
                   ranks=[cores[0].shape[0]] + [c.shape[3] for c in cores], out_pad=out_pad, in_pad=in_pad)

    def meta(self) -> dict[str, Any]:
        return {**self._tensorization_meta(), "ranks": list(self.ranks), **self._annotation_meta()}

    def tensors(self) -> dict[str, np.ndarray]:
        return {f"g{k}": core for k, core in enumerate(self.cores)}

    @classmethod
    def from_parts(cls, meta: dict[str, Any], tensors: dict[str, np.ndarray]) -> "TTMap":
        parts = cls._tensorization_parts(meta)
        names = [f"g{k}" for k in range(len(parts["out_factors"]))]
        return cls(_take_tensors(cls.format, tensors, names), ranks=_required(cls.format, meta, "ranks"),
                   **parts)._with_annotations(meta)

    def verify(self) -> None:
        self._verify_tensorization()
        self._verify_rank_list("ranks", self.ranks, self.d + 1)
        if self.ranks[0] != 1 or self.ranks[-1] != 1:
            raise VerifyError(f"tt map: ranks {list(self.ranks)} must start and end with 1")
        if len(self.cores) != self.d:
            raise VerifyError(f"tt map: {len(self.cores)} cores for {self.d} modes")
        expected = {f"g{k}": (self.ranks[k], m, n, self.ranks[k + 1])
                    for k, (m, n) in enumerate(zip(self.out_factors, self.in_factors))}
        self._verify_tensors(expected, f"out_factors {list(self.out_factors)}, in_factors "
                                       f"{list(self.in_factors)} and ranks {list(self.ranks)}")

    def networks(self) -> list[EinsumNetwork]:
        labels = _Labels()
        batch = labels.new(1)
        rows = [labels.new(m) for m in self.out_factors]
        cols = [labels.new(n) for n in self.in_factors]
        bonds = [""] + [labels.new(r) for r in self.ranks[1:-1]] + [""]
        terms = [batch + "".join(cols)]
        arrays = []
        for k, core in enumerate(self.cores):
            terms.append(bonds[k] + rows[k] + cols[k] + bonds[k + 1])
            arrays.append(_squeezed(core, [axis for axis, bond in ((0, bonds[k]), (3, bonds[k + 1])) if not bond]))
        return [self._network(0, ["x", *self.tensors()], terms, arrays, batch + "".join(rows), labels.sizes)]


@register_format
class BTMap(TensorizedMap):
    """Block term: a sum of Tucker blocks, each a core ``(R_1..R_d)`` and factors
    ``(m_k, n_k, R_k)``."""

    format = "bt"

    def __init__(self, blocks: Sequence[tuple[np.ndarray, Sequence[np.ndarray]]], *, out_factors: Sequence[int],
                 in_factors: Sequence[int], ranks: Sequence[Sequence[int]], out_pad: int = 0, in_pad: int = 0):
        super().__init__(out_factors, in_factors, out_pad, in_pad)
        self.blocks = [(np.asarray(core), [np.asarray(f) for f in factors]) for core, factors in blocks]
        self.ranks = tuple(tuple(r) if isinstance(r, (list, tuple)) else r for r in ranks)

    @classmethod
    def from_blocks(cls, blocks: Sequence[tuple[np.ndarray, Sequence[np.ndarray]]], out_pad: int = 0,
                    in_pad: int = 0) -> "BTMap":
        """A map whose factors and ranks are read off the first block's shapes."""
        _, factors = blocks[0]
        if any(np.ndim(f) != 3 for f in factors):
            raise VerifyError(f"bt map: factors must be 3-d, got shapes {[np.shape(f) for f in factors]}")
        return cls(blocks, out_factors=[np.shape(f)[0] for f in factors], in_factors=[np.shape(f)[1] for f in factors],
                   ranks=[np.shape(core) for core, _ in blocks], out_pad=out_pad, in_pad=in_pad)

    def meta(self) -> dict[str, Any]:
        return {**self._tensorization_meta(), "ranks": [list(r) for r in self.ranks], **self._annotation_meta()}

    def tensors(self) -> dict[str, np.ndarray]:
        tensors = {}
        for b, (core, factors) in enumerate(self.blocks):
            tensors[f"b{b}.core"] = core
            tensors.update({f"b{b}.f{k}": f for k, f in enumerate(factors)})
        return tensors

    @staticmethod
    def _names(num_blocks: int, d: int) -> list[str]:
        return [name for b in range(num_blocks) for name in [f"b{b}.core"] + [f"b{b}.f{k}" for k in range(d)]]

    @classmethod
    def from_parts(cls, meta: dict[str, Any], tensors: dict[str, np.ndarray]) -> "BTMap":
        parts = cls._tensorization_parts(meta)
        ranks = _required(cls.format, meta, "ranks")
        d = len(parts["out_factors"])
        if not isinstance(ranks, list) or not ranks:
            raise VerifyError(f"bt map: ranks {ranks} must list each block's Tucker ranks")
        arrays = _take_tensors(cls.format, tensors, cls._names(len(ranks), d))
        blocks = [(arrays[b * (d + 1)], arrays[b * (d + 1) + 1:(b + 1) * (d + 1)]) for b in range(len(ranks))]
        return cls(blocks, ranks=ranks, **parts)._with_annotations(meta)

    def verify(self) -> None:
        self._verify_tensorization()
        if not self.ranks or len(self.ranks) != len(self.blocks):
            raise VerifyError(f"bt map: ranks list {len(self.ranks)} blocks but there are {len(self.blocks)}")
        expected = {}
        for b, (block_ranks, (_, factors)) in enumerate(zip(self.ranks, self.blocks)):
            self._verify_rank_list(f"block {b} ranks", block_ranks, self.d)
            if len(factors) != self.d:
                raise VerifyError(f"bt map: block {b} has {len(factors)} factors for {self.d} modes")
            expected[f"b{b}.core"] = tuple(block_ranks)
            for k, (m, n, r) in enumerate(zip(self.out_factors, self.in_factors, block_ranks)):
                expected[f"b{b}.f{k}"] = (m, n, r)
        self._verify_tensors(expected, f"out_factors {list(self.out_factors)}, in_factors "
                                       f"{list(self.in_factors)} and ranks {[list(r) for r in self.ranks]}")

    def networks(self) -> list[EinsumNetwork]:
        networks = []
        for b, (core, factors) in enumerate(self.blocks):
            labels = _Labels()
            batch = labels.new(1)
            rows = [labels.new(m) for m in self.out_factors]
            cols = [labels.new(n) for n in self.in_factors]
            tucker = [labels.new(r) for r in core.shape]
            terms = [batch + "".join(cols), "".join(tucker)] + [rows[k] + cols[k] + tucker[k] for k in range(self.d)]
            names = ["x", f"b{b}.core"] + [f"b{b}.f{k}" for k in range(self.d)]
            networks.append(self._network(b, names, terms, [core, *factors], batch + "".join(rows), labels.sizes))
        return networks


Tree = Any
"""An HT dimension tree: a mode number (leaf) or a two-element list of subtrees."""


def balanced_tree(modes: Sequence[int] | int) -> Tree:
    """The balanced binary dimension tree over ``modes`` (or over ``0..modes-1``),
    left half rounded up: ``balanced_tree(3) == [[0, 1], 2]``."""
    modes = list(range(modes)) if isinstance(modes, int) else list(modes)
    if len(modes) == 1:
        return modes[0]
    half = (len(modes) + 1) // 2
    return [balanced_tree(modes[:half]), balanced_tree(modes[half:])]


def tree_nodes(tree: Tree, path: str = "") -> Iterator[tuple[str, Tree]]:
    """``(path, node)`` for every node in pre-order (root first, then left, then right)."""
    yield path, tree
    if isinstance(tree, (list, tuple)):
        yield from tree_nodes(tree[0], path + "0")
        yield from tree_nodes(tree[1], path + "1")


def tree_modes(tree: Tree) -> list[int]:
    """The modes under ``tree``, left to right."""
    return [node for _, node in tree_nodes(tree) if not isinstance(node, (list, tuple))]


def check_tree(tree: Tree, d: int) -> None:
    """Raise ``VerifyError`` unless ``tree`` is a binary tree holding each mode ``0..d-1`` once."""
    for _, node in tree_nodes(tree):
        if isinstance(node, (list, tuple)):
            if len(node) != 2:
                raise VerifyError(f"ht map: tree {tree} has a node with {len(node)} children, expected 2")
        elif not _is_int(node):
            raise VerifyError(f"ht map: tree {tree} has a leaf {node!r} that is not a mode number")
    if sorted(tree_modes(tree)) != list(range(d)):
        raise VerifyError(f"ht map: tree {tree} must hold each mode 0..{d - 1} exactly once")


def _as_lists(tree: Tree) -> Tree:
    return [_as_lists(child) for child in tree] if isinstance(tree, (list, tuple)) else int(tree)


@register_format
class HTMap(TensorizedMap):
    """Hierarchical Tucker: leaf frames ``u{k}`` of shape ``(m_k, n_k, r)`` and transfer
    tensors ``t{path}`` of shape ``(r_t, r_left, r_right)`` over a binary dimension tree."""

    format = "ht"

    def __init__(self, leaves: Sequence[np.ndarray], transfers: dict[str, np.ndarray], *, tree: Tree,
                 out_factors: Sequence[int], in_factors: Sequence[int], ranks: Sequence[int],
                 out_pad: int = 0, in_pad: int = 0):
        super().__init__(out_factors, in_factors, out_pad, in_pad)
        self.leaves = [np.asarray(u) for u in leaves]
        self.transfers = {path: np.asarray(t) for path, t in transfers.items()}
        self.tree = tree
        self.ranks = tuple(ranks)

    @classmethod
    def from_tree(cls, tree: Tree, leaves: Sequence[np.ndarray], transfers: dict[str, np.ndarray],
                  out_pad: int = 0, in_pad: int = 0) -> "HTMap":
        """A map whose factors and ranks are read off the tensors' shapes."""
        leaves = [np.asarray(u) for u in leaves]
        ranks = [leaves[node].shape[2] if not isinstance(node, (list, tuple)) else transfers[path].shape[0]
                 for path, node in tree_nodes(tree)]
        return cls(leaves, transfers, tree=tree, out_factors=[u.shape[0] for u in leaves],
                   in_factors=[u.shape[1] for u in leaves], ranks=ranks, out_pad=out_pad, in_pad=in_pad)

    def _inner_paths(self) -> list[str]:
        return [path for path, node in tree_nodes(self.tree) if isinstance(node, (list, tuple))]

    def meta(self) -> dict[str, Any]:
        return {**self._tensorization_meta(), "tree": _as_lists(self.tree), "ranks": list(self.ranks),
                **self._annotation_meta()}

    def tensors(self) -> dict[str, np.ndarray]:
        tensors = {f"u{k}": u for k, u in enumerate(self.leaves)}
        tensors.update({f"t{path}": self.transfers[path] for path in self._inner_paths() if path in self.transfers})
        return tensors

    @classmethod
    def from_parts(cls, meta: dict[str, Any], tensors: dict[str, np.ndarray]) -> "HTMap":
        parts = cls._tensorization_parts(meta)
        tree = _required(cls.format, meta, "tree")
        d = len(parts["out_factors"])
        check_tree(tree, d)
        inner = [path for path, node in tree_nodes(tree) if isinstance(node, (list, tuple))]
        arrays = _take_tensors(cls.format, tensors, [f"u{k}" for k in range(d)] + [f"t{p}" for p in inner])
        return cls(arrays[:d], dict(zip(inner, arrays[d:])), tree=tree, ranks=_required(cls.format, meta, "ranks"),
                   **parts)._with_annotations(meta)

    def verify(self) -> None:
        self._verify_tensorization()
        check_tree(self.tree, self.d)
        nodes = list(tree_nodes(self.tree))
        self._verify_rank_list("ranks", self.ranks, len(nodes))
        if self.ranks[0] != 1:
            raise VerifyError(f"ht map: ranks {list(self.ranks)} must start with the root's rank 1")
        if len(self.leaves) != self.d:
            raise VerifyError(f"ht map: {len(self.leaves)} leaf frames for {self.d} modes")
        missing = [p for p in self._inner_paths() if p not in self.transfers]
        if missing or len(self.transfers) != len(self._inner_paths()):
            raise VerifyError(f"ht map: transfer tensors {sorted(self.transfers)} do not match the tree's "
                              f"inner nodes {self._inner_paths()}")
        rank_of = {path: rank for (path, _), rank in zip(nodes, self.ranks)}
        expected = {}
        for path, node in nodes:
            if isinstance(node, (list, tuple)):
                expected[f"t{path}"] = (rank_of[path], rank_of[path + "0"], rank_of[path + "1"])
            else:
                expected[f"u{node}"] = (self.out_factors[node], self.in_factors[node], rank_of[path])
        self._verify_tensors(expected, f"out_factors {list(self.out_factors)}, in_factors {list(self.in_factors)}, "
                                       f"tree {_as_lists(self.tree)} and ranks {list(self.ranks)}")

    def networks(self) -> list[EinsumNetwork]:
        labels = _Labels()
        batch = labels.new(1)
        rows = [labels.new(m) for m in self.out_factors]
        cols = [labels.new(n) for n in self.in_factors]
        nodes = list(tree_nodes(self.tree))
        bond = {path: (labels.new(rank) if path else "") for (path, _), rank in zip(nodes, self.ranks)}
        leaf_path = {node: path for path, node in nodes if not isinstance(node, (list, tuple))}
        names, terms, arrays = ["x"], [batch + "".join(cols)], []
        for k in range(self.d):
            names.append(f"u{k}")
            terms.append(rows[k] + cols[k] + bond[leaf_path[k]])
            arrays.append(_squeezed(self.leaves[k], [2] if not leaf_path[k] else []))
        for path in self._inner_paths():
            names.append(f"t{path}")
            terms.append(bond[path] + bond[path + "0"] + bond[path + "1"])
            arrays.append(_squeezed(self.transfers[path], [0] if not path else []))
        return [self._network(0, names, terms, arrays, batch + "".join(rows), labels.sizes)]
