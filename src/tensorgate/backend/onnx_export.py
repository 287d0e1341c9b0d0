"""The ``onnx`` target: a module as standard ONNX (default domain, opset 18) that
onnxruntime runs and that ``import_onnx`` raises back to the same IR.

Every IR op lowers to nodes of the default domain.  The node that makes an op's first
result is named after the op's ``loc``; the others ``<result>/<role>``.  Values keep
their IR names and types (symbolic dims as ``dim_param``).

* ``const`` becomes a ``Constant`` node; every tensor an op holds as an attribute (map
  tensors, biases, peepholes, slice bounds) an initializer.  The importer relies on the
  difference to tell a ``linear`` op's bias from an ``add`` of a constant.
* Elementwise, shape and head ops become the ONNX op of the same meaning.
* Linear maps (``apply_map``): a dense map is ``MatMul`` by ``Wᵀ``.  A tt/bt/ht map is
  ``[Pad] → Reshape → Einsum… → [Sum] → Reshape → [Slice]``: the input's last axis is
  zero-padded and split into the map's ``in_factors``, contracted pairwise with the map's
  own tensors (the initializers are the cores, unchanged, boundary axes of size 1
  included) in the order of the map's schedule if it has one (weight-only steps too:
  onnxruntime folds them when it loads the model), else in its default order; the
  result is merged and truncated to ``out_dim``.  A BT map sums its blocks with ``Sum``.
  The map's annotations, which are not computation (its schedule, its decomposition
  error), ride on the last node as the metadata entry ``tensorgate.map``.
* ``lstm``, by what its maps allow (``lstm_strategy``):

  - ``native``: W and R dense, one ``4H × ·`` map per direction, float32: the ONNX
    ``LSTM`` op with every attribute.
  - ``projected``: R as above, W anything else (decomposed or per gate): ``W·x`` of all
    time steps is computed by the map lowering (per direction, gates concatenated) and
    fed to an ``LSTM`` whose input size is ``4H·dirs`` and whose W is the identity
    (``[I 0]`` and ``[0 I]`` for the two directions of a bidirectional LSTM), made by
    ``EyeLike`` so nothing is stored.  ``X·Iᵀ`` adds exact zeros to exact products by
    one, so the LSTM sees ``W·x`` bit for bit; it costs a ``(4H)² ·dirs`` product per
    step and vector, done for all steps in one batched GEMM.
  - ``scan``: everything else (R decomposed or per gate; float64, which onnxruntime's
    LSTM does not run): ``W·x + b`` for all steps as above, then one ``Scan`` over time
    (both directions in one node) whose body applies R by the map lowering and runs
    the cell in elementwise ops: peepholes, clip, the activations with their
    alpha/beta, input_forget, and sequence_lens by masking (a finished row keeps its
    state and outputs zeros, as in ONNX).  The op's scalar attributes ride on the Scan
    as the metadata entry ``tensorgate.lstm``; the importer checks them against the
    body by lowering them again.

  The bias goes in as the IR holds it: ``[dirs, 8H]`` as the LSTM's ``B``; ``[dirs, 4H]``
  (folded by ``canonicalize``) as ``B = Pad(b)``, whose recurrent half is zero, so an
  8H bias whose recurrent half happens to be zero stays distinguishable.  Layout 1
  (batch major, which onnxruntime's recurrent ops reject) is lowered as transposes
  around the layout-0 lowering and comes back that way.  Float attributes (clip,
  activation alpha/beta) are float32 in an ONNX node; the Scan keeps them exactly.

* Quantized modules (``quantize``) are written in QDQ form, opset 21: weights as integer
  codes behind ``DequantizeLinear``, every round-and-saturate as ``QuantizeLinear`` →
  ``DequantizeLinear``, σ/tanh units and the LSTM cell as the golden model computes them,
  so onnxruntime's results equal ``run_fixed``'s bit for bit (``onnx_qdq``, which also
  says when that cannot hold and the export is refused).  Their LSTMs always take the
  Scan; they are not raised back on import.
"""

from __future__ import annotations

import json
import math
from pathlib import Path
from typing import Callable, Sequence

import numpy as np
import onnx
from onnx import TensorProto, helper, numpy_helper

from .. import __version__
from ..errors import TensorgateError
from ..fixedpoint.quant_attrs import is_quantized, module_rounding
from ..ir.core import Module, Op, Value
from ..ir.linear_map import DenseMap, LinearMap
from ..ir.ops import lstm_num_directions
from ..ir.tensor_formats import BTMap, HTMap, TensorizedMap, TTMap, tree_nodes
from ..ir.types import BOOL, F32, F64, I32, I64, UNKNOWN, ElementType, FixedType, TensorType
from ..runtime.numpy_runtime import _ACTIVATION_DEFAULTS
from .artifact import IR_FILE, MANIFEST, build_manifest, write_artifact
from ..registry import registrar

