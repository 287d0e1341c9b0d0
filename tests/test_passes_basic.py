"""canonicalize, dce and the pass manager's instrumentation."""

from __future__ import annotations

import io
from dataclasses import dataclass
from typing import ClassVar

import numpy as np
import pytest
from rich.console import Console

from tensorgate.errors import PassError, PipelineError, VerifyError
from tensorgate.ir import F32, F64, DenseMap, Module, TensorType, verify_module
from tensorgate.ir.builder import Builder
from tensorgate.passes import (
    Canonicalize, DeadCodeElimination, Instrumentation, Pass, PassManager,
)
from tensorgate.interpreter import run_module


def outputs_of(module: Module, seed: int = 0) -> dict[str, np.ndarray]:
    """Run ``module`` in float64 on seeded random inputs (symbolic dims set to 2)."""
    rng = np.random.default_rng(seed)
    inputs = {
        v.name: rng.standard_normal([d if isinstance(d, int) else 2 for d in v.type.shape])
        for v in module.inputs
    }
    return run_module(module, inputs, dtype=np.float64)


def assert_same_outputs(before: Module, after: Module, rtol: float) -> None:
    expected, actual = outputs_of(before), outputs_of(after)
    assert expected.keys() == actual.keys()
    for name in expected:
        np.testing.assert_allclose(actual[name], expected[name], rtol=rtol, atol=rtol)


def kinds(module: Module) -> list[str]:
    return [op.kind for op in module.ops]


def canonicalize_and_check(module: Module, rtol: float = 1e-12) -> bool:
    """Canonicalize ``module``; check it stays valid and computes the same outputs (up
    to ``rtol``: a constant folded into an f32 tensor is rounded to f32); return the
    pass's modified flag."""
    before = module.copy()
    changed = Canonicalize().run(module)
    verify_module(module)
    assert_same_outputs(before, module, rtol)
    return changed


# --- canonicalize: constant folding ----------------------------------------------------


def torch_view_chain(x_shape) -> Module:
    """``x.view(x.size(0), -1)`` as PyTorch exports it: Shape -> Gather -> Unsqueeze ->
    Concat -> Reshape."""
    module = Module("view")
    b = Builder(module)
    x = b.input("x", TensorType(x_shape, F32))
    shape = b.op("shape", [x]).result
    first = b.op("gather", [shape, b.const(np.array(0, np.int64))], {"axis": 0}).result
    batch = b.op("unsqueeze", [first], {"axes": [0]}).result
    target = b.op("concat", [batch, b.const(np.array([-1], np.int64))], {"axis": 0}).result
    module.outputs = [b.op("reshape", [x, target], names=["y"]).result]
    return module


def test_torch_shape_chain_on_static_input_becomes_reshape_with_const_shape():
    module = torch_view_chain((2, 3, 4))
    assert module.outputs[0].type.shape == ("?", "?")
    assert canonicalize_and_check(module)
    assert DeadCodeElimination().run(module)
    assert kinds(module) == ["const", "reshape"]
    np.testing.assert_array_equal(module.ops[0].attrs["value"], [2, -1])
    assert module.outputs[0].type == TensorType((2, 12), F32)
    assert module.outputs[0].name == "y"


def test_shape_chain_on_symbolic_batch_is_left_alone():
    module = torch_view_chain(("batch", 3, 4))
    assert not Canonicalize().run(module)


def test_shape_of_static_trailing_dims_folds_even_when_batch_is_symbolic():
    module = Module()
    b = Builder(module)
    x = b.input("x", TensorType(("batch", 3, 4), F32))
    module.outputs = [b.op("shape", [x], {"start": 1}).result]
    assert Canonicalize().run(module)
    assert kinds(module) == ["const"]
    np.testing.assert_array_equal(module.ops[0].attrs["value"], [3, 4])


def test_float_arithmetic_on_constants_folds_to_the_runtime_result():
    module = Module()
    b = Builder(module)
    x = b.input("x", TensorType((3,), F32))
    a = b.const(np.array([1.5, 2.0, -1.0], np.float32))
    scaled = b.op("mul", [a, b.const(np.array([2.0], np.float32))]).result
    module.outputs = [b.op("add", [x, b.op("tanh", [scaled]).result]).result]
    assert canonicalize_and_check(module, rtol=1e-7)
    assert kinds(module) == ["const", "const", "const", "const", "add"]
    np.testing.assert_array_equal(module.ops[3].attrs["value"],
                                  np.tanh([3.0, 4.0, -2.0]).astype(np.float32))


