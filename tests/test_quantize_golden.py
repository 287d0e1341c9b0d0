"""The integer golden model against an independent scalar reimplementation of its
documented contract (Python integers and exact fractions, one element at a time), and
the properties of integer map application: exactness, worst-case accumulator bounds,
determinism."""

from __future__ import annotations

from fractions import Fraction

import numpy as np
import opt_einsum
import pytest

from tensorgate.fixedpoint.formats import code_max, code_min
from tensorgate.fixedpoint.maps import IntegerMap, MapQuant, network_plans
from tensorgate.fixedpoint.quant_attrs import LinearQuant, LSTMQuant
from tensorgate.ir import F32, I64, DenseMap, FixedType, Module, TensorType, TTMap, verify_module
from tensorgate.ir.builder import Builder
from tensorgate.ir.parser import parse_module
from tensorgate.ir.printer import module_tensors, print_module
from tensorgate.passes.quantize import Quantize
from tensorgate.interpreter import FixedExecutor, run_fixed

T, B, I, H, C = 4, 3, 5, 3, 4


def rounded(value: Fraction, rounding: str) -> int:
    if rounding == "nearest-even":
        return round(value)
    magnitude = int(abs(value) + Fraction(1, 2))
    return magnitude if value >= 0 else -magnitude


def narrow(terms: list[tuple[int, int]], fmt: FixedType, rounding: str) -> int:
    """Round-and-saturate of an exact sum of ``(integer, fraction bits)`` terms."""
    exact = sum(Fraction(value, 2**frac) for value, frac in terms)
    return min(max(rounded(exact * 2**fmt.frac, rounding), code_min(fmt)), code_max(fmt))


def reference_lstm(op, x, lens, h0, c0):
    """One direction, element by element, as the fixed runtime's docstring states it."""
    q = LSTMQuant.of(op)
    w, r = op.attrs["w"][0].matrix, op.attrs["r"][0].matrix
    fw, fr = q.w[0].tensors["w"].frac, q.r[0].tensors["w"].frac
    bias, peep = op.attrs["bias"][0], op.attrs["peepholes"][0]
    fb, fp = q.bias[0].frac, q.peepholes.frac
    x_frac = op.operands[0].type.dtype.frac
    clip = op.attrs["clip"]
    gx = [[[narrow([(sum(int(w[j, k]) * int(x[t, b, k]) for k in range(I)), x_frac + fw), (int(bias[j]), fb)],
                   q.gates_x, q.rounding) for j in range(4 * H)] for b in range(B)] for t in range(T)]
    h = [[int(v) for v in row] for row in h0]
    c = [[int(v) for v in row] for row in c0]
    y = [[[0] * H for _ in range(B)] for _ in range(T)]

    def pre(b, gate, j, extra, fmt):
        row = gate * H + j
        terms = [(sum(int(r[row, k]) * h[b][k] for k in range(H)), q.hidden.frac + fr),
                 (gx[t][b][row], q.gates_x.frac)] + extra
        code = narrow(terms, fmt, q.rounding)
        if clip is not None:
            limit = min(int(np.floor(clip * 2**fmt.frac)), code_max(fmt))
            code = min(max(code, -limit), limit)
        return code

    def unit(table, code):
        return int(table.evaluate(np.array([code]))[0])

    for t in range(T):
        new_h, new_c = [row[:] for row in h], [row[:] for row in c]
        for b in range(B):
            for j in range(H):
                i = unit(q.sigmoid, pre(b, 0, j, [(int(peep[j]) * c[b][j], fp + q.cell.frac)], q.pre_sigmoid))
                f = unit(q.sigmoid, pre(b, 2, j, [(int(peep[2 * H + j]) * c[b][j], fp + q.cell.frac)], q.pre_sigmoid))
                g = unit(q.tanh, pre(b, 3, j, [], q.pre_tanh))
                cell = narrow([(f * c[b][j], q.gate.frac + q.cell.frac), (i * g, 2 * q.gate.frac)], q.cell, q.rounding)
                o = unit(q.sigmoid, pre(b, 1, j, [(int(peep[H + j]) * cell, fp + q.cell.frac)], q.pre_sigmoid))
                hidden = narrow([(o * unit(q.tanh_cell, cell), 2 * q.gate.frac)], q.hidden, q.rounding)
                if t < lens[b]:
                    new_h[b][j], new_c[b][j], y[t][b][j] = hidden, cell, hidden
        h, c = new_h, new_c
    return np.array(y), np.array(h), np.array(c)


