"""Linear maps as ONNX: a dense map is ``MatMul`` by ``Wᵀ``; a tt/bt/ht map is a chain of
``MatMul`` (or ``Einsum``, as ``GraphBuilder.choices`` says) in the order of its schedule
(see the package docstring)."""

from __future__ import annotations

import json
import math
from typing import Callable, Sequence

import numpy as np

from ..ir.linear_map import DenseMap, LinearMap
from ..ir.tensor_formats import BTMap, HTMap, TensorizedMap, TTMap, tree_nodes
from .conventions import ANNOTATIONS_KEY, EINSUM_LETTERS, STRUCTURAL_META
from .graph import ExportError, GraphBuilder

WeightLowering = Callable[[str, np.ndarray, str], str]
"""``weight(tensor name, array, role) -> value``: how a map's tensor enters the graph."""
StepNarrowing = Callable[[int, int, str], str]
"""``narrow(network, step, value) -> value``: what follows each contraction step but the
last of a network (a quantized map rounds there)."""


def apply_map(b: GraphBuilder, linear_map: LinearMap, x: str, rank: int, dtype: np.dtype, role: str,
              output: str | None = None, weight: WeightLowering | None = None,
              narrow: StepNarrowing | None = None) -> str:
    """Nodes computing ``linear_map`` applied to the last axis of ``x`` (of rank ``rank``);
    returns the result's name (``output`` if given).  Map tensors become initializers of
    ``dtype`` unless ``weight`` says otherwise; then a dense map is an ``Einsum`` rather
    than a ``MatMul``, which onnxruntime would fuse with a ``DequantizeLinear`` of its
    weights into an inexact kernel."""
    outputs = [output] if output else None
    if isinstance(linear_map, DenseMap):
        matrix = np.ascontiguousarray(linear_map.matrix.T)
        if weight is None:
            return b.add("MatMul", [x, b.init(matrix.astype(dtype, copy=False), f"{role}.w")], role, outputs)
        lead = EINSUM_LETTERS[2:rank + 1]
        return b.add("Einsum", [x, weight("w", matrix, f"{role}.w")], role, outputs,
                     equation=f"{lead}a,ab->{lead}b")
    if weight is None:
        def weight(name: str, array: np.ndarray, tensor_role: str) -> str:
            return b.init(array.astype(dtype, copy=False), tensor_role)

    if not isinstance(linear_map, TensorizedMap):
        raise ExportError(f"no ONNX lowering for linear maps of format '{linear_map.format}'")
    if b.choices.maps == "matmul" and narrow is None:
        return _matmul_map(b, linear_map, x, rank, weight, role, outputs)
    lead = [f"L{k}" for k in range(rank - 1)]
    if linear_map.in_pad:
        pads = [0] * rank + [0] * (rank - 1) + [linear_map.in_pad]
        x = b.add("Pad", [x, b.ints(pads, f"{role}/pads")], f"{role}/pad")
    split = b.add("Reshape", [x, b.ints([0] * (rank - 1) + list(linear_map.in_factors), f"{role}/in_shape")],
                  f"{role}/split")
    tensors = linear_map.tensors()
    results = []
    for index, (names, labels, cols, rows) in enumerate(map_networks(linear_map)):
        operands = [(split, lead + cols)] + [(weight(name, tensors[name], f"{role}.{name}"), term)
                                             for name, term in zip(names, labels)]
        order = contraction_order(linear_map, index, len(operands))
        step_narrow = None if narrow is None else lambda step, value, index=index: narrow(index, step, value)
        results.append(_contract(b, operands, lead + rows, order, f"{role}/net{index}", step_narrow))
    y = _merged(b, linear_map, results, rank - 1, role, outputs)
    annotations = {k: v for k, v in linear_map.meta().items() if k not in STRUCTURAL_META}
    if annotations:
        b.nodes[-1].metadata_props.add(key=ANNOTATIONS_KEY, value=json.dumps(annotations))
    return y


