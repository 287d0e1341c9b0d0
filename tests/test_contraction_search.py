"""Search for contraction orders: the reference configuration, objectives that disagree,
precontraction, the heuristic beyond the exact limit, option errors."""

from __future__ import annotations

import numpy as np
import opt_einsum
import pytest

from tensorgate.errors import UsageError
from tensorgate.ir.contraction import CostModel, execute, naive_schedule, network_for_ht, network_for_tt
from tensorgate.passes.contraction import EXACT_LIMIT, opt_einsum_schedule, order_contractions


def fl_tt_network(batch: int = 1):
    """One gate of FL-TT-LSTM: W is 384 x 61056, TT ranks [1, 4, 4, 4, 1]."""
    return network_for_tt([4, 4, 4, 6], [16, 8, 9, 53], [1, 4, 4, 4, 1], batch=batch)


def test_fl_tt_gate_matches_opt_einsum_optimal_and_beats_naive_and_dense():
    network = fl_tt_network()
    result = order_contractions(network, CostModel("macs"), "never")
    shapes = [network.shape(i) for i in range(len(network.tensors))]
    _, info = opt_einsum.contract_path(network.einsum_equation(), *shapes, shapes=True, optimize="optimal")
    # every step of this network sums an index, so opt_einsum's FLOPs are 2 per MAC
    assert 2 * result.schedule.macs == info.opt_cost
    assert result.schedule.macs < network.dense_macs() < naive_schedule(network).macs
    assert result.method == "exact" and result.seconds < 1.0


@pytest.mark.parametrize("batch", [1, 16, 4096])
def test_fl_tt_gate_search_is_fast_and_never_above_naive_for_any_batch(batch):
    network = fl_tt_network(batch)
    for precontract in ("never", "auto"):
        result = order_contractions(network, CostModel("macs"), precontract)
        assert result.seconds < 1.0
        assert result.schedule.macs <= naive_schedule(network).macs
        assert result.schedule.macs <= opt_einsum_schedule(network, "optimal").macs


def test_memory_and_macs_objectives_pick_different_orders_when_they_disagree():
    network = network_for_tt([2, 4, 4], [2, 8, 8], [1, 4, 2, 1])
    by_macs = order_contractions(network, CostModel("macs"), "never").schedule
    by_memory = order_contractions(network, CostModel("memory"), "never").schedule
    assert by_macs.tree() != by_memory.tree()
    assert by_macs.macs < by_memory.macs and by_memory.peak < by_macs.peak


def test_cycles_objective_folds_weights_when_step_overhead_dominates():
    network = network_for_tt([2, 2, 2], [2, 2, 2], [1, 1, 2, 1])
    by_macs = order_contractions(network, CostModel("macs"), "auto").schedule
    model = CostModel("cycles", pes=16, overhead=20)
    by_cycles = order_contractions(network, model, "auto").schedule
    assert len(by_cycles.run_steps) < len(by_macs.run_steps)
    assert by_cycles.cycles(16, 20) < by_macs.cycles(16, 20) and by_macs.macs < by_cycles.macs
    assert by_cycles.params > by_macs.params


def test_auto_precontracts_only_where_it_lowers_the_per_step_cost():
    paying = fl_tt_network()
    never = order_contractions(paying, CostModel("macs"), "never").schedule
    auto = order_contractions(paying, CostModel("macs"), "auto").schedule
    assert auto.compile_steps and auto.macs < never.macs and auto.params > never.params
    not_paying = network_for_tt([4, 4], [16, 16], [1, 2, 1])
    never = order_contractions(not_paying, CostModel("macs"), "never").schedule
    auto = order_contractions(not_paying, CostModel("macs"), "auto").schedule
    assert not auto.compile_steps and auto == never


def test_always_precontracts_all_weights_into_one_dense_step():
    network = fl_tt_network()
    always = order_contractions(network, CostModel("macs"), "always").schedule
    assert len(always.run_steps) == 1 and always.macs == network.dense_macs()
    # the compile-time folding itself takes the cheapest order: never worse than left to right
    assert always.compile_macs <= sum(s.macs for s in naive_schedule(network).steps[:-1])


def heuristic_networks():
    tt = network_for_tt([2] * 11, [2] * 11, [1] + [2] * 10 + [1], batch=2)
    tree = [[[0, 1], 2], [[3, 4], 5]]
    ranks = {(k,): 2 for k in range(6)} | {(0, 1): 3, (0, 1, 2): 2, (3, 4): 3, (3, 4, 5): 2}
    ht = network_for_ht([2, 3, 2, 2, 3, 2], [3, 2, 2, 3, 2, 2], tree, ranks, batch=1)
    return [tt, ht]


@pytest.mark.parametrize("network", heuristic_networks(), ids=["tt-d11", "ht-d6"])
@pytest.mark.parametrize("objective", ["macs", "memory", "cycles"])
@pytest.mark.parametrize("precontract", ["never", "auto", "always"])
def test_beyond_the_exact_limit_the_heuristic_is_correct_and_no_worse_than_its_candidates(
        network, objective, precontract):
    assert len(network.tensors) > EXACT_LIMIT
    cost = CostModel(objective)
    result = order_contractions(network, cost, precontract)
    assert result.method == "heuristic"
    if precontract == "never":
        for other in (naive_schedule(network), opt_einsum_schedule(network, "greedy")):
            assert cost.key(result.schedule) <= cost.key(other)
    rng = np.random.default_rng(4)
    arrays = {t.name: rng.standard_normal(network.shape(i)) for i, t in enumerate(network.tensors)}
    operands = [arrays[t.name] for t in network.tensors]
    expected = opt_einsum.contract(network.einsum_equation(), *operands, optimize="greedy")
    np.testing.assert_allclose(execute(result.schedule, arrays), expected, rtol=1e-9, atol=1e-9)


def test_bad_options_are_usage_errors_naming_the_choices():
    with pytest.raises(UsageError, match="cost 'flops' is not one of macs, memory, cycles"):
        CostModel("flops")
    with pytest.raises(UsageError, match="pes >= 1"):
        CostModel("cycles", pes=0)
    with pytest.raises(UsageError, match="precontract 'sometimes' is not one of auto, never, always"):
        order_contractions(fl_tt_network(), precontract="sometimes")
