"""Tensor networks of TT / BT / HT maps, schedule invariants, serialization and execution."""

from __future__ import annotations

import itertools
import json

import numpy as np
import pytest

from tensorgate.errors import ExecutionError, VerifyError
from tensorgate.ir.contraction import (
    COMPILE, RUN, CostModel, NetworkTensor, Schedule, Step, TensorNetwork, execute, fold_weights, naive_schedule,
    network_for_bt, network_for_ht, network_for_tt,
)
from tensorgate.passes.contraction import order_contractions


def apply_network(network: TensorNetwork, weights: dict[str, np.ndarray], x: np.ndarray) -> np.ndarray:
    """``y[B, M]`` from ``x[B, N]`` by one einsum over the whole network (arrays reshaped to its labels)."""
    network = network.with_batch(len(x))
    arrays = {**weights, network.input_name: x}
    operands = [arrays[t.name].reshape(network.shape(i)) for i, t in enumerate(network.tensors)]
    return np.einsum(network.einsum_equation(), *operands).reshape(len(x), -1)


def row_major(index: tuple[int, ...], sizes: list[int]) -> int:
    return int(np.ravel_multi_index(index, sizes))


def test_tt_network_is_the_tt_matrix_product():
    m, n, ranks = [2, 3, 2], [3, 2, 2], [1, 2, 3, 1]
    rng = np.random.default_rng(0)
    cores = [rng.standard_normal((ranks[k], m[k], n[k], ranks[k + 1])) for k in range(3)]
    dense = np.zeros((12, 12))
    for rows in itertools.product(*map(range, m)):
        for cols in itertools.product(*map(range, n)):
            chain = np.eye(1)
            for k in range(3):
                chain = chain @ cores[k][:, rows[k], cols[k], :]
            dense[row_major(rows, m), row_major(cols, n)] = chain[0, 0]
    network = network_for_tt(m, n, ranks, batch=2)
    weights = {f"core{k}": core for k, core in enumerate(cores)}
    x = rng.standard_normal((2, 12))
    np.testing.assert_allclose(apply_network(network, weights, x), x @ dense.T, rtol=1e-12)
    assert network.dense_macs() == 2 * 12 * 12
    assert network.weight_params() == sum(core.size for core in cores)


@pytest.mark.parametrize("blocks", [1, 3])
def test_bt_network_is_the_sum_of_tucker_blocks(blocks):
    m, n, ranks = [2, 3], [3, 2], [2, 3]
    rng = np.random.default_rng(1)
    cores = rng.standard_normal((blocks, *ranks))
    factors = [rng.standard_normal((blocks, m[k], n[k], ranks[k])) for k in range(2)]
    dense = np.zeros((6, 6))
    for b, i1, i2, j1, j2 in itertools.product(range(blocks), range(2), range(3), range(3), range(2)):
        term = factors[0][b, i1, j1, :, None] * factors[1][b, i2, j2, None, :] * cores[b]
        dense[row_major((i1, i2), m), row_major((j1, j2), n)] += term.sum()
    network = network_for_bt(m, n, ranks, blocks=blocks)
    weights = {"core": cores, "factor0": factors[0], "factor1": factors[1]}
    x = rng.standard_normal((1, 6))
    np.testing.assert_allclose(apply_network(network, weights, x), x @ dense.T, rtol=1e-12)
    assert ("blk" in network.sizes) == (blocks > 1)


def test_ht_network_is_the_hierarchical_tucker_matrix():
    m, n = [2, 3, 2], [2, 2, 3]
    tree = [0, [1, 2]]
    ranks = {(0,): 2, (1,): 3, (2,): 2, (1, 2): 2}
    rng = np.random.default_rng(2)
    leaves = {k: rng.standard_normal((m[k], n[k], ranks[(k,)])) for k in range(3)}
    root = rng.standard_normal((2, 2))          # (h_left, h_right), root rank 1 dropped
    inner = rng.standard_normal((2, 3, 2))      # (h_t, h_left, h_right)
    # frames: rows are the (m_k, n_k) pairs of the node's modes, row-major; columns its rank
    frame = {k: leaves[k].reshape(m[k] * n[k], -1) for k in range(3)}
    frame_12 = np.einsum("ia,jb,tab->ijt", frame[1], frame[2], inner).reshape(-1, 2)
    full = np.einsum("ia,jb,ab->ij", frame[0], frame_12, root)
    dense = full.reshape(m[0], n[0], m[1], n[1], m[2], n[2]).transpose(0, 2, 4, 1, 3, 5).reshape(12, 12)
    network = network_for_ht(m, n, tree, ranks, batch=1)
    assert [t.name for t in network.tensors] == ["transfer0", "leaf0", "transfer2", "leaf1", "leaf2", "x"]
    weights = {"transfer0": root, "transfer2": inner, **{f"leaf{k}": leaves[k] for k in range(3)}}
    x = rng.standard_normal((1, 12))
    np.testing.assert_allclose(apply_network(network, weights, x), x @ dense.T, rtol=1e-12)


