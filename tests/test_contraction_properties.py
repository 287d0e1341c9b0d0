"""Property tests of contraction ordering over random TT / BT / HT networks.

* every schedule (every objective, every precontraction mode) computes what one
  ``np.einsum`` over the whole network computes, within the float32 rounding bound;
* for ``cost=macs`` the chosen MACs equal the optimum of opt_einsum's exhaustive
  dynamic program (outer products included) and are never above opt_einsum's
  ``optimal`` path nor the naive order; for ``cost=memory`` the peak equals the
  optimum of opt_einsum's size-minimizing dynamic program.
"""

from __future__ import annotations

import numpy as np
import opt_einsum
from hypothesis import given, settings
from hypothesis import strategies as st

from tensorgate.ir.contraction import (
    OBJECTIVES, PRECONTRACT_MODES, CostModel, TensorNetwork, execute, fold_weights, naive_schedule, network_for_bt,
    network_for_ht, network_for_tt,
)
from tensorgate.passes.contraction import opt_einsum_schedule, order_contractions

FLOAT32_UNIT_ROUNDOFF = np.finfo(np.float32).eps / 2


@st.composite
def factors(draw, d):
    return [draw(st.integers(1, 5)) for _ in range(d)]


@st.composite
def tt_networks(draw):
    d = draw(st.integers(2, 4))
    ranks = [1] + [draw(st.integers(1, 4)) for _ in range(d - 1)] + [1]
    return network_for_tt(draw(factors(d)), draw(factors(d)), ranks, batch=draw(st.integers(1, 3)))


@st.composite
def bt_networks(draw):
    d = draw(st.integers(2, 4))
    ranks = [draw(st.integers(1, 3)) for _ in range(d)]
    return network_for_bt(draw(factors(d)), draw(factors(d)), ranks, blocks=draw(st.integers(1, 3)),
                          batch=draw(st.integers(1, 3)))


@st.composite
def binary_trees(draw, modes):
    if len(modes) == 1:
        return modes[0]
    cut = draw(st.integers(1, len(modes) - 1))
    return [draw(binary_trees(modes[:cut])), draw(binary_trees(modes[cut:]))]


def tree_nodes(tree) -> list[tuple[int, ...]]:
    """Every node of an HT tree as its tuple of modes, root last."""
    if isinstance(tree, int):
        return [(tree,)]
    left, right = tree_nodes(tree[0]), tree_nodes(tree[1])
    return left + right + [left[-1] + right[-1]]


@st.composite
def ht_networks(draw):
    d = draw(st.integers(2, 4))
    tree = draw(binary_trees(list(range(d))))
    ranks = {node: draw(st.integers(1, 3)) for node in tree_nodes(tree)[:-1]}
    return network_for_ht(draw(factors(d)), draw(factors(d)), tree, ranks, batch=draw(st.integers(1, 3)))


networks = st.one_of(tt_networks(), bt_networks(), ht_networks())


def random_arrays(network: TensorNetwork, seed: int) -> dict[str, np.ndarray]:
    rng = np.random.default_rng(seed)
    return {t.name: rng.standard_normal(network.shape(i)) for i, t in enumerate(network.tensors)}


def einsum_all(network: TensorNetwork, arrays: dict[str, np.ndarray]) -> np.ndarray:
    return np.einsum(network.einsum_equation(), *(arrays[t.name] for t in network.tensors))


def float32_error_bound(schedule, network, arrays) -> np.ndarray:
    """Forward error bound of the scheduled float32 contraction, elementwise.

    Rounding the operands to float32 costs ``u`` per tensor; a step that sums ``K``
    products costs at most ``(K + 1) u`` relative to the same contraction of absolute
    values; the errors of the steps add up (to first order).
    """
    steps = sum(network.size_of(step.contracted) + 1 for step in schedule.steps)
    magnitude = einsum_all(network, {name: np.abs(a) for name, a in arrays.items()})
    return 1.01 * (steps + len(network.tensors)) * FLOAT32_UNIT_ROUNDOFF * magnitude


@settings(max_examples=60, deadline=None)
@given(network=networks, seed=st.integers(0, 2**16),
       objective=st.sampled_from(OBJECTIVES), precontract=st.sampled_from(PRECONTRACT_MODES))
def test_every_schedule_computes_the_whole_network_einsum(network, seed, objective, precontract):
    arrays = random_arrays(network, seed)
    expected = einsum_all(network, arrays)
    schedule = order_contractions(network, CostModel(objective, pes=4, overhead=3), precontract).schedule
    single = {name: a.astype(np.float32) for name, a in arrays.items()}
    result = execute(schedule, single)
    assert result.dtype == np.float32 and result.shape == expected.shape
    bound = float32_error_bound(schedule, network, arrays)
    assert np.all(np.abs(result - expected) <= bound)
    stored = fold_weights(schedule, {name: a for name, a in single.items() if name != network.input_name})
    np.testing.assert_array_equal(execute(schedule, {network.input_name: single[network.input_name]}, stored),
                                  result)


@settings(max_examples=60, deadline=None)
@given(network=networks, seed=st.integers(0, 2**16))
def test_naive_schedule_computes_the_whole_network_einsum(network, seed):
    arrays = random_arrays(network, seed)
    np.testing.assert_allclose(execute(naive_schedule(network), arrays), einsum_all(network, arrays),
                               rtol=1e-10, atol=1e-10)


@settings(max_examples=80, deadline=None)
@given(network=networks)
def test_macs_objective_matches_opt_einsum_optimum(network):
    chosen = order_contractions(network, CostModel("macs"), "never").schedule
    exhaustive = opt_einsum.paths.DynamicProgramming(minimize="flops", search_outer=True, cost_cap=False)
    assert chosen.macs == opt_einsum_schedule(network, exhaustive).macs
    assert chosen.macs <= opt_einsum_schedule(network, "optimal").macs
    assert chosen.macs <= naive_schedule(network).macs
    folded = order_contractions(network, CostModel("macs"), "auto").schedule
    assert folded.macs <= chosen.macs


@settings(max_examples=80, deadline=None)
@given(network=networks)
def test_memory_objective_matches_opt_einsum_smallest_peak(network):
    chosen = order_contractions(network, CostModel("memory"), "never").schedule
    exhaustive = opt_einsum.paths.DynamicProgramming(minimize="size", search_outer=True, cost_cap=False)
    assert chosen.peak == opt_einsum_schedule(network, exhaustive).peak


@settings(max_examples=40, deadline=None)
@given(network=networks, objective=st.sampled_from(OBJECTIVES), precontract=st.sampled_from(PRECONTRACT_MODES))
def test_schedules_round_trip_through_plain_data(network, objective, precontract):
    schedule = order_contractions(network, CostModel(objective), precontract).schedule
    data = schedule.to_dict()
    assert _is_plain(data)
    assert type(schedule).from_dict(data) == schedule


def _is_plain(value) -> bool:
    if isinstance(value, dict):
        return all(isinstance(k, str) and _is_plain(v) for k, v in value.items())
    if isinstance(value, list):
        return all(_is_plain(v) for v in value)
    return isinstance(value, (int, str)) and not isinstance(value, bool)