def test_folding_does_not_blow_a_small_constant_up():
    module = Module()
    b = Builder(module)
    x = b.input("x", TensorType((64, 64), F32))
    big = b.op("expand", [b.const(np.ones(1, np.float32)), b.const(np.array([64, 64]))]).result
    module.outputs = [b.op("sub", [x, big]).result]
    assert not Canonicalize().run(module)
    assert "expand" in kinds(module)


# --- canonicalize: identities ----------------------------------------------------------


def identity_module(make_op) -> Module:
    """x -> tanh -> (op under test) -> neg -> output."""
    module = Module()
    b = Builder(module)
    x = b.input("x", TensorType((2, 3), F32))
    y = b.op("tanh", [x]).result
    module.outputs = [b.op("neg", [make_op(b, y)]).result]
    return module


IDENTITIES = {
    "reshape": lambda b, y: b.op("reshape", [y, b.const(np.array([0, 3]))]).result,
    "transpose": lambda b, y: b.op("transpose", [y], {"perm": [0, 1]}).result,
    "squeeze": lambda b, y: b.op("squeeze", [y], {"axes": []}).result,
    "unsqueeze": lambda b, y: b.op("unsqueeze", [y], {"axes": []}).result,
    "slice": lambda b, y: b.op("slice", [y], {"starts": [-5, 0], "ends": [2, 2**63 - 1]}).result,
    "expand": lambda b, y: b.op("expand", [y, b.const(np.array([1, 3]))]).result,
    "concat": lambda b, y: b.op("concat", [y], {"axis": 1}).result,
    "cast": lambda b, y: b.op("cast", [y], {"to": "f32"}).result,
    "add": lambda b, y: b.op("add", [b.const(np.zeros((1, 3), np.float32)), y]).result,
    "sub": lambda b, y: b.op("sub", [y, b.const(np.zeros(3, np.float32))]).result,
    "mul": lambda b, y: b.op("mul", [y, b.const(np.ones((2, 1), np.float32))]).result,
    "div": lambda b, y: b.op("div", [y, b.const(np.ones((), np.float32))]).result,
}


@pytest.mark.parametrize("kind", IDENTITIES)
def test_identity_is_dropped(kind):
    module = identity_module(IDENTITIES[kind])
    assert canonicalize_and_check(module)
    assert kind not in kinds(module)
    assert module.ops[-1].operands[0] is module.ops[0].result


NOT_IDENTITIES = {
    "reshape": lambda b, y: b.op("reshape", [y, b.const(np.array([3, 2]))]).result,
    "transpose": lambda b, y: b.op("transpose", [y], {"perm": [1, 0]}).result,
    "squeeze": lambda b, y: b.op("squeeze", [b.op("unsqueeze", [y], {"axes": [0]}).result],
                                 {"axes": [0]}).result,
    "slice start": lambda b, y: b.op("slice", [y], {"starts": [1], "ends": [2]}).result,
    "slice step": lambda b, y: b.op("slice", [y], {"starts": [0], "ends": [9], "steps": [2]}).result,
    "expand": lambda b, y: b.op("expand", [y, b.const(np.array([4, 1, 1]))]).result,
    "cast": lambda b, y: b.op("cast", [b.op("cast", [y], {"to": "f64"}).result], {"to": "f32"}).result,
    "add broadcasting": lambda b, y: b.op("add", [y, b.const(np.zeros((4, 2, 3), np.float32))]).result,
    "add nonzero": lambda b, y: b.op("add", [y, b.const(np.array([0, 0, 1e-9], np.float32))]).result,
    "sub from zero": lambda b, y: b.op("sub", [b.const(np.zeros(3, np.float32)), y]).result,
    "div of one": lambda b, y: b.op("div", [b.const(np.ones(3, np.float32)), y]).result,
}


@pytest.mark.parametrize("case", NOT_IDENTITIES)
def test_op_that_changes_its_operand_is_kept(case):
    module = identity_module(NOT_IDENTITIES[case])
    ops_before = kinds(module)
    assert not canonicalize_and_check(module)
    assert kinds(module) == ops_before