OPSET = 18
QDQ_OPSET = 21
"""Quantized modules need QuantizeLinear/DequantizeLinear with int16 (opset 21)."""
IR_VERSION = 10
PRODUCER = "tensorgate"
ONNX_FILE = "model.onnx"
ANNOTATIONS_KEY = "tensorgate.map"
STRUCTURAL_META = ("out_factors", "in_factors", "out_pad", "in_pad", "ranks", "tree")
"""Meta entries of a decomposed map that its lowering shows; the rest (the schedule, the
decomposition error) are annotations, carried as the metadata entry ``tensorgate.map``."""
LSTM_KEY = "tensorgate.lstm"
EXTERNAL_DATA_BYTES = 1 << 30
"""Models whose weights exceed this are written with the weights in ``model.onnx.data``
(a protobuf message cannot exceed 2 GiB)."""

ONNX_TYPES: dict[ElementType, int] = {
    F32: TensorProto.FLOAT, F64: TensorProto.DOUBLE, I32: TensorProto.INT32, I64: TensorProto.INT64,
    BOOL: TensorProto.BOOL,
}
EINSUM_LETTERS = "abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ"


class ExportError(TensorgateError):
    """A module cannot be written as ONNX."""


# --- graph building -------------------------------------------------------------------


class Names:
    """Hands out unique names: ``hint`` itself if free, else ``hint_1``, ``hint_2``, ..."""

    def __init__(self, taken=()):
        self.taken = set(taken)

    def fresh(self, hint: str) -> str:
        name, counter = hint, 0
        while name in self.taken:
            counter += 1
            name = f"{hint}_{counter}"
        self.taken.add(name)
        return name


class GraphBuilder:
    """The nodes and initializers of one graph being written.  Value and node names are
    unique across the model (subgraphs share the allocators).  New names derive from
    ``prefix``, the first result of the op being lowered."""

    def __init__(self, values: Names, node_names: Names, prefix: str = "v"):
        self.values = values
        self.node_names = node_names
        self.prefix = prefix
        self.nodes: list[onnx.NodeProto] = []
        self.initializers: list[TensorProto] = []
        self.aliases: dict[str, str] = {}  # IR value name -> the graph value standing for it

    def child(self) -> "GraphBuilder":
        """A builder for a subgraph (a Scan body) of this graph."""
        return GraphBuilder(self.values, self.node_names, self.prefix)

    def add(self, op_type: str, inputs: Sequence[str], role: str, outputs: Sequence[str] | None = None,
            count: int = 1, **attrs) -> str:
        """Append a node and return its first output; outputs are ``outputs`` or
        ``count`` fresh names."""
        names = list(outputs) if outputs else [self.values.fresh(f"{self.prefix}/{role}") for _ in range(count)]
        node = helper.make_node(op_type, list(inputs), names, name=self.node_names.fresh(f"{self.prefix}/{role}"),
                                **{k: v for k, v in attrs.items() if v is not None})
        self.nodes.append(node)
        return names[0]

    def outputs_of_last(self) -> list[str]:
        return list(self.nodes[-1].output)

    def init(self, array: np.ndarray, role: str) -> str:
        name = self.values.fresh(f"{self.prefix}/{role}")
        self.initializers.append(numpy_helper.from_array(np.asarray(array), name))
        return name

    def ints(self, values: Sequence[int], role: str) -> str:
        return self.init(np.asarray(values, np.int64), role)

    def scalar(self, value: float | int, dtype: np.dtype, role: str) -> str:
        return self.init(np.asarray(value, dtype), role)


def tensor_value_info(name: str, type: TensorType) -> onnx.ValueInfoProto:
    """A value's ONNX type: static dims as values, symbolic ones as ``dim_param``, ``?``
    blank; a fixed-point value is float32 (its real values, see ``onnx_qdq``)."""
    elem = TensorProto.FLOAT if isinstance(type.dtype, FixedType) else ONNX_TYPES.get(type.dtype)
    if elem is None:
        raise ExportError(f"value '{name}' has type {type}, which has no ONNX counterpart")
    dims = [None if d == UNKNOWN else d for d in type.shape]
    return helper.make_tensor_value_info(name, elem, dims)


def _numpy_dtype(value: Value) -> np.dtype:
    """The dtype a value computes in: float32 for fixed-point values (their real values)."""
    return np.dtype(np.float32) if isinstance(value.type.dtype, FixedType) else value.type.dtype.numpy



