"""Read an ONNX model, check it, and lift it into a tensorgate ``Module``.

Steps: load (with external data), ``onnx.checker``, ONNX shape inference (strict,
with data propagation so computed shapes are known), then import node by node with
the handlers in ``onnx_ops`` and ``onnx_lstm``.  Integer shape arithmetic whose values
are static is folded before the import, and tensorized parts are raised after it
(``frontend.raising``).

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

import onnx
from google.protobuf.message import DecodeError
from onnx import numpy_helper

from ..errors import FrontendError, VerifyError
from ..ir.core import Module
from ..ir.types import UNKNOWN, TensorType
from ..ir.verifier import verify_module
from ..onnx_form.conventions import ELEMENT_TYPES
from . import onnx_lstm, onnx_ops  # noqa: F401  (register the op handlers)
from .onnx_context import HANDLERS, ImportState, NodeContext, element_type_name
from .raise_export import ExportRaiser
from .raising import fold_static_shapes, raise_tensorized

ONNX_DOMAINS = ("", "ai.onnx")


def import_onnx(source: str | Path | onnx.ModelProto, raising: bool = True) -> Module:
    """Import an ONNX file (or an in-memory ``ModelProto``) as a verified ``Module``.

    With ``raising`` (the default), tensorized maps and LSTM cells written out step by
    step are raised to ``linear`` ops with decomposed maps and ``lstm`` ops
    (``frontend.raising``); ``module.notes`` lists the parts left as generic ops and why.
    """
    if isinstance(source, onnx.ModelProto):
        model, origin = source, f"model '{source.graph.name or 'unnamed'}'"
    else:
        model, origin = _load(Path(source)), str(source)
    declared_dims = _dim_names(model.graph)
    model = _checked_and_inferred(model, origin, None if isinstance(source, onnx.ModelProto) else Path(source))
    raiser = ExportRaiser(model)  # tensorgate's own lowerings, matched as written (before folding)
    model = fold_static_shapes(model)
    module = _GraphImporter(model, origin, declared_dims, raiser).run()
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
    """
    if path is not None:
        _check_external_files(model, path)
    problem = _checker_problem(model if path is None else str(path))
    try:
        inferred = onnx.shape_inference.infer_shapes(model, check_type=True, strict_mode=True, data_prop=True)
    except (onnx.shape_inference.InferenceError, onnx.checker.ValidationError, ValueError) as exc:
        if problem:
            raise FrontendError(f"{origin}: fails the ONNX checker: {problem}") from None
        raise FrontendError(f"{origin}: ONNX shape inference failed: {_one_line(exc)}") from None
    if path is not None:
        _load_external_data(inferred, path)
    if problem and _checker_problem(inferred):
        raise FrontendError(f"{origin}: fails the ONNX checker: {problem}")
    return inferred


def _checker_problem(model: onnx.ModelProto | str) -> str | None:
    try:
        onnx.checker.check_model(model)
    except (onnx.checker.ValidationError, ValueError) as exc:  # ValueError: over 2 GB
        return _one_line(exc)
    return None


def _one_line(exc: Exception) -> str:
    """onnx's messages span lines (node dumps, context); the user gets one line."""
    return " ".join(str(exc).split()) or type(exc).__name__


def _dim_names(graph: onnx.GraphProto) -> set[str]:
    """The symbolic dim names the model itself declares (before shape inference)."""
    infos = [*graph.input, *graph.output, *graph.value_info]
    return {
        dim.dim_param
        for info in infos if info.type.HasField("tensor_type")
        for dim in info.type.tensor_type.shape.dim if dim.dim_param
    }


class _GraphImporter:
    """Imports the nodes of one checked, shape-inferred graph in order."""

    def __init__(self, model: onnx.ModelProto, origin: str, declared_dims: set[str], raiser: ExportRaiser):
        self.graph = model.graph
        self.origin = origin
        self.declared_dims = declared_dims
        self.opset = next((o.version for o in model.opset_import if o.domain in ONNX_DOMAINS), None)
        self.raiser = raiser
        infos = [*self.graph.input, *self.graph.value_info, *self.graph.output]
        names = {info.name for info in infos} | {i.name for i in self.graph.initializer}
        names |= {name for node in self.graph.node for name in [*node.input, *node.output] if name}
        self.state = ImportState(
            origin,
            declared_types={info.name: self._tensor_type(info, strict=False) for info in infos},
            all_names=names,
            graph_outputs={info.name for info in self.graph.output},
        )

    def run(self) -> Module:
        initializers = {init.name for init in self.graph.initializer}
        for info in self.graph.input:
            if info.name not in initializers:
                self.state.add_input(info.name, self._tensor_type(info, strict=True))
        for init in self.graph.initializer:
            self.state.add_constant(init.name, numpy_helper.to_array(init), loc="")
        for index, node in enumerate(self.graph.node):
            if self.raiser.claims(node):
                self.raiser.emit(node, self.state)
                continue
            self._import_node(node, node.name or f"{node.op_type}_{index}")
        module = self.state.module
        module.outputs = [self.state.value(info.name) for info in self.graph.output]
        try:
            verify_module(module)
        except VerifyError as exc:
            raise FrontendError(f"{self.origin}: the imported module is invalid: {exc}") from None
        return module

    def _import_node(self, node: onnx.NodeProto, loc: str) -> None:
        if node.domain not in ONNX_DOMAINS:
            raise FrontendError(f"{self.origin}: node '{loc}' ({node.domain}.{node.op_type}): "
                                f"ops of domain '{node.domain}' are not supported")
        spec = HANDLERS.get(node.op_type)
        version = onnx.defs.get_schema(node.op_type, self.opset, "").since_version
        ctx = NodeContext(self.state, node, loc, version)
        if spec is None:
            raise ctx.error(f"op type {node.op_type} is not supported "
                            f"(supported: {', '.join(sorted(HANDLERS))})")
        if version < spec.since:
            raise ctx.error(f"{node.op_type} version {version} (opset {self.opset}) is not supported; "
                            f"needs version {spec.since} or later")
        for attribute in node.attribute:
            if attribute.name not in spec.attrs:
                raise ctx.error(f"attribute '{attribute.name}' is not supported")
        spec.fn(ctx)
        missing = [name for name in node.output if name and not self.state.is_defined(name)]
        if missing:
            raise AssertionError(f"handler for {node.op_type} left output(s) {missing} undefined")

    def _tensor_type(self, info: onnx.ValueInfoProto, strict: bool) -> TensorType | None:
        """The IR type of a graph value; ``None`` (or, if ``strict``, an error) when ONNX
        gives no tensor type with a shape."""
        kind = info.type.WhichOneof("value")
        tensor = info.type.tensor_type
        if kind != "tensor_type" or not tensor.HasField("shape"):
            if strict:
                raise FrontendError(f"{self.origin}: graph input '{info.name}' needs a tensor type with a shape")
            return None
        if tensor.elem_type not in ELEMENT_TYPES:
            if strict:
                raise FrontendError(f"{self.origin}: graph input '{info.name}' has element type "
                                    f"{element_type_name(tensor.elem_type)}, which tensorgate does not support")
            return None
        dims = tuple(
            dim.dim_value if dim.HasField("dim_value")
            else dim.dim_param if dim.dim_param in self.declared_dims
            else UNKNOWN
            for dim in tensor.shape.dim
        )
        return TensorType(dims, ELEMENT_TYPES[tensor.elem_type])
