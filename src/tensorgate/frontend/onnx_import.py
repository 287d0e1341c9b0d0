"""Read an ONNX model, check it, and lift it into a tensorgate ``Module``.

Steps: load (with external data), bind inputs and fix input shapes where asked
(``folding``), ``onnx.checker``, ONNX shape inference (strict, with data propagation so
computed shapes are known), constant folding with onnxscript (``folding``: computed
recurrent weights, constant ``If``s), then the import of the graph (``graph_import``):
the ops tensorgate models node by node with the handlers in ``onnx_ops``,
``onnx_lstm`` and ``onnx_recurrent``, the rest as host regions run by onnxruntime
(``partition``).  Integer shape arithmetic whose values are static is folded before the
import, and tensorized parts are raised after it (``frontend.raising``).

Declared graph output shapes are checked against what the graph computes: where they
contradict (another rank, another static size, a static size where the graph computes
an input's named dim), the computed shape is followed, as onnxruntime does, with one
warning line in ``module.warnings``.

The module's inputs are the graph inputs that are not initializers and its outputs
the graph outputs, named exactly as in ONNX; intermediate values keep their ONNX
names too.  Result types merge the IR's inference with ONNX's: symbolic dims keep
the names the model gives them; dims ONNX inference invents (``unk__0``) or leaves
blank are ``"?"``.  Every op's ``loc`` is the name of the node it came from (nodes
without a name are called ``<op_type>_<index>``).

Anything the importer cannot map exactly is a ``FrontendError`` naming the file and,
where there is one, the node and op type.
"""

from __future__ import annotations

from pathlib import Path
from typing import Mapping, Sequence

import numpy as np
import onnx
from google.protobuf.message import DecodeError
from onnx import numpy_helper

from ..errors import FrontendError, VerifyError
from ..ir.core import Module
from ..ir.types import UNKNOWN, TensorType
from ..ir.verifier import verify_module
from ..onnx_form import PRODUCER
from . import onnx_lstm, onnx_ops, onnx_recurrent  # noqa: F401  (register the op handlers)
from .folding import bind_inputs, clear_output_shapes, fold_constants, fix_input_shapes
from .graph_import import GraphImporter
from .raise_export import ExportRaiser
from .raising import fold_static_shapes, raise_tensorized


def import_onnx(source: str | Path | onnx.ModelProto, raising: bool = True, bind: Mapping[str, object] | None = None,
                shapes: Mapping[str, Sequence[int]] | None = None) -> Module:
    """Import an ONNX file (or an in-memory ``ModelProto``, left unchanged) as a verified ``Module``.

    ``bind`` fixes inputs to constants (``{"sr": 16000}``): the module has no such input,
    and ``If``s whose condition becomes constant are replaced by the branch taken.
    ``shapes`` fixes the dims of inputs (``{"input": [1, 576]}``).  With ``raising`` (the
    default), tensorized maps and LSTM or GRU cells written out step by step are raised
    to ``linear`` ops with decomposed maps and ``lstm``/``gru`` ops (``frontend.raising``);
    ``module.notes`` lists the parts left as generic ops and why, ``module.warnings``
    what the import did not take as the model says (module docstring, ``graph_import``).
    """
    if isinstance(source, onnx.ModelProto):
        model, origin, path = onnx.ModelProto(), f"model '{source.graph.name or 'unnamed'}'", None
        model.CopyFrom(source)
    else:
        path = Path(source)
        model, origin = _load(path), str(source)
    declared_dims = _dim_names(model.graph)
    declared = onnx.GraphProto()
    declared.output.extend(model.graph.output)
    bind_inputs(model, bind or {}, origin)
    fix_input_shapes(model, shapes or {}, origin)
    model = _checked_and_inferred(model, origin, path)
    warnings: list[str] = []
    raiser = ExportRaiser(model)  # tensorgate's own lowerings, matched as written (before folding)
    producers = {out: node.name for node in model.graph.node for out in node.output if node.name}
    if model.producer_name != PRODUCER:
        model = _folded(model, origin, warnings)
    _check_weights_finite(model, origin)
    model = fold_static_shapes(model)
    importer = GraphImporter(model, origin, declared_dims, raiser, list(declared.output), producers)
    module = importer.run()
    module.warnings = warnings + module.warnings + _follow_computed_outputs(module, importer.declared_outputs)
    if raising:
        module.notes = raise_tensorized(module)
        try:
            verify_module(module)
        except VerifyError as exc:
            raise FrontendError(f"{origin}: raising tensorized parts made an invalid module: {exc}") from None
    return module