# --- linear maps ------------------------------------------------------------------------


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


# --- ops --------------------------------------------------------------------------------

Lowering = Callable[[GraphBuilder, Op, list[str], list[str]], None]
LOWERINGS: dict[str, Lowering] = {}


lowers = registrar(LOWERINGS)


_SAME_OP = {
    "add": "Add", "sub": "Sub", "mul": "Mul", "div": "Div", "relu": "Relu", "sigmoid": "Sigmoid",
    "tanh": "Tanh", "neg": "Neg", "exp": "Exp", "matmul": "MatMul", "expand": "Expand",
}


def _same_op(b, op, inputs, results):
    b.add(_SAME_OP[op.kind], inputs, op.kind, results)


for _kind in _SAME_OP:
    LOWERINGS[_kind] = _same_op


@lowers("const")
def _const(b, op, inputs, results):
    b.add("Constant", [], "const", results, value=numpy_helper.from_array(op.attrs["value"], results[0]))


@lowers("linear")
def _linear(b, op, inputs, results):
    x = op.operands[0]
    bias = op.attrs["bias"]
    y = apply_map(b, op.attrs["weight"], inputs[0], x.type.rank, _numpy_dtype(x), "weight",
                  None if bias is not None else results[0])
    if bias is not None:
        b.add("Add", [y, b.init(bias.astype(_numpy_dtype(x), copy=False), "bias")], "bias", results)


@lowers("softmax", "log_softmax")
def _softmax(b, op, inputs, results):
    b.add("Softmax" if op.kind == "softmax" else "LogSoftmax", inputs, op.kind, results, axis=op.attrs["axis"])


@lowers("reshape")
def _reshape(b, op, inputs, results):
    b.add("Reshape", inputs, "reshape", results, allowzero=op.attrs["allowzero"] or None)


@lowers("transpose")
def _transpose(b, op, inputs, results):
    b.add("Transpose", inputs, "transpose", results, perm=list(op.attrs["perm"]))


@lowers("slice")
def _slice(b, op, inputs, results):
    """The IR slices like Python; ONNX differs only for a negative step whose start lies
    before the first element (Python: empty; ONNX: from the first element)."""
    starts, ends = list(op.attrs["starts"]), list(op.attrs["ends"])
    axes, steps = op.attrs["axes"], op.attrs["steps"]
    shape = op.operands[0].type.shape
    for index, step in enumerate(steps or []):
        axis = (axes or range(len(starts)))[index]
        if step < 0 and starts[index] < -1:
            dim = shape[axis]
            if not isinstance(dim, int):
                raise ExportError(f"{op.describe()}: start {starts[index]} with step {step} on dim '{dim}' "
                                  "needs the dim's size (ONNX and NumPy clamp it differently)")
            if starts[index] < -dim:
                starts[index], ends[index] = 0, 0
    operands = [inputs[0], b.ints(starts, "starts"), b.ints(ends, "ends")]
    if axes is not None or steps is not None:
        operands.append(b.ints(axes if axes is not None else range(len(starts)), "axes"))
    if steps is not None:
        operands.append(b.ints(steps, "steps"))
    b.add("Slice", operands, "slice", results)


@lowers("gather")
def _gather(b, op, inputs, results):
    b.add("Gather", inputs, "gather", results, axis=op.attrs["axis"])


@lowers("concat")
def _concat(b, op, inputs, results):
    b.add("Concat", inputs, "concat", results, axis=op.attrs["axis"])


@lowers("split")
def _split(b, op, inputs, results):
    b.add("Split", [inputs[0], b.ints(op.attrs["sizes"], "sizes")], "split", results, axis=op.attrs["axis"])


@lowers("squeeze", "unsqueeze")
def _squeeze(b, op, inputs, results):
    b.add(op.kind.capitalize(), [inputs[0], b.ints(op.attrs["axes"], "axes")], op.kind, results)


@lowers("flatten")
def _flatten(b, op, inputs, results):
    b.add("Flatten", inputs, "flatten", results, axis=op.attrs["axis"])


@lowers("shape")
def _shape(b, op, inputs, results):
    b.add("Shape", inputs, "shape", results, start=op.attrs["start"] or None, end=op.attrs["end"])


@lowers("cast")
def _cast(b, op, inputs, results):
    b.add("Cast", inputs, "cast", results, to=ONNX_TYPES[op.results[0].type.dtype])


# --- lstm -----------------------------------------------------------------------------------