def _merged(b: GraphBuilder, linear_map: TensorizedMap, results: list[str], lead: int, role: str,
            outputs: list[str] | None) -> str:
    """The networks' results ``[…, m_1, …, m_d]`` summed, merged to ``Πm`` and truncated to ``out_dim``."""
    y = results[0] if len(results) == 1 else b.add("Sum", results, f"{role}/blocks")
    merged = [0] * lead + [math.prod(linear_map.out_factors)]
    y = b.add("Reshape", [y, b.ints(merged, f"{role}/out_shape")], f"{role}/merge",
              outputs if not linear_map.out_pad else None)
    if linear_map.out_pad:
        bounds = [b.ints([0], f"{role}/start"), b.ints([linear_map.out_dim], f"{role}/end"),
                  b.ints([-1], f"{role}/axis")]
        y = b.add("Slice", [y, *bounds], f"{role}/truncate", outputs)
    return y


def _matmul_map(b: GraphBuilder, linear_map: TensorizedMap, x: str, rank: int, weight: WeightLowering, role: str,
                outputs: list[str] | None) -> str:
    """The ``matmul`` form: ``[Pad] → Reshape → (⋯ MatMul Reshape)… → [Sum] → [Transpose] →
    Reshape → [Slice]``.  The leading axes of ``x`` stay in front throughout (Reshape
    keeps them with 0s), so a step is one GEMM over all of them; the map's meta, its
    tensors' shapes and annotations ride on the last node (``tensorgate.map``), which is
    how the importer finds the cores again."""
    lead = rank - 1
    if linear_map.in_pad:
        pads = [0] * rank + [0] * lead + [linear_map.in_pad]
        x = b.add("Pad", [x, b.ints(pads, f"{role}/pads")], f"{role}/pad")
    split = b.add("Reshape", [x, b.ints([0] * lead + list(linear_map.in_factors), f"{role}/in_shape")],
                  f"{role}/split")
    tensors = linear_map.tensors()
    results = []
    for index, (names, labels, cols, rows) in enumerate(map_networks(linear_map)):
        sizes = dict(zip(cols, linear_map.in_factors))
        for name, term in zip(names, labels):
            sizes.update(zip(term, tensors[name].shape))
        operands = [_Operand(split, cols, True)] + [_Operand(weight(name, tensors[name], f"{role}.{name}"), term, False)
                                                    for name, term in zip(names, labels)]
        order = contraction_order(linear_map, index, len(operands))
        chain = _MatmulChain(b, lead, sizes, f"{role}/net{index}")
        results.append(chain.contract(operands, rows, order))
    y = _merged(b, linear_map, results, lead, role, outputs)
    described = {"format": linear_map.format, **linear_map.meta(),
                 "tensors": {name: list(array.shape) for name, array in tensors.items()}}
    b.nodes[-1].metadata_props.add(key=ANNOTATIONS_KEY, value=json.dumps(described))
    return y


class _Operand:
    """A value in a contraction chain: its name, the labels of its axes after the leading
    ones (data) or of all its axes (weights), and whether it holds the input's data."""

    def __init__(self, name: str, labels: list[str], data: bool):
        self.name, self.labels, self.data = name, list(labels), data


