"""Choosing the order of pairwise contractions for a tensor network.

Cost models (``CostModel.objective``), all counted for one application to
``network.batch`` input rows and over *run* steps only (compile steps are free at
run time but their results are stored):

* ``macs``: multiply-accumulates; ties go to fewer stored parameters.
* ``memory``: the peak intermediate (the largest run-step result, output
  included); ties go to fewer MACs, then fewer parameters.
* ``cycles``: a PE array of ``pes`` MAC lanes: each run step costs
  ``⌈macs / pes⌉ + overhead`` cycles; ties go to fewer MACs, then parameters.

Precontraction (``precontract``): weights are known at compile time, so a step
that contracts weights only can be a *compile* step.

* ``never``: every step runs at run time; weight-only steps cost what they cost.
* ``auto``: weight-only steps become compile steps when the search picks them;
  since a compile step is free per application but stores its (often larger)
  result, the search picks one only where it lowers the per-step cost (or keeps
  it and lowers the parameter count).
* ``always``: all weights are contracted into one tensor at compile time (in the
  order of fewest MACs); the run time is one step, in effect a dense product.

Search: with at most ``EXACT_LIMIT`` tensors (a TT chain of d ≤ 9 cores, a BT with
d ≤ 8 factors, an HT tree with d ≤ 5 modes) an exact dynamic program over all
subsets of tensors and all their splits (outer products included) returns an
optimal order for the objective.  The memory objective is solved exactly in two
passes: the smallest achievable peak first, then the fewest MACs among orders
that keep every intermediate within that peak.  Beyond ``EXACT_LIMIT`` the
search is a heuristic: the best, under the same cost model, of the naive order,
opt_einsum's greedy order and (up to ``HEURISTIC_DP_LIMIT`` tensors) opt_einsum's
dynamic program without outer products, each evaluated with and without folding
the weights.
"""

from __future__ import annotations

import math
import time
from dataclasses import dataclass
from typing import Callable, Optional

import opt_einsum

from ...errors import UsageError
from ...ir.contraction.cost import PRECONTRACT_MODES, CostModel, naive_tree
from ...ir.contraction.network import TensorNetwork
from ...ir.contraction.schedule import Schedule, Tree, open_labels

EXACT_LIMIT = 10
HEURISTIC_DP_LIMIT = 20


@dataclass(frozen=True)
class SearchResult:
    """The chosen schedule, how it was found and how long the search took."""

    schedule: Schedule
    method: str
    seconds: float


def order_contractions(network: TensorNetwork, cost: CostModel = CostModel(),
                       precontract: str = "auto") -> SearchResult:
    """Choose a schedule for ``network`` under ``cost`` (exact DP when small, else heuristic)."""
    if precontract not in PRECONTRACT_MODES:
        raise UsageError(f"precontract '{precontract}' is not one of {', '.join(PRECONTRACT_MODES)}")
    start = time.perf_counter()
    if len(network.tensors) <= EXACT_LIMIT:
        schedule, method = _exact(network, cost, precontract), "exact"
    else:
        schedule, method = _heuristic(network, cost, precontract), "heuristic"
    return SearchResult(schedule, method, time.perf_counter() - start)


def opt_einsum_schedule(network: TensorNetwork, optimize="optimal") -> Schedule:
    """The order opt_einsum picks (``optimize`` as in ``opt_einsum.contract_path``), all at run time."""
    tree = _opt_einsum_tree(network, range(len(network.tensors)), network.output, optimize)
    return Schedule.from_tree(network, tree, fold_weights=False)


def _opt_einsum_tree(network: TensorNetwork, indices, output, optimize) -> Tree:
    """opt_einsum's order for the tensors ``indices`` of ``network``, reduced to ``output`` labels."""
    indices = list(indices)
    symbols = network.symbols()
    inputs = [set(symbols[label] for label in network.tensors[i].labels) for i in indices]
    sizes = {symbols[label]: size for label, size in network.sizes.items() if label in symbols}
    optimizer = opt_einsum.paths.get_path_fn(optimize) if isinstance(optimize, str) else optimize
    path = optimizer(inputs, set(symbols[label] for label in output), sizes)
    nodes: list[Tree] = list(indices)
    for positions in path:
        picked = [nodes[i] for i in positions]
        for i in sorted(positions, reverse=True):
            del nodes[i]
        merged = picked[0]
        for node in picked[1:]:
            merged = (merged, node)
        nodes.append(merged)
    while len(nodes) > 1:
        nodes.append((nodes.pop(0), nodes.pop(0)))
    return nodes[0]


