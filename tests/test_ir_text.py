"""The IR text form: print -> parse -> print is the identity, arrays survive bit for
bit, save/load round-trips through the sidecar, and parse errors point at the text."""

from __future__ import annotations

import math
import struct
from unittest import mock

import numpy as np
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from tensorgate.errors import ParseError, TensorgateError
from tensorgate.ir import F32, F64, FORMATS, DenseMap, LinearMap, Module, Op, TensorType, Value, verify_module
from tensorgate.ir.builder import Builder
from tensorgate.ir.ops import RECURRENT, RECURRENT_DIRECTIONS
from tensorgate.ir.parser import parse_module
from tensorgate.ir.printer import INLINE_LIMIT, module_tensors, print_module
from tensorgate.ir.serialize import load_module, save_module

PROPERTY = settings(max_examples=40, deadline=None, suppress_health_check=[HealthCheck.too_slow])

ODD_NAMES = ["x", "onnx::LSTM_1", "/lstm/LSTM_output_0", "a b", "15", "é", 'q"uote', "back\\slash",
             "new\nline", "", "tab\t", "none", "dense", "\u2028", "\U0001f600", "lstm.weight"]
names = st.one_of(st.sampled_from(ODD_NAMES), st.text(max_size=6))
symbolic_dims = st.one_of(st.sampled_from(["seq", "batch", "?", "dim 0", "n.1", "none", "3", "inf", "f32", "_"]),
                          st.text(max_size=4))
dims = st.one_of(st.integers(1, 4), symbolic_dims)


def random_floats(rng: np.random.Generator, shape, dtype) -> np.ndarray:
    """Every bit pattern is possible (NaN payloads, subnormals), plus the usual specials."""
    dtype = np.dtype(dtype)
    bits = rng.integers(0, np.iinfo(f"u{dtype.itemsize}").max, size=shape, dtype=f"u{dtype.itemsize}",
                        endpoint=True)
    array = bits.view(dtype)
    specials = np.array([0.0, -0.0, np.inf, -np.inf, np.nan, -np.nan, 1.0, 0.1], dtype=dtype)
    mask = rng.random(shape) < 0.3
    array[mask] = rng.choice(specials, size=int(mask.sum()))
    return array


def random_array(rng: np.random.Generator, dtype, shape) -> np.ndarray:
    dtype = np.dtype(dtype)
    if dtype.kind == "f":
        return random_floats(rng, shape, dtype)
    if dtype == np.bool_:
        return rng.random(shape) < 0.5
    info = np.iinfo(dtype)
    return rng.integers(info.min, info.max, size=shape, dtype=dtype, endpoint=True)


def static(shape) -> tuple[int, ...]:
    return tuple(d if isinstance(d, int) else 1 for d in shape)


