"""The ONNX lowering of the recurrent ops ``lstm``, ``gru`` and ``rnn``: the ONNX node of
the same meaning (strategies ``native`` and ``projected``) or a ``Scan`` over the cell
(``scan``); see the package docstring.  What differs between the kinds is their cell
(``ScanCell``: ``lstm.py``, ``gru.py``, ``rnn.py``, and the quantized cells of
``backend.onnx_qdq``); the strategies, the batch-major wrapping, the Scan with its
states, masks and outputs, the biases and the activations are shared here."""

from __future__ import annotations

import json
from typing import Callable

import numpy as np
import onnx
from onnx import TensorProto, helper, numpy_helper

from ..ir.core import Op, Value
from ..ir.linear_map import DenseMap, LinearMap
from ..ir.ops import RECURRENT, activation_params, gate_count, num_directions
from ..ir.types import F32, I32
from .conventions import SCAN_KEYS
from .graph import GraphBuilder, LoweringChoices, numpy_dtype
from .maps import apply_maps

ONNX_OPS = {"lstm": "LSTM", "gru": "GRU", "rnn": "RNN"}
SCALAR_ATTRS = ("hidden_size", "direction", "clip", "activations", "activation_alpha", "activation_beta")
OWN_ATTRS = {"lstm": ("input_forget",), "gru": ("linear_before_reset",), "rnn": ()}
"""Each kind's scalar attributes beyond ``SCALAR_ATTRS``."""


def stacked_dense(maps: list[LinearMap], dirs: int) -> bool:
    return len(maps) == dirs and all(isinstance(m, DenseMap) for m in maps)


def recurrent_strategy(op: Op) -> str:
    """``native``, ``projected`` or ``scan`` (see the package docstring)."""
    dirs = num_directions(op)
    if op.operands[0].type.dtype != F32 or not stacked_dense(op.attrs["r"], dirs) or op.attrs.get("quant"):
        return "scan"
    return "native" if stacked_dense(op.attrs["w"], dirs) else "projected"


def chosen_strategy(op: Op, choices: LoweringChoices) -> str:
    """The strategy ``choices.recurrent`` picks among those the op allows: ``node`` the
    ONNX node wherever the maps allow it, ``scan`` always the Scan, ``auto`` the node for
    dense maps (``native``) and the Scan for a decomposed W, whose ``projected`` node would
    multiply by a ``gates·H`` identity every step."""
    strategy = recurrent_strategy(op)
    if choices.recurrent == "scan" or (choices.recurrent == "auto" and strategy == "projected"):
        return "scan"
    return strategy


class ScanCell:
    """The parts of a Scan lowering that depend on the op (its kind, float or quantized).

    ``prepare`` adds, in the outer graph, what the body reads from there (biases,
    peepholes); ``projection`` the input projection of direction ``d`` for all steps;
    ``step`` one step of direction ``d`` inside the body, from the states (``h`` first)
    and ``gates_x[t]`` to the new states.  ``r_ends`` collects, per direction, the values
    ending the applications of R that the ``tensorgate.<kind>`` metadata names."""

    def __init__(self, op: Op):
        self.op = op
        self.dirs = num_directions(op)
        self.hidden = op.attrs["hidden_size"]
        self.dtype = numpy_dtype(op.operands[0])
        self.r_ends: list[list[str]] = [[] for _ in range(self.dirs)]

    def maps(self, key: str, d: int) -> list[LinearMap]:
        maps = self.op.attrs[key]
        per_dir = len(maps) // self.dirs
        return maps[d * per_dir:(d + 1) * per_dir]

    def prepare(self, b: GraphBuilder) -> None:
        """Outer-graph values the cell reads (none by default)."""

    def projection(self, b: GraphBuilder, d: int, x: str) -> str:
        raise NotImplementedError

    def step(self, b: GraphBuilder, d: int, states: list[str], gates_x: str) -> list[str]:
        raise NotImplementedError

    def hint(self) -> dict | None:
        """What the ``tensorgate.<kind>`` metadata adds for the importer (float cells only)."""
        return None