@pytest.mark.parametrize("build, message", [
    (lambda: network_for_tt([2, 2], [2, 2], [2, 2, 1]), "TT ranks"),
    (lambda: network_for_tt([2, 2], [2], [1, 2, 1]), "same non-zero length"),
    (lambda: network_for_bt([2, 2], [2, 2], [2]), "2 core ranks"),
    (lambda: network_for_ht([2, 2], [2, 2], [0, 0], {(0,): 1}), "each mode"),
    (lambda: network_for_ht([2, 2], [2, 2], [0, 1], {(0,): 1}), "lack node (1,)"),
    (lambda: network_for_ht([2, 2], [2, 2], [0, 1], {(0,): 1, (1,): 1, (0, 1): 2}), "root rank"),
    (lambda: network_for_ht([2, 2], [2, 2], [0, [1]], {}), "neither a mode nor a pair"),
    (lambda: TensorNetwork([NetworkTensor("w", ("a", "c")), NetworkTensor("x", ("b", "a"))],
                           {"a": 2, "b": 1, "c": 3}, ("b",)), "appear in one tensor only"),
    (lambda: TensorNetwork([NetworkTensor("w", ("a", "a")), NetworkTensor("x", ("b", "a"))],
                           {"a": 2, "b": 1}, ("b",)), "repeats a label"),
    (lambda: TensorNetwork([NetworkTensor("w", ("a",)), NetworkTensor("x", ("b", "a"))],
                           {"a": 0, "b": 1}, ("b",)), "positive integer size"),
    (lambda: TensorNetwork([NetworkTensor("w", ("a",)), NetworkTensor("v", ("b", "a"))],
                           {"a": 2, "b": 1}, ("b",)), "no input tensor"),
])
def test_malformed_networks_are_rejected_with_a_sentence(build, message):
    with pytest.raises(VerifyError, match="tensor network") as info:
        build()
    assert message in str(info.value)


def fl_tt_network(batch: int = 1) -> TensorNetwork:
    return network_for_tt([4, 4, 4, 6], [16, 8, 9, 53], [1, 4, 4, 4, 1], batch=batch)


def test_naive_order_rebuilds_w_then_multiplies():
    schedule = naive_schedule(fl_tt_network())
    assert [(s.lhs, s.rhs) for s in schedule.steps] == [(0, 1), (5, 2), (6, 3), (4, 7)]
    assert schedule.steps[2].size == 384 * 61056 and all(s.stage == RUN for s in schedule.steps)
    assert schedule.steps[-1].contracted == ("n1", "n2", "n3", "n4")


def test_steps_read_the_input_side_as_lhs_and_end_in_output_order():
    schedule = order_contractions(fl_tt_network(), CostModel("macs"), "never").schedule
    for step in schedule.steps:
        assert step.lhs == 4 or step.lhs >= 5
    assert schedule.steps[-1].output == ("b", "m1", "m2", "m3", "m4")
    assert schedule.peak == max(s.size for s in schedule.steps)


def test_costs_scale_with_the_batch_except_weight_only_steps():
    network = network_for_tt([2, 3], [3, 2], [1, 2, 1], batch=1)
    schedule = naive_schedule(network)
    wide = schedule.with_batch(10)
    assert [s.lhs for s in wide.steps] == [s.lhs for s in schedule.steps]
    assert wide.steps[0].macs == schedule.steps[0].macs            # core0 * core1: no batch label
    assert wide.steps[1].macs == 10 * schedule.steps[1].macs