def _load(path: Path) -> onnx.ModelProto:
    """The model without its external data: the checker and shape inference copy the
    whole model several times, which for a large model's weights costs gigabytes, so
    they run first and the weights are read afterwards (``_load_external_data``)."""
    if not path.is_file():
        raise FrontendError(f"{path}: no such file" if not path.exists() else f"{path}: not a file")
    try:
        model = onnx.load(path, load_external_data=False)
    except DecodeError as exc:
        raise FrontendError(f"{path}: not an ONNX model ({exc})") from None
    if not model.HasField("graph") or model.ir_version == 0:
        raise FrontendError(f"{path}: not an ONNX model (no graph or IR version)")
    return model


def _check_external_files(model: onnx.ModelProto, path: Path) -> None:
    """Every external-data file the model names exists beside it."""
    for tensor in onnx.external_data_helper._get_all_tensors(model):
        if onnx.external_data_helper.uses_external_data(tensor):
            location = onnx.external_data_helper.ExternalDataInfo(tensor).location
            if not (path.parent / location).is_file():
                raise FrontendError(f"{path}: cannot load external data: tensor '{tensor.name}' is stored "
                                    f"in '{location}', which does not exist beside the model")


def _load_external_data(model: onnx.ModelProto, path: Path) -> None:
    try:
        onnx.external_data_helper.load_external_data_for_model(model, str(path.parent))
    except (onnx.checker.ValidationError, OSError, ValueError) as exc:
        raise FrontendError(f"{path}: cannot load external data: {_one_line(exc)}") from None


def _checked_and_inferred(model: onnx.ModelProto, origin: str, path: Path | None) -> onnx.ModelProto:
    """The model after strict shape inference, once it passes the checker, with its
    external data loaded.

    A model the checker rejects only for what inference fills in (graph output shapes,
    which many hand-built models leave out) is accepted once inferred; otherwise the
    checker's own message is reported, as it is clearer than inference's.  A model read
    from ``path`` is checked from the file (external data is looked up beside it, not
    loaded) and inferred without its external data, which is read only at the end.
    Graph output shapes are inferred afresh (``folding.clear_output_shapes``).
    """
    if path is not None:
        _check_external_files(model, path)
    _check_declarations(model, origin)
    problem = _checker_problem(model if path is None else str(path))
    clear_output_shapes(model)
    try:
        inferred = onnx.shape_inference.infer_shapes(model, check_type=True, strict_mode=True, data_prop=True)
    except (onnx.shape_inference.InferenceError, onnx.checker.ValidationError, ValueError) as exc:
        if problem:
            raise FrontendError(f"{origin}: fails the ONNX checker: {problem}") from None
        raise FrontendError(f"{origin}: ONNX shape inference failed: {_one_line(exc)}") from None
    if path is not None:
        _load_external_data(inferred, path)
    remaining = _checker_problem(inferred) if problem else None
    if remaining:
        raise FrontendError(f"{origin}: fails the ONNX checker: {remaining}")
    return inferred


FLOAT_TYPES = (onnx.TensorProto.FLOAT, onnx.TensorProto.DOUBLE, onnx.TensorProto.FLOAT16, onnx.TensorProto.BFLOAT16)


def _check_declarations(model: onnx.ModelProto, origin: str) -> None:
    """What the checker reports late or not at all, named at its root: an opset newer
    than the installed onnx knows, an initializer whose data does not fit its declared
    shape (onnx's own tensor check), a negative declared dim of a graph input or output."""
    newest = onnx.defs.onnx_opset_version()
    for opset in model.opset_import:
        if opset.domain in ("", "ai.onnx") and not 1 <= opset.version <= newest:
            raise FrontendError(f"{origin}: imports ONNX opset {opset.version}, but the installed onnx knows opsets "
                                f"1..{newest}")
    for tensor in model.graph.initializer:
        if tensor.data_location != onnx.TensorProto.EXTERNAL:
            try:
                onnx.checker.check_tensor(tensor)
            except onnx.checker.ValidationError as exc:
                raise FrontendError(f"{origin}: initializer '{tensor.name}' is corrupt: {_one_line(exc)}") from None
    for role, infos in (("input", model.graph.input), ("output", model.graph.output)):
        for info in infos:
            dims = info.type.tensor_type.shape.dim if info.type.HasField("tensor_type") else []
            negative = [dim.dim_value for dim in dims if dim.HasField("dim_value") and dim.dim_value < 0]
            if negative:
                raise FrontendError(f"{origin}: graph {role} '{info.name}' declares the negative dim {negative[0]}")