class FloatCell(ScanCell):
    """What the float cells share: the activations with their alpha/beta, the bias as an
    initializer, and the projection ``W·x`` plus direction ``d``'s bias (``Wb`` and the
    first ``folded_rows`` rows of ``Rb``, all by default); ``projected`` sees the bias row."""

    folded_rows: int | None = None

    def __init__(self, op: Op):
        super().__init__(op)
        self.params = activation_params(op)
        self.bias: str | None = None

    def prepare(self, b: GraphBuilder) -> None:
        if self.op.attrs["bias"] is not None:
            self.bias = b.init(self.op.attrs["bias"].astype(self.dtype, copy=False), "B")

    def hint(self) -> dict:
        return {"bias": self.bias}

    def projection(self, b: GraphBuilder, d: int, x: str) -> str:
        projection = apply_maps(b, self.maps("w", d), x, 3, self.dtype, f"w{d}")
        if self.bias is None:
            return projection
        row = bias_row(b, self.bias, d)
        bias = direction_bias(b, row, d, gate_count(self.op) * self.hidden, self.op.attrs["bias"].shape[1],
                              self.folded_rows)
        self.projected(b, d, row)
        return b.add("Add", [projection, bias], f"gates_x{d}")

    def projected(self, b: GraphBuilder, d: int, row: str) -> None:
        """What else the cell takes from direction ``d``'s bias ``row`` (nothing by default)."""


CellFactory = Callable[[Op], ScanCell]


def lower_recurrent(b: GraphBuilder, op: Op, inputs: list[str], results: list[str], cell: CellFactory) -> None:
    """The lowering of a recurrent op by its strategy; a Scan runs the cells ``cell(op)`` makes."""
    if op.attrs["layout"]:
        _batch_major(b, op, inputs, results, cell)
    elif chosen_strategy(op, b.choices) == "scan":
        _scan(b, op, inputs, results, cell(op))
    else:
        _node(b, op, inputs, results)


def _operands(op: Op, inputs: list) -> list:
    """``[x, sequence_lens, initial states...]``, absent ones ``""`` / ``None``."""
    count = 2 + len(RECURRENT[op.kind].states)
    return (list(inputs) + [""] * count)[:count]


def _batch_major(b, op, inputs, results, cell):
    """Layout 1: transpose to time-major, lower the layout-0 twin, transpose back."""
    names = _operands(op, inputs)
    operands = (list(op.operands) + [None] * len(names))[:len(names)]

    def time_major(name: str, value: Value | None, role: str) -> Value | None:
        if value is None:
            return None
        shape = value.type.shape
        return Value(b.add("Transpose", [name], role, perm=[1, 0, 2]),
                     value.type.with_shape((shape[1], shape[0]) + shape[2:]))

    states = RECURRENT[op.kind].states
    twin_operands = [time_major(names[0], operands[0], "x_time_major"), operands[1]] + [
        time_major(name, value, f"{state}0_dir_major") for name, value, state in zip(names[2:], operands[2:], states)]
    roles = ("Y",) + tuple(f"Y_{state}" for state in states)
    twin_results = [Value(b.values.fresh(f"{b.prefix}/{role}_time_major"), v.type)
                    for role, v in zip(roles, op.results)]
    twin = Op(op.kind, twin_operands, twin_results, {**op.attrs, "layout": 0}, op.loc)
    lower_recurrent(b, twin, [v.name if v is not None else "" for v in twin_operands],
                    [v.name for v in twin_results], cell)
    for value, result, perm in zip(twin_results, results, ([2, 0, 1, 3],) + ([1, 0, 2],) * len(states)):
        b.add("Transpose", [value.name], "batch_major", [result], perm=perm)