class ModuleMaker:
    """Appends random, well-typed ops to a module (drawing choices from hypothesis)."""

    def __init__(self, draw, rng: np.random.Generator):
        self.draw, self.rng = draw, rng
        self.module = Module(draw(names))
        self.builder = Builder(self.module)
        self.floats = []  # float values to feed into later ops

    def input(self) -> None:
        shape = tuple(self.draw(st.lists(dims, min_size=1, max_size=3)))
        dtype = self.draw(st.sampled_from([F32, F64]))
        self.floats.append(self.builder.input(self.draw(names), TensorType(shape, dtype)))

    def op(self, kind, operands, attrs=None, **kw):
        return self.builder.op(kind, operands, attrs, loc=self.draw(st.one_of(st.just(""), names)),
                               names=kw.get("names"))

    def pick(self):
        return self.draw(st.sampled_from(self.floats))

    def step(self) -> None:
        choice = self.draw(st.sampled_from(["unary", "binary", "transpose", "softmax", "unsqueeze",
                                            "concat", "reshape", "linear", "cast", "const", "lstm", "gru",
                                            "rnn"]))
        getattr(self, f"add_{choice}")()

    def add_unary(self) -> None:
        kind = self.draw(st.sampled_from(["sigmoid", "tanh", "relu", "neg", "exp"]))
        self.floats.append(self.op(kind, [self.pick()]).result)

    def add_binary(self) -> None:
        value = self.pick()
        rank = self.draw(st.integers(0, value.type.rank))
        shape = static(value.type.shape[value.type.rank - rank:])
        const = self.builder.const(random_floats(self.rng, shape, value.type.dtype.numpy), self.draw(names))
        kind = self.draw(st.sampled_from(["add", "sub", "mul", "div"]))
        self.floats.append(self.op(kind, [value, const]).result)

    def add_transpose(self) -> None:
        value = self.pick()
        perm = self.draw(st.permutations(range(value.type.rank)))
        self.floats.append(self.op("transpose", [value], {"perm": list(perm)}).result)

    def add_softmax(self) -> None:
        value = self.pick()
        axis = self.draw(st.integers(-value.type.rank, value.type.rank - 1))
        kind = self.draw(st.sampled_from(["softmax", "log_softmax"]))
        self.floats.append(self.op(kind, [value], {"axis": axis}).result)

    def add_unsqueeze(self) -> None:
        value = self.pick()
        self.floats.append(self.op("unsqueeze", [value], {"axes": [0]}).result)

    def add_concat(self) -> None:
        value = self.pick()
        axis = self.draw(st.integers(0, value.type.rank - 1))
        self.floats.append(self.op("concat", [value, value], {"axis": axis}).result)

    def add_reshape(self) -> None:
        value = self.pick()
        last = value.type.shape[-1]
        target = [-1, last] if isinstance(last, int) else [-1]
        shape = self.builder.const(np.array(target, dtype=np.int64), self.draw(names))
        self.floats.append(self.op("reshape", [value, shape]).result)

    def add_linear(self) -> None:
        value = self.pick()
        if not isinstance(value.type.shape[-1], int):
            return
        out_dim = self.draw(st.integers(1, 6))
        dtype = value.type.dtype.numpy
        weight = DenseMap(self.rng.standard_normal((out_dim, value.type.shape[-1])).astype(dtype))
        bias = self.rng.standard_normal(out_dim).astype(dtype) if self.draw(st.booleans()) else None
        self.floats.append(self.op("linear", [value], {"weight": weight, "bias": bias}).result)

    def add_cast(self) -> None:
        value = self.pick()
        self.floats.append(self.op("cast", [value], {"to": self.draw(st.sampled_from(["f32", "f64"]))}).result)

    def add_const(self) -> None:
        dtype = self.draw(st.sampled_from([np.float32, np.float64, np.int64, np.int32, np.bool_]))
        shape = tuple(self.draw(st.lists(st.integers(0, 5), max_size=3)))
        self.module.outputs.append(self.builder.const(random_array(self.rng, dtype, shape), self.draw(names)))

    def add_lstm(self) -> None:
        self.add_recurrent("lstm", {"peepholes": self.draw(st.sampled_from([None, 3])),
                                    "input_forget": self.draw(st.integers(0, 1))})

    def add_gru(self) -> None:
        lbr = self.draw(st.integers(0, 1))
        self.add_recurrent("gru", {"linear_before_reset": lbr}, biases=[None, 6] if lbr else [None, 6, 3])

    def add_rnn(self) -> None:
        self.add_recurrent("rnn", {})

    def add_recurrent(self, kind: str, own: dict, biases=None) -> None:
        """A recurrent op of ``kind`` with random maps, biases, clip, activations and
        optional operands; ``own`` adds the kind's own attributes (arrays given as a
        width in hidden sizes are drawn here)."""
        recurrence = RECURRENT[kind]
        gates = len(recurrence.gates)
        direction = self.draw(st.sampled_from(RECURRENT_DIRECTIONS))
        dirs = 2 if direction == "bidirectional" else 1
        hidden, features = self.draw(st.integers(1, 5)), self.draw(st.integers(1, 6))
        layout = self.draw(st.integers(0, 1))
        seq_batch = (self.draw(dims), self.draw(dims))
        x = self.builder.input(self.draw(names), TensorType(seq_batch + (features,), F32))
        per_gate = self.draw(st.booleans())

        def maps(in_dim):
            count, rows = (gates * dirs, hidden) if per_gate else (dirs, gates * hidden)
            return [DenseMap(self.rng.standard_normal((rows, in_dim)).astype(np.float32)) for _ in range(count)]

        activations = list(recurrence.default_activations[:-1]) + ["Relu"]
        attrs = {"hidden_size": hidden, "direction": direction, "layout": layout,
                 "w": maps(features), "r": maps(hidden),
                 "bias": self.draw(st.sampled_from(biases or [None, *recurrence.bias_widths])),
                 "clip": self.draw(st.one_of(st.none(), st.floats(0.1, 100.0))),
                 "activations": self.draw(st.sampled_from([None, activations * dirs])), **own}
        for key in ("bias", "peepholes"):
            if attrs.get(key) is not None:
                attrs[key] = self.rng.standard_normal((dirs, attrs[key] * hidden)).astype(np.float32)
        operands = [x] + [None] * self.draw(st.integers(0, 1 + len(recurrence.states)))
        op = self.op(kind, operands, attrs, names=[self.draw(names) for _ in range(1 + len(recurrence.states))])
        self.module.outputs.append(op.results[self.draw(st.integers(0, len(recurrence.states)))])


