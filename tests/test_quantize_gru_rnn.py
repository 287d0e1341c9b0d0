"""Quantized GRUs and RNNs: the integer golden model against an independent scalar
reimplementation of the contract in ``fixedpoint/programs.py`` (Python integers and
exact fractions, one element at a time), against the float model, and against its QDQ
export run by onnxruntime (bit for bit); what ``quantize`` refuses."""

from __future__ import annotations

from fractions import Fraction

import numpy as np
import pytest
from decomposed import random_feeds, random_map, recurrent_module
from test_onnx_export_qdq import LEVELS, run_ort

from tensorgate.backend.onnx_export import export_onnx
from tensorgate.errors import PassError
from tensorgate.fixedpoint.formats import code_max, code_min
from tensorgate.fixedpoint.quant_attrs import GRUQuant, RNNQuant
from tensorgate.interpreter import FixedExecutor, run_fixed, run_module
from tensorgate.ir import DenseMap, verify_module
from tensorgate.ir.parser import parse_module
from tensorgate.ir.printer import module_tensors, print_module
from tensorgate.onnx_form import ExportError
from tensorgate.passes import PassManager

T, B, I, H = 4, 3, 5, 3


def rounded(value: Fraction, rounding: str) -> int:
    if rounding == "nearest-even":
        return round(value)
    magnitude = int(abs(value) + Fraction(1, 2))
    return magnitude if value >= 0 else -magnitude


def narrow(terms: list[tuple[int, int]], fmt, rounding: str) -> int:
    """Round-and-saturate of an exact sum of ``(integer, fraction bits)`` terms."""
    exact = sum(Fraction(int(value), 2**frac) for value, frac in terms)
    return min(max(rounded(exact * 2**fmt.frac, rounding), code_min(fmt)), code_max(fmt))


def clipped(code: int, clip, fmt) -> int:
    if clip is None:
        return code
    limit = min(int(np.floor(clip * 2**fmt.frac)), code_max(fmt))
    return min(max(code, -limit), limit)


def unit(table, code: int) -> int:
    return int(table.evaluate(np.array([code]))[0])


def dot(matrix, row: int, vector) -> int:
    return sum(int(matrix[row, k]) * int(vector[k]) for k in range(matrix.shape[1]))


def projection(op, q, x, gates):
    """``gx[t][b][j]`` of the contract, one element at a time (one stacked dense W)."""
    w, bias = op.attrs["w"][0].matrix, op.attrs["bias"]
    x_frac = op.operands[0].type.dtype.frac

    def terms(t, b, j):
        products = [(dot(w, j, x[t, b]), x_frac + q.w[0].tensors["w"].frac)]
        return products + ([(int(bias[0][j]), q.bias[0].frac)] if bias is not None else [])

    return [[[narrow(terms(t, b, j), q.gates_x, q.rounding) for j in range(gates * H)] for b in range(B)]
            for t in range(T)]


def reference_gru(op, x, lens, h0):
    """One direction of the integer GRU, element by element, as its docstring states it."""
    q = GRUQuant.of(op)
    r_matrix, fr = op.attrs["r"][0].matrix, q.r[0].tensors["w"].frac
    lbr, clip, one = op.attrs["linear_before_reset"], op.attrs["clip"], 1 << q.gate.frac
    gx = projection(op, q, x, 3)
    h = [[int(v) for v in row] for row in h0]
    y = [[[0] * H for _ in range(B)] for _ in range(T)]
    for t in range(T):
        new_h = [row[:] for row in h]
        for b in range(B):
            def recurrent(row, vector):
                return (dot(r_matrix, row, vector), q.hidden.frac + fr)

            def gate(k, j):
                code = narrow([recurrent(k * H + j, h[b]), (gx[t][b][k * H + j], q.gates_x.frac)], q.pre_sigmoid,
                              q.rounding)
                return unit(q.sigmoid, clipped(code, clip, q.pre_sigmoid))

            z, r = [gate(0, j) for j in range(H)], [gate(1, j) for j in range(H)]
            if lbr:
                rb = [] if op.attrs["bias"] is None else [(int(v), q.recurrent_bias.frac)
                                                          for v in op.attrs["bias"][0][5 * H:]]
                rn = [narrow([recurrent(2 * H + j, h[b])] + rb[j:j + 1], q.candidate, q.rounding) for j in range(H)]
                candidate = [(r[j] * rn[j], q.gate.frac + q.candidate.frac) for j in range(H)]
            else:
                rh = [narrow([(r[j] * h[b][j], q.gate.frac + q.hidden.frac)], q.hidden, q.rounding) for j in range(H)]
                candidate = [recurrent(2 * H + j, rh) for j in range(H)]
            for j in range(H):
                pre = narrow([candidate[j], (gx[t][b][2 * H + j], q.gates_x.frac)], q.pre_tanh, q.rounding)
                n = unit(q.tanh, clipped(pre, clip, q.pre_tanh))
                hidden = narrow([((one - z[j]) * n, 2 * q.gate.frac), (z[j] * h[b][j], q.gate.frac + q.hidden.frac)],
                                q.hidden, q.rounding)
                if t < lens[b]:
                    new_h[b][j] = y[t][b][j] = hidden
        h = new_h
    return np.array(y), np.array(h)