def _node(b, op, inputs, results):
    """The ONNX LSTM, GRU or RNN op (strategies ``native`` and ``projected``)."""
    attrs = op.attrs
    x, seq_lens, *initial = _operands(op, inputs)
    dirs, rows = num_directions(op), gate_count(op) * attrs["hidden_size"]
    dtype = numpy_dtype(op.operands[0])
    if stacked_dense(attrs["w"], dirs):
        w = b.init(np.stack([m.matrix for m in attrs["w"]]).astype(dtype, copy=False), "W")
    else:
        x = apply_maps(b, attrs["w"], x, 3, dtype, "w")
        w = _selectors(b, rows, dirs, dtype)
    r = b.init(np.stack([m.matrix for m in attrs["r"]]).astype(dtype, copy=False), "R")
    if seq_lens and op.operands[1].type.dtype != I32:
        seq_lens = b.add("Cast", [seq_lens], "sequence_lens_i32", to=TensorProto.INT32)
    node_inputs = [x, w, r, _bias_input(b, attrs["bias"], rows, dtype), seq_lens, *initial]
    if op.kind == "lstm":
        node_inputs.append(b.init(attrs["peepholes"].astype(dtype, copy=False), "P")
                           if attrs["peepholes"] is not None else "")
    while node_inputs[-1] == "":
        node_inputs.pop()
    b.add(ONNX_OPS[op.kind], node_inputs, op.kind, results, **node_attrs(op))


def node_attrs(op: Op) -> dict:
    """The ONNX attributes of a recurrent op (layout 0).  Activation alpha and beta are
    written out with the specification's defaults filled in: onnxruntime reads an
    omitted alpha/beta of Affine and ScaledTanh as 0."""
    attrs = op.attrs
    alphas, betas = explicit_alpha_beta(op)
    own = {key: attrs[key] or None for key in OWN_ATTRS[op.kind]}
    return {"hidden_size": attrs["hidden_size"], "direction": attrs["direction"], "clip": attrs["clip"],
            "activations": attrs["activations"], "activation_alpha": alphas, "activation_beta": betas, **own}


def explicit_alpha_beta(op: Op) -> tuple[list[float] | None, list[float] | None]:
    """The alpha and beta lists of the op's activations, defaults included (``None`` when
    no activation takes one)."""
    params = activation_params(op)
    alphas = [alpha for _, alpha, _ in params if alpha is not None]
    betas = [beta for _, _, beta in params if beta is not None]
    return alphas or None, betas or None


def _selectors(b: GraphBuilder, gates: int, dirs: int, dtype: np.dtype) -> str:
    """W ``[dirs, gates, gates·dirs]``: direction d picks its own block of the input."""
    zeros = b.add("ConstantOfShape", [b.ints([gates, gates * dirs], "identity_shape")], "identity_zeros",
                  value=numpy_helper.from_array(np.zeros(1, dtype)))
    eyes = [b.add("Unsqueeze", [b.add("EyeLike", [zeros], f"identity{d}", k=gates * d), b.ints([0], f"axis{d}")],
                  f"identity{d}_3d") for d in range(dirs)]
    return eyes[0] if dirs == 1 else b.add("Concat", eyes, "identity", axis=0)


def _bias_input(b: GraphBuilder, bias: np.ndarray | None, rows: int, dtype: np.dtype) -> str:
    """The node's B: ONNX's ``Wb`` then ``Rb`` as is, a folded bias padded with a zero
    recurrent half."""
    if bias is None:
        return ""
    name = b.init(bias.astype(dtype, copy=False), "B")
    if bias.shape[1] == 2 * rows:
        return name
    return b.add("Pad", [name, b.ints([0, 0, 0, rows], "B_pads")], "B_recurrent_zero")


def bias_row(b: GraphBuilder, bias: str, d: int) -> str:
    """Direction ``d``'s row of the bias."""
    return b.add("Gather", [bias, b.scalar(d, np.int64, f"bias{d}_index")], f"bias{d}", axis=0)