class _MatmulChain:
    """The pairwise steps of one network as ``MatMul`` nodes.  A step of the data with a
    weight moves the summed labels of the data last (a ``Transpose`` only where they are
    not), flattens them to ``[…, rows, K]`` and multiplies by the weight transposed and
    reshaped to ``[K, N]`` (constant: folded at load); its result keeps the data's labels,
    then the weight's.  A step of two weights (precontraction) is an ``Einsum`` of
    constants, folded at load as well.  Steps the GEMM cannot express (a label both keep,
    a label only one side sums) stay ``Einsum``."""

    def __init__(self, b: GraphBuilder, lead: int, sizes: dict[str, int], role: str):
        self.b, self.lead, self.sizes, self.role = b, lead, sizes, role
        self.letters: dict[str, str] = {}

    def contract(self, operands: list[_Operand], output: list[str], order: list[tuple[int, int]]) -> str:
        live = dict(enumerate(operands))
        next_id = len(operands)
        for step, (i, j) in enumerate(order):
            first, second = live.pop(i), live.pop(j)
            needed = set(output).union(*(o.labels for o in live.values()))
            live[next_id] = self._step(first, second, needed, f"{self.role}/step{step}")
            next_id += 1
        (result,) = live.values()
        perm = [result.labels.index(label) for label in output]
        if perm == list(range(len(perm))):
            return result.name
        lead = list(range(self.lead))
        return self.b.add("Transpose", [result.name], f"{self.role}/order",
                          perm=lead + [self.lead + axis for axis in perm])

    def _step(self, first: _Operand, second: _Operand, needed: set[str], role: str) -> _Operand:
        if not first.data and not second.data:
            return self._einsum(first, second, needed, role)
        data, weight = (first, second) if first.data else (second, first)
        summed = [label for label in data.labels if label in weight.labels and label not in needed]
        data_kept = [label for label in data.labels if label not in summed]
        weight_kept = [label for label in weight.labels if label not in summed and label in needed]
        dropped = [label for label in weight.labels if label not in summed and label not in needed]
        if (any(label in needed for label in data.labels if label in weight.labels)
                or any(label not in needed for label in data_kept) or any(self.sizes[d] != 1 for d in dropped)):
            return self._einsum(first, second, needed, role)
        x = self._permuted(data.name, data.labels, data_kept + summed, self.lead, f"{role}_data")
        rows = math.prod(self.sizes[label] for label in data_kept)
        inner = math.prod(self.sizes[label] for label in summed)
        x = self.b.add("Reshape", [x, self.b.ints([0] * self.lead + [rows, inner], f"{role}_rows")], f"{role}_rows")
        matrix = self._permuted(weight.name, weight.labels, summed + weight_kept + dropped, 0, f"{role}_weight")
        matrix = self.b.add("Reshape", [matrix, self.b.ints([inner, -1], f"{role}_matrix")], f"{role}_matrix")
        y = self.b.add("MatMul", [x, matrix], role)
        shape = [0] * self.lead + [self.sizes[label] for label in data_kept + weight_kept]
        y = self.b.add("Reshape", [y, self.b.ints(shape, f"{role}_shape")], f"{role}_split")
        return _Operand(y, data_kept + weight_kept, True)

    def _permuted(self, name: str, labels: list[str], order: list[str], lead: int, role: str) -> str:
        perm = [labels.index(label) for label in order]
        if perm == list(range(len(perm))):
            return name
        return self.b.add("Transpose", [name], role, perm=list(range(lead)) + [lead + axis for axis in perm])

    def _einsum(self, first: _Operand, second: _Operand, needed: set[str], role: str) -> _Operand:
        labels = [label for label in dict.fromkeys(first.labels + second.labels) if label in needed]
        lead = EINSUM_LETTERS[:self.lead] if first.data or second.data else ""

        def word(operand_labels: list[str], data: bool) -> str:
            for label in operand_labels:
                if label not in self.letters:
                    if len(self.letters) + self.lead >= len(EINSUM_LETTERS):
                        raise ExportError(f"{role}: the network has more than {len(EINSUM_LETTERS)} indices")
                    self.letters[label] = EINSUM_LETTERS[self.lead + len(self.letters)]
            return (lead if data else "") + "".join(self.letters[label] for label in operand_labels)

        data = first.data or second.data
        equation = f"{word(first.labels, first.data)},{word(second.labels, second.data)}->{word(labels, data)}"
        return _Operand(self.b.add("Einsum", [first.name, second.name], role, equation=equation), labels, data)


