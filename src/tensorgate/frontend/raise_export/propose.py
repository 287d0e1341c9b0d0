"""Step 1, *propose*: read an op off the structure of the nodes that end in a key node
(see the package docstring)."""

from __future__ import annotations

import json
import math

import numpy as np
import onnx

from ...errors import VerifyError
from ...ir.core import Op, Value
from ...ir.linear_map import FORMATS, DenseMap, LinearMap
from ...ir.ops import RECURRENT
from ...ir.tensor_formats import BTMap, HTMap, TensorizedMap, TTMap
from ...onnx_form import ANNOTATIONS_KEY, SCAN_KEYS, GraphBuilder, LoweringChoices, Names, apply_map
from ...onnx_form.recurrent import OWN_ATTRS, SCALAR_ATTRS, explicit_alpha_beta
from .confirm import bind
from .view import GraphView, NotExported, node_attr


class _Network:
    """Einsum trees flattened into one tensor network: each leaf's axes carry label ids,
    merged where an equation says two axes are the same index."""

    def __init__(self, view: GraphView):
        self.view = view
        self.parent: dict[int, int] = {}
        self.leaves: list[tuple[str, list[int]]] = []
        self.data: tuple[str, list[int]] | None = None
        self.lead = 0

    def find(self, label: int) -> int:
        while self.parent[label] != label:
            self.parent[label] = self.parent[self.parent[label]]
            label = self.parent[label]
        return label

    def _new(self, count: int) -> list[int]:
        ids = list(range(len(self.parent), len(self.parent) + count))
        self.parent.update((i, i) for i in ids)
        return ids

    def trace(self, name: str) -> list[int]:
        """The labels of the axes of ``name``, adding what computes it to the network."""
        node = self.view.node_of(name, "Einsum")
        if node is None:
            array = self.view.array(name)
            if array is not None:
                labels = self._new(array.ndim)
                self.leaves.append((name, labels))
                return labels
            if self.data is not None and self.data[0] != name:
                raise NotExported("the einsum network has more than one non-constant input")
            if self.data is None:
                split = self.view.node_of(name, "Reshape")
                shape = None if split is None else self.view.array(split.input[1])
                if shape is None:
                    raise NotExported(f"the einsum network's input '{name}' is not a reshape to constant shape")
                labels = self._new(len(shape))
                self.lead = next((k for k, n in enumerate(shape) if n), len(shape))
                self.data = (name, labels)
            return self.data[1]
        equation = node_attr(node, "equation", "")
        if "->" not in equation or "." in equation:
            raise NotExported(f"einsum '{equation}' is not of the form the exporter writes")
        terms, output = equation.split("->")
        by_letter: dict[str, int] = {}
        for term, operand in zip(terms.split(","), node.input):
            labels = self.trace(operand)
            if len(term) != len(labels):
                raise NotExported(f"einsum term '{term}' does not fit its operand")
            for letter, label in zip(term, labels):
                if letter in by_letter:
                    self.parent[self.find(label)] = self.find(by_letter[letter])
                else:
                    by_letter[letter] = label
        return [by_letter[letter] for letter in output]


def propose_map(view: GraphView, name: str) -> tuple[LinearMap, str]:
    """The map whose application ends in value ``name``, and the value it is applied to."""
    found = view.producer(name)
    node = found[0] if found else None
    if node is not None and node.op_type == "MatMul":
        matrix = view.array(node.input[1])
        if matrix is None or matrix.ndim != 2:
            raise NotExported("a MatMul by a non-constant is not a dense map")
        return DenseMap(np.ascontiguousarray(matrix.T)), node.input[0]
    if node is None or node.op_type not in ("Reshape", "Slice"):
        raise NotExported(f"'{name}' is not the end of a map")
    annotations = {p.key: p.value for p in node.metadata_props}.get(ANNOTATIONS_KEY)
    described = _described(annotations)
    if described is not None:
        view.root().map_forms.add("matmul")
        return _propose_matmul_map(view, node, described)
    view.root().map_forms.add("einsum")
    out_dim = None
    if node.op_type == "Slice":
        ends = view.array(node.input[2])
        out_dim = None if ends is None else int(ends[0])
        node = view.node_of(node.input[0], "Reshape")
        if node is None or out_dim is None:
            raise NotExported("a truncated map output is not a reshape")
    total = node.input[0]
    blocks = view.node_of(total, "Sum")
    roots = list(blocks.input) if blocks is not None else [total]
    networks = []
    for root in roots:
        network = _Network(view)
        networks.append((network, network.trace(root)))
    data = {net.data[0] if net.data else None for net, _ in networks}
    if len(data) != 1 or None in data:
        raise NotExported("the map's blocks do not share one input")
    split = view.node_of(data.pop(), "Reshape")
    source, in_pad = split.input[0], 0
    pad = view.node_of(source, "Pad")
    if pad is not None:
        pads = view.array(pad.input[1])
        source, in_pad = pad.input[0], int(pads[-1]) if pads is not None else 0
    linear_map = _classify(networks, in_pad)
    if out_dim is not None:
        meta = {**linear_map.meta(), "out_pad": math.prod(linear_map.out_factors) - out_dim}
        linear_map = type(linear_map).from_parts(meta, linear_map.tensors())
    if annotations is not None:
        try:
            linear_map = type(linear_map).from_parts({**linear_map.meta(), **json.loads(annotations)},
                                                     linear_map.tensors())
        except (VerifyError, ValueError, TypeError) as exc:
            raise NotExported(f"the map's '{ANNOTATIONS_KEY}' metadata does not fit it ({exc})") from None
    return linear_map, source