def direction_bias(b: GraphBuilder, row: str, d: int, rows: int, width: int, folded: int | None = None) -> str:
    """Direction ``d``'s bias (``row``, of ``width``) as the input projection adds it,
    ``[rows]``: the row itself (a folded bias), or ``Wb`` plus the first ``folded`` rows
    of ``Rb`` (all of them by default), zero-padded to ``rows``."""
    if width == rows:
        return row
    folded = rows if folded is None else folded
    input_half = slice_rows(b, row, 0, rows, f"bias{d}_input")
    recurrent = slice_rows(b, row, rows, rows + folded, f"bias{d}_recurrent")
    if folded < rows:
        recurrent = b.add("Pad", [recurrent, b.ints([0, rows - folded], f"bias{d}_recurrent_pads")],
                          f"bias{d}_recurrent_padded")
    return b.add("Add", [input_half, recurrent], f"bias{d}_sum")


def slice_rows(b: GraphBuilder, x: str, start: int, end: int, role: str, axis: int | None = None) -> str:
    """``x[start:end]`` along ``axis`` (the first, unless given)."""
    bounds = [b.ints([start], f"{role}_start"), b.ints([end], f"{role}_end")]
    if axis is None:
        return b.add("Slice", [x, *bounds], role)
    return b.add("Slice", [x, *bounds, b.ints([axis], f"{role}_axis")], role)


def split_rows(b: GraphBuilder, x: str, sizes: list[int], role: str) -> list[str]:
    """``x`` ``[B, Σ sizes]`` split along its last axis."""
    b.add("Split", [x, b.ints(sizes, f"{role}_sizes")], role, count=len(sizes), axis=1)
    return b.outputs_of_last()


def scan_hint(op: Op, inputs: list[str], results: list[str], w_ends: list[str], cell: ScanCell) -> str:
    """The ``tensorgate.<kind>`` metadata of a Scan-lowered op: its scalar attributes,
    which values are its operands and results, where its maps end (W outside the body,
    R inside, per direction) and what the cell adds (its bias and peepholes)."""
    keys = SCALAR_ATTRS + OWN_ATTRS[op.kind]
    return json.dumps({**{k: op.attrs[k] for k in keys}, "operands": [name or None for name in _operands(op, inputs)],
                       "results": list(results), "w": w_ends, "r": cell.r_ends, **(cell.hint() or {})})


def _scan(b, op, inputs, results, cell: ScanCell):
    """Strategy ``scan``: input projections for all steps, then one Scan over time (both
    directions in one node) whose body runs ``cell``."""
    x, seq_lens, *initial = _operands(op, inputs)
    dirs, hidden, dtype = cell.dirs, cell.hidden, cell.dtype
    cell.prepare(b)
    gates_x = [cell.projection(b, d, x) for d in range(dirs)]
    mask = _step_mask(b, x, seq_lens) if seq_lens else None
    zeros = None
    states = []
    for d in range(dirs):
        for state in initial:
            if state:
                states.append(b.add("Gather", [state, b.scalar(d, np.int64, f"dir{d}")], f"initial{d}", axis=0))
            else:
                zeros = zeros or _zero_state(b, x, hidden, dtype)
                states.append(zeros)
    body = _cell_body(b.child(), op, cell, mask is not None)
    scan_inputs = gates_x + ([mask] * dirs if mask else [])
    directions = [int(op.attrs["direction"] == "reverse" or d == 1) for d in range(dirs)]
    count = len(initial)
    b.add("Scan", states + scan_inputs, "scan", count=(count + 1) * dirs, body=body,
          num_scan_inputs=len(scan_inputs), scan_input_directions=directions * (2 if mask else 1),
          scan_output_directions=directions)
    scan = b.nodes[-1]
    if cell.hint() is not None:
        w_ends = [_projection_end(b, g) for g in gates_x]
        scan.metadata_props.add(key=SCAN_KEYS[op.kind], value=scan_hint(op, inputs, results, w_ends, cell))
    finals, ys = list(scan.output[:count * dirs]), list(scan.output[count * dirs:])
    _stack(b, ys, 1, results[0], "Y")
    for k, state in enumerate(RECURRENT[op.kind].states):
        _stack(b, finals[k::count], 0, results[k + 1], f"Y_{state}")


def _projection_end(b: GraphBuilder, gates_x: str) -> str:
    """The value ending W's application in a projection (before the bias is added)."""
    node = next(n for n in b.nodes if gates_x in n.output)
    return node.input[0] if node.op_type == "Add" else gates_x