def _stacked_dense(maps: list[LinearMap], dirs: int) -> bool:
    return len(maps) == dirs and all(isinstance(m, DenseMap) for m in maps)


def lstm_strategy(op: Op) -> str:
    """``native``, ``projected`` or ``scan`` (see the module docstring)."""
    dirs = lstm_num_directions(op)
    if op.operands[0].type.dtype != F32 or not _stacked_dense(op.attrs["r"], dirs) or op.attrs.get("quant"):
        return "scan"
    return "native" if _stacked_dense(op.attrs["w"], dirs) else "projected"


@lowers("lstm")
def _lstm(b, op, inputs, results):
    if op.attrs["layout"]:
        _batch_major_lstm(b, op, inputs, results)
    elif lstm_strategy(op) == "scan":
        _scan_lstm(b, op, inputs, results)
    else:
        _lstm_node(b, op, inputs, results)


def _batch_major_lstm(b, op, inputs, results):
    """Layout 1: transpose to time-major, lower the layout-0 twin, transpose back."""
    x, seq_lens, h0, c0 = (list(inputs) + [""] * 4)[:4]
    operands = (list(op.operands) + [None] * 4)[:4]

    def time_major(name: str, value: Value | None, role: str) -> Value | None:
        if value is None:
            return None
        shape = value.type.shape
        return Value(b.add("Transpose", [name], role, perm=[1, 0, 2]),
                     value.type.with_shape((shape[1], shape[0]) + shape[2:]))

    twin_operands = [time_major(x, operands[0], "x_time_major"), operands[1],
                     time_major(h0, operands[2], "h0_dir_major"), time_major(c0, operands[3], "c0_dir_major")]
    twin_results = [Value(b.values.fresh(f"{b.prefix}/{role}_time_major"), v.type)
                    for role, v in zip(("Y", "Y_h", "Y_c"), op.results)]
    twin = Op("lstm", twin_operands, twin_results, {**op.attrs, "layout": 0}, op.loc)
    _lstm(b, twin, [v.name if v is not None else "" for v in twin_operands], [v.name for v in twin_results])
    for value, result, perm in zip(twin_results, results, ([2, 0, 1, 3], [1, 0, 2], [1, 0, 2])):
        b.add("Transpose", [value.name], "batch_major", [result], perm=perm)


def _lstm_node(b, op, inputs, results):
    """The ONNX LSTM op (strategies ``native`` and ``projected``)."""
    attrs = op.attrs
    x, seq_lens, h0, c0 = (list(inputs) + [""] * 4)[:4]
    dirs, hidden = lstm_num_directions(op), attrs["hidden_size"]
    dtype = _numpy_dtype(op.operands[0])
    if _stacked_dense(attrs["w"], dirs):
        w = b.init(np.stack([m.matrix for m in attrs["w"]]).astype(dtype, copy=False), "W")
    else:
        x = apply_maps(b, attrs["w"], x, 3, dtype, "w")
        w = _selectors(b, 4 * hidden, dirs, dtype)
    r = b.init(np.stack([m.matrix for m in attrs["r"]]).astype(dtype, copy=False), "R")
    if seq_lens and op.operands[1].type.dtype != I32:
        seq_lens = b.add("Cast", [seq_lens], "sequence_lens_i32", to=TensorProto.INT32)
    peepholes = b.init(attrs["peepholes"].astype(dtype, copy=False), "P") if attrs["peepholes"] is not None else ""
    node_inputs = [x, w, r, _bias_input(b, attrs["bias"], hidden, dtype), seq_lens, h0, c0, peepholes]
    while node_inputs[-1] == "":
        node_inputs.pop()
    b.add("LSTM", node_inputs, "lstm", results, **lstm_node_attrs(attrs))


def lstm_node_attrs(attrs: dict) -> dict:
    """The ONNX LSTM attributes of an ``lstm`` op (layout 0)."""
    return {
        "hidden_size": attrs["hidden_size"], "direction": attrs["direction"], "clip": attrs["clip"],
        "input_forget": attrs["input_forget"] or None, "activations": attrs["activations"],
        "activation_alpha": attrs["activation_alpha"], "activation_beta": attrs["activation_beta"],
    }


def _selectors(b: GraphBuilder, gates: int, dirs: int, dtype: np.dtype) -> str:
    """W ``[dirs, 4H, 4H·dirs]``: direction d picks its own 4H block of the input."""
    zeros = b.add("ConstantOfShape", [b.ints([gates, gates * dirs], "identity_shape")], "identity_zeros",
                  value=numpy_helper.from_array(np.zeros(1, dtype)))
    eyes = [b.add("Unsqueeze", [b.add("EyeLike", [zeros], f"identity{d}", k=gates * d), b.ints([0], f"axis{d}")],
                  f"identity{d}_3d") for d in range(dirs)]
    return eyes[0] if dirs == 1 else b.add("Concat", eyes, "identity", axis=0)


