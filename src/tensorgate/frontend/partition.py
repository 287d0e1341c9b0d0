"""Partition an ONNX graph into tensorgate regions and host regions.

A real model is a recurrent core inside ops tensorgate does not compile (an STFT or CNN
front end, post-processing).  Given the nodes that must be hosted (no handler, or the
handler refused them), the partition is:

* **tensorgate regions**: the nodes that are connected to a *seed* through nodes that
  are not hosted.  The seeds are the recurrent ops (LSTM, GRU, RNN) that import; in a
  model without one, the linear maps (Gemm, MatMul, Einsum).  Connection runs along the
  values between nodes: forward to any consumer, backward (toward the inputs) only to a
  producer with at most one float input that is not a constant, or one that computes
  integers (shape arithmetic), so the front end's joins (a residual Add of two Convs)
  stay with the front end.  Constants (initializers, ``Constant`` nodes) connect
  nothing, they are copied to whichever side uses them.  So the ops around the core
  that the IR models (layout ops, heads, activations) are compiled, and a supported op
  that only touches the front end (a Relu between two Convs) is not.  A compiled node
  that would leave a host node between compiled ones is hosted too (``_unsandwiched``).
* **host regions**: everything else, grouped into regions that are connected and
  *convex*: no path leaves a region through tensorgate ops and comes back, so each can
  run as one call of onnxruntime between tensorgate ops.  A region is a connected
  component of host nodes at the same *stage*, where a node's stage counts the
  tensorgate ops between it and the graph inputs (a host node right after a
  tensorgate op starts the next stage; along any path stages never decrease).

``Partition.order`` lists the tensorgate nodes and the host regions in an order that
respects every dependency (the graph order where it can).  ``region_model`` builds a
region's standalone ONNX model: its nodes as written (subgraphs included), the
initializers and ``Constant`` nodes they read, the model's opsets and functions, and a
signature: the values that enter (from graph inputs or tensorgate ops, outer-scope
references of subgraphs included) and the values that leave (to tensorgate ops or graph
outputs).
"""

from __future__ import annotations

import heapq
from dataclasses import dataclass, field

import onnx
from onnx import helper

RECURRENT_OPS = ("LSTM", "GRU", "RNN")
FLOAT_TYPES = (onnx.TensorProto.FLOAT, onnx.TensorProto.DOUBLE, onnx.TensorProto.FLOAT16, onnx.TensorProto.BFLOAT16)
LINEAR_OPS = ("Gemm", "MatMul", "Einsum")


@dataclass
class Region:
    """One host region: its node indices (graph order) and the values crossing into and out of it."""

    nodes: list[int]
    inputs: list[str] = field(default_factory=list)
    outputs: list[str] = field(default_factory=list)


@dataclass
class Partition:
    compiled: set[int]
    regions: list[Region]
    order: list[tuple[str, int]]
    """``("node", index)`` for a compiled node, ``("region", index)`` for a host region."""


def subgraphs(node: onnx.NodeProto) -> list[onnx.GraphProto]:
    return [g for a in node.attribute for g in ([a.g] if a.type == onnx.AttributeProto.GRAPH else a.graphs)]


def all_nodes(nodes):
    """``nodes`` and, depth first, the nodes of their subgraphs."""
    for node in nodes:
        yield node
        for graph in subgraphs(node):
            yield from all_nodes(graph.node)


def reads(node: onnx.NodeProto) -> set[str]:
    """The names ``node`` reads: its inputs and what its subgraphs take from outer scopes."""
    names = {name for name in node.input if name}
    for graph in subgraphs(node):
        defined = {i.name for i in graph.input} | {i.name for i in graph.initializer}
        inner: set[str] = set()
        for inner_node in graph.node:
            inner |= reads(inner_node)
            defined |= set(inner_node.output)
        names |= inner - defined
    return names