def reference_rnn(op, x, lens, h0):
    q = RNNQuant.of(op)
    r_matrix, fr = op.attrs["r"][0].matrix, q.r[0].tensors["w"].frac
    gx = projection(op, q, x, 1)
    h = [[int(v) for v in row] for row in h0]
    y = [[[0] * H for _ in range(B)] for _ in range(T)]
    for t in range(T):
        new_h = [row[:] for row in h]
        for b in range(B):
            for j in range(H):
                code = narrow([(dot(r_matrix, j, h[b]), q.hidden.frac + fr), (gx[t][b][j], q.gates_x.frac)], q.pre,
                              q.rounding)
                code = clipped(code, op.attrs["clip"], q.pre)
                hidden = max(code, 0) if q.activation is None else unit(q.activation, code)
                if t < lens[b]:
                    new_h[b][j] = y[t][b][j] = hidden
        h = new_h
    return np.array(y), np.array(h)


def dense_module(kind: str, seed: int, **attrs):
    """One dense ``gru``/``rnn`` with x, lens and h0 as inputs."""
    rng = np.random.default_rng(seed)
    gates = 3 if kind == "gru" else 1
    w = [DenseMap(rng.standard_normal((gates * H, I)).astype(np.float32))]
    r = [DenseMap(rng.standard_normal((gates * H, H)).astype(np.float32))]
    module = recurrent_module(kind, w, r, H, I, sequence_lens=True, initial_h=True, seq=T, batch=B, seed=seed,
                              **attrs)
    verify_module(module)
    return module


def feeds(rng) -> dict[str, np.ndarray]:
    return {"x": (rng.standard_normal((T, B, I)) * 1.5).astype(np.float32), "lens": np.array([4, 2, 3], np.int32),
            "h0": rng.uniform(-0.9, 0.9, (1, B, H)).astype(np.float32)}


def quantized(module, options: str, tmp_path, inputs=None):
    path = tmp_path / "calibration.npz"
    np.savez(path, **(inputs if inputs is not None else random_feeds(module, np.random.default_rng(5),
                                                                     {"batch": 16})))
    return PassManager.parse(f"quantize{{{options} calibration={path}}}").run(module.copy())


CASES = {
    "gru_lbr0": ("gru", {"linear_before_reset": 0, "clip": 2.5}),
    "gru_lbr1": ("gru", {"linear_before_reset": 1, "clip": 2.5}),
    "gru_lbr1_no_bias": ("gru", {"linear_before_reset": 1, "bias": False}),
    "rnn_tanh": ("rnn", {"clip": 1.5}),
    "rnn_relu": ("rnn", {"activations": ["Relu"]}),
    "rnn_sigmoid": ("rnn", {"activations": ["Sigmoid"], "clip": 3.0}),
}