def _bias_input(b: GraphBuilder, bias: np.ndarray | None, hidden: int, dtype: np.dtype) -> str:
    """The LSTM's B: an 8H bias as is, a folded 4H bias padded with a zero recurrent half."""
    if bias is None:
        return ""
    name = b.init(bias.astype(dtype, copy=False), "B")
    if bias.shape[1] == 8 * hidden:
        return name
    return b.add("Pad", [name, b.ints([0, 0, 0, 4 * hidden], "B_pads")], "B_recurrent_zero")


def activation_params(op: Op) -> list[tuple[str, float | None, float | None]]:
    """``(name, alpha, beta)`` of the 3·dirs activations: alpha/beta are taken in order by
    the activations that have them, ONNX defaults for the rest (as the NumPy runtime)."""
    names = op.attrs["activations"] or ["Sigmoid", "Tanh", "Tanh"] * lstm_num_directions(op)
    alphas, betas = list(op.attrs["activation_alpha"] or []), list(op.attrs["activation_beta"] or [])
    params = []
    for name in names:
        alpha, beta = _ACTIVATION_DEFAULTS.get(name, (None, None))
        if alpha is not None and alphas:
            alpha = alphas.pop(0)
        if beta is not None and betas:
            beta = betas.pop(0)
        params.append((name, alpha, beta))
    return params


def scan_hint(op: Op, inputs: list[str], results: list[str], bias: str | None, peepholes: str | None) -> str:
    """The ``tensorgate.lstm`` metadata of a Scan-lowered ``lstm``: its scalar attributes
    and which values are its operands, results, bias and peepholes."""
    keys = ("hidden_size", "direction", "clip", "input_forget", "activations", "activation_alpha",
            "activation_beta")
    operands = (list(inputs) + [""] * 4)[:4]
    return json.dumps({**{k: op.attrs[k] for k in keys}, "operands": [name or None for name in operands],
                       "results": list(results), "bias": bias, "peepholes": peepholes})


def _scan_lstm(b, op, inputs, results):
    """Strategy ``scan``: input projections for all steps, then one Scan over time.  A
    quantized op (``onnx_qdq.QuantizedLSTM``) differs in its projections, peepholes and cell."""
    from .onnx_qdq import QuantizedLSTM

    attrs = op.attrs
    x, seq_lens, h0, c0 = (list(inputs) + [""] * 4)[:4]
    dirs, hidden = lstm_num_directions(op), attrs["hidden_size"]
    dtype = _numpy_dtype(op.operands[0])
    quantized = QuantizedLSTM(op) if attrs.get("quant") is not None else None
    per_dir = len(attrs["w"]) // dirs
    bias = b.init(attrs["bias"].astype(dtype, copy=False), "B") if attrs["bias"] is not None else None
    if quantized is not None:
        peep = quantized.peepholes(b)
    else:
        peep = b.init(attrs["peepholes"].astype(dtype, copy=False), "P") if attrs["peepholes"] is not None else None
    reverse = [attrs["direction"] == "reverse" or d == 1 for d in range(dirs)]
    gates_x = []
    for d in range(dirs):
        if quantized is not None:
            gates_x.append(quantized.projection(b, d, x))
            continue
        projection = apply_maps(b, attrs["w"][d * per_dir:(d + 1) * per_dir], x, 3, dtype, f"w{d}")
        if bias is not None:
            projection = b.add("Add", [projection, _direction_bias(b, bias, d, hidden, attrs["bias"].shape[1])],
                               f"gates_x{d}")
        gates_x.append(projection)
    mask = _step_mask(b, x, seq_lens) if seq_lens else None
    zeros = None
    states = []
    for d in range(dirs):
        for initial in (h0, c0):
            if initial:
                states.append(b.add("Gather", [initial, b.scalar(d, np.int64, f"dir{d}")], f"initial{d}", axis=0))
            else:
                zeros = zeros or _zero_state(b, x, hidden, dtype)
                states.append(zeros)
    peepholes = [_direction_peepholes(b, peep, d, hidden) for d in range(dirs)] if peep else [None] * dirs
    body = _cell_body(b.child(), op, dtype, peepholes, mask is not None, quantized)
    scan_inputs = gates_x + ([mask] * dirs if mask else [])
    directions = [int(r) for r in reverse]
    b.add("Scan", states + scan_inputs, "scan", count=3 * dirs, body=body,
          num_scan_inputs=len(scan_inputs), scan_input_directions=directions * (2 if mask else 1),
          scan_output_directions=directions)
    scan = b.nodes[-1]
    if quantized is None:
        scan.metadata_props.add(key=LSTM_KEY, value=scan_hint(op, inputs, results, bias, peep))
    finals, ys = list(scan.output[:2 * dirs]), list(scan.output[2 * dirs:])
    _stack(b, ys, 1, results[0], "Y")
    _stack(b, finals[0::2], 0, results[1], "Y_h")
    _stack(b, finals[1::2], 0, results[2], "Y_c")