WEIGHT_CONSUMERS = {"LSTM": (1, 2, 3, 7), "GRU": (1, 2, 3), "RNN": (1, 2, 3), "Gemm": (0, 1, 2), "MatMul": (0, 1),
                    "Einsum": None, "Conv": (1, 2)}
"""Node inputs that hold weights (all inputs where ``None``): an initializer there with a
NaN or an infinity cannot be a trained weight."""


def _check_weights_finite(model: onnx.ModelProto, origin: str) -> None:
    """``FrontendError`` naming the first float initializer with a NaN, or with an
    infinity where a node takes it as a weight (``WEIGHT_CONSUMERS``; elsewhere ``-inf``
    can be a mask).  It runs after constant folding, so computed weights are checked as
    the nodes take them."""
    weights = {name for node in model.graph.node if node.op_type in WEIGHT_CONSUMERS
               for index, name in enumerate(node.input)
               if WEIGHT_CONSUMERS[node.op_type] is None or index in WEIGHT_CONSUMERS[node.op_type]}
    for tensor in model.graph.initializer:
        if tensor.data_type not in FLOAT_TYPES:
            continue
        array = numpy_helper.to_array(tensor)
        bad = np.isnan(array) if tensor.name not in weights else ~np.isfinite(array)
        if bad.any():
            index = tuple(int(i) for i in np.argwhere(bad)[0])
            raise FrontendError(f"{origin}: initializer '{tensor.name}' holds {array[index]} at {list(index)} "
                                f"({int(bad.sum())} of {array.size} entries are not finite): the weights are corrupt")


def _checker_problem(model: onnx.ModelProto | str) -> str | None:
    try:
        onnx.checker.check_model(model)
    except (onnx.checker.ValidationError, ValueError) as exc:  # ValueError: over 2 GB
        return _one_line(exc)
    return None


def _one_line(exc: Exception) -> str:
    """onnx's messages span lines (node dumps, context); the user gets one line."""
    return " ".join(str(exc).split()) or type(exc).__name__


def _folded(model: onnx.ModelProto, origin: str, warnings: list[str]) -> onnx.ModelProto:
    """``folding.fold_constants`` of the model, shape-inferred again.  Should the folder
    fail, the model is imported unfolded, with a warning."""
    try:
        folded = fold_constants(model)
    except Exception as exc:  # the folder's own failures (it evaluates nodes with the reference runtime)
        warnings.append(f"constant folding failed, the model is imported as written: {' '.join(str(exc).split())}")
        return model
    try:
        return onnx.shape_inference.infer_shapes(folded, check_type=True, strict_mode=True, data_prop=True)
    except (onnx.shape_inference.InferenceError, onnx.checker.ValidationError, ValueError) as exc:
        raise FrontendError(f"{origin}: ONNX shape inference failed after constant folding: {_one_line(exc)}") from None


def _follow_computed_outputs(module: Module, declared: dict[str, TensorType | None]) -> list[str]:
    """Module outputs typed by what the graph computes, with the declared dims filled in
    where the graph leaves them unknown; one warning per output whose declared type
    contradicts the computed one."""
    warnings = []
    for value in module.outputs:
        want = declared.get(value.name)
        if want is None:
            continue
        if value.type.dtype != want.dtype or value.type.rank != want.rank:
            contradicted = True
        else:
            contradicted = any(isinstance(theirs, int) and ours not in (theirs, UNKNOWN)
                               for ours, theirs in zip(value.type.shape, want.shape))
            value.type = value.type.with_shape(theirs if ours == UNKNOWN else ours
                                               for ours, theirs in zip(value.type.shape, want.shape))
        if contradicted:
            warnings.append(f"graph output '{value.name}' is declared {want} but the graph computes {value.type}; "
                            "following the graph, as onnxruntime does")
    return warnings


def _dim_names(graph: onnx.GraphProto) -> set[str]:
    """The symbolic dim names the model itself declares (before shape inference)."""
    infos = [*graph.input, *graph.output, *graph.value_info]
    return {
        dim.dim_param
        for info in infos if info.type.HasField("tensor_type")
        for dim in info.type.tensor_type.shape.dim if dim.dim_param
    }