@st.composite
def modules(draw) -> Module:
    maker = ModuleMaker(draw, np.random.default_rng(draw(st.integers(0, 2**32 - 1))))
    for _ in range(draw(st.integers(1, 2))):
        maker.input()
    for _ in range(draw(st.integers(0, 10))):
        maker.step()
    maker.module.outputs += draw(st.lists(st.sampled_from(maker.floats), max_size=2))
    verify_module(maker.module)
    return maker.module


def same_value(a, b) -> bool:
    """Deep equality where arrays and floats must match bit for bit."""
    if isinstance(a, np.ndarray) or isinstance(b, np.ndarray):
        return (isinstance(a, np.ndarray) and isinstance(b, np.ndarray) and a.dtype == b.dtype
                and a.shape == b.shape and a.tobytes() == b.tobytes())
    if isinstance(a, LinearMap):
        return (type(a) is type(b) and same_value(a.meta(), b.meta())
                and same_value(a.tensors(), b.tensors()))
    if isinstance(a, float):
        return isinstance(b, float) and struct.pack("<d", a) == struct.pack("<d", b)
    if isinstance(a, (list, tuple)):
        return isinstance(b, list) and len(a) == len(b) and all(map(same_value, a, b))
    if isinstance(a, dict):
        return (isinstance(b, dict) and list(a) == list(b)
                and all(same_value(a[k], b[k]) for k in a))
    return type(a) is type(b) and a == b


def assert_same_module(a: Module, b: Module) -> None:
    assert a.name == b.name
    assert [(v.name, v.type) for v in a.inputs] == [(v.name, v.type) for v in b.inputs]
    assert [v.name for v in a.outputs] == [v.name for v in b.outputs]
    assert len(a.ops) == len(b.ops)
    for op, other in zip(a.ops, b.ops):
        assert (op.kind, op.loc) == (other.kind, other.loc)
        assert [(v.name, v.type) for v in op.results] == [(v.name, v.type) for v in other.results]
        assert [v and v.name for v in op.operands] == [v and v.name for v in other.operands]
        assert sorted(op.attrs) == sorted(other.attrs)
        for key in op.attrs:
            assert same_value(op.attrs[key], other.attrs[key]), (op, key)


@PROPERTY
@given(modules())
def test_print_parse_print_is_identity(module):
    text = print_module(module, "weights.npz")
    parsed = parse_module(text, module_tensors(module))
    verify_module(parsed)
    assert print_module(parsed, "weights.npz") == text
    assert_same_module(module, parsed)


def module_arrays(module: Module) -> list[np.ndarray]:
    """Every array held by an attribute, directly, in a list or in a linear map."""
    arrays = []

    def collect(value):
        if isinstance(value, np.ndarray):
            arrays.append(value)
        elif isinstance(value, LinearMap):
            arrays.extend(value.tensors().values())
        elif isinstance(value, (list, tuple)):
            for item in value:
                collect(item)

    for op in module.ops:
        for value in op.attrs.values():
            collect(value)
    return arrays


class RecordingTensors(dict):
    """A tensor mapping that remembers which keys the parser looked up."""

    def __init__(self, tensors):
        super().__init__(tensors)
        self.used: set[str] = set()

    def __getitem__(self, key):
        self.used.add(key)
        return super().__getitem__(key)