def test_identity_producing_a_module_output_hands_its_name_to_the_source():
    module = Module()
    b = Builder(module)
    x = b.input("x", TensorType((2, 3), F32))
    y = b.op("tanh", [x]).result
    module.outputs = [b.op("transpose", [y], {"perm": [0, 1]}, names=["out"]).result]
    assert canonicalize_and_check(module)
    assert kinds(module) == ["tanh"]
    assert [v.name for v in module.outputs] == ["out"]


def test_identity_between_module_input_and_output_stays():
    module = Module()
    b = Builder(module)
    x = b.input("x", TensorType((2, 3), F32))
    module.outputs = [b.op("cast", [x], {"to": "f32"}, names=["out"]).result]
    assert not Canonicalize().run(module)
    assert kinds(module) == ["cast"]


def test_canonicalize_reaches_a_fixed_point_in_one_run():
    module = torch_view_chain((2, 3, 4))
    b = Builder(module)
    y = module.outputs[0]
    z = b.op("reshape", [y, b.op("shape", [y]).result]).result  # identity once y is static
    module.outputs = [b.op("tanh", [z]).result]
    assert canonicalize_and_check(module)
    assert "shape" not in kinds(module) and kinds(module).count("reshape") == 1
    assert not Canonicalize().run(module)


# --- canonicalize: LSTM bias ---------------------------------------------------------------


@pytest.mark.parametrize("direction", ["forward", "bidirectional"])
def test_lstm_bias_fold_keeps_outputs(direction):
    rng = np.random.default_rng(1)
    dirs, hidden, features = (2 if direction == "bidirectional" else 1), 4, 3
    module = Module()
    b = Builder(module)
    x = b.input("x", TensorType((5, 2, features), F64))
    bias = rng.standard_normal((dirs, 8 * hidden))
    lstm = b.op("lstm", [x, None, None, None], {
        "hidden_size": hidden, "direction": direction, "bias": bias,
        "w": [DenseMap(rng.standard_normal((4 * hidden, features))) for _ in range(dirs)],
        "r": [DenseMap(rng.standard_normal((4 * hidden, hidden))) for _ in range(dirs)],
    })
    module.outputs = list(lstm.results)
    assert canonicalize_and_check(module)
    folded = module.ops[0].attrs["bias"]
    np.testing.assert_array_equal(folded, bias[:, :4 * hidden] + bias[:, 4 * hidden:])
    assert not Canonicalize().run(module)


# --- dce -------------------------------------------------------------------------------


def test_dce_removes_unused_chains_and_keeps_inputs_and_outputs():
    module = Module()
    b = Builder(module)
    x = b.input("x", TensorType((2,), F32))
    b.input("unused", TensorType((3,), F32))
    dead = b.op("tanh", [b.op("exp", [x]).result]).result
    b.op("split", [dead], {"sizes": [1, 1]})
    kept = b.op("split", [x], {"sizes": [1, 1]})
    module.outputs = [b.op("neg", [kept.results[1]]).result]
    assert DeadCodeElimination().run(module)
    verify_module(module)
    assert kinds(module) == ["split", "neg"]
    assert [v.name for v in module.inputs] == ["x", "unused"]
    assert not DeadCodeElimination().run(module)


# --- pass manager ----------------------------------------------------------------------


def small_module() -> Module:
    return torch_view_chain((2, 3, 4))


@dataclass(frozen=True)
class BreakIR(Pass):
    """Test pass: removes the first op although it is used."""

    name: ClassVar[str] = "break-ir"
    doc: ClassVar[str] = "Make the module invalid."

    def run(self, module):
        del module.ops[0]
        return True


@dataclass(frozen=True)
class Raise(Pass):
    """Test pass: raises the exception it is given."""

    name: ClassVar[str] = "raise"
    doc: ClassVar[str] = "Fail."
    message: str = ""

    def run(self, module):
        if self.message == "zero":
            return 1 // 0
        raise PassError(self.message)


def test_run_works_in_place_and_returns_the_module():
    module = small_module()
    assert PassManager.parse("canonicalize, dce").run(module) is module
    assert kinds(module) == ["const", "reshape"]