def _stack(b: GraphBuilder, parts: list[str], axis: int, output: str, role: str) -> None:
    """Stack the per-direction ``parts`` along a new ``axis`` into ``output``."""
    if len(parts) == 1:
        b.add("Unsqueeze", [parts[0], b.ints([axis], f"{role}_axis")], role, [output])
        return
    expanded = [b.add("Unsqueeze", [p, b.ints([axis], f"{role}{d}_axis")], f"{role}{d}") for d, p in enumerate(parts)]
    b.add("Concat", expanded, role, [output], axis=axis)


def _direction_bias(b: GraphBuilder, bias: str, d: int, hidden: int, width: int) -> str:
    """Direction ``d``'s bias ``[4H]``: the row itself, or ``Wb + Rb`` of an 8H row."""
    row = b.add("Gather", [bias, b.scalar(d, np.int64, f"bias{d}_index")], f"bias{d}", axis=0)
    if width == 4 * hidden:
        return row
    halves = [b.add("Slice", [row, b.ints([start], f"bias{d}_{part}_start"), b.ints([start + 4 * hidden],
                                                                                  f"bias{d}_{part}_end")],
                    f"bias{d}_{part}") for part, start in (("input", 0), ("recurrent", 4 * hidden))]
    return b.add("Add", halves, f"bias{d}_sum")


def _direction_peepholes(b: GraphBuilder, peep: str, d: int, hidden: int) -> list[str]:
    """Direction ``d``'s peepholes p_i, p_o, p_f ``[H]`` each."""
    row = b.add("Gather", [peep, b.scalar(d, np.int64, f"peepholes{d}_index")], f"peepholes{d}", axis=0)
    b.add("Split", [row, b.ints([hidden] * 3, f"peepholes{d}_sizes")], f"peepholes{d}_split", count=3, axis=0)
    return b.outputs_of_last()


def _step_mask(b: GraphBuilder, x: str, seq_lens: str) -> str:
    """``[T, B, 1]``: whether step t is within row b's length."""
    steps = b.add("Squeeze", [b.add("Shape", [x], "steps", end=1), b.ints([0], "steps_axis")], "steps_scalar")
    time = b.add("Range", [b.scalar(0, np.int64, "time_start"), steps, b.scalar(1, np.int64, "time_step")], "time")
    lengths = b.add("Cast", [seq_lens], "lengths", to=TensorProto.INT64)
    active = b.add("Less", [b.add("Unsqueeze", [time, b.ints([1], "time_axis")], "time_column"),
                            b.add("Unsqueeze", [lengths, b.ints([0], "lengths_axis")], "lengths_row")], "active")
    return b.add("Unsqueeze", [active, b.ints([2], "active_axis")], "mask")


def _zero_state(b: GraphBuilder, x: str, hidden: int, dtype: np.dtype) -> str:
    """Zeros ``[B, H]`` for a state the op leaves out."""
    batch = b.add("Shape", [x], "batch", start=1, end=2)
    shape = b.add("Concat", [batch, b.ints([hidden], "hidden")], "state_shape", axis=0)
    return b.add("ConstantOfShape", [shape], "zero_state", value=numpy_helper.from_array(np.zeros(1, dtype)))