def reference_linear(op, x):
    q = LinearQuant.of(op)
    w, bias = op.attrs["weight"].matrix, op.attrs["bias"]
    x_frac = op.operands[0].type.dtype.frac
    return np.array([[narrow([(sum(int(w[j, k]) * int(row[k]) for k in range(w.shape[1])),
                                x_frac + q.weight.tensors["w"].frac), (int(bias[j]), q.bias.frac)], q.output, q.rounding)
                      for j in range(w.shape[0])] for row in x])


def lstm_classifier(rng) -> Module:
    """x, h0, c0 and sequence lengths as inputs; peepholes and clip; a linear head on Y_h."""
    module = Module("golden")
    build = Builder(module)
    x = build.input("x", TensorType((T, B, I), F32))
    lens = build.input("lens", TensorType((B,), I64))
    h0 = build.input("h0", TensorType((1, B, H), F32))
    c0 = build.input("c0", TensorType((1, B, H), F32))
    lstm = build.op("lstm", [x, lens, h0, c0], {
        "hidden_size": H, "clip": 2.5,
        "w": [DenseMap(rng.standard_normal((4 * H, I)).astype(np.float32))],
        "r": [DenseMap(rng.standard_normal((4 * H, H)).astype(np.float32))],
        "bias": rng.standard_normal((1, 8 * H)).astype(np.float32),
        "peepholes": rng.standard_normal((1, 3 * H)).astype(np.float32)})
    last = build.op("squeeze", [lstm.results[1]], {"axes": [0]}).result
    head = build.op("linear", [last], {"weight": DenseMap(rng.standard_normal((C, H)).astype(np.float32)),
                                       "bias": rng.standard_normal(C).astype(np.float32)})
    module.outputs = [lstm.results[0], lstm.results[2], head.result]
    verify_module(module)
    return module


def feeds(rng) -> dict[str, np.ndarray]:
    return {"x": rng.standard_normal((T, B, I)) * 1.5, "lens": np.array([4, 2, 3]),
            "h0": rng.uniform(-0.9, 0.9, (1, B, H)), "c0": rng.standard_normal((1, B, H))}


@pytest.mark.parametrize("rounding", ["nearest-even", "half-away"])
@pytest.mark.parametrize("bits", [6, 12])
def test_golden_model_equals_a_scalar_reimplementation_of_the_contract(rounding, bits, tmp_path):
    rng = np.random.default_rng(bits)
    module = lstm_classifier(rng)
    np.savez(tmp_path / "calibration.npz", **feeds(rng))
    Quantize(bits=bits, rounding=rounding, calibration=tmp_path / "calibration.npz").run(module)
    verify_module(module)
    inputs = feeds(rng)
    inputs["x"] *= 2  # beyond the calibrated range: saturation is part of the contract
    outputs = run_fixed(module, inputs, raw=True)
    lstm_op, head_op = module.ops_of("lstm")[0], module.ops_of("linear")[0]
    codes = FixedExecutor(module).input_codes(inputs)
    y, h, c = reference_lstm(lstm_op, codes["x"], inputs["lens"], codes["h0"][0], codes["c0"][0])
    assert np.array_equal(outputs[module.outputs[0].name][:, 0], y)
    assert np.array_equal(outputs[module.outputs[1].name][0], c)
    assert np.array_equal(outputs[module.outputs[2].name], reference_linear(head_op, h))


def tt_map(rng, scale=0.5) -> TTMap:
    cores = [rng.standard_normal(shape) * scale for shape in [(1, 4, 3, 3), (3, 2, 2, 2), (2, 3, 2, 1)]]
    return TTMap.from_cores(cores, out_pad=2, in_pad=1)


def exact_quant(linear_map: TTMap, x_fmt: FixedType, tensor_fracs: dict[str, int]) -> MapQuant:
    """Formats whose step results are as wide as their exact products: no bit is rounded away."""
    tensors = {name: FixedType(16, frac) for name, frac in tensor_fracs.items()}
    steps = []
    for plan in network_plans(linear_map):
        fracs = {i: (x_fmt.frac if i == plan.input_index else tensor_fracs[name]) for i, name in enumerate(plan.names)}
        formats = []
        for index, step in enumerate(plan.steps):
            fracs[len(plan.names) + index] = fracs[step.lhs] + fracs[step.rhs]
            formats.append(FixedType(62, fracs[len(plan.names) + index]))
        steps.append(tuple(formats[:-1]))
    return MapQuant.for_map(linear_map, tensors, tuple(steps))