def _described(annotations: str | None) -> dict | None:
    """The full description of a map lowered in the ``matmul`` form (its format, meta and
    tensor shapes), or ``None`` for the ``einsum`` form, whose metadata holds annotations only."""
    if annotations is None:
        return None
    try:
        described = json.loads(annotations)
    except ValueError:
        raise NotExported(f"the map's '{ANNOTATIONS_KEY}' metadata is not JSON") from None
    return described if isinstance(described, dict) and "format" in described else None


def _propose_matmul_map(view: GraphView, end: onnx.NodeProto, described: dict) -> tuple[LinearMap, str]:
    """A map in the ``matmul`` form: lower a map of the described format and shapes with
    placeholder tensors, and read its tensors and input off the model's nodes standing
    where the placeholder's are."""
    meta = dict(described)
    try:
        cls, shapes = FORMATS[meta.pop("format")], meta.pop("tensors")
        skeleton = cls.from_parts(meta, {name: np.zeros(shape, np.float32) for name, shape in shapes.items()})
        skeleton.verify()
    except (KeyError, TypeError, ValueError, AttributeError, VerifyError) as exc:
        raise NotExported(f"the map's '{ANNOTATIONS_KEY}' metadata does not describe a map ({exc})") from None
    merge = end if end.op_type == "Reshape" else view.node_of(end.input[0], "Reshape")
    shape = None if merge is None else view.array(merge.input[1])
    if shape is None or not isinstance(skeleton, TensorizedMap):
        raise NotExported("a described map does not end in a reshape to constant shape")
    builder = GraphBuilder(Names({"x"}), Names(), choices=LoweringChoices(maps="matmul"))
    tensor_of: dict[str, str] = {}

    def placeholder(name: str, array: np.ndarray, role: str) -> str:
        value = builder.init(array, role)
        tensor_of[value] = name
        return value

    generated_end = apply_map(builder, skeleton, "x", len(shape), np.dtype(np.float32), "w", weight=placeholder)
    pairs = bind(view, builder, generated_end, end.output[0], {"x", *tensor_of})
    tensors = {tensor_of[gen]: view.array(act) for gen, act in pairs.items() if gen in tensor_of}
    try:
        linear_map = cls.from_parts(meta, tensors)
        linear_map.verify()
    except (KeyError, TypeError, ValueError, VerifyError) as exc:
        raise NotExported(f"the described map's tensors do not fit it ({exc})") from None
    return linear_map, pairs["x"]


def _classify(networks: list[tuple[_Network, list[int]]], in_pad: int) -> LinearMap:
    """Read the format and the tensors off the composed networks."""
    modes = [_Modes(net, output) for net, output in networks]
    try:
        if len(modes) > 1 or modes[0].is_tucker_block():
            linear_map = BTMap.from_blocks([m.tucker_block() for m in modes], in_pad=in_pad)
        elif all(array.ndim == 4 for array, _ in modes[0].weights):
            linear_map = TTMap.from_cores(modes[0].tt_cores(), in_pad=in_pad)
        else:
            linear_map = HTMap.from_tree(*modes[0].ht_tree(), in_pad=in_pad)
        linear_map.verify()
    except VerifyError as exc:
        raise NotExported(str(exc)) from None
    return linear_map


