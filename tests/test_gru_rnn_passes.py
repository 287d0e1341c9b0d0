"""The float passes on GRU and RNN modules: decompose (exact decompositions keep the
outputs, for every method, weights choice, gate grouping, direction and
``linear_before_reset``), canonicalize (bias folding where it is valid), select-ranks,
order-contractions and finetune, and the text form of what they make."""

from __future__ import annotations

import numpy as np
import pytest
from decomposed import classifier_module, random_feeds, random_map, recurrent_module

from tensorgate.ir.linear_map import DenseMap
from tensorgate.ir.parser import parse_module
from tensorgate.ir.printer import module_tensors, print_module
from tensorgate.ir.stats import model_stats, module_maps, recurrent_macs_per_step
from tensorgate.ir.tensor_formats import TensorizedMap, TTMap
from tensorgate.ir.verifier import verify_module
from tensorgate.interpreter import run_module
from tensorgate.passes import PassManager
from tensorgate.passes.finetune import Finetune, finetune

H, I = 6, 8
KINDS = {"gru_lbr0": ("gru", {"linear_before_reset": 0}), "gru_lbr1": ("gru", {"linear_before_reset": 1}),
         "rnn": ("rnn", {})}


def dense_module(case: str, direction: str = "forward", separate: bool = False, seed: int = 0, **kwargs):
    """One dense ``gru`` or ``rnn`` op over ``x[5, 3, I]`` (W/R stacked or per gate)."""
    kind, attrs = KINDS[case]
    rng = np.random.default_rng(seed)
    gates = 3 if kind == "gru" else 1
    dirs = 2 if direction == "bidirectional" else 1
    count, rows = (gates * dirs, H) if separate else (dirs, gates * H)

    def maps(columns):
        return [DenseMap((rng.standard_normal((rows, columns)) / np.sqrt(columns)).astype(np.float32))
                for _ in range(count)]

    module = recurrent_module(kind, maps(I), maps(H), H, I, direction=direction, seed=seed, **attrs, **kwargs)
    verify_module(module)
    return module


def outputs(module, seed: int = 1) -> dict[str, np.ndarray]:
    return run_module(module, random_feeds(module, np.random.default_rng(seed)), dtype=np.float64)


def assert_same_outputs(module, expected, tolerance=1e-9):
    for name, got in outputs(module).items():
        np.testing.assert_allclose(got, expected[name], rtol=tolerance, atol=tolerance, err_msg=name)


@pytest.mark.parametrize("method", ["tt", "bt", "ht"])
@pytest.mark.parametrize("weights, gates, direction", [
    ("input", "stacked", "forward"),
    ("all", "separate", "bidirectional"),
    ("recurrent", "stacked", "reverse"),
    ("all", "stacked", "bidirectional"),
])
@pytest.mark.parametrize("case", KINDS)
def test_exact_decomposition_keeps_the_outputs(case, method, weights, gates, direction, monkeypatch):
    """No truncation: the decomposed module computes what the dense one does (in float64,
    to the decomposition's rounding), and the runtime never rebuilds W or R."""
    module = dense_module(case, direction, separate=gates == "stacked", sequence_lens=True, initial_h=True, clip=2.0)
    expected = outputs(module)
    PassManager.parse(f"decompose{{method={method} weights={weights} gates={gates} d=2 eps=0}}").run(module)
    (op,) = module.ops
    per_dir = 3 if op.kind == "gru" and gates == "separate" else 1
    for key in ("w", "r"):
        decomposed = weights == "all" or key == {"input": "w", "recurrent": "r"}[weights]
        assert all(isinstance(m, TensorizedMap) == decomposed for m in op.attrs[key])
        if decomposed:
            assert len(op.attrs[key]) == per_dir * (2 if direction == "bidirectional" else 1)
    monkeypatch.setattr(TensorizedMap, "to_dense", lambda self: pytest.fail("the runtime rebuilt a map"))
    assert_same_outputs(module, expected, 1e-5)  # the maps hold float32 cores


def test_gru_map_names_per_gate_and_direction():
    module = dense_module("gru_lbr1", "bidirectional")
    PassManager.parse("decompose{weights=all gates=separate d=2 max-rank=2 dense-fallback=false}").run(module)
    names = [info.name for info in module_maps(module)]
    assert names[:6] == [f"Y.w.{d}.{g}" for d in ("fwd", "bwd") for g in ("z", "r", "h")]
    rnn = dense_module("rnn", "reverse")
    assert [info.name for info in module_maps(rnn)] == ["Y.w.rev", "Y.r.rev"]


