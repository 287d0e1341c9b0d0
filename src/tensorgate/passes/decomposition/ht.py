"""HT-SVD (Grasedyck 2010) for a tensorized matrix over a binary dimension tree.

Every node ``t`` below the root gets a frame: the leading left singular vectors of a
matricization with the modes of ``t`` as rows.  A leaf's frame is its ``u`` tensor; an
inner node stores its frame in the coordinates of its children's frames, the transfer
tensor ``B_t = U_tᵀ (U_left ⊗ U_right)``.  The root's two children split one spectrum, so
they are truncated together, to the same rank: ``2d − 3`` truncations in all.

With ``eps``, each truncation discards at most ``δ² = ε² ‖W‖² / (2d − 3)``; since
``‖W − W_HT‖² ≤ Σ_t (discarded at t)`` this gives ``‖W − W_HT‖ ≤ ε ‖W‖``.

Two orders:

* ``"root-to-leaves"`` (Grasedyck's Algorithm 1): every frame from ``W`` itself.
  Quasi-optimal: ``‖W − W_HT‖ ≤ √(2d − 3) · ‖W − W_best‖`` for the best HT approximation
  with the same ranks.  Costly: the matricizations of inner nodes have two large sides.
  Its projections are not nested, so the error is only bounded by ``√(Σ_t discarded)``
  and can (rarely) grow a little when ``max_rank`` grows.
* ``"leaves-to-root"`` (the default): nodes in post-order, each frame computed from ``W``
  already projected onto the frames below it, so every unfolding is small.  The
  projections are nested, so the error is exactly ``√(Σ_t discarded)`` (property tests
  check that it never grows with ``max_rank``).  Grasedyck's worst-case quasi-optimality bound for this order is
  weaker, ``(2 + √2)√d``; on random matrices its error is usually a little lower.
"""

from __future__ import annotations

import math
from typing import Literal, Sequence

import numpy as np

from ...errors import PassError, VerifyError
from ...ir.tensor_formats import HTMap, Tree, balanced_tree, check_tree, tree_modes, tree_nodes
from .common import (
    Decomposition, check_cap, check_eps, output_dtype, relative_error, squared_norm, truncated_basis, unfold,
)
from .factorize import Tensorization

Order = Literal["leaves-to-root", "root-to-leaves"]