def test_verify_failure_names_the_pass_and_its_position():
    with pytest.raises(VerifyError, match=r"invalid after pass 'break-ir' \(position 2 of 3\)"):
        PassManager([DeadCodeElimination(), BreakIR(), Canonicalize()]).run(small_module())


def test_verification_can_be_turned_off():
    PassManager([BreakIR()], verify_each=False).run(small_module())


def test_invalid_input_is_reported_before_any_pass():
    module = small_module()
    del module.ops[0]
    with pytest.raises(VerifyError, match="invalid before the pipeline runs"):
        PassManager([DeadCodeElimination()]).run(module)


def test_pass_error_names_the_pass_and_keeps_the_cause():
    with pytest.raises(PassError, match=r"^pass 'raise' \(position 2 of 2\) failed: rank too big$") as info:
        PassManager([DeadCodeElimination(), Raise("rank too big")]).run(small_module())
    assert isinstance(info.value.__cause__, PassError)


def test_unexpected_exception_in_a_pass_is_wrapped_with_its_cause():
    with pytest.raises(PassError, match=r"pass 'raise' \(position 1 of 1\) crashed with ZeroDivisionError") as info:
        PassManager([Raise("zero")]).run(small_module())
    assert isinstance(info.value.__cause__, ZeroDivisionError)


def test_timing_records_every_pass_and_renders_a_table():
    pm = PassManager.parse("canonicalize, dce, canonicalize", time_passes=True)
    pm.run(small_module())
    records = pm.timing.records
    assert [(r.step.pass_.name, r.step.position, r.changed) for r in records] == [
        ("canonicalize", 1, True), ("dce", 2, True), ("canonicalize", 3, False)]
    assert all(r.seconds >= 0 for r in records)
    console = Console(file=io.StringIO(), width=100)
    console.print(pm.timing_table())
    text = console.file.getvalue()
    assert "canonicalize" in text and "dce" in text and "total" in text


def test_timing_table_without_timing_is_an_error():
    with pytest.raises(PipelineError, match="time_passes=True"):
        PassManager.parse("dce").timing_table()


def test_custom_instrumentation_sees_every_hook_in_order():
    calls = []

    class Record(Instrumentation):
        def before_pipeline(self, module):
            calls.append("start")

        def before_pass(self, step, module):
            calls.append(f"before {step.pass_.name}")

        def after_pass(self, step, module, changed):
            calls.append(f"after {step.pass_.name} {changed}")

    PassManager.parse("dce, canonicalize", instrumentations=[Record()]).run(small_module())
    assert calls == ["start", "before dce", "after dce False",
                     "before canonicalize", "after canonicalize True"]


def test_print_ir_after_named_pass_only():
    stream = io.StringIO()
    PassManager.parse("canonicalize, dce", print_ir_after=["dce"], ir_stream=stream).run(small_module())
    text = stream.getvalue()
    assert text.count("// ----- IR after") == 1
    assert "IR after pass 'dce' (position 2 of 2) -----" in text
    assert "= shape(" not in text and "f32[2,12] = reshape(" in text


def test_print_ir_after_all_marks_unchanged_passes():
    stream = io.StringIO()
    PassManager.parse("dce, canonicalize", print_ir_after_all=True, ir_stream=stream).run(small_module())
    headers = [line for line in stream.getvalue().splitlines() if line.startswith("// ----- IR after")]
    assert headers == [
        "// ----- IR after pass 'dce' (position 1 of 2), unchanged -----",
        "// ----- IR after pass 'canonicalize' (position 2 of 2) -----",
    ]


def test_dump_ir_writes_input_and_every_pass_result(tmp_path):
    from tensorgate.ir.serialize import load_module

    module = small_module()
    PassManager.parse("canonicalize, dce", dump_ir=tmp_path / "ir").run(module)
    dumps = sorted(p.name for p in (tmp_path / "ir").glob("*.tgir"))
    assert dumps == ["00-input.tgir", "01-canonicalize.tgir", "02-dce.tgir"]
    assert kinds(load_module(tmp_path / "ir" / "00-input.tgir"))[:2] == ["shape", "const"]
    final = load_module(tmp_path / "ir" / "02-dce.tgir")
    verify_module(final)
    assert kinds(final) == kinds(module) == ["const", "reshape"]