def _cell_body(b: GraphBuilder, op: Op, dtype: np.dtype, peepholes: list, ragged: bool,
               quantized=None) -> onnx.GraphProto:
    """The Scan body: for each direction, ``(h, c, gates_x[t], [mask[t]]) -> (h', c', y[t])``."""
    dirs, hidden = lstm_num_directions(op), op.attrs["hidden_size"]
    elem = helper.np_dtype_to_tensor_dtype(dtype)
    per_dir = len(op.attrs["r"]) // dirs
    params = activation_params(op)

    def formal(role: str, width: int, elem_type: int = elem) -> onnx.ValueInfoProto:
        return helper.make_tensor_value_info(b.values.fresh(f"{b.prefix}/{role}"), elem_type, [None, width])

    states = [formal(f"{kind}{d}", hidden) for d in range(dirs) for kind in ("h", "c")]
    gates_x = [formal(f"gates_x{d}_t", 4 * hidden) for d in range(dirs)]
    masks = [formal(f"mask{d}_t", 1, TensorProto.BOOL) for d in range(dirs)] if ragged else []
    new_states, ys = [], []
    for d in range(dirs):
        h, c = states[2 * d].name, states[2 * d + 1].name
        if quantized is not None:
            h_new, c_new = quantized.cell(b, d, h, c, gates_x[d].name, peepholes[d])
        else:
            r_maps = op.attrs["r"][d * per_dir:(d + 1) * per_dir]
            gates = b.add("Add", [apply_maps(b, r_maps, h, 2, dtype, f"r{d}"), gates_x[d].name], f"gates{d}")
            cell = _Cell(b, d, dtype, op.attrs["clip"], op.attrs["input_forget"], params[3 * d:3 * d + 3])
            h_new, c_new = cell.update(gates, c, hidden, peepholes[d])
        if ragged:
            mask = masks[d].name
            new_states += [b.add("Where", [mask, h_new, h], f"h{d}_kept"), b.add("Where", [mask, c_new, c], f"c{d}_kept")]
            ys.append(b.add("Where", [mask, h_new, b.scalar(0, dtype, "zero")], f"y{d}"))
        else:
            new_states += [h_new, c_new]
            ys.append(b.add("Identity", [h_new], f"y{d}"))
    outputs = [helper.make_tensor_value_info(name, elem, [None, hidden]) for name in new_states + ys]
    return helper.make_graph(b.nodes, f"{b.prefix}/cell", states + gates_x + masks, outputs, b.initializers)


class _Cell:
    """The LSTM cell of one direction in elementwise ONNX ops, in the NumPy runtime's order."""

    def __init__(self, b: GraphBuilder, d: int, dtype: np.dtype, clip: float | None, input_forget: int,
                 activations: list[tuple[str, float | None, float | None]]):
        self.b, self.d, self.dtype = b, d, dtype
        self.clip = clip
        self.input_forget = input_forget
        self.f_act, self.g_act, self.h_act = activations

    def update(self, gates: str, c: str, hidden: int, peepholes: list[str] | None) -> tuple[str, str]:
        b, d = self.b, self.d
        b.add("Split", [gates, b.ints([hidden] * 4, f"gate_sizes{d}")], f"gate_split{d}", count=4, axis=1)
        gate_i, gate_o, gate_f, gate_c = b.outputs_of_last()
        if peepholes is not None:
            p_i, p_o, p_f = peepholes
            gate_i = b.add("Add", [gate_i, b.add("Mul", [p_i, c], f"peep_i{d}")], f"gate_i{d}")
            gate_f = b.add("Add", [gate_f, b.add("Mul", [p_f, c], f"peep_f{d}")], f"gate_f{d}")
        gate_i, gate_f, gate_c = (self._clip(g, role) for g, role in ((gate_i, "i"), (gate_f, "f"), (gate_c, "c")))
        if peepholes is None:
            gate_o = self._clip(gate_o, "o")
        i = self._act(self.f_act, gate_i, "i")
        if self.input_forget:
            f = b.add("Sub", [b.scalar(1, self.dtype, f"one{d}"), i], f"f{d}")
        else:
            f = self._act(self.f_act, gate_f, "f")
        g = self._act(self.g_act, gate_c, "g")
        c_new = b.add("Add", [b.add("Mul", [f, c], f"keep{d}"), b.add("Mul", [i, g], f"write{d}")], f"c{d}_new")
        if peepholes is not None:
            gate_o = self._clip(b.add("Add", [gate_o, b.add("Mul", [p_o, c_new], f"peep_o{d}")], f"gate_o{d}"), "o")
        o = self._act(self.f_act, gate_o, "o")
        h_new = b.add("Mul", [o, self._act(self.h_act, c_new, "h")], f"h{d}_new")
        return h_new, c_new

    def _clip(self, x: str, role: str) -> str:
        if self.clip is None:
            return x
        bound = [self.b.scalar(-self.clip, self.dtype, "clip_min"), self.b.scalar(self.clip, self.dtype, "clip_max")]
        return self.b.add("Clip", [x, *bound], f"clip_{role}{self.d}")

    def _act(self, params: tuple[str, float | None, float | None], x: str, role: str) -> str:
        """An ONNX recurrent activation as standard ops."""
        name, alpha, beta = params
        b, role = self.b, f"{role}{self.d}_{name.lower()}"
        if name in ("Sigmoid", "Tanh", "Relu", "Softsign", "Softplus"):
            return b.add(name, [x], role)
        if name in ("LeakyRelu", "ThresholdedRelu", "Elu"):
            return b.add(name, [x], role, alpha=alpha)
        if name == "HardSigmoid":
            return b.add(name, [x], role, alpha=alpha, beta=beta)
        if name == "Affine":
            scaled = b.add("Mul", [x, b.scalar(alpha, self.dtype, "alpha")], f"{role}_scale")
            return b.add("Add", [scaled, b.scalar(beta, self.dtype, "beta")], role)
        inner = b.add("Mul", [x, b.scalar(beta, self.dtype, "beta")], f"{role}_inner")  # ScaledTanh
        return b.add("Mul", [b.scalar(alpha, self.dtype, "alpha"), b.add("Tanh", [inner], f"{role}_tanh")], role)


