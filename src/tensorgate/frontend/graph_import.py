"""Import the nodes of one checked, shape-inferred ONNX graph: tensorgate regions node by
node with the op handlers, host regions as ``host`` ops.

Every node without a handler (another domain, an op type or attribute tensorgate lacks)
is hosted from the start; a node whose handler refuses it (a computed Slice bound, an
LSTM activation without a unit) is hosted when the refusal happens, and the import starts
again with the new partition (``partition.plan_partition``).  A model that is imported
whole has no host ops and imports exactly as before partitioning existed.

A host region becomes one ``host`` op holding the region's standalone model
(``partition.region_model``) serialized as a u8 tensor, its signature (the names and IR
types of the values crossing its boundary) and its multiply-accumulates (``macs``, from
the inferred shapes, none where a shape is not static).  Its results take the ONNX
names of the values leaving it.  Before any region is made, every hosted node
(subgraphs included) is checked to be one onnxruntime can run, and each region's model
is loaded once by onnxruntime, so what the IR holds is known to run.

A hosted recurrent op, or one inside a hosted node's subgraph (a ``Loop`` body, an
``If`` branch whose condition is not constant), gets a warning: it is not compiled.  A
model in which no tensorgate region is left is refused, with the reasons.
"""

from __future__ import annotations

import numpy as np
import onnx
from onnx import numpy_helper

from ..errors import FrontendError, VerifyError
from ..ir.core import Module
from ..ir.types import UNKNOWN, TensorType, type_text
from ..ir.verifier import verify_module
from ..onnx_form import tensor_value_info
from ..onnx_form.conventions import ELEMENT_TYPES
from .macs import node_macs
from .onnx_context import HANDLERS, ImportState, NodeContext, element_type_name
from .ort_support import unrunnable
from .partition import RECURRENT_OPS, Partition, Region, all_nodes, plan_partition, region_model, subgraphs
from .raise_export import ExportRaiser

ONNX_DOMAINS = ("", "ai.onnx")
MAX_LISTED = 6
"""Reasons listed in the error for a model nothing of which is compiled."""


class _Refused(Exception):
    """The handler of node ``index`` refused it; ``reason`` says why."""

    def __init__(self, index: int, reason: str):
        super().__init__(reason)
        self.index, self.reason = index, reason


