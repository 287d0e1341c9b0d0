"""The ``select-ranks`` pass: targets met, errors measured independently, determinism,
and the errors it gives for bad targets."""

from __future__ import annotations

import math

import numpy as np
import pytest

from tensorgate.errors import PassError, PipelineError
from tensorgate.ir.contraction.cost import CostModel
from tensorgate.ir.printer import print_module
from tensorgate.passes import PassManager
from tensorgate.passes.contraction.maps import search_map_schedule
from tensorgate.passes.select_ranks import decomposed_maps
from tensorgate.interpreter import run_module

from test_decomposition_pass import lstm_module

EXACT = "decompose{weights=all d=2 eps=0}, "


def decomposed(seed: int = 0, pipeline: str = EXACT):
    """A small LSTM (48 inputs, hidden 8) whose W and R are exact TT maps, and its dense weights."""
    module = lstm_module(48, 8, seed=seed)
    dense = {key: [m.to_dense() for m in module.ops_of("lstm")[0].attrs[key]] for key in ("w", "r")}
    PassManager.parse(pipeline.rstrip(", ")).run(module)
    return module, dense


def maps_params(module) -> int:
    return sum(m.params() for *_, m in decomposed_maps(module))


def weight_error(module, dense) -> float:
    op = module.ops_of("lstm")[0]
    lost = sum(np.sum((m.to_dense() - w) ** 2) for key in dense for m, w in zip(op.attrs[key], dense[key]))
    return math.sqrt(lost / sum(np.sum(w**2) for ws in dense.values() for w in ws))


def outputs(module, inputs):
    return [y for y in run_module(module, inputs, dtype=np.float64).values()]


def test_params_budget_is_met_and_a_bigger_budget_errs_less():
    errors = []
    for budget in (150, 400, 900):
        module, dense = decomposed()
        PassManager.parse(EXACT + f"select-ranks{{params={budget}}}").run(module)
        assert maps_params(module) <= budget
        errors.append(weight_error(module, dense))
    assert errors[0] > errors[1] > errors[2]


def test_compression_target():
    module, dense = decomposed()
    PassManager.parse("select-ranks{compression=4}").run(module)
    dense_size = sum(w.size for ws in dense.values() for w in ws)
    assert dense_size / maps_params(module) >= 4


def step_costs(module, cost: CostModel) -> int:
    """MACs or cycles of one vector through every decomposed map, each in its best order (searched afresh)."""
    total = 0
    for *_, linear_map in decomposed_maps(module):
        schedule = search_map_schedule(linear_map, 1, 1, cost, "never")
        total += (sum(s.cycles(cost.pes, cost.overhead) for s in schedule.schedules) if cost.objective == "cycles"
                  else schedule.macs_per_vector())
    return total


@pytest.mark.parametrize("target, cost", [("macs", CostModel("macs")), ("cycles", CostModel("cycles", 4, 2))])
def test_macs_and_cycles_budgets_are_met_and_a_bigger_one_errs_less(target, cost):
    errors, spent = [], []
    options = "" if target == "macs" else " pes=4 overhead=2"
    for budget in (600, 1200, 2400):
        module, dense = decomposed()
        PassManager.parse(f"select-ranks{{{target}={budget}{options}}}").run(module)
        spent.append(step_costs(module, cost))
        assert spent[-1] <= budget
        errors.append(weight_error(module, dense))
    assert errors[0] > errors[1] > errors[2] and spent[0] < spent[2]


@pytest.mark.parametrize("method", ["tt", "bt", "ht"])
def test_eps_bound_on_the_weights(method):
    module, dense = decomposed(pipeline=f"decompose{{method={method} weights=all d=2 eps=0}}")
    full = maps_params(module)
    PassManager.parse("select-ranks{eps=0.3}").run(module)
    assert weight_error(module, dense) <= 0.3 + 1e-9
    assert maps_params(module) < full


def test_eps_bound_on_the_outputs_with_calibration(tmp_path):
    module, _ = decomposed()
    inputs = {"x": np.random.default_rng(5).standard_normal((3, 2, 48)).astype(np.float32)}
    np.savez(tmp_path / "calibration.npz", **inputs)
    reference = outputs(module, inputs)
    PassManager.parse(f"select-ranks{{eps=0.05 calibration={tmp_path / 'calibration.npz'}}}").run(module)
    ours = outputs(module, inputs)
    lost = sum(np.sum((a - b) ** 2) for a, b in zip(ours, reference))
    assert math.sqrt(lost / sum(np.sum(b**2) for b in reference)) <= 0.05
    assert maps_params(module) < 2 * 48 * 32


def test_mixed_formats_and_determinism():
    pipeline = ("decompose{method=tt weights=input d=2 eps=0}, decompose{method=ht weights=recurrent d=2 eps=0}, "
                "select-ranks{params=500}")
    texts = []
    for _ in range(2):
        module = lstm_module(48, 8)
        PassManager.parse(pipeline).run(module)
        op = module.ops_of("lstm")[0]
        assert (op.attrs["w"][0].format, op.attrs["r"][0].format) == ("tt", "ht")
        assert maps_params(module) <= 500
        texts.append(print_module(module))
    assert texts[0] == texts[1]


def test_no_decomposed_maps_changes_nothing():
    module = lstm_module(48, 8)
    assert not PassManager.parse("select-ranks{params=10}").pipeline.passes[0].run(module)


@pytest.mark.parametrize("text,message", [
    ("select-ranks", "pass 'select-ranks': a target is required: params, compression, macs, cycles or eps"),
    ("select-ranks{params=5 eps=0.1}", "options params and eps are alternative targets; give one"),
    ("select-ranks{macs=5 cycles=9}", "options macs and cycles are alternative targets; give one"),
    ("select-ranks{eps=2}", "option 'eps' must be in (0, 1), got 2.0"),
    ("select-ranks{compression=0}", "option 'compression' must be positive, got 0.0"),
])
def test_bad_targets(text, message):
    with pytest.raises(PipelineError) as caught:
        PassManager.parse(text)
    assert message in str(caught.value)


@pytest.mark.parametrize("target,message", [
    ("params=10", "the budget of 10 parameters is below the"),
    ("macs=10", "the budget of 10 multiply-accumulates is below the"),
    ("cycles=10 pes=1", "the budget of 10 cycles is below the"),
    ("eps=0.01 max-rank=1", "eps=0.01 is out of reach: the error is still"),
    ("eps=0.1 calibration=missing.npz", "calibration file 'missing.npz' does not exist"),
])
def test_unreachable_targets(target, message):
    module, _ = decomposed()
    with pytest.raises(PassError) as caught:
        PassManager.parse(f"select-ranks{{{target}}}").run(module)
    assert message in str(caught.value)