def test_truncated_tt_gru_text_round_trips_and_counts_parameters():
    module = dense_module("gru_lbr0")
    dense_params = model_stats(module).params_dense
    PassManager.parse("decompose{method=tt weights=all max-rank=2 d=2 dense-fallback=false}").run(module)
    stats = model_stats(module)
    assert stats.params_dense == dense_params and stats.params_compressed < dense_params
    parsed = parse_module(print_module(module), module_tensors(module))
    verify_module(parsed)
    assert print_module(parsed) == print_module(module)
    assert isinstance(parsed.ops[0].attrs["w"][0], TTMap)


@pytest.mark.parametrize("case, before, after", [("gru_lbr0", 6, 3), ("gru_lbr1", 6, 6), ("rnn", 2, 1)])
def test_canonicalize_folds_the_bias_where_the_gates_see_only_the_sum(case, before, after):
    """A GRU with linear_before_reset multiplies R_h·h + Rb_h by the reset gate, so its
    bias keeps Wb and Rb apart; the others fold to Wb + Rb and compute the same."""
    module = dense_module(case, "bidirectional")
    expected = outputs(module)
    assert module.ops[0].attrs["bias"].shape == (2, before * H)
    changed = PassManager.parse("canonicalize").run(module).ops[0].attrs["bias"].shape
    assert changed == (2, after * H)
    assert_same_outputs(module, expected, 1e-6)  # Wb + Rb is rounded to float32 once
    assert print_module(parse_module(print_module(module), module_tensors(module))) == print_module(module)


def test_select_ranks_meets_a_parameter_budget_on_a_gru():
    module = dense_module("gru_lbr1", "bidirectional")
    PassManager.parse("decompose{method=tt weights=all d=2 eps=0}").run(module)
    exact = model_stats(module).params_compressed
    PassManager.parse("select-ranks{params=600}").run(module)
    decomposed = sum(info.map.params() for info in module_maps(module) if isinstance(info.map, TensorizedMap))
    assert decomposed <= 600 < exact


def test_order_contractions_costs_the_input_map_over_all_steps():
    """The GRU's W covers every time step in one application (5 steps here), R one step."""
    module = dense_module("gru_lbr1")
    PassManager.parse("decompose{method=tt weights=all d=2 max-rank=3 dense-fallback=false}").run(module)
    expected = outputs(module)
    PassManager.parse("order-contractions{cost=macs}").run(module)
    (op,) = module.ops
    w, r = op.attrs["w"][0], op.attrs["r"][0]
    assert w.schedule is not None and r.schedule is not None
    assert (w.schedule.time_steps, r.schedule.time_steps) == (5, 1)
    assert_same_outputs(module, expected, 1e-9)
    assert recurrent_macs_per_step(op) == w.macs() + r.macs()


def test_a_stacked_decomposed_r_without_linear_before_reset_runs_twice_per_step():
    """R_h reads r ⊙ h there, a second application of the stacked map; the MACs say so."""
    module = dense_module("gru_lbr0")
    PassManager.parse("decompose{method=tt weights=recurrent d=2 max-rank=2 dense-fallback=false}").run(module)
    (op,) = module.ops
    assert recurrent_macs_per_step(op) == op.attrs["w"][0].macs() + 2 * op.attrs["r"][0].macs()


@pytest.mark.parametrize("kind", ["gru", "rnn"])
def test_finetune_trains_the_cores_of_a_decomposed_classifier(tmp_path, kind):
    """One seeded epoch changes the cores, keeps every format, and is repeatable."""
    rng = np.random.default_rng(5)
    gates = 3 if kind == "gru" else 1
    extra = {"linear_before_reset": 1} if kind == "gru" else {"activations": ["Relu"]}
    module = classifier_module([random_map("tt", rng, (gates * 2, 4), (2, 4))],
                               [random_map("dense", rng, (gates * 8,), (8,))], 8, 8, 4, kind=kind, seq=4, **extra)
    x = rng.standard_normal((4, 48, 8)).astype(np.float32)
    np.savez(tmp_path / "data.npz", x=x, labels=rng.integers(0, 4, 48))

    def trained():
        copy = module.copy()
        finetune(copy, Finetune(data=tmp_path / "data.npz", epochs=1, batch=16, lr=0.05))
        return copy

    first, second = trained(), trained()
    old, new = module.ops[0].attrs["w"][0], first.ops[0].attrs["w"][0]
    assert isinstance(new, TTMap) and new.meta()["ranks"] == old.meta()["ranks"]
    assert any(not np.array_equal(a, b) for a, b in zip(old.tensors().values(), new.tensors().values()))
    assert print_module(first) == print_module(second)
    verify_module(first)