class GraphImporter:
    """Imports one graph; ``run`` returns the verified module."""

    def __init__(self, model: onnx.ModelProto, origin: str, declared_dims: set[str], raiser: ExportRaiser,
                 declared_outputs: list[onnx.ValueInfoProto], producers: dict[str, str]):
        """``declared_outputs``: the graph outputs as the model declared them (the graph's
        own have their shapes cleared and inferred again); ``producers``: value name ->
        node name before folding (a folded value is located at the node that made it)."""
        self.model = model
        self.graph = model.graph
        self.origin = origin
        self.declared_dims = declared_dims
        self.opset = next((o.version for o in model.opset_import if o.domain in ONNX_DOMAINS), None)
        self.raiser = raiser
        self.declared_outputs = {info.name: self.tensor_type(info, strict=False) for info in declared_outputs}
        infos = [*self.graph.input, *self.graph.value_info, *self.graph.output]
        self.declared_types = {info.name: self.tensor_type(info, strict=False) for info in infos}
        self.names = {info.name for info in infos} | {i.name for i in self.graph.initializer}
        self.names |= {name for node in self.graph.node for name in [*node.input, *node.output] if name}
        self.producers = producers
        self.state: ImportState | None = None

    def run(self) -> Module:
        hosted = {index: reason for index, node in enumerate(self.graph.node)
                  if (reason := self._refusal(node, self._loc(index))) is not None}
        while True:
            partition = plan_partition(self.graph, set(hosted))
            if partition is None:
                raise FrontendError(self._nothing_compiled(hosted))
            if partition.regions:
                self._check_runnable(partition)
            try:
                module = self._import(partition)
            except _Refused as refused:
                hosted[refused.index] = refused.reason
                continue
            module.warnings += self._hosted_warnings(hosted, partition)
            return module

    # --- refusals and what they lead to ---------------------------------------------------

    def _loc(self, index: int) -> str:
        node = self.graph.node[index]
        return node.name or f"{node.op_type}_{index}"

    def _refusal(self, node: onnx.NodeProto, loc: str) -> str | None:
        """Why no handler can take ``node`` (``None`` if one can try)."""
        if self.raiser.claims(node):
            return None
        if node.domain not in ONNX_DOMAINS:
            return f"node '{loc}' ({node.domain}.{node.op_type}): ops of domain '{node.domain}' are not supported"
        spec = HANDLERS.get(node.op_type)
        if spec is None:
            return f"node '{loc}' ({node.op_type}): op type {node.op_type} is not supported"
        version = onnx.defs.get_schema(node.op_type, self.opset, "").since_version
        if version < spec.since:
            return (f"node '{loc}' ({node.op_type}): {node.op_type} version {version} (opset {self.opset}) is not "
                    f"supported; needs version {spec.since} or later")
        unknown = [a.name for a in node.attribute if a.name not in spec.attrs]
        if unknown:
            return f"node '{loc}' ({node.op_type}): attribute '{unknown[0]}' is not supported"
        return None

    def _nothing_compiled(self, hosted: dict[int, str]) -> str:
        bodies = {i: self._recurrent_in_body(self.graph.node[i]) for i in hosted}
        first = sorted(hosted, key=lambda i: (self.graph.node[i].op_type not in RECURRENT_OPS and not bodies[i], i))
        reasons = [hosted[i] + (f"; its body holds {', '.join(bodies[i])}, which only onnxruntime would run"
                                if bodies[i] else "") + self._binding_hint(i) for i in first[:MAX_LISTED]]
        more = f"; and {len(hosted) - MAX_LISTED} more" if len(hosted) > MAX_LISTED else ""
        return (f"{self.origin}: tensorgate compiles nothing of this model (no recurrent op or linear map is left "
                f"outside what only onnxruntime would run): {'; '.join(reasons)}{more}")

    def _check_runnable(self, partition: Partition) -> None:
        nodes = [self.graph.node[i] for region in partition.regions for i in region.nodes]
        problems = unrunnable(nodes, self.model)
        if problems:
            raise FrontendError(f"{self.origin}: {len(problems)} node(s) that neither tensorgate nor onnxruntime "
                                f"can run: {'; '.join(problems)}")

    def _hosted_warnings(self, hosted: dict[int, str], partition: Partition) -> list[str]:
        warnings = []
        for region in partition.regions:
            for index in region.nodes:
                node = self.graph.node[index]
                if node.op_type in RECURRENT_OPS and node.domain in ONNX_DOMAINS:
                    warnings.append(f"recurrent op '{self._loc(index)}' ({node.op_type}) is not compiled, it runs in "
                                    f"onnxruntime: {hosted.get(index, 'it is not connected to a compiled op')}")
                inner = self._recurrent_in_body(node)
                if inner:
                    warnings.append(f"node '{self._loc(index)}' ({node.op_type}) holds {', '.join(inner)} in its "
                                    f"body; it runs in onnxruntime, not compiled{self._binding_hint(index)}")
        return warnings

    def _binding_hint(self, index: int) -> str:
        """For an ``If`` whose condition depends on graph inputs: which to bind to take a branch."""
        node = self.graph.node[index]
        if node.op_type != "If":
            return ""
        producers = {out: n for n in self.graph.node for out in n.output}
        inputs = {info.name for info in self.graph.input}
        found, pending, seen = set(), [node.input[0]], set()
        while pending:
            name = pending.pop()
            if name in seen:
                continue
            seen.add(name)
            if name in inputs:
                found.add(name)
            elif name in producers:
                pending.extend(producers[name].input)
        if not found:
            return ""
        return f" (its condition depends on input(s) {', '.join(sorted(found))}: --bind them to take one branch)"

    @staticmethod
    def _recurrent_in_body(node: onnx.NodeProto) -> list[str]:
        """The recurrent op types in ``node``'s subgraphs."""
        body = [inner for graph in subgraphs(node) for inner in graph.node]
        return sorted({n.op_type for n in all_nodes(body) if n.op_type in RECURRENT_OPS})

    # --- one import attempt ---------------------------------------------------------------

    def _import(self, partition: Partition) -> Module:
        self.state = state = ImportState(self.origin, declared_types=self.declared_types, all_names=set(self.names),
                                         graph_outputs={info.name for info in self.graph.output})
        for group in self.raiser.groups.values():
            group.emitted = False
        initializers = {init.name for init in self.graph.initializer}
        for info in self.graph.input:
            if info.name not in initializers:
                state.add_input(info.name, self.tensor_type(info, strict=True))
        for init in self.graph.initializer:
            state.add_constant(init.name, numpy_helper.to_array(init), loc=self.producers.get(init.name, ""))
        for index, node in enumerate(self.graph.node):
            if node.op_type == "Constant" and not self.raiser.claims(node) and self._refusal(node, "") is None:
                self._import_node(index)
        for kind, index in partition.order:
            if kind == "region":
                self._host_op(partition.regions[index])
            elif self.raiser.claims(self.graph.node[index]):
                self.raiser.emit(self.graph.node[index], state)
            else:
                self._import_node(index)
        module = state.module
        module.outputs = [state.value(info.name) for info in self.graph.output]
        try:
            verify_module(module)
        except VerifyError as exc:
            raise FrontendError(f"{self.origin}: the imported module is invalid: {exc}") from None
        return module

    def _import_node(self, index: int) -> None:
        """Import a node with its handler; a refusal (other than a constant's) is ``_Refused``."""
        node, loc = self.graph.node[index], self._loc(index)
        reason = self._refusal(node, loc)
        if reason is not None:
            raise FrontendError(f"{self.origin}: {reason}")
        spec = HANDLERS[node.op_type]
        ctx = NodeContext(self.state, node, loc, onnx.defs.get_schema(node.op_type, self.opset, "").since_version)
        try:
            spec.fn(ctx)
        except FrontendError as exc:
            if node.op_type == "Constant":
                raise
            raise _Refused(index, str(exc).removeprefix(f"{self.origin}: ")) from None
        missing = [name for name in node.output if name and not self.state.is_defined(name)]
        if missing:
            raise AssertionError(f"handler for {node.op_type} left output(s) {missing} undefined")

    def _host_op(self, region: Region) -> None:
        state = self.state
        operands = [state.value(name) for name in region.inputs]
        results = [self._host_result_type(name) for name in region.outputs]
        inputs = [tensor_value_info(v.name, v.type) for v in operands]
        outputs = [tensor_value_info(name, t) for name, t in zip(region.outputs, results)]
        model = region_model(self.model, region, inputs, outputs)
        where = self._region_name(region)
        _check_loads(model, f"{self.origin}: host region {where}")
        attrs = {
            "model": np.frombuffer(model.SerializeToString(), np.uint8).copy(),
            "inputs": [{"name": v.name, "type": type_text(v.type)} for v in operands],
            "outputs": [{"name": name, "type": type_text(t)} for name, t in zip(region.outputs, results)],
            "macs": self._region_macs(region),
        }
        try:
            op = state.create("host", operands, attrs, self._loc(region.nodes[0]), list(region.outputs))
        except (VerifyError, ValueError) as exc:
            raise FrontendError(f"{self.origin}: host region {where}: {exc}") from None
        for value in op.results:
            state.values[value.name] = value

    def _region_name(self, region: Region) -> str:
        first, last = self._loc(region.nodes[0]), self._loc(region.nodes[-1])
        return f"'{first}'" if first == last else f"'{first}' .. '{last}'"

    def _host_result_type(self, name: str) -> TensorType:
        """The IR type of a value leaving a host region: ONNX inference's, else what the
        model declares for it as a graph output."""
        found = self.declared_types.get(name) or self.declared_outputs.get(name)
        if found is None:
            raise FrontendError(f"{self.origin}: value '{name}' leaves a host region with no element type and shape "
                                "tensorgate supports known from ONNX shape inference; fix the input shapes (--shape)")
        return found

    def _region_macs(self, region: Region) -> int | None:
        total = 0
        for index in region.nodes:
            macs = node_macs(self.graph.node[index], self._static_shape)
            if macs is None:
                return None
            total += macs
        return total

    def _static_shape(self, name: str) -> tuple[int, ...] | None:
        if name in self.state.constants:
            return tuple(self.state.constants[name].shape)
        known = self.state.values[name].type if name in self.state.values else self.declared_types.get(name)
        return tuple(known.shape) if known is not None and known.is_static else None

    # --- types ----------------------------------------------------------------------------

    def tensor_type(self, info: onnx.ValueInfoProto, strict: bool) -> TensorType | None:
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


def _check_loads(model: onnx.ModelProto, where: str) -> None:
    """onnxruntime loads the region (kernels for its types, valid wiring), or a ``FrontendError``."""
    import onnxruntime

    options = onnxruntime.SessionOptions()
    options.log_severity_level = 3
    try:
        onnxruntime.InferenceSession(model.SerializeToString(), options, providers=["CPUExecutionProvider"])
    except Exception as exc:  # onnxruntime's failures have no common base class
        raise FrontendError(f"{where}: onnxruntime cannot run it: {' '.join(str(exc).split())}") from None