def test_integer_contraction_without_narrowing_equals_the_exact_dense_product():
    rng = np.random.default_rng(1)
    float_map = tt_map(rng)
    fracs = {"g0": 9, "g1": 11, "g2": 10}
    codes = TTMap.from_parts(float_map.meta(), {k: np.round(v * 2**fracs[k]).astype(np.int64)
                                                for k, v in float_map.tensors().items()})
    x_fmt = FixedType(8, 5)
    integer = IntegerMap(codes, exact_quant(codes, x_fmt, fracs), "nearest-even")
    x = rng.integers(-128, 128, (7, codes.in_dim))
    acc, frac = integer.apply(x, x_fmt.frac, lambda name, a, f, fmt: a << (fmt.frac - f), "w")
    dense = opt_einsum.contract("aijb,bklc,cmnd->ikmjln", *[t.astype(object) for t in codes.tensors().values()])
    dense = dense.reshape(24, 12)[: codes.out_dim, : codes.in_dim]
    assert frac == x_fmt.frac + sum(fracs.values())
    assert acc.tolist() == (x.astype(object) @ dense.T).tolist()


@pytest.mark.parametrize("kind", ["dense", "tt"])
def test_accumulators_stay_within_their_worst_case_bound(kind):
    rng = np.random.default_rng(2)
    float_map = tt_map(rng, scale=2.0) if kind == "tt" else DenseMap(rng.standard_normal((9, 11)) * 3)
    module = Module("m")
    build = Builder(module)
    x = build.input("x", TensorType(("batch", float_map.in_dim), F32))
    module.outputs = [build.op("linear", [x], {"weight": float_map}).result]
    Quantize(bits=8).run(module)
    op = module.ops[0]
    quant = LinearQuant.of(op)
    integer = IntegerMap(op.attrs["weight"], quant.weight, quant.rounding)
    x_fmt = module.inputs[0].type.dtype
    bound, frac, step_bounds = integer.bound(x_fmt)
    extremes = np.array([code_min(x_fmt), code_max(x_fmt)])
    inputs = np.concatenate([rng.choice(extremes, (400, float_map.in_dim)),
                             rng.integers(code_min(x_fmt), code_max(x_fmt) + 1, (400, float_map.in_dim))])
    seen = []

    def record(name, acc, acc_frac, fmt):
        seen.append(int(np.abs(acc).max()))
        return np.clip(acc >> max(acc_frac - fmt.frac, 0), code_min(fmt), code_max(fmt))

    acc, acc_frac = integer.apply(inputs, x_fmt.frac, record, "w")
    assert acc_frac == frac and np.abs(acc).max() <= bound
    assert all(s <= b for s, b in zip(seen, step_bounds))
    if kind == "dense":  # one GEMM: the worst input of the largest row comes within Σ|w<0| of the bound
        weights = op.attrs["weight"].matrix
        row = np.abs(weights).sum(axis=1).argmax()
        worst = np.where(weights[row] > 0, code_min(x_fmt), code_max(x_fmt))
        reached = abs(int(integer.apply(worst[None], x_fmt.frac, record, "w")[0][0, row]))
        assert reached == bound - int(np.abs(weights[row][weights[row] < 0]).sum())


def test_golden_model_is_deterministic_and_survives_the_text_form(tmp_path):
    rng = np.random.default_rng(3)
    module = lstm_classifier(rng)
    np.savez(tmp_path / "calibration.npz", **feeds(rng))
    Quantize(bits=8, activation="lut", calibration=tmp_path / "calibration.npz").run(module)
    inputs = feeds(rng)
    first = run_fixed(module, inputs, raw=True)
    again = parse_module(print_module(module), module_tensors(module))
    verify_module(again)
    second = run_fixed(again, inputs, raw=True)
    assert first.keys() == second.keys()
    for name in first:
        assert first[name].dtype == np.int64 and np.array_equal(first[name], second[name])
    codes = FixedExecutor(module).input_codes(inputs)
    assert all(np.array_equal(run_fixed(module, codes, raw=True, raw_input=True)[n], first[n]) for n in first)