def ht_rank_bounds(tensorization: Tensorization, tree: Tree) -> list[int]:
    """The largest useful rank of each node (pre-order): the smaller side of its
    matricization, ``min(Π_{k∈t} p_k, Π_{k∉t} p_k)``; the root's is 1."""
    sizes = tensorization.mode_sizes
    total = math.prod(sizes)
    bounds = []
    for path, node in tree_nodes(tree):
        inside = math.prod(sizes[k] for k in tree_modes(node))
        bounds.append(1 if not path else min(inside, total // inside))
    return bounds


def ht_svd(matrix: np.ndarray, tensorization: Tensorization, *, tree: Tree | None = None,
           eps: float | None = None, max_rank: int | None = None, ranks: Sequence[int] | None = None,
           order: Order = "leaves-to-root") -> Decomposition:
    """Decompose ``matrix`` into an HT map over ``tree`` (default: ``balanced_tree(d)``).

    ``eps``: relative Frobenius error bound (``δ = ε‖W‖/√(2d−3)`` per truncation);
    ``max_rank``: cap on every node's rank (clamped to ``ht_rank_bounds``); ``ranks``: the
    exact node ranks in pre-order, root first (excludes ``eps`` and ``max_rank``).  With
    none of them the decomposition is exact.
    """
    d = tensorization.d
    tree = balanced_tree(d) if tree is None else tree
    try:
        check_tree(tree, d)
    except VerifyError as exc:
        raise PassError(str(exc).replace("ht map: ", "ht: ")) from None
    check_eps("ht", eps)
    check_cap("ht", "max-rank", max_rank)
    if order not in ("leaves-to-root", "root-to-leaves"):
        raise PassError(f"ht: unknown order '{order}' (leaves-to-root or root-to-leaves)")
    bounds = ht_rank_bounds(tensorization, tree)
    if ranks is not None:
        if eps is not None or max_rank is not None:
            raise PassError("ht: explicit ranks exclude eps and max-rank")
        check_ht_ranks(ranks, tensorization, tree)
    caps_list = list(ranks) if ranks is not None else [min(b, max_rank or b) for b in bounds]
    caps = {path: cap for (path, _), cap in zip(tree_nodes(tree), caps_list)}

    tensor = tensorization.tensor(matrix)
    norm_sq = squared_norm(tensor)
    threshold_sq = eps**2 * norm_sq / (2 * d - 3) if eps is not None and d > 1 else None
    if d == 1:
        frames, discarded = {"": tensor.reshape(-1, 1)}, 0.0
    elif order == "leaves-to-root":
        frames, discarded = _leaves_to_root(tensor, tree, caps, threshold_sq)
    else:
        frames, discarded = _root_to_leaves(tensor, tree, caps, threshold_sq)

    dtype = output_dtype(matrix)
    leaves, transfers = [None] * d, {}
    for path, node in tree_nodes(tree):
        if isinstance(node, (list, tuple)):
            transfers[path] = frames[path].astype(dtype)
        else:
            leaves[node] = frames[path].reshape(tensorization.out_factors[node], tensorization.in_factors[node],
                                                -1).astype(dtype)
    ht = HTMap.from_tree(tree, leaves, transfers, out_pad=tensorization.out_pad, in_pad=tensorization.in_pad)
    return Decomposition(ht, list(ht.ranks), relative_error(discarded, norm_sq))


def _leaves_to_root(tensor, tree, caps, threshold_sq):
    """Frames (leaf: ``p_k × r``; inner node and root: transfer tensors) and the
    discarded energy, each node computed from the core projected onto the frames below."""
    core = tensor
    leaf_path = {node: path for path, node in tree_nodes(tree) if not isinstance(node, (list, tuple))}
    axes = [leaf_path[k] for k in range(tensor.ndim)]  # the node each axis of the core belongs to
    frames, discarded = {}, 0.0
    for path, node in _post_order(tree):
        if path in ("", "0", "1"):
            continue
        members = _members(path, node, axes)
        basis, lost = truncated_basis(unfold(core, members), caps[path], threshold_sq)
        frames[path] = _frame(basis, [core.shape[a] for a in members], node)
        core = np.tensordot(core, basis.reshape([core.shape[a] for a in members] + [-1]),
                            axes=(members, list(range(len(members)))))
        axes = [a for i, a in enumerate(axes) if i not in members] + [path]
        discarded += lost
    left = _members("0", tree[0], axes)
    right = _members("1", tree[1], axes)
    matrix = np.transpose(core, left + right).reshape(math.prod(core.shape[a] for a in left), -1)
    discarded += _split_root(matrix, tree, caps, threshold_sq, frames,
                             [core.shape[a] for a in left], [core.shape[a] for a in right])
    return frames, discarded


def _root_to_leaves(tensor, tree, caps, threshold_sq):
    """Frames from matricizations of the full tensor, then transfer tensors from them."""
    order = tree_modes(tree)
    tensor = np.transpose(tensor, order)
    sizes = tensor.shape
    position = {mode: i for i, mode in enumerate(order)}
    bases, discarded = {}, 0.0
    for path, node in tree_nodes(tree):
        if path in ("", "0", "1"):
            continue
        span = sorted(position[k] for k in tree_modes(node))
        basis, lost = truncated_basis(unfold(tensor, span), caps[path], threshold_sq)
        bases[path] = basis
        discarded += lost
    split = len(tree_modes(tree[0]))
    matrix = tensor.reshape(math.prod(sizes[:split]), -1)
    frames: dict[str, np.ndarray] = {}
    discarded += _split_root(matrix, tree, caps, threshold_sq, bases, None, None)
    for path, node in tree_nodes(tree):
        if not path:
            continue
        if isinstance(node, (list, tuple)):
            left, right = bases[path + "0"], bases[path + "1"]
            basis = bases[path].reshape(left.shape[0], right.shape[0], -1)
            frames[path] = np.einsum("xya,xb,yc->abc", basis, left, right, optimize=True)
        else:
            frames[path] = bases[path]
    frames[""] = bases[""]
    return frames, discarded


def _split_root(matrix, tree, caps, threshold_sq, frames, left_sizes, right_sizes) -> float:
    """Truncate the root's two children together: ``matrix`` has the left child's
    coordinates as rows and the right child's as columns.  Stores the children's frames
    (as transfer tensors when ``*_sizes`` are given, else as bases) and the root transfer
    tensor in ``frames``; returns the discarded energy."""
    left, lost = truncated_basis(matrix, caps["0"], threshold_sq)
    projected = left.T @ matrix
    right, _ = truncated_basis(np.ascontiguousarray(projected.T), left.shape[1])
    frames[""] = (projected @ right).reshape(1, left.shape[1], right.shape[1])
    if left_sizes is None:
        frames["0"], frames["1"] = left, right
    else:
        frames["0"] = _frame(left, left_sizes, tree[0])
        frames["1"] = _frame(right, right_sizes, tree[1])
    return lost


def _members(path: str, node, axes: list[str]) -> list[int]:
    """The core's axes that a node's frame acts on: its own (a leaf not yet projected)
    or its two children's."""
    if not isinstance(node, (list, tuple)):
        return [axes.index(path)]
    return [axes.index(path + "0"), axes.index(path + "1")]


def _frame(basis: np.ndarray, member_sizes: list[int], node) -> np.ndarray:
    """A leaf keeps its basis ``p_k × r``; an inner node's basis over its children's
    coordinates becomes the transfer tensor ``(r, r_left, r_right)``."""
    if not isinstance(node, (list, tuple)):
        return basis
    return basis.T.reshape([basis.shape[1]] + member_sizes)


def _post_order(tree, path: str = ""):
    if isinstance(tree, (list, tuple)):
        yield from _post_order(tree[0], path + "0")
        yield from _post_order(tree[1], path + "1")
    yield path, tree


def check_ht_ranks(ranks: Sequence[int], tensorization: Tensorization, tree: Tree) -> None:
    """Explicit HT ranks: one positive integer per node in pre-order with the root's 1;
    the root's children equal; each within ``ht_rank_bounds``, at most the product of its
    children's ranks and at most its parent's times its sibling's."""
    nodes = list(tree_nodes(tree))
    ranks = list(ranks)
    if len(ranks) != len(nodes) or ranks[0] != 1 or min(ranks) < 1:
        raise PassError(f"ht: ranks {ranks} must be {len(nodes)} positive integers, one per node of tree "
                        f"{tree} in pre-order, starting with the root's 1")
    rank = {path: r for (path, _), r in zip(nodes, ranks)}
    if len(nodes) > 1 and rank["0"] != rank["1"]:
        raise PassError(f"ht: ranks {ranks}: the root's children split one spectrum and need the same rank, "
                        f"got {rank['0']} and {rank['1']}")
    bounds = ht_rank_bounds(tensorization, tree)
    for (path, node), bound in zip(nodes, bounds):
        limits = [bound]
        if isinstance(node, (list, tuple)):
            limits.append(rank[path + "0"] * rank[path + "1"])
        if path:
            limits.append(rank[path[:-1]] * rank[path[:-1] + ("1" if path[-1] == "0" else "0")])
        if rank[path] > min(limits):
            raise PassError(f"ht: rank {rank[path]} of node '{path}' ({node}) in {ranks} exceeds {min(limits)}, "
                            f"the most that shape {tensorization.describe()} and its neighbours allow "
                            f"(full ranks are {bounds})")