class _Graph:
    """The value flow between the top-level nodes of a graph, constants left out."""

    def __init__(self, graph: onnx.GraphProto):
        self.graph = graph
        infos = [*graph.input, *graph.value_info, *graph.output]
        self.float_values = {info.name for info in infos if info.type.tensor_type.elem_type in FLOAT_TYPES}
        self.constants = {i.name for i in graph.initializer} | {
            out for node in graph.node if node.op_type == "Constant" for out in node.output}
        self.producer = {out: index for index, node in enumerate(graph.node) for out in node.output if out}
        self.reads = [reads(node) for node in graph.node]
        self.preds = [{self.producer[name] for name in names if name in self.producer and name not in self.constants}
                      for names in self.reads]
        self.succs: list[set[int]] = [set() for _ in graph.node]
        for index, preds in enumerate(self.preds):
            for pred in preds:
                self.succs[pred].add(index)

    def is_constant(self, index: int) -> bool:
        return self.graph.node[index].op_type == "Constant"

    def joins_backward(self, index: int) -> bool:
        """A compiled consumer may pull node ``index`` in: it reads at most one float
        value that is not a constant, or it computes integers only."""
        node = self.graph.node[index]
        if not any(out in self.float_values for out in node.output):
            return True
        return sum(name in self.float_values and name not in self.constants for name in self.reads[index]) <= 1


def seeds(graph: onnx.GraphProto, hosted: set[int]) -> list[int]:
    """The recurrent nodes not hosted, or if there is none, the linear maps not hosted."""
    for kinds in (RECURRENT_OPS, LINEAR_OPS):
        found = [i for i, node in enumerate(graph.node)
                 if i not in hosted and node.domain in ("", "ai.onnx") and node.op_type in kinds]
        if found:
            return found
    return []


def plan_partition(graph: onnx.GraphProto, hosted: set[int]) -> Partition | None:
    """The partition for the nodes ``hosted`` must go to onnxruntime; ``None`` if no
    tensorgate region is left (no seed)."""
    flow = _Graph(graph)
    if not hosted:
        compiled = {i for i in range(len(graph.node)) if not flow.is_constant(i)}
        return Partition(compiled, [], [("node", i) for i in sorted(compiled)])
    start = seeds(graph, hosted)
    if not start:
        return None
    compiled = _unsandwiched(flow, _grow(flow, start, hosted), set(start))
    regions = _regions(flow, compiled)
    return Partition(compiled, regions, _order(flow, compiled, regions))


def _grow(flow: _Graph, start: list[int], hosted: set[int]) -> set[int]:
    compiled = set(start)
    pending = list(start)
    while pending:
        index = pending.pop()
        joining = flow.succs[index] | {p for p in flow.preds[index] if flow.joins_backward(p)}
        for other in joining:
            if other not in compiled and other not in hosted and not flow.is_constant(other):
                compiled.add(other)
                pending.append(other)
    return compiled


def _closure(flow: _Graph, index: int, edges: list[set[int]]) -> set[int]:
    """The nodes reachable from ``index`` along ``edges`` (``preds``: ancestors, ``succs``: descendants)."""
    seen: set[int] = set()
    pending = list(edges[index])
    while pending:
        other = pending.pop()
        if other not in seen:
            seen.add(other)
            pending.extend(edges[other])
    return seen


def _unsandwiched(flow: _Graph, compiled: set[int], start: set[int]) -> set[int]:
    """``compiled`` less the nodes that leave a host node between compiled ones: a host
    node upstream of a seed hosts the compiled nodes before it (they belong to the front
    end), any other the compiled nodes after it; seeds stay, and so does what is still
    connected to them."""
    changed = True
    while changed:
        changed = False
        for index in range(len(flow.graph.node)):
            if index in compiled or flow.is_constant(index):
                continue
            before, after = _closure(flow, index, flow.preds), _closure(flow, index, flow.succs)
            if not (before & compiled and after & compiled):
                continue
            drop = (before if after & start else after) & compiled - start
            if drop:
                compiled = compiled - drop
                changed = True
    return _grow(flow, sorted(start), set(range(len(flow.graph.node))) - compiled)


