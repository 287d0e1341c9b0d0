"""Step 2, *confirm*: lower the proposed op again and match the result against the
model node for node (see the package docstring)."""

from __future__ import annotations

import onnx
from onnx import helper, numpy_helper

from ...ir.core import Op
from ...onnx_form import GraphBuilder, LoweringChoices, Names, lower_op
from .view import GraphView, NotExported


class _Matcher:
    """Matches a regenerated lowering against the model, from the op's results back to
    its operands; collects the model's nodes it covers."""

    def __init__(self, external: set[str], free: frozenset[str] = frozenset()):
        self.external = external
        self.free = free  # generated values that pair with whatever model value stands there
        self.values: dict[str, str] = {}
        self.nodes: dict[int, int] = {}  # id(generated node) -> id(model node)
        self.covered: list[onnx.NodeProto] = []

    def value(self, generated: GraphView, model: GraphView, gen: str, act: str) -> bool:
        if gen in self.values:
            return self.values[gen] == act
        self.values[gen] = act
        if gen in self.free:
            return bool(act) and (generated.tensor(gen) is None or model.tensor(act) is not None)
        if not gen or not act or gen in self.external:
            return gen == act
        gen_tensor = generated.tensor(gen)
        if gen_tensor is not None:
            act_tensor = model.tensor(act)
            return act_tensor is not None and _same_tensor(gen_tensor, act_tensor)
        gen_source, act_source = generated.producer(gen), model.producer(act)
        if gen_source is None or act_source is None or gen_source[1] != act_source[1]:
            return False
        return self.node(generated, model, gen_source[0], act_source[0])

    def node(self, generated: GraphView, model: GraphView, gen: onnx.NodeProto, act: onnx.NodeProto) -> bool:
        if id(gen) in self.nodes:
            return self.nodes[id(gen)] == id(act)
        if id(act) in self.nodes.values():
            return False
        self.nodes[id(gen)] = id(act)
        if (gen.op_type, gen.domain, len(gen.input), len(gen.output)) != (act.op_type, act.domain, len(act.input),
                                                                           len(act.output)):
            return False
        gen_attrs = {a.name: a for a in gen.attribute}
        act_attrs = {a.name: a for a in act.attribute}
        if gen_attrs.keys() != act_attrs.keys():
            return False
        for key, attribute in gen_attrs.items():
            if attribute.type == onnx.AttributeProto.GRAPH:
                if not self.graph(generated, model, attribute.g, act_attrs[key].g):
                    return False
            elif not _same_attribute(attribute, act_attrs[key]):
                return False
        self.covered.append(act)
        for gen_output, act_output in zip(gen.output, act.output):
            self.values[gen_output] = act_output
        return all(self.value(generated, model, g, a) for g, a in zip(gen.input, act.input))

    def graph(self, generated: GraphView, model: GraphView, gen: onnx.GraphProto, act: onnx.GraphProto) -> bool:
        """Two subgraphs compute alike: formals pair up in order, every node is matched."""
        if len(gen.input) != len(act.input) or len(gen.output) != len(act.output) or len(gen.node) != len(act.node):
            return False
        inner_gen, inner_act = GraphView.of_graph(gen, generated), GraphView.of_graph(act, model)
        for g, a in zip(gen.input, act.input):
            self.values[g.name] = a.name
        if not all(self.value(inner_gen, inner_act, g.name, a.name) for g, a in zip(gen.output, act.output)):
            return False
        matched = set(self.nodes.values())
        return all(id(node) in matched for node in act.node)


def _same_tensor(a: onnx.TensorProto, b: onnx.TensorProto) -> bool:
    x, y = numpy_helper.to_array(a), numpy_helper.to_array(b)
    return x.dtype == y.dtype and x.shape == y.shape and x.tobytes() == y.tobytes()


def _same_attribute(a: onnx.AttributeProto, b: onnx.AttributeProto) -> bool:
    if a.type != b.type:
        return False
    if a.type == onnx.AttributeProto.TENSOR:
        return _same_tensor(a.t, b.t)
    return helper.get_attribute_value(a) == helper.get_attribute_value(b)


def bind(view: GraphView, generated: GraphBuilder, generated_end: str, model_end: str,
         free: set[str]) -> dict[str, str]:
    """Match the nodes ``generated`` ending in ``generated_end`` against the model's ending
    in ``model_end``, everything compared but the ``free`` values (inputs, tensors), which
    pair with the model's values in their place: those pairs (``NotExported`` if the
    nodes differ)."""
    matcher = _Matcher(set(), frozenset(free))
    if not matcher.value(GraphView(generated.nodes, generated.initializers), view, generated_end, model_end):
        raise NotExported("the nodes differ from the lowering they look like")
    return {gen: act for gen, act in matcher.values.items() if gen in free}


def confirm(view: GraphView, op: Op, choices: LoweringChoices = LoweringChoices()) -> list[onnx.NodeProto]:
    """The model's nodes that are exactly ``op``'s lowering as ``choices`` say
    (``NotExported`` otherwise)."""
    external = {v.name for v in op.operands if v is not None}
    builder = GraphBuilder(Names(external | {v.name for v in op.results}), Names(), choices=choices)
    lower_op(builder, op)
    generated = GraphView(builder.nodes, builder.initializers)
    matcher = _Matcher(external)
    if not all(matcher.value(generated, view, v.name, v.name) for v in op.results):
        raise NotExported("the nodes differ from the lowering of the op they look like")
    if not all(id(node) in matcher.nodes for node in builder.nodes):
        raise NotExported("the lowering has nodes the model lacks")
    top_level = {id(node) for node in view.nodes}
    return [node for node in matcher.covered if id(node) in top_level]
