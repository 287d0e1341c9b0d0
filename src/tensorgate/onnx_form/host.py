"""The ONNX form of a ``host`` op: its region's nodes, written back as they were imported.

The region's nodes and initializers go into the graph unchanged but for names: its graph
inputs and outputs take the names of the op's operands and results, every other value
it defines (subgraph scopes included) a fresh name under the op's first result, so
nothing clashes with the rest of the model.  A region written at another version of the
default domain is first converted to the target's opset (``onnx.version_converter``),
since a model has one version per domain; the opsets of other domains it uses (e.g.
``com.microsoft``) and the functions it calls go to the model (``GraphBuilder.domains``,
``GraphBuilder.functions``).
"""

from __future__ import annotations

import onnx

from ..ir.core import Op
from .graph import ExportError, GraphBuilder
from .ops import lowers

ONNX_DOMAINS = ("", "ai.onnx")


def region_of(op: Op) -> onnx.ModelProto:
    """The standalone model a ``host`` op holds."""
    return onnx.load_from_string(op.attrs["model"].tobytes())


def region_op_counts(op: Op) -> dict[str, int]:
    """How many nodes of each op type (subgraphs included) a ``host`` op's region holds,
    ``Constant`` nodes (data, not computation) left out."""
    counts: dict[str, int] = {}
    pending = list(region_of(op).graph.node)
    while pending:
        node = pending.pop()
        if node.op_type == "Constant" and node.domain in ONNX_DOMAINS:
            continue
        name = f"{node.domain}.{node.op_type}" if node.domain not in ONNX_DOMAINS else node.op_type
        counts[name] = counts.get(name, 0) + 1
        for attribute in node.attribute:
            pending.extend(n for g in ([attribute.g] if attribute.type == onnx.AttributeProto.GRAPH
                                       else attribute.graphs) for n in g.node)
    return dict(sorted(counts.items(), key=lambda item: (-item[1], item[0])))


def at_opset(model: onnx.ModelProto, opset: int, where: str) -> onnx.ModelProto:
    """``model`` with its default domain at version ``opset``."""
    version = next((o.version for o in model.opset_import if o.domain in ONNX_DOMAINS), opset)
    if version == opset:
        return model
    try:
        return onnx.version_converter.convert_version(model, opset)
    except Exception as exc:  # the converter raises RuntimeError or its own adapters' errors
        raise ExportError(f"{where}: its opset {version} nodes cannot be converted to opset {opset}: "
                          f"{' '.join(str(exc).split())}") from None


@lowers("host")
def lower_host(b: GraphBuilder, op: Op, inputs: list[str], results: list[str]) -> None:
    region = at_opset(region_of(op), b.opset, f"host region {op.describe()}")
    graph = region.graph
    names = {info.name: outer for info, outer in zip(graph.input, inputs)}
    names.update((info.name, outer) for info, outer in zip(graph.output, results))
    prefix = f"{b.prefix}/host"
    _rename_scope(graph, names, b, prefix)
    for init in graph.initializer:
        init.name = names[init.name]
        b.initializers.append(init)
    for node in graph.node:
        node.name = b.node_names.fresh(f"{prefix}/{node.name or node.op_type}")
        b.nodes.append(node)
    for opset in region.opset_import:
        if opset.domain not in ONNX_DOMAINS:
            b.domains[opset.domain] = max(b.domains.get(opset.domain, 0), opset.version)
    b.functions.extend(f for f in region.functions if all(f.name != g.name or f.domain != g.domain
                                                              for g in b.functions))


def _rename_scope(graph: onnx.GraphProto, names: dict[str, str], b: GraphBuilder, prefix: str) -> None:
    """Rename, in place, every value ``graph`` defines (a name in ``names`` keeps its
    mapping) and every use, recursing into subgraphs with their own scopes."""
    defined = [i.name for i in graph.initializer] + [out for node in graph.node for out in node.output if out]
    for name in defined:
        if name not in names:
            names[name] = b.values.fresh(f"{prefix}/{name}")
    for node in graph.node:
        node.input[:] = [names.get(name, name) if name else name for name in node.input]
        node.output[:] = [names.get(name, name) if name else name for name in node.output]
        for attribute in node.attribute:
            for subgraph in [attribute.g] if attribute.type == onnx.AttributeProto.GRAPH else attribute.graphs:
                inner = dict(names)
                for info in subgraph.input:
                    inner[info.name] = b.values.fresh(f"{prefix}/{info.name}")
                    info.name = inner[info.name]
                _rename_scope(subgraph, inner, b, prefix)
                for init in subgraph.initializer:
                    init.name = inner[init.name]
                for info in [*subgraph.output, *subgraph.value_info]:
                    info.name = inner.get(info.name, info.name)
