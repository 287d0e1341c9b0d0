"""Linear maps as ONNX: a dense map is ``MatMul`` by ``Wᵀ``; a tt/bt/ht map is
``[Pad] → Reshape → Einsum… → [Sum] → Reshape → [Slice]`` in the order of its schedule
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
    y = results[0] if len(results) == 1 else b.add("Sum", results, f"{role}/blocks")
    merged = [0] * (rank - 1) + [math.prod(linear_map.out_factors)]
    last_outputs = outputs if not linear_map.out_pad else None
    y = b.add("Reshape", [y, b.ints(merged, f"{role}/out_shape")], f"{role}/merge", last_outputs)
    if linear_map.out_pad:
        bounds = [b.ints([0], f"{role}/start"), b.ints([linear_map.out_dim], f"{role}/end"), b.ints([-1], f"{role}/axis")]
        y = b.add("Slice", [y, *bounds], f"{role}/truncate", outputs)
    annotations = {k: v for k, v in linear_map.meta().items() if k not in STRUCTURAL_META}
    if annotations:
        b.nodes[-1].metadata_props.add(key=ANNOTATIONS_KEY, value=json.dumps(annotations))
    return y


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