class _Subsets:
    """Per subset of tensors (a bitmask): the labels its contraction keeps and their size."""

    def __init__(self, network: TensorNetwork):
        labels = list(dict.fromkeys(label for t in network.tensors for label in t.labels))
        self.label_sizes = [network.sizes[label] for label in labels]
        bit = {label: 1 << j for j, label in enumerate(labels)}
        self.count = len(network.tensors)
        self.full = (1 << self.count) - 1
        self.input_bit = 1 << network.input_index
        tensor_labels = [sum(bit[label] for label in t.labels) for t in network.tensors]
        covered = [0] * (self.full + 1)
        for subset in range(1, self.full + 1):
            low = subset & -subset
            covered[subset] = covered[subset ^ low] | tensor_labels[low.bit_length() - 1]
        output = sum(bit[label] for label in network.output)
        self.kept = [covered[s] & (covered[self.full ^ s] | output) for s in range(self.full + 1)]
        self._sizes: dict[int, int] = {}

    def size(self, label_mask: int) -> int:
        size = self._sizes.get(label_mask)
        if size is None:
            size = math.prod(s for j, s in enumerate(self.label_sizes) if label_mask >> j & 1)
            self._sizes[label_mask] = size
        return size

    def weight_only(self, subset: int) -> bool:
        return not subset & self.input_bit

    def splits(self, subset: int):
        """Unordered splits ``(a, b)`` of ``subset`` into two non-empty parts."""
        low = subset & -subset
        rest = subset ^ low
        part = rest
        while True:
            first = part | low
            if first != subset:
                yield first, subset ^ first
            if not part:
                return
            part = (part - 1) & rest


Key = tuple[int, ...]
NodeKey = Callable[[int, int, int, Key, Key], Optional[Key]]


def _dynamic_program(subsets: _Subsets, leaf_key: Callable[[int], Key], node_key: NodeKey) -> tuple[Tree, Key]:
    """Best tree over all subsets and its key; ``node_key`` returns ``None`` for a disallowed node."""
    keys: list[Optional[Key]] = [None] * (subsets.full + 1)
    best_split = [0] * (subsets.full + 1)
    for index in range(subsets.count):
        keys[1 << index] = leaf_key(index)
    for subset in range(1, subsets.full + 1):
        if subset & (subset - 1) == 0:
            continue
        best: Optional[Key] = None
        for first, second in subsets.splits(subset):
            key_first, key_second = keys[first], keys[second]
            if key_first is None or key_second is None:
                continue
            key = node_key(subset, first, second, key_first, key_second)
            if key is not None and (best is None or key < best):
                best, best_split[subset] = key, first
        keys[subset] = best

    def build(subset: int) -> Tree:
        if subset & (subset - 1) == 0:
            return subset.bit_length() - 1
        first = best_split[subset]
        return (build(first), build(subset ^ first))

    return build(subsets.full), keys[subsets.full]


def _exact(network: TensorNetwork, cost: CostModel, precontract: str) -> Schedule:
    subsets = _Subsets(network)
    fold = precontract != "never"

    def compile_time(subset: int) -> bool:
        return fold and subsets.weight_only(subset)

    def allowed(subset: int) -> bool:
        return precontract != "always" or subsets.weight_only(subset) or subset == subsets.full

    def step_macs(first: int, second: int) -> int:
        return subsets.size(subsets.kept[first] | subsets.kept[second])

    def leaf_params(index: int) -> int:
        return 0 if 1 << index == subsets.input_bit else subsets.size(subsets.kept[1 << index])

    if cost.objective == "memory":
        def peak_key(subset, first, second, key_first, key_second):
            if not allowed(subset):
                return None
            if compile_time(subset):
                return (0,)
            return (max(key_first[0], key_second[0], subsets.size(subsets.kept[subset])),)

        best_peak = _dynamic_program(subsets, lambda i: (0,), peak_key)[1][0]

        def admissible(subset: int) -> bool:
            return allowed(subset) and (compile_time(subset) or subsets.size(subsets.kept[subset]) <= best_peak)
    else:
        admissible = allowed

    primaries = 1 if cost.objective in ("macs", "memory") else 2

    def additive_key(subset, first, second, key_first, key_second):
        if not admissible(subset):
            return None
        macs = step_macs(first, second)
        if compile_time(subset):
            return (0,) * primaries + (subsets.size(subsets.kept[subset]), key_first[-1] + key_second[-1] + macs)
        step = (macs,) if primaries == 1 else (cost.step_cycles(macs), macs)
        return tuple(a + b + c for a, b, c in zip(key_first, key_second, step + (0, 0)))

    tree, _ = _dynamic_program(subsets, lambda i: (0,) * primaries + (leaf_params(i), 0), additive_key)
    return Schedule.from_tree(network, tree, fold_weights=fold)


def _heuristic(network: TensorNetwork, cost: CostModel, precontract: str) -> Schedule:
    everything = range(len(network.tensors))
    candidates: list[Tree] = [naive_tree(network), _opt_einsum_tree(network, everything, network.output, "greedy")]
    if len(network.tensors) <= HEURISTIC_DP_LIMIT:
        minimize = "size" if cost.objective == "memory" else "flops"
        optimizer = opt_einsum.paths.DynamicProgramming(minimize=minimize)
        candidates.append(_opt_einsum_tree(network, everything, network.output, optimizer))
    weights = [i for i in everything if i != network.input_index]
    weight_labels = open_labels(network, sum(1 << i for i in weights))
    folded_all = (_opt_einsum_tree(network, weights, weight_labels, "greedy"), network.input_index)
    if precontract == "always":
        candidates = [folded_all]
    elif precontract == "auto":
        candidates.append(folded_all)
    fold = precontract != "never"
    return min((Schedule.from_tree(network, tree, fold_weights=fold) for tree in candidates), key=cost.key)