# --- modules ------------------------------------------------------------------------------


def lower_op(b: GraphBuilder, op: Op) -> None:
    """Append the nodes of ``op`` to ``b``; its operands and results keep their names."""
    from .onnx_qdq import lower_quantized

    if op.kind not in LOWERINGS:
        raise ExportError(f"{op.describe()}: no ONNX lowering for this op")
    b.prefix = op.results[0].name if op.results else op.kind
    inputs = [b.aliases.get(v.name, v.name) if v is not None else "" for v in op.operands]
    results = [v.name for v in op.results]
    if op.attrs.get("quant") is not None and op.kind != "lstm":
        lower_quantized(b, op, inputs, results)
    else:
        LOWERINGS[op.kind](b, op, inputs, results)


def export_onnx(module: Module) -> onnx.ModelProto:
    """``module`` as a checked ONNX model (see the module docstring)."""
    node_names = Names()
    locs = [node_names.fresh(op.loc) if op.loc else None for op in module.ops]
    b = GraphBuilder(Names(v.name for v in module.values()), node_names)
    quantized = is_quantized(module)
    if quantized:
        from .onnx_qdq import check_exact

        check_exact(module)
        _quantize_inputs(b, module)
    for op, loc in zip(module.ops, locs):
        start = len(b.nodes)
        lower_op(b, op)
        if loc is not None:
            main = next(n for n in b.nodes[start:] if op.results[0].name in n.output)
            node_names.taken.discard(main.name)
            main.name = loc
    outputs = {id(v) for v in module.outputs}
    inner = [v for op in module.ops for v in op.results if id(v) not in outputs]
    graph = helper.make_graph(
        b.nodes, module.name,
        [tensor_value_info(v.name, v.type) for v in module.inputs],
        [tensor_value_info(v.name, v.type) for v in module.outputs],
        b.initializers,
        value_info=[tensor_value_info(v.name, v.type) for v in inner],
    )
    opset = QDQ_OPSET if quantized else OPSET
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", opset)], producer_name=PRODUCER,
                              producer_version=__version__, ir_version=IR_VERSION)
    try:
        onnx.checker.check_model(model)
    except onnx.checker.ValidationError as exc:
        raise AssertionError(f"the exported model fails the ONNX checker: {exc}") from exc
    return model


def _quantize_inputs(b: GraphBuilder, module: Module) -> None:
    """Fixed-point inputs take floats, quantized on entry in the module's rounding mode
    (as the golden model does); the ops then read the quantized values."""
    from .onnx_qdq import requantize

    rounding = module_rounding(module)
    for value in module.inputs:
        if isinstance(value.type.dtype, FixedType):
            b.prefix = value.name
            b.aliases[value.name] = requantize(b, value.name, value.type.dtype, rounding, "quantized")


def write_onnx_artifact(module: Module, out_dir: Path, pipeline: str, source: str) -> Path:
    """The ``onnx`` target: ``model.onnx``, the IR it came from (so ``tensorgate run``
    works on the artifact too) and ``manifest.json``."""
    from ..ir.serialize import save_module

    model = export_onnx(module)

    def fill(tmp: Path) -> None:
        weights = sum(len(t.raw_data) for t in model.graph.initializer)
        onnx.save_model(model, tmp / ONNX_FILE, save_as_external_data=weights > EXTERNAL_DATA_BYTES,
                        location=f"{ONNX_FILE}.data")
        save_module(module, tmp / IR_FILE)
        manifest = build_manifest(module, "onnx", pipeline, source)
        manifest.update(onnx=ONNX_FILE, opset=model.opset_import[0].version)
        (tmp / MANIFEST).write_text(json.dumps(manifest, indent=2) + "\n")

    return write_artifact(out_dir, fill)
