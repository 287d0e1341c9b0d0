"""The ONNX lowering of ``lstm``: the ``LSTM`` node (strategies ``native`` and
``projected``) or a ``Scan`` over the cell (``scan``); see the package docstring."""

from __future__ import annotations

import json
from typing import Any, Callable

import numpy as np
import onnx
from onnx import TensorProto, helper, numpy_helper

from ..ir.core import Op, Value
from ..ir.linear_map import DenseMap, LinearMap
from ..ir.ops import activation_params, num_directions
from ..ir.types import F32, I32
from .conventions import LSTM_KEY
from .graph import GraphBuilder, numpy_dtype
from .maps import apply_maps
from .ops import lowers


def _stacked_dense(maps: list[LinearMap], dirs: int) -> bool:
    return len(maps) == dirs and all(isinstance(m, DenseMap) for m in maps)


def lstm_strategy(op: Op) -> str:
    """``native``, ``projected`` or ``scan`` (see the package docstring)."""
    dirs = num_directions(op)
    if op.operands[0].type.dtype != F32 or not _stacked_dense(op.attrs["r"], dirs) or op.attrs.get("quant"):
        return "scan"
    return "native" if _stacked_dense(op.attrs["w"], dirs) else "projected"


@lowers("lstm")
def lower_lstm(b, op, inputs, results, quantized_cell: Callable[[Op], Any] | None = None):
    """The lowering of ``lstm`` by its strategy; a quantized op passes
    ``quantized_cell(op)``, its Scan cell (``backend.onnx_qdq.QuantizedLSTM``), which
    differs from the float one in its projections, peepholes and cell."""
    if op.attrs["layout"]:
        _batch_major_lstm(b, op, inputs, results, quantized_cell)
    elif lstm_strategy(op) == "scan":
        _scan_lstm(b, op, inputs, results, None if quantized_cell is None else quantized_cell(op))
    else:
        _lstm_node(b, op, inputs, results)


def _batch_major_lstm(b, op, inputs, results, quantized_cell):
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
    lower_lstm(b, twin, [v.name if v is not None else "" for v in twin_operands], [v.name for v in twin_results],
               quantized_cell)
    for value, result, perm in zip(twin_results, results, ([2, 0, 1, 3], [1, 0, 2], [1, 0, 2])):
        b.add("Transpose", [value.name], "batch_major", [result], perm=perm)


def _lstm_node(b, op, inputs, results):
    """The ONNX LSTM op (strategies ``native`` and ``projected``)."""
    attrs = op.attrs
    x, seq_lens, h0, c0 = (list(inputs) + [""] * 4)[:4]
    dirs, hidden = num_directions(op), attrs["hidden_size"]
    dtype = numpy_dtype(op.operands[0])
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


def scan_hint(op: Op, inputs: list[str], results: list[str], bias: str | None, peepholes: str | None) -> str:
    """The ``tensorgate.lstm`` metadata of a Scan-lowered ``lstm``: its scalar attributes
    and which values are its operands, results, bias and peepholes."""
    keys = ("hidden_size", "direction", "clip", "input_forget", "activations", "activation_alpha",
            "activation_beta")
    operands = (list(inputs) + [""] * 4)[:4]
    return json.dumps({**{k: op.attrs[k] for k in keys}, "operands": [name or None for name in operands],
                       "results": list(results), "bias": bias, "peepholes": peepholes})


def _scan_lstm(b, op, inputs, results, quantized):
    """Strategy ``scan``: input projections for all steps, then one Scan over time, with
    the ``quantized`` cell of a quantized op."""
    attrs = op.attrs
    x, seq_lens, h0, c0 = (list(inputs) + [""] * 4)[:4]
    dirs, hidden = num_directions(op), attrs["hidden_size"]
    dtype = numpy_dtype(op.operands[0])
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
    dirs, hidden = num_directions(op), op.attrs["hidden_size"]
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
    """The LSTM cell of one direction in elementwise ONNX ops, in the float kernel's order."""

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
