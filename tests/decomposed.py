"""Builders of IR modules with decomposed maps, shared by the ONNX-export and finetune
tests (``from decomposed import ...``).

* ``random_map(fmt, rng, out_factors, in_factors, ...)``: a tt/bt/ht map with seeded
  random cores (or a dense map), padding optional;
* ``recurrent_module(kind, ...)``, ``lstm_module(...)``: one ``lstm``, ``gru`` or ``rnn`` op
  over given w/r maps with any optional operand;
* ``classifier_module(...)``: an LSTM (GRU, RNN) classifier (last step -> ``linear`` head
  -> softmax or logits), the shape a finetuned model has;
* ``random_feeds``: seeded inputs for a module;
* ``module_differences``: what differs between two modules, compared as dataflow
  (op order and the locs a module did not have aside).
"""

from __future__ import annotations

import numpy as np

from tensorgate.ir.builder import Builder
from tensorgate.ir.core import Module
from tensorgate.ir.linear_map import DenseMap, LinearMap
from tensorgate.ir.ops import RECURRENT
from tensorgate.ir.tensor_formats import BTMap, HTMap, TTMap, balanced_tree, tree_nodes
from tensorgate.ir.types import F32, I32, FixedType, TensorType


def random_map(fmt: str, rng: np.random.Generator, out_factors, in_factors, rank: int = 2, blocks: int = 2,
               out_pad: int = 0, in_pad: int = 0, tree=None, dtype=np.float32, scale: float = 0.5) -> LinearMap:
    """A ``fmt`` map (``dense``, ``tt``, ``bt``, ``ht``) with random normal tensors."""
    def normal(*shape):
        return (scale * rng.standard_normal(shape)).astype(dtype)

    d = len(out_factors)
    if fmt == "dense":
        return DenseMap(normal(int(np.prod(out_factors)) - out_pad, int(np.prod(in_factors)) - in_pad))
    if fmt == "tt":
        ranks = [1] + [rank] * (d - 1) + [1]
        return TTMap.from_cores([normal(ranks[k], out_factors[k], in_factors[k], ranks[k + 1]) for k in range(d)],
                                out_pad, in_pad)
    if fmt == "bt":
        return BTMap.from_blocks([(normal(*(rank,) * d), [normal(out_factors[k], in_factors[k], rank) for k in range(d)])
                                  for _ in range(blocks)], out_pad, in_pad)
    tree = balanced_tree(d) if tree is None else tree
    nodes = list(tree_nodes(tree))
    ranks = {path: 1 if path == "" else rank for path, _ in nodes}
    leaves, transfers = [None] * d, {}
    for path, node in nodes:
        if isinstance(node, list):
            transfers[path] = normal(ranks[path], ranks[path + "0"], ranks[path + "1"])
        else:
            leaves[node] = normal(out_factors[node], in_factors[node], ranks[path])
    return HTMap.from_tree(tree, leaves, transfers, out_pad, in_pad)


def recurrent_module(kind: str, w, r, hidden: int, input_size: int, direction: str = "forward",
                     bias: bool = True, peepholes: bool = False, sequence_lens: bool = False,
                     initial_h: bool = False, initial_c: bool = False, layout: int = 0, seq: int | str = 5,
                     batch: int | str = 3, dtype=F32, seed: int = 1, **attrs) -> Module:
    """A module of one recurrent op of ``kind`` (``lstm``, ``gru``, ``rnn``; every result
    an output); the bias is ONNX's ``[dirs, 2·gates·H]``."""
    rng = np.random.default_rng(seed)
    np_dtype = dtype.numpy
    module = Module("main")
    b = Builder(module)
    dirs = 2 if direction == "bidirectional" else 1
    gates = len(RECURRENT[kind].gates)
    x = b.input("x", TensorType((seq, batch, input_size) if not layout else (batch, seq, input_size), dtype))
    state = TensorType((dirs, batch, hidden) if not layout else (batch, dirs, hidden), dtype)
    operands = [x, b.input("lens", TensorType((batch,), I32)) if sequence_lens else None,
                b.input("h0", state) if initial_h else None]
    if kind == "lstm":
        operands.append(b.input("c0", state) if initial_c else None)
        attrs["peepholes"] = (0.3 * rng.standard_normal((dirs, 3 * hidden))).astype(np_dtype) if peepholes else None
    all_attrs = dict(hidden_size=hidden, direction=direction, layout=layout,
                     w=[m.astype(np_dtype) for m in w], r=[m.astype(np_dtype) for m in r],
                     bias=(0.3 * rng.standard_normal((dirs, 2 * gates * hidden))).astype(np_dtype) if bias else None,
                     **attrs)
    op = b.op(kind, operands, all_attrs, loc=kind, names=["Y", "Y_h", "Y_c"][:len(RECURRENT[kind].states) + 1])
    module.outputs = list(op.results)
    return module


def lstm_module(w, r, hidden: int, input_size: int, **kwargs) -> Module:
    """A module of one ``lstm`` op (results Y, Y_h, Y_c all outputs)."""
    return recurrent_module("lstm", w, r, hidden, input_size, **kwargs)