class _Modes:
    """One composed network in terms of its modes: the labels of the output's modes
    (``rows``) and of the input's (``cols``), and the weights with their labels."""

    def __init__(self, net: _Network, output: list[int]):
        data = [net.find(label) for label in net.data[1]]
        output = [net.find(label) for label in output]
        lead = net.lead
        if data[:lead] != output[:lead] or len(data) != len(output) or len(data) == lead:
            raise NotExported("the map's leading axes do not pass through")
        self.rows, self.cols = output[lead:], data[lead:]
        self.weights = [(net.view.array(name), [net.find(label) for label in labels]) for name, labels in net.leaves]

    def mode_of(self, labels: list[int]) -> int | None:
        """The mode a tensor holds (its first two axes are ``m_k``, ``n_k``), if any."""
        for k, (row, col) in enumerate(zip(self.rows, self.cols)):
            if labels[:2] == [row, col] or labels[1:3] == [row, col]:
                return k
        return None

    def is_tucker_block(self) -> bool:
        inner = [w for w in self.weights if self.mode_of(w[1]) is None]
        return len(inner) == 1 and inner[0][0].ndim == len(self.rows) and len(self.weights) == len(self.rows) + 1

    def tucker_block(self) -> tuple[np.ndarray, list[np.ndarray]]:
        if not self.is_tucker_block():
            raise NotExported("a summand of the map is not a Tucker block")
        core = next(w for w in self.weights if self.mode_of(w[1]) is None)
        factors = {self.mode_of(labels): (array, labels) for array, labels in self.weights if labels is not core[1]}
        if sorted(factors) != list(range(len(self.rows))) or any(
                factors[k][1][2] != core[1][k] for k in factors):
            raise NotExported("a Tucker block's core and factors are not bonded mode by mode")
        return core[0], [factors[k][0] for k in range(len(self.rows))]

    def tt_cores(self) -> list[np.ndarray]:
        cores = {self.mode_of(labels): (array, labels) for array, labels in self.weights}
        if sorted(k for k in cores if k is not None) != list(range(len(self.rows))) or len(cores) != len(self.rows):
            raise NotExported("the 4-d tensors are not one core per mode")
        for k in range(len(self.rows) - 1):
            if cores[k][1][3] != cores[k + 1][1][0]:
                raise NotExported(f"TT cores {k} and {k + 1} are not bonded")
        return [cores[k][0] for k in range(len(self.rows))]

    def ht_tree(self):
        """``(tree, leaves, transfers)`` of an HT network."""
        leaves = {self.mode_of(labels): (array, labels) for array, labels in self.weights
                  if self.mode_of(labels) is not None}
        transfers = [(array, labels) for array, labels in self.weights if self.mode_of(labels) is None]
        if sorted(leaves) != list(range(len(self.rows))) or any(a.ndim != 3 for a, _ in self.weights):
            raise NotExported("the 3-d tensors are not one leaf per mode and transfer tensors")
        counts: dict[int, int] = {}
        for _, labels in self.weights:
            for label in labels:
                counts[label] = counts.get(label, 0) + 1
        roots = [t for t in transfers if counts[t[1][0]] == 1] if transfers else [leaves[0]]
        if len(roots) != 1:
            raise NotExported("the HT tensors do not form one tree")
        by_parent_bond = {labels[0]: (array, labels) for array, labels in transfers}
        by_leaf_bond = {labels[2]: k for k, (_, labels) in leaves.items()}
        found: dict[str, np.ndarray] = {}

        def subtree(bond: int, path: str, depth: int):
            if bond in by_leaf_bond:
                return by_leaf_bond[bond]
            if bond not in by_parent_bond or depth > len(self.weights):
                raise NotExported("an HT bond leads nowhere")
            array, labels = by_parent_bond[bond]
            found[path] = array
            return [subtree(labels[1], path + "0", depth + 1), subtree(labels[2], path + "1", depth + 1)]

        tree = subtree(roots[0][1][0] if transfers else leaves[0][1][2], "", 0)
        return tree, [leaves[k][0] for k in range(len(self.rows))], found


def propose_maps(view: GraphView, name: str) -> tuple[list[LinearMap], str]:
    """One map, or several whose results are concatenated along the last axis; all
    applied to the same value."""
    concat = view.node_of(name, "Concat")
    parts = [propose_map(view, part) for part in (concat.input if concat is not None else [name])]
    sources = {source for _, source in parts}
    if len(sources) != 1:
        raise NotExported("concatenated maps are applied to different values")
    return [m for m, _ in parts], sources.pop()


def _value(view: GraphView, name: str) -> Value | None:
    if not name:
        return None
    type = view.type_of(name)
    if type is None:
        raise NotExported(f"value '{name}' has no known tensor type")
    return Value(name, type)


def _op(view: GraphView, kind: str, operands: list[str], results: list[str], attrs: dict) -> Op:
    return Op(kind, [_value(view, name) for name in operands], [_value(view, name) for name in results], attrs)


def propose(view: GraphView, node: onnx.NodeProto) -> Op | None:
    """The IR op whose lowering would end at ``node``, if ``node`` is a key."""
    proposer = _PROPOSERS.get(node.op_type)
    return None if proposer is None else proposer(view, node)