@pytest.mark.parametrize("rounding", ["nearest-even", "half-away"])
@pytest.mark.parametrize("bits", [6, 12])
@pytest.mark.parametrize("case", CASES)
def test_golden_model_equals_a_scalar_reimplementation_of_the_contract(case, bits, rounding, tmp_path):
    kind, attrs = CASES[case]
    rng = np.random.default_rng(bits)
    module = quantized(dense_module(kind, bits, **attrs), f"bits={bits} rounding={rounding}", tmp_path, feeds(rng))
    verify_module(module)
    inputs = feeds(rng)
    inputs["x"] *= 2  # beyond the calibrated range: saturation is part of the contract
    outputs = run_fixed(module, inputs, raw=True)
    codes = FixedExecutor(module).input_codes(inputs)
    reference = reference_gru if kind == "gru" else reference_rnn
    y, h = reference(module.ops[0], codes["x"], inputs["lens"], codes["h0"][0])
    assert np.array_equal(outputs["Y"][:, 0], y) and np.array_equal(outputs["Y_h"][0], h)


MAPS = {
    "dense": lambda kind, rng: ([random_map("dense", rng, (RNN_ROWS[kind],), (6,))],
                                [random_map("dense", rng, (RNN_ROWS[kind],), (4,))]),
    "tt_stacked": lambda kind, rng: ([random_map("tt", rng, RNN_FACTORS[kind], (2, 3))],
                                     [random_map("tt", rng, RNN_FACTORS[kind], (2, 2))]),
    "ht_per_gate": lambda kind, rng: ([random_map("ht", rng, (2, 2), (2, 3)) for _ in range(GATES[kind])],
                                      [random_map("bt", rng, (2, 2), (2, 2)) for _ in range(GATES[kind])]),
}
GATES = {"gru": 3, "rnn": 1}
RNN_ROWS = {"gru": 12, "rnn": 4}
RNN_FACTORS = {"gru": (3, 4), "rnn": (2, 2)}
TRACKED = {
    "gru_lbr0": ("gru", {"linear_before_reset": 0}),
    "gru_lbr1": ("gru", {"linear_before_reset": 1}),
    "rnn_tanh": ("rnn", {}),
    "rnn_relu": ("rnn", {"activations": ["Relu", "Relu"]}),
}


def tracked_module(case: str, maps: str, **kwargs):
    kind, attrs = TRACKED[case]
    rng = np.random.default_rng(3)
    w, r = MAPS[maps](kind, rng)
    w, r = w + MAPS[maps](kind, rng)[0], r + MAPS[maps](kind, rng)[1]  # two directions
    return recurrent_module(kind, w, r, 4, 6, direction="bidirectional", **attrs, **kwargs)


@pytest.mark.parametrize("maps", MAPS)
@pytest.mark.parametrize("case", TRACKED)
def test_golden_model_tracks_the_float_model_at_16_bits(case, maps, tmp_path):
    """Calibrated on the inputs it runs (nothing saturates): within 1% of the output scale."""
    float_module = tracked_module(case, maps, sequence_lens=True)
    inputs = random_feeds(float_module, np.random.default_rng(8), {"batch": 8})
    module = quantized(float_module, "bits=16", tmp_path, inputs)
    expected = run_module(float_module, inputs, dtype=np.float64)
    for name, value in run_fixed(module, inputs).items():
        scale = max(1.0, float(np.abs(expected[name]).max()))
        assert np.abs(value - expected[name]).max() < 0.01 * scale, name


@pytest.mark.parametrize("maps", MAPS)
@pytest.mark.parametrize("case", TRACKED)
def test_qdq_export_equals_the_golden_model_bit_for_bit(case, maps, tmp_path):
    """onnxruntime on the QDQ model, with and without its graph optimizations, on
    ordinary inputs and on inputs large enough to saturate."""
    float_module = tracked_module(case, maps, sequence_lens=True, initial_h=True)
    module = quantized(float_module, "bits=8", tmp_path)
    model = export_onnx(module)
    rng = np.random.default_rng(0)
    for scale in (1.0, 8.0):
        inputs = random_feeds(module, rng)
        inputs["x"] = (inputs["x"] * scale).astype(np.float32)
        inputs["h0"] = np.clip(inputs["h0"], -0.95, 0.95)
        expected = run_fixed(module, inputs)
        for level in LEVELS:
            actual = run_ort(model, inputs, level)
            for name, value in expected.items():
                np.testing.assert_array_equal(actual[name].astype(np.float64), value, err_msg=f"{name} at {level}")