@PROPERTY
@given(modules())
def test_exactly_the_large_tensors_go_to_the_sidecar(module):
    tensors = module_tensors(module)
    stored = {id(array) for array in tensors.values()}
    for array in module_arrays(module):
        assert (id(array) in stored) == (array.size > INLINE_LIMIT)
    recording = RecordingTensors(tensors)
    parse_module(print_module(module), recording)
    assert recording.used == set(tensors)


@PROPERTY
@given(module=modules())
def test_save_load_round_trip(module, tmp_path_factory):
    directory = tmp_path_factory.mktemp("ir")
    save_module(module, directory / "model.tgir")
    loaded = load_module(directory / "model.tgir")
    verify_module(loaded)
    assert_same_module(module, loaded)
    expected = {"model.tgir", "model.npz"} if module_tensors(module) else {"model.tgir"}
    assert {p.name for p in directory.iterdir()} == expected


attr_leaves = st.one_of(
    st.none(), st.booleans(), st.integers(-2**70, 2**70), st.floats(allow_nan=True, allow_infinity=True),
    st.floats(width=32).map(np.float32).map(float), st.text(max_size=6),
    st.builds(lambda bits: struct.unpack("<d", struct.pack("<Q", bits))[0], st.integers(0, 2**64 - 1)),
)
attr_values = st.recursive(
    attr_leaves,
    lambda inner: st.one_of(st.lists(inner, max_size=3),
                            st.dictionaries(names, inner, max_size=3)),
    max_leaves=12,
)


class NestedMetaMap(LinearMap):
    """A format whose meta holds nested lists and strings, like an HT dimension tree."""

    format = "nested_test"

    def __init__(self, meta, tensors):
        self._meta, self._tensors = meta, tensors

    def meta(self):
        return self._meta

    def tensors(self):
        return self._tensors

    @classmethod
    def from_parts(cls, meta, tensors):
        return cls(meta, tensors)


@settings(max_examples=60, deadline=None)
@given(st.dictionaries(names, attr_values, max_size=4), st.integers(0, 2**32 - 1))
def test_generic_attribute_values_round_trip(attrs, seed):
    """Values the op set does not use yet (dicts, deep lists, odd keys) and formats with
    nested-list meta: the grammar must need no change for them."""
    rng = np.random.default_rng(seed)
    nested = NestedMetaMap({"tree": [[0, [1, 2]], [3, 4]], "modes": [[2, 2], [3]], "label": "ht"},
                           {"leaf0": random_floats(rng, (2, 3), np.float32),
                            "transfer": random_floats(rng, (4, 3, 2), np.float64)})
    module = Module("generic")
    x = Builder(module).input("x", TensorType((2,), F32))
    module.ops.append(Op("custom_op", [x], [Value("y", x.type)], {**attrs, "map": nested}))
    with mock.patch.dict(FORMATS, {NestedMetaMap.format: NestedMetaMap}):
        text = print_module(module)
        parsed = parse_module(text, module_tensors(module))
        assert print_module(parsed) == text
    assert_same_module(module, parsed)


def test_decomposed_formats_round_trip(tmp_path):
    formats = pytest.importorskip("tensorgate.ir.tensor_formats")
    rng = np.random.default_rng(3)

    def normal(*shape):
        return rng.standard_normal(shape).astype(np.float32)

    maps = [
        formats.TTMap.from_cores([normal(1, 2, 3, 2), normal(2, 4, 2, 1)]),
        formats.BTMap.from_blocks([(normal(2, 2), [normal(2, 3, 2), normal(4, 2, 2)]),
                                   (normal(1, 2), [normal(2, 3, 1), normal(4, 2, 2)])]),
        formats.HTMap.from_tree([[0, 1], 2], [normal(2, 2, 2), normal(2, 3, 2), normal(3, 2, 3)],
                                {"": normal(1, 2, 3), "0": normal(2, 2, 2)}, in_pad=2),
    ]
    module = Module()
    builder = Builder(module)
    for weight in maps:
        x = builder.input("x", TensorType(("batch", weight.in_dim), F32))
        module.outputs.append(builder.op("linear", [x], {"weight": weight}, loc=weight.format).result)
    verify_module(module)
    save_module(module, tmp_path / "model.tgir")
    loaded = load_module(tmp_path / "model.tgir")
    verify_module(loaded)
    assert_same_module(module, loaded)
    assert print_module(loaded) == print_module(module)
    assert "tree = [[0, 1], 2]" in print_module(module)