def classifier_module(w, r, hidden: int, input_size: int, classes: int, head=None, softmax: bool = True,
                      seq: int | str = 5, batch: int | str = "batch", seed: int = 1, kind: str = "lstm",
                      **lstm_attrs) -> Module:
    """``x -> lstm (or gru, rnn) -> Y_h of the last direction -> linear head -> [softmax]``."""
    rng = np.random.default_rng(seed)
    module = recurrent_module(kind, w, r, hidden, input_size, seq=seq, batch=batch, seed=seed, **lstm_attrs)
    lstm = module.ops[0]
    b = Builder(module)
    last = b.op("squeeze", [b.op("slice", [lstm.results[1]], {"starts": [-1], "ends": [2**31 - 1], "axes": [0]},
                                 loc="last_direction").result], {"axes": [0]}, loc="squeeze").result
    weight = head if head is not None else DenseMap((0.5 * rng.standard_normal((classes, hidden))).astype(np.float32))
    bias = (0.1 * rng.standard_normal(classes)).astype(np.float32)
    logits = b.op("linear", [last], {"weight": weight, "bias": bias}, loc="head", names=["logits"]).result
    module.outputs = [b.op("softmax", [logits], {"axis": -1}, loc="softmax", names=["probs"]).result
                      if softmax else logits]
    return module


def random_feeds(module: Module, rng: np.random.Generator, sizes: dict[str, int] | None = None) -> dict[str, np.ndarray]:
    """Standard-normal floats (float32 for fixed-point inputs, which the golden model
    quantizes), sequence lengths in ``[1, seq]`` (one row full, one short); symbolic dims
    from ``sizes`` (default 3)."""
    sizes = {**{"batch": 3, "seq": 5}, **(sizes or {})}
    feeds = {}
    for value in module.inputs:
        shape = tuple(d if isinstance(d, int) else sizes.get(d, 3) for d in value.type.shape)
        if value.type.dtype == I32:
            steps = max(d if isinstance(d, int) else sizes.get(d, 3) for d in module.inputs[0].type.shape[:2])
            lengths = rng.integers(1, steps + 1, shape).astype(np.int32)
            lengths[0], lengths[-1] = steps, max(1, steps - 2)
            feeds[value.name] = lengths
        else:
            dtype = np.float32 if isinstance(value.type.dtype, FixedType) else value.type.dtype.numpy
            feeds[value.name] = rng.standard_normal(shape).astype(dtype)
    return feeds


def _same(a, b) -> bool:
    if isinstance(a, np.ndarray) or isinstance(b, np.ndarray):
        return (isinstance(a, np.ndarray) and isinstance(b, np.ndarray) and a.dtype == b.dtype
                and a.shape == b.shape and a.tobytes() == b.tobytes())
    if isinstance(a, (list, tuple)):
        return isinstance(b, (list, tuple)) and len(a) == len(b) and all(_same(x, y) for x, y in zip(a, b))
    return type(a) is type(b) and a == b


def _refines(expected: TensorType, actual: TensorType) -> bool:
    """Same element type and rank; each dim the same, or unknown (``?``) in ``expected``."""
    return expected.dtype == actual.dtype and expected.rank == actual.rank and all(
        e == a or e == "?" for e, a in zip(expected.shape, actual.shape))


def module_differences(expected: Module, actual: Module) -> list[str]:
    """Each difference between two modules as a sentence (empty: the same IR).  Ops are
    matched by their first result's name, so op order does not matter; maps compare
    format, meta and tensor bits; a loc is compared where ``expected`` has it on one op
    only (ONNX node names are unique, so a shared loc gets a suffix); a result
    type may know a dim that ``expected`` leaves unknown (ONNX shape inference can)."""
    problems = []
    signature = lambda values: [(v.name, str(v.type)) for v in values]  # noqa: E731
    if signature(expected.inputs) != signature(actual.inputs):
        problems.append(f"inputs {signature(expected.inputs)} != {signature(actual.inputs)}")
    if [v.name for v in expected.outputs] != [v.name for v in actual.outputs]:
        problems.append("outputs differ")
    if sorted(op.kind for op in expected.ops) != sorted(op.kind for op in actual.ops):
        problems.append(f"ops {[op.kind for op in expected.ops]} != {[op.kind for op in actual.ops]}")
    by_result = {op.results[0].name: op for op in actual.ops}
    locs = [op.loc for op in expected.ops]
    for op in expected.ops:
        other = by_result.get(op.results[0].name)
        if other is None or other.kind != op.kind:
            problems.append(f"{op.describe()} is missing")
            continue
        if [v and v.name for v in op.operands] != [v and v.name for v in other.operands]:
            problems.append(f"{op.describe()}: operands differ")
        if [v.name for v in op.results] != [v.name for v in other.results] or not all(
                _refines(v.type, w.type) for v, w in zip(op.results, other.results)):
            problems.append(f"{op.describe()}: results {signature(op.results)} != {signature(other.results)}")
        for key in sorted(set(op.attrs) | set(other.attrs)):
            if not _same(op.attrs.get(key), other.attrs.get(key)):
                problems.append(f"{op.describe()}: attribute '{key}' differs")
        if op.loc and locs.count(op.loc) == 1 and op.loc != other.loc:
            problems.append(f"{op.describe()}: loc '{other.loc}'")
    return problems