def test_qdq_batch_major_gru(tmp_path):
    module = quantized(tracked_module("gru_lbr1", "tt_stacked", layout=1, sequence_lens=True), "bits=8", tmp_path)
    inputs = random_feeds(module, np.random.default_rng(1))
    expected = run_fixed(module, inputs)
    for name, value in run_ort(export_onnx(module), inputs, LEVELS[1]).items():
        np.testing.assert_array_equal(value.astype(np.float64), expected[name], err_msg=name)


def test_sixteen_bit_gru_is_refused_by_the_qdq_export(tmp_path):
    module = quantized(tracked_module("gru_lbr1", "dense"), "bits=16", tmp_path)
    with pytest.raises(ExportError, match="more than the 24 that float32 holds exactly"):
        export_onnx(module)


@pytest.mark.parametrize("case", CASES)
def test_quantized_module_survives_the_text_form(case, tmp_path):
    kind, attrs = CASES[case]
    rng = np.random.default_rng(4)
    module = quantized(dense_module(kind, 4, **attrs), "bits=8 activation=lut", tmp_path, feeds(rng))
    again = parse_module(print_module(module), module_tensors(module))
    verify_module(again)
    inputs = feeds(rng)
    first, second = run_fixed(module, inputs, raw=True), run_fixed(again, inputs, raw=True)
    assert all(first[name].dtype == np.int64 and np.array_equal(first[name], second[name]) for name in first)


def test_linear_before_reset_keeps_rb_h_apart_at_the_recurrent_accumulator(tmp_path):
    module = quantized(dense_module("gru", 2, linear_before_reset=1), "bits=8", tmp_path,
                       feeds(np.random.default_rng(2)))
    (gru,) = module.ops
    quant = GRUQuant.of(gru)
    assert gru.attrs["bias"].shape == (1, 6 * H) and not np.any(gru.attrs["bias"][:, 3 * H:5 * H])
    assert quant.candidate is not None and quant.recurrent_bias is not None
    assert quant.recurrent_bias.frac == quant.hidden.frac + quant.r[0].tensors["w"].frac


def test_report_lists_the_units_of_gru_and_rnn(tmp_path):
    report = tmp_path / "report.txt"
    module = dense_module("gru", 1)
    quantized(module, f"bits=8 report={report}", tmp_path, feeds(np.random.default_rng(1)))
    text = report.read_text()
    assert "Y.sigmoid: sigmoid pwl" in text and "Y.tanh: tanh pwl" in text and "Y.pre_tanh" in text
    report_rnn = tmp_path / "rnn.txt"
    quantized(dense_module("rnn", 1, activations=["Relu"]), f"bits=8 report={report_rnn}", tmp_path,
              feeds(np.random.default_rng(1)))
    assert "Y.pre" in report_rnn.read_text() and "Y.activation" not in report_rnn.read_text()


@pytest.mark.parametrize("kind, attrs, message", [
    ("gru", {"activations": ["HardSigmoid", "Tanh"]}, r"have no fixed-point units; quantize supports the default "
                                                     r"Sigmoid, Tanh"),
    ("rnn", {"activations": ["Elu"]}, "supports one of Tanh, Sigmoid, Relu for all directions"),
    ("rnn", {"activations": ["Relu", "Tanh"], "direction": "bidirectional"}, "for all directions"),
])
def test_activations_without_a_fixed_point_form_are_named(kind, attrs, message, tmp_path):
    rng = np.random.default_rng(0)
    gates = GATES[kind]
    dirs = 2 if attrs.get("direction") == "bidirectional" else 1
    module = recurrent_module(kind, [DenseMap(rng.standard_normal((gates * H, I)).astype(np.float32))] * dirs,
                              [DenseMap(rng.standard_normal((gates * H, H)).astype(np.float32))] * dirs, H, I,
                              **attrs)
    with pytest.raises(PassError, match=message):
        PassManager.parse("quantize{bits=8}").run(module)