GOLDEN = '''\
module @main(%x: f32[seq,batch,3], %"onnx::h0": f32[1,batch,3]) {
  %Y: f32[seq,1,batch,3], %Y_h: f32[1,batch,3], %Y_c: f32[1,batch,3] = lstm(%x, _, %"onnx::h0") {hidden_size = 3, clip = 1.5, w = [dense(w = @Y.w.0.w : f32[12,3])], r = [dense(w = @Y.r.0.w : f32[12,3])], bias = @Y.bias : f32[1,24]} loc("LSTM_0")
  %shape: i64[2] = const {value = dense<[-1, 3]> : i64[2]}
  %flat: f32[?,3] = reshape(%Y_h, %shape)
  %mask: i1[2] = const {value = dense<[true, false]> : i1[2]}
  %scale: f32[3] = const {value = dense<[0.1, -inf, nan(0xffc00000)]> : f32[3]}
  %out: f32[?,3] = mul(%flat, %scale) loc("Mul_1")
  return %Y_h, %out
}
'''


def golden_tensors() -> dict[str, np.ndarray]:
    rng = np.random.default_rng(7)
    return {"Y.w.0.w": rng.standard_normal((12, 3)).astype(np.float32),
            "Y.r.0.w": rng.standard_normal((12, 3)).astype(np.float32),
            "Y.bias": rng.standard_normal((1, 24)).astype(np.float32)}


def test_golden_text_parses_verifies_and_prints_back_unchanged():
    tensors = golden_tensors()
    module = parse_module(GOLDEN, tensors)
    verify_module(module)
    assert print_module(module) == GOLDEN
    lstm = module.ops[0]
    assert lstm.attrs["w"][0].matrix is tensors["Y.w.0.w"]
    assert lstm.attrs["direction"] == "forward" and lstm.attrs["peepholes"] is None
    assert lstm.operands[1] is None and lstm.operands[2] is module.inputs[1]
    assert module.ops[4].attrs["value"].view(np.uint32)[2] == 0xffc00000
    assert module_tensors(module).keys() == tensors.keys()


def test_shared_array_is_stored_once():
    module = Module()
    builder = Builder(module)
    x = builder.input("x", TensorType((2, 8), F32))
    weight = DenseMap(np.ones((4, 8), np.float32))
    a = builder.op("linear", [x], {"weight": weight}).result
    b = builder.op("linear", [x], {"weight": weight}).result
    module.outputs = [a, b]
    assert list(module_tensors(module)) == ["linear.weight.w"]
    parsed = parse_module(print_module(module), module_tensors(module))
    assert parsed.ops[0].attrs["weight"].matrix is parsed.ops[1].attrs["weight"].matrix


def test_big_weights_keep_the_text_small():
    module = Module()
    builder = Builder(module)
    x = builder.input("x", TensorType(("batch", 2048), F32))
    weight = DenseMap(np.random.default_rng(0).standard_normal((512, 2048)).astype(np.float32))
    module.outputs = [builder.op("linear", [x], {"weight": weight}).result]
    text = print_module(module)
    assert len(text) < 300
    assert parse_module(text, module_tensors(module)).ops[0].attrs["weight"] == weight


def test_float_attributes_keep_their_bits():
    values = [0.1, -0.0, math.inf, -math.inf, math.nan, 5e-324, 1e300,
              struct.unpack("<d", struct.pack("<Q", 0xfff8000000000001))[0]]
    module = Module()
    x = Builder(module).input("x", TensorType((1,), F64))
    module.ops.append(Op("custom", [x], [Value("y", x.type)], {"values": values}))
    parsed = parse_module(print_module(module))
    assert same_value(values, parsed.ops[0].attrs["values"])


def caret_column(message: str) -> int:
    return message.splitlines()[2].index("^") - 2