def test_precontraction_moves_weight_steps_to_compile_time_and_stores_their_result():
    network = fl_tt_network()
    never = order_contractions(network, CostModel("macs"), "never").schedule
    always = order_contractions(network, CostModel("macs"), "always").schedule
    assert not never.compile_steps and never.params == network.weight_params()
    assert [s.stage for s in always.steps] == [COMPILE, COMPILE, COMPILE, RUN]
    assert always.params == 384 * 61056 and always.macs == network.dense_macs()
    assert always.stored_operands() == [7]


def test_schedule_round_trips_through_json():
    schedule = order_contractions(fl_tt_network(batch=3), CostModel("macs"), "auto").schedule
    assert Schedule.from_dict(json.loads(json.dumps(schedule.to_dict()))) == schedule


def edited(schedule: Schedule, index: int, **changes) -> dict:
    data = schedule.to_dict()
    step = Step.from_list(data["steps"][index])
    fields = {**step.__dict__, **changes}
    data["steps"][index] = Step(**fields).to_list()
    return data


@pytest.mark.parametrize("index, changes, message", [
    (0, {"macs": 1}, "costs"),
    (0, {"size": 1}, "costs"),
    (1, {"output": ("b",)}, "result labels"),
    (1, {"contracted": ()}, "contracted labels"),
    (1, {"lhs": 0}, "not two distinct available operands"),
    (1, {"stage": "later"}, "neither 'run' nor 'compile'"),
    (1, {"stage": COMPILE}, "compile step may only read weights"),
])
def test_inconsistent_schedules_are_rejected(index, changes, message):
    schedule = naive_schedule(network_for_tt([2, 3], [3, 2], [1, 2, 1]))
    with pytest.raises(VerifyError, match=message):
        Schedule.from_dict(edited(schedule, index, **changes))


def test_schedule_must_end_in_the_output_order():
    schedule = naive_schedule(network_for_tt([2, 3], [3, 2], [1, 2, 1]))
    with pytest.raises(VerifyError, match="the network's output is"):
        Schedule.from_dict(edited(schedule, 1, output=("m1", "b", "m2")))
    with pytest.raises(VerifyError, match="pairwise steps"):
        Schedule(schedule.network, schedule.steps[:1])
    with pytest.raises(VerifyError, match="malformed"):
        Step.from_list([0, 1, []])


def test_execute_takes_any_batch_and_flat_arrays():
    network = network_for_tt([2, 3], [3, 2], [1, 2, 1], batch=1)
    rng = np.random.default_rng(3)
    weights = {"core0": rng.standard_normal(12).reshape(1, 2, 3, 2), "core1": rng.standard_normal(12)}
    x = rng.standard_normal((7, 6))
    schedule = order_contractions(network).schedule
    y = execute(schedule, {**weights, "x": x})
    assert y.shape == (7, 2, 3)
    np.testing.assert_allclose(y.reshape(7, 6), apply_network(network, weights, x))


def test_execute_names_missing_or_misshapen_tensors():
    network = network_for_tt([2, 3], [3, 2], [1, 2, 1])
    schedule = naive_schedule(network)
    good = {"core0": np.ones((2, 3, 2)), "core1": np.ones((2, 3, 2)), "x": np.ones((1, 6))}
    with pytest.raises(ExecutionError, match="no array given for tensor 'core1'"):
        execute(schedule, {"core0": good["core0"], "x": good["x"]})
    with pytest.raises(ExecutionError, match="tensor 'x' of shape \\(1, 5\\)"):
        execute(schedule, {**good, "x": np.ones((1, 5))})
    stored = fold_weights(schedule, good)
    np.testing.assert_array_equal(execute(schedule, {"x": good["x"]}, stored), execute(schedule, good))


def test_describe_lists_every_step_with_its_index_sets_and_cost():
    schedule = order_contractions(fl_tt_network(), CostModel("macs"), "never").schedule
    lines = schedule.describe()
    assert len(lines) == 4
    assert lines[0].startswith("run") and "x * core3 sum {n4} -> [b,n1,n2,n3,r3,m4]" in lines[0]
    assert lines[-1].endswith(f"macs={schedule.steps[-1].macs} size=384")
