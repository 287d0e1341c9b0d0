"""Prepare a real model for import: bind inputs, fix input shapes, fold constants.

* ``bind_inputs``: an input given a value (``--bind sr=16000``) becomes an initializer and
  leaves ``graph.input``, so the folder treats it as the constant it now is (it does not
  fold what reads a graph input).
* ``fix_input_shapes``: an input given dims (``--shape input=1x576``) declares them, so
  shape arithmetic on it becomes constant too.
* ``fold_constants``: onnxscript's constant folder (``onnxscript.optimizer``, on
  ``onnx_ir``), not a folder of our own.  Exporters compute recurrent weights at run time
  (torch's dynamo exporter reorders gates with Slice/Concat/Unsqueeze of initializers,
  silero builds them from Constant nodes inside ``If`` branches) and branch on inputs
  and shapes (``If``).  The folder evaluates those chains and inlines every ``If`` whose
  condition became constant, so an LSTM/GRU/RNN whose W, R, B (P) are computed from
  constants imports like one whose weights are initializers.

What is folded is chosen, not everything: the chains that feed the weights of recurrent
ops (``RECURRENT_WEIGHTS``) and every integer or boolean value (shape arithmetic, pads,
conditions).  Other float computations over constants are left as written, so
tensorized cores reach the raising exactly as stored and host regions keep their own
nodes (onnxruntime folds those when it loads them).  The folder runs without its size
limits (its defaults leave any weight above 8192 elements unfolded, which is why torch's
exporter leaves the gate reordering in) and with ONNX shape inference, repeated until
nothing changes.  Declared graph output shapes are cleared first: the folder trusts
them, and a wrong one (ddddocr declares ``[1, seqlen]`` for ``[T, 1, 8210]``) makes it
rewrite a computed Reshape into a wrong constant; the importer compares them with what
the graph computes afterwards.
"""

from __future__ import annotations

from typing import Mapping, Sequence

import numpy as np
import onnx
from onnx import helper, numpy_helper

from ..errors import FrontendError

RECURRENT_WEIGHTS = {"LSTM": (1, 2, 3, 7), "GRU": (1, 2, 3), "RNN": (1, 2, 3)}
"""Per recurrent op type, the inputs the importer needs as constants (W, R, B and P)."""
FOLD_ROUNDS = 8
NO_LIMIT = 1 << 62


def bind_inputs(model: onnx.ModelProto, values: Mapping[str, object], origin: str) -> None:
    """Replace the graph inputs named in ``values`` by initializers holding them (in place)."""
    graph = model.graph
    for name, value in values.items():
        info = _graph_input(graph, name, "--bind", origin)
        tensor = info.type.tensor_type
        dtype = helper.tensor_dtype_to_np_dtype(tensor.elem_type)
        try:
            array = np.asarray(value, dtype=dtype)
        except (TypeError, ValueError) as exc:
            raise FrontendError(f"{origin}: --bind {name}: {exc}") from None
        if np.isscalar(value) and tensor.HasField("shape") and len(tensor.shape.dim) and array.ndim == 0:
            array = np.full([d.dim_value or 1 for d in tensor.shape.dim], array)
        _check_fits(name, array.shape, tensor, "--bind", origin)
        graph.input.remove(info)
        for init in [i for i in graph.initializer if i.name == name]:
            graph.initializer.remove(init)
        graph.initializer.append(numpy_helper.from_array(array, name))


def fix_input_shapes(model: onnx.ModelProto, shapes: Mapping[str, Sequence[int]], origin: str) -> None:
    """Declare static dims for the graph inputs named in ``shapes`` (in place)."""
    for name, dims in shapes.items():
        tensor = _graph_input(model.graph, name, "--shape", origin).type.tensor_type
        _check_fits(name, tuple(dims), tensor, "--shape", origin)
        del tensor.shape.dim[:]
        for size in dims:
            tensor.shape.dim.add().dim_value = int(size)


def _graph_input(graph: onnx.GraphProto, name: str, option: str, origin: str) -> onnx.ValueInfoProto:
    initializers = {i.name for i in graph.initializer}
    inputs = [i for i in graph.input if i.name not in initializers or i.name == name]
    for info in inputs:
        if info.name == name:
            if info.type.WhichOneof("value") != "tensor_type":
                raise FrontendError(f"{origin}: {option} {name}: the input is not a tensor")
            return info
    names = ", ".join(i.name for i in inputs if i.name not in initializers) or "none"
    raise FrontendError(f"{origin}: {option} {name}: the model has no input '{name}' (its inputs: {names})")


def _check_fits(name: str, shape: tuple[int, ...], tensor: onnx.TypeProto.Tensor, option: str, origin: str) -> None:
    if not tensor.HasField("shape"):
        return
    declared = [d.dim_value if d.HasField("dim_value") else None for d in tensor.shape.dim]
    if len(shape) != len(declared) or any(d is not None and d != s for d, s in zip(declared, shape)):
        text = "[" + ",".join("?" if d is None else str(d) for d in declared) + "]"
        raise FrontendError(f"{origin}: {option} {name}: shape {list(shape)} does not fit the declared {text}")


def clear_output_shapes(model: onnx.ModelProto) -> None:
    """Forget the declared shapes of the graph outputs (in place); see the module docstring."""
    for info in model.graph.output:
        if info.type.WhichOneof("value") == "tensor_type":
            info.type.tensor_type.ClearField("shape")


def fold_constants(model: onnx.ModelProto) -> onnx.ModelProto:
    """The model with the chains of the module docstring folded and constant ``If``s inlined."""
    import onnx_ir as ir
    import onnx_ir.passes.common as common
    from onnxscript.optimizer import fold_constants as onnxscript_fold

    ir_model = ir.from_proto(model)
    for _ in range(FOLD_ROUNDS):
        cone = _weight_cone(ir_model)
        result = onnxscript_fold(ir_model, onnx_shape_inference=True, input_size_limit=NO_LIMIT,
                                 output_size_limit=NO_LIMIT,
                                 should_fold=lambda node: id(node) in cone or _integral(node))
        removed = common.RemoveUnusedNodesPass()(ir_model)
        if not result.modified and not removed.modified:
            break
    return ir.to_proto(ir_model)


def _integral(node) -> bool:
    """Every output of ``node`` is a known integer or boolean tensor."""
    import onnx_ir as ir

    return bool(node.outputs) and all(
        out.dtype is not None and (out.dtype.is_integer() or out.dtype == ir.DataType.BOOL) for out in node.outputs)


def _weight_cone(ir_model) -> set[int]:
    """Ids of the nodes (subgraphs included) that the weights of recurrent ops depend on."""
    import onnx_ir as ir

    cone: set[int] = set()
    pending = []
    for node in ir.traversal.RecursiveGraphIterator(ir_model.graph):
        if node.domain in ("", "ai.onnx") and node.op_type in RECURRENT_WEIGHTS:
            pending += [node.inputs[i] for i in RECURRENT_WEIGHTS[node.op_type] if i < len(node.inputs)]
    while pending:
        value = pending.pop()
        producer = value.producer() if value is not None else None
        if producer is not None and id(producer) not in cone:
            cone.add(id(producer))
            pending.extend(producer.inputs)
    return cone