def test_syntax_error_points_at_line_and_column():
    text = "module @m(%x: f32[2]) {\n  %y: f32[2] = neg(%x\n  return %y\n}\n"
    with pytest.raises(ParseError) as info:
        parse_module(text, source="bad.tgir")
    message = str(info.value)
    assert message.startswith("bad.tgir:3:3: unexpected 'return'; expected ")
    assert "')'" in message and "','" in message
    assert message.splitlines()[1] == "    return %y"
    assert caret_column(message) == 2


def test_unexpected_character_and_end_of_input():
    with pytest.raises(ParseError, match=r"^<ir>:1:15: unexpected '\$'"):
        parse_module("module @m() { $ }")
    with pytest.raises(ParseError, match=r"^<ir>:1:20: unexpected end of input; expected '}'"):
        parse_module("module @m() {return")


@pytest.mark.parametrize("body, message, column", [
    ("%y: f32[2] = neg(%z)", "value %z is not defined before this use", 20),
    ("%y: f32[2] = add(%x, %y)", "value %y is not defined before this use", 24),
    ("%x: f32[2] = neg(%x)", "value %x is defined twice", 3),
    ("%y: f32[2] = const {value = @w.value : f32[2,16]}", "tensor @w.value is not in the given tensors", 31),
    ("%y: f32[2] = linear(%x) {weight = blocky(w = dense<1.0> : f32[])}",
     "unknown linear-map format 'blocky' (known: ", 37),
    ("%y: f32[2] = linear(%x) {weight = dense(v = dense<1.0> : f32[])}",
     "cannot build a 'dense' map from these parts", 37),
    ("%y: f32[2] = const {value = dense<[1.0, 2.0]> : f32[3]}", "tensor has 2 elements, its type f32[3] needs 3", 31),
    ("%y: f32[2] = const {value = dense<[1.5, 2]> : i64[2]}", "'1.5' is not a valid int64 element", 38),
    ("%y: f32[2] = const {value = dense<[300, 2]> : u8[2]}", "300 does not fit in uint8", 38),
    ("%y: f32[2] = const {value = dense<[1e39]> : f32[1]}", "1e39 does not fit in float32", 38),
    ("%y: f32[2] = const {value = dense<[nan(0x1)]> : f32[1]}", "nan(0x1) is not a float32 NaN bit pattern", 38),
    ("%y: f32[2] = const {value = dense<[1]> : fix<8,4>[1]}", "tensors cannot have element type 'fix<8,4>'", 44),
    ("%y: q8[2] = neg(%x)", "unexpected 'q8'; expected an element type", 7),
    ("%y: f32[2] = neg(%x) {a = 1, a = 2}", "'a' is given twice", 32),
])
def test_semantic_errors_name_the_problem(body, message, column):
    text = f"module @m(%x: f32[2]) {{\n  {body}\n  return %x\n}}\n"
    with pytest.raises(ParseError) as info:
        parse_module(text)
    first_line = str(info.value).splitlines()[0]
    assert first_line.startswith(f"<ir>:2:{column}: {message}"), first_line
    assert caret_column(str(info.value)) == column - 1


def test_sidecar_tensor_with_the_wrong_type_is_an_error():
    text = "module @m() {\n  %c: f32[17] = const {value = @c.value : f32[17]}\n  return %c\n}\n"
    with pytest.raises(ParseError, match=r"tensor @c.value is float64\[17\], the text says f32\[17\]"):
        parse_module(text, {"c.value": np.zeros(17)})


def test_load_reports_missing_weights_file(tmp_path):
    module = parse_module(GOLDEN, golden_tensors())
    save_module(module, tmp_path / "model.tgir")
    (tmp_path / "model.npz").unlink()
    with pytest.raises(ParseError, match="its weights file .* is not a readable .npz"):
        load_module(tmp_path / "model.tgir")
    with pytest.raises(ParseError, match="cannot read IR file"):
        load_module(tmp_path / "absent.tgir")


def test_failed_save_leaves_no_files(tmp_path):
    module = parse_module(GOLDEN, golden_tensors())
    with mock.patch("numpy.savez", side_effect=OSError("disk full")):
        with pytest.raises(TensorgateError, match="disk full"):
            save_module(module, tmp_path / "model.tgir")
    assert list(tmp_path.iterdir()) == []