def _regions(flow: _Graph, compiled: set[int]) -> list[Region]:
    host = [i for i in range(len(flow.graph.node)) if i not in compiled and not flow.is_constant(i)]
    stage: dict[int, int] = {}
    for index in range(len(flow.graph.node)):  # graph order is topological
        if flow.is_constant(index):
            continue
        step = 0 if index in compiled else 1
        stage[index] = max((stage[p] + (step if p in compiled else 0) for p in flow.preds[index]), default=0)
    parent = {i: i for i in host}

    def find(i: int) -> int:
        while parent[i] != i:
            parent[i] = parent[parent[i]]
            i = parent[i]
        return i

    for index in host:
        for pred in flow.preds[index]:
            if pred in parent and stage[pred] == stage[index]:
                parent[find(pred)] = find(index)
    groups: dict[int, list[int]] = {}
    for index in host:
        groups.setdefault(find(index), []).append(index)
    regions = [Region(sorted(nodes)) for nodes in sorted(groups.values(), key=min)]
    outputs = {info.name for info in flow.graph.output}
    for region in regions:
        members = set(region.nodes)
        produced = {out for i in region.nodes for out in flow.graph.node[i].output if out}
        region.inputs = sorted({name for i in region.nodes for name in flow.reads[i]
                                if name not in produced and name not in flow.constants},
                               key=lambda n: (flow.producer.get(n, -1), n))
        readers = {name for i, names in enumerate(flow.reads) if i not in members for name in names}
        region.outputs = [out for i in region.nodes for out in flow.graph.node[i].output
                          if out and (out in readers or out in outputs)]
    return regions


def _order(flow: _Graph, compiled: set[int], regions: list[Region]) -> list[tuple[str, int]]:
    """Compiled nodes and regions in dependency order, each placed as early as the graph
    order allows (Kahn's algorithm keyed by first node index)."""
    item_of: dict[int, tuple[str, int]] = {i: ("node", i) for i in compiled}
    for k, region in enumerate(regions):
        item_of.update((i, ("region", k)) for i in region.nodes)
    first = {("node", i): i for i in compiled} | {("region", k): r.nodes[0] for k, r in enumerate(regions)}
    deps: dict[tuple[str, int], set[tuple[str, int]]] = {item: set() for item in first}
    for index, item in item_of.items():
        deps[item] |= {item_of[p] for p in flow.preds[index] if p in item_of and item_of[p] != item}
    users: dict[tuple[str, int], set[tuple[str, int]]] = {item: set() for item in first}
    for item, needed in deps.items():
        for dep in needed:
            users[dep].add(item)
    ready = [(first[item], item) for item, needed in deps.items() if not needed]
    heapq.heapify(ready)
    order = []
    while ready:
        _, item = heapq.heappop(ready)
        order.append(item)
        for user in users[item]:
            deps[user].discard(item)
            if not deps[user]:
                heapq.heappush(ready, (first[user], user))
    if len(order) != len(first):
        raise AssertionError("the partition's regions are not convex")
    return order


def region_model(model: onnx.ModelProto, region: Region, input_infos: list[onnx.ValueInfoProto],
                 output_infos: list[onnx.ValueInfoProto]) -> onnx.ModelProto:
    """The standalone model of ``region`` (module docstring); ``input_infos`` and
    ``output_infos`` type its signature, in the order of ``region.inputs`` / ``outputs``."""
    graph = model.graph
    nodes = [graph.node[i] for i in region.nodes]
    needed = set().union(*(reads(node) for node in nodes))
    constants = [node for node in graph.node if node.op_type == "Constant" and set(node.output) & needed]
    initializers = [init for init in graph.initializer if init.name in needed]
    body = helper.make_graph(constants + nodes, f"{graph.name or 'graph'}_host", input_infos, output_infos,
                             initializers)
    return helper.make_model(body, opset_imports=list(model.opset_import), ir_version=model.ir_version,
                             functions=list(model.functions), producer_name=model.producer_name,
                             producer_version=model.producer_version)