def _propose_linear(view: GraphView, node: onnx.NodeProto) -> Op | None:
    bias = None
    end = node.output[0]
    if node.op_type == "Add":
        bias = view.array(node.input[1])
        if bias is None or view.producer(node.input[0]) is None:
            return None
        end = node.input[0]
    elif node.op_type == "MatMul" and view.array(node.input[1]) is None:
        constant = view.node_of(node.input[1], "Constant")
        return None if constant is None else _op(view, "matmul", list(node.input), [node.output[0]], {})
    linear_map, source = propose_map(view, end)
    return _op(view, "linear", [source], [node.output[0]], {"weight": linear_map, "bias": bias})


def _propose_node(view: GraphView, node: onnx.NodeProto) -> Op | None:
    """An ONNX LSTM, GRU or RNN node with a constant R (W constant, or fed by maps)."""
    kind = node.op_type.lower()
    x, w, r, b, seq_lens, *rest = (list(node.input) + [""] * 8)[:8]
    direction = node_attr(node, "direction", "forward")
    dirs = 2 if direction == "bidirectional" else 1
    w_array, r_array = view.array(w), view.array(r)
    if r_array is None or node_attr(node, "layout", 0) or node_attr(node, "hidden_size") is None:
        return None
    if w_array is not None:
        w_maps = [DenseMap(w_array[d]) for d in range(dirs)]
    else:
        w_maps, x = propose_maps(view, x)
    bias = None
    if b:
        padded = view.node_of(b, "Pad")
        bias = view.array(padded.input[0] if padded is not None else b)
    attrs = {key: node_attr(node, key) for key in SCALAR_ATTRS}
    attrs.update({key: node_attr(node, key, 0) for key in OWN_ATTRS[kind]})
    attrs.update(direction=direction, layout=0, w=w_maps, r=[DenseMap(r_array[d]) for d in range(dirs)], bias=bias)
    _default_alpha_beta(attrs, kind)
    states = len(RECURRENT[kind].states)
    if kind == "lstm":
        attrs["peepholes"] = view.array(rest[2]) if rest[2] else None
    return _op(view, kind, [x, seq_lens, *rest[:states]], list(node.output), attrs)


def _default_alpha_beta(attrs: dict, kind: str) -> None:
    """The exporter writes alpha/beta with the specification's defaults filled in; lists
    that are exactly those defaults (as float32) stand for none given."""
    probe = Op(kind, [], [], {**attrs, "activation_alpha": None, "activation_beta": None})
    defaults = explicit_alpha_beta(probe)
    for key, default in zip(("activation_alpha", "activation_beta"), defaults):
        given = attrs[key]
        if given is not None and default is not None and np.array_equal(np.float32(given), np.float32(default)):
            attrs[key] = None


def _propose_scan(view: GraphView, node: onnx.NodeProto) -> Op | None:
    """A Scan carrying the ``tensorgate.<kind>`` metadata of a recurrent op."""
    found = [(kind, p.value) for p in node.metadata_props for kind, key in SCAN_KEYS.items() if p.key == key]
    if not found:
        return None
    kind, hint = found[0]
    try:
        hint = json.loads(hint)
        body = GraphView.of_graph(node_attr(node, "body"), view)
        w_maps, r_maps, sources = [], [], set()
        for w_end, r_ends in zip(hint["w"], hint["r"], strict=True):
            maps, source = propose_maps(view, w_end)
            w_maps += maps
            sources.add(source)
            for end in r_ends:
                r_maps += propose_maps(body, end)[0]
        attrs = {key: hint[key] for key in SCALAR_ATTRS + OWN_ATTRS[kind]}
        attrs.update(layout=0, w=w_maps, r=r_maps, bias=view.array(hint["bias"]) if hint["bias"] else None)
        if kind == "lstm":
            attrs["peepholes"] = view.array(hint["peepholes"]) if hint["peepholes"] else None
        operands = [name or "" for name in hint["operands"]]
        results = hint["results"]
    except (KeyError, TypeError, ValueError, AttributeError, StopIteration, json.JSONDecodeError) as exc:
        raise NotExported(f"the Scan's '{SCAN_KEYS[kind]}' metadata does not describe it ({exc})") from None
    if sources != {operands[0]}:
        raise NotExported("the Scan's input projections do not read its input")
    return _op(view, kind, operands, results, attrs)


_PROPOSERS = {
    "Add": _propose_linear, "MatMul": _propose_linear, "Reshape": _propose_linear, "Slice": _propose_linear,
    "LSTM": _propose_node, "GRU": _propose_node, "RNN": _propose_node, "Scan": _propose_scan,
}
