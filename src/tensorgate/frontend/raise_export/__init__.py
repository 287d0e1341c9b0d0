"""Raise what tensorgate's ``onnx`` target wrote back to the IR ops it came from.

The ``onnx`` target writes some ops (in ``onnx_form``) as several nodes: a ``linear``
with a tt/bt/ht map as ``[Pad] → Reshape → Einsum… → [Sum] → Reshape → [Slice]`` (plus
``Add`` of its bias), a recurrent op (``lstm``, ``gru``, ``rnn``) as an ``LSTM``/``GRU``/``RNN``
node fed by such projections or to a ``Scan`` over a cell.  Imported node by node, these
would become generic ops; ``ExportRaiser`` finds them in a model whose producer is
tensorgate and has the importer emit the original op instead, so
``import_onnx(export_onnx(m))`` is ``m`` again, with the same map formats and
bit-identical cores.

Each candidate is found from a *key* node (``LSTM``, ``GRU``, ``RNN``, a ``Scan`` carrying
``tensorgate.lstm``/``.gru``/``.rnn`` metadata, the ``MatMul``/``Reshape``/``Slice`` ending
a map or the ``Add`` of a bias) in two steps:

1. *propose*: read the op off the structure.  A map's einsum nodes are composed into
   one tensor network whose labels say which initializer is which core; the format
   follows from the network's shape (TT: a chain of 4-d cores; BT: per summand a core
   bonded to ``d`` factors; HT: leaves and transfer tensors forming a tree).  Padding
   comes from the Pad and Slice nodes, the map's annotations (schedule, decomposition
   error) from the ``tensorgate.map`` metadata, a Scan cell's scalar attributes and where
   its maps end from its ``tensorgate.<kind>`` metadata.  Activation alpha/beta that are
   exactly the specification's defaults (which the exporter writes out) mean none given.
2. *confirm*: lower the proposed op again with the exporter and accept it only if those
   nodes match the model's node for node: op types, attributes (Scan bodies included),
   wiring, and the bits of every initializer.  The raised op then computes exactly what
   the nodes compute; anything else (an edited model, another producer) is left to the
   ordinary importer.

Keys are tried from the last node back, so an op's group (e.g. an LSTM with its input
projections) is claimed before the map ends inside it are tried alone.  The op is
emitted where its group's last node stands.  Layout-1 recurrent ops come back as
transposes around a layout-0 op, as they are lowered.
"""

from __future__ import annotations

from dataclasses import dataclass

import onnx

from ...errors import FrontendError, VerifyError
from ...ir.core import Op
from ...onnx_form import PRODUCER, LoweringChoices
from ..onnx_context import ImportState, TypeMismatch
from .confirm import confirm
from .propose import propose
from .view import GraphView, NotExported


@dataclass
class _Raised:
    op: Op
    loc: str
    emitted: bool = False


class ExportRaiser:
    """The groups of a tensorgate-written model's top-level nodes that raise to one op.

    Built on the checked model as written; nodes are known by their first output, so
    rewrites that keep node outputs or drop unused nodes (folding shape arithmetic) do
    not matter.  The importer asks ``claims(node)`` for every node; a claimed node is
    not imported by its handler, and ``emit(node, state)`` creates the group's op at the
    first of its nodes where all the op's operands are defined.
    """

    def __init__(self, model: onnx.ModelProto):
        self.groups: dict[str, _Raised] = {}
        if model.producer_name != PRODUCER:
            return
        graph = model.graph
        view = GraphView.of_graph(graph)
        index_of = {id(node): index for index, node in enumerate(graph.node)}
        users = _users(graph)
        taken: set[int] = set()
        for index in range(len(graph.node) - 1, -1, -1):
            if index in taken:
                continue
            try:
                view.map_forms.clear()
                op = propose(view, graph.node[index])
                if op is None:
                    continue
                group = {index_of[id(node)] for node in confirm(view, op, _choices(view, graph.node[index]))}
            except NotExported:
                continue
            if group & taken or index not in group or not _self_contained(graph, group, op, users):
                continue
            taken |= group
            raised = _Raised(op, view.producer(op.results[0].name)[0].name)
            self.groups.update((graph.node[i].output[0], raised) for i in group)

    @property
    def claimed(self) -> set[str]:
        """The first outputs of the claimed nodes."""
        return set(self.groups)

    def claims(self, node: onnx.NodeProto) -> bool:
        return bool(node.output) and node.output[0] in self.groups

    def emit(self, node: onnx.NodeProto, state: ImportState) -> None:
        """Create the op of ``node``'s group if it is not created yet and can be."""
        raised = self.groups[node.output[0]]
        op = raised.op
        if raised.emitted or not all(state.is_defined(v.name) for v in op.operands if v is not None):
            return
        operands = [state.value(v.name) if v is not None else None for v in op.operands]
        try:
            created = state.create(op.kind, operands, op.attrs, raised.loc, [v.name for v in op.results])
        except (VerifyError, TypeMismatch) as exc:
            raise FrontendError(f"{state.origin}: node '{raised.loc}': {exc}") from None
        for value in created.results:
            state.values[value.name] = value
        raised.emitted = True


def _choices(view: GraphView, key: onnx.NodeProto) -> LoweringChoices:
    """The lowering choices the proposal was written with: the maps' form as proposed,
    a recurrent op's node or Scan as found."""
    maps = "einsum" if "einsum" in view.map_forms else "matmul"
    return LoweringChoices(maps=maps, recurrent="scan" if key.op_type == "Scan" else "node")


def _users(graph: onnx.GraphProto) -> dict[str, set[int]]:
    """Value name -> indices of the top-level nodes that read it (inside subgraphs too)."""
    users: dict[str, set[int]] = {}
    for index, node in enumerate(graph.node):
        for name in _reads(node):
            users.setdefault(name, set()).add(index)
    return users


def _reads(node: onnx.NodeProto) -> set[str]:
    names = set(node.input)
    for attribute in node.attribute:
        for subgraph in [attribute.g] if attribute.type == onnx.AttributeProto.GRAPH else attribute.graphs:
            for inner in subgraph.node:
                names |= _reads(inner)
    return names


def _self_contained(graph: onnx.GraphProto, group: set[int], op: Op, users: dict[str, set[int]]) -> bool:
    """Only the op's results leave the group, and only to nodes after all of it."""
    results = {v.name for v in op.results}
    outputs = {info.name for info in graph.output}
    last = max(group)
    for index in group:
        for name in graph.node[index].output:
            readers = users.get(name, set()) - group
            if name in results:
                if any(reader < last for reader in readers):
                    return False
            elif readers or name in outputs:
                return False
    return True