def _stack(b: GraphBuilder, parts: list[str], axis: int, output: str, role: str) -> None:
    """Stack the per-direction ``parts`` along a new ``axis`` into ``output``."""
    if len(parts) == 1:
        b.add("Unsqueeze", [parts[0], b.ints([axis], f"{role}_axis")], role, [output])
        return
    expanded = [b.add("Unsqueeze", [p, b.ints([axis], f"{role}{d}_axis")], f"{role}{d}") for d, p in enumerate(parts)]
    b.add("Concat", expanded, role, [output], axis=axis)


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


def _cell_body(b: GraphBuilder, op: Op, cell: ScanCell, ragged: bool) -> onnx.GraphProto:
    """The Scan body: for each direction, ``(states, gates_x[t], [mask[t]]) -> (states', y[t])``."""
    dirs, hidden = cell.dirs, cell.hidden
    elem = helper.np_dtype_to_tensor_dtype(cell.dtype)
    kinds = RECURRENT[op.kind].states

    def formal(role: str, width: int, elem_type: int = elem) -> onnx.ValueInfoProto:
        return helper.make_tensor_value_info(b.values.fresh(f"{b.prefix}/{role}"), elem_type, [None, width])

    states = [formal(f"{kind}{d}", hidden) for d in range(dirs) for kind in kinds]
    gates_x = [formal(f"gates_x{d}_t", gate_count(op) * hidden) for d in range(dirs)]
    masks = [formal(f"mask{d}_t", 1, TensorProto.BOOL) for d in range(dirs)] if ragged else []
    new_states, ys = [], []
    for d in range(dirs):
        old = [s.name for s in states[d * len(kinds):(d + 1) * len(kinds)]]
        new = cell.step(b, d, old, gates_x[d].name)
        if ragged:
            mask = masks[d].name
            new_states += [b.add("Where", [mask, n, s], f"{kind}{d}_kept") for n, s, kind in zip(new, old, kinds)]
            ys.append(b.add("Where", [mask, new[0], b.scalar(0, cell.dtype, "zero")], f"y{d}"))
        else:
            new_states += new
            ys.append(b.add("Identity", [new[0]], f"y{d}"))
    outputs = [helper.make_tensor_value_info(name, elem, [None, hidden]) for name in new_states + ys]
    return helper.make_graph(b.nodes, f"{b.prefix}/cell", states + gates_x + masks, outputs, b.initializers)


# --- elementwise pieces of the float cells ------------------------------------------------


def clipped(b: GraphBuilder, x: str, clip: float | None, dtype: np.dtype, role: str) -> str:
    """``clip`` (the ONNX attribute) clamps a pre-activation to ``[-clip, clip]``."""
    if clip is None:
        return x
    bound = [b.scalar(-clip, dtype, "clip_min"), b.scalar(clip, dtype, "clip_max")]
    return b.add("Clip", [x, *bound], f"clip_{role}")


def activation(b: GraphBuilder, params: tuple[str, float | None, float | None], x: str, dtype: np.dtype,
               role: str) -> str:
    """An ONNX recurrent activation as standard ops."""
    name, alpha, beta = params
    role = f"{role}_{name.lower()}"
    if name in ("Sigmoid", "Tanh", "Relu", "Softsign", "Softplus"):
        return b.add(name, [x], role)
    if name in ("LeakyRelu", "ThresholdedRelu", "Elu"):
        return b.add(name, [x], role, alpha=alpha)
    if name == "HardSigmoid":
        return b.add(name, [x], role, alpha=alpha, beta=beta)
    if name == "Affine":
        scaled = b.add("Mul", [x, b.scalar(alpha, dtype, "alpha")], f"{role}_scale")
        return b.add("Add", [scaled, b.scalar(beta, dtype, "beta")], role)
    inner = b.add("Mul", [x, b.scalar(beta, dtype, "beta")], f"{role}_inner")  # ScaledTanh
    return b.add("Mul", [b.scalar(alpha, dtype, "alpha"), b.add("Tanh", [inner], f"{role}_tanh")], role)