def map_networks(linear_map: TensorizedMap) -> list[tuple[list[str], list[list[str]], list[str], list[str]]]:
    """Per network of the map (in ``networks()`` order): the names of its tensors in that
    order, the label of every axis of each (size-1 boundary axes included), and the
    labels of the input's and the output's modes."""
    d = linear_map.d
    rows, cols = [f"m{k}" for k in range(d)], [f"n{k}" for k in range(d)]
    if isinstance(linear_map, TTMap):
        names = [f"g{k}" for k in range(d)]
        return [(names, [[f"r{k}", rows[k], cols[k], f"r{k + 1}"] for k in range(d)], cols, rows)]
    if isinstance(linear_map, BTMap):
        return [([f"b{b}.core"] + [f"b{b}.f{k}" for k in range(d)],
                 [[f"R{k}" for k in range(d)]] + [[rows[k], cols[k], f"R{k}"] for k in range(d)], cols, rows)
                for b in range(len(linear_map.blocks))]
    if isinstance(linear_map, HTMap):
        nodes = list(tree_nodes(linear_map.tree))
        leaf_path = {node: path for path, node in nodes if not isinstance(node, (list, tuple))}
        inner = [path for path, node in nodes if isinstance(node, (list, tuple))]
        names = [f"u{k}" for k in range(d)] + [f"t{p}" for p in inner]
        labels = [[rows[k], cols[k], f"t{leaf_path[k]}"] for k in range(d)]
        labels += [[f"t{p}", f"t{p}0", f"t{p}1"] for p in inner]
        return [(names, labels, cols, rows)]
    raise ExportError(f"no ONNX lowering for linear maps of format '{linear_map.format}'")


def contraction_order(linear_map: TensorizedMap, index: int, count: int) -> list[tuple[int, int]]:
    """The pairwise order of network ``index`` over operands ``[x, tensors...]`` (SSA
    ids): the schedule's steps if the map has one, else the network's default path."""
    if linear_map.schedule is None:
        return [tuple(pair) for pair in linear_map.networks()[index].path]

    def from_schedule(operand: int) -> int:  # the schedule numbers the input last
        return operand + 1 if operand < count - 1 else 0 if operand == count - 1 else operand

    return [(from_schedule(s.lhs), from_schedule(s.rhs)) for s in linear_map.schedule.schedules[index].steps]


def _contract(b: GraphBuilder, operands: list[tuple[str, list[str]]], output: list[str],
              order: list[tuple[int, int]], role: str, narrow: Callable[[int, str], str] | None = None) -> str:
    """One Einsum node per pairwise step; an intermediate keeps the labels still needed
    and passes through ``narrow(step, value)`` if given."""
    letters: dict[str, str] = {}

    def word(labels: list[str]) -> str:
        for label in labels:
            if label not in letters:
                if len(letters) == len(EINSUM_LETTERS):
                    raise ExportError(f"{role}: the network has more than {len(EINSUM_LETTERS)} indices")
                letters[label] = EINSUM_LETTERS[len(letters)]
        return "".join(letters[label] for label in labels)

    live = dict(enumerate(operands))
    next_id = len(operands)
    name = operands[0][0]
    for step, (i, j) in enumerate(order):
        (a, a_labels), (c, c_labels) = live.pop(i), live.pop(j)
        if live:
            needed = set(output).union(*(labels for _, labels in live.values()))
            labels = [label for label in dict.fromkeys(a_labels + c_labels) if label in needed]
        else:
            labels = output
        equation = f"{word(a_labels)},{word(c_labels)}->{word(labels)}"
        name = b.add("Einsum", [a, c], f"{role}/step{step}", equation=equation)
        if live and narrow is not None:
            name = narrow(step, name)
        live[next_id] = (name, labels)
        next_id += 1
    return name


def apply_maps(b: GraphBuilder, maps: Sequence[LinearMap], x: str, rank: int, dtype: np.dtype, role: str) -> str:
    """Several maps applied to ``x``, results concatenated along the last axis (an LSTM's
    per-gate maps)."""
    parts = [apply_map(b, m, x, rank, dtype, f"{role}_{k}" if len(maps) > 1 else role) for k, m in enumerate(maps)]
    return parts[0] if len(parts) == 1 else b.add("Concat", parts, f"{role}/gates", axis=-1)
