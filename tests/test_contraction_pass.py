"""The order-contractions pass: schedules attached to decomposed maps, shown in the IR
text, checked on parsing, executed by the runtime, reported per map."""

from __future__ import annotations

import numpy as np
import pytest

from tensorgate.errors import ParseError, VerifyError
from tensorgate.ir import F32, DenseMap, Module, TensorType, verify_module
from tensorgate.ir.builder import Builder
from tensorgate.ir.parser import parse_module
from tensorgate.ir.printer import module_tensors, print_module
from tensorgate.ir.tensor_formats import BTMap, HTMap, TTMap, balanced_tree
from tensorgate.passes import PASSES, PassManager
from tensorgate.passes.order_contractions import OrderContractions
from tensorgate.ir.contraction import CostModel, MapSchedule, map_networks, naive_schedule
from tensorgate.passes.contraction import search_map_schedule
from tensorgate.ir.stats import contraction_report
from tensorgate.interpreter import run_module

HIDDEN, FEATURES, STEPS = 6, 24, 5


def tt_map(rng, out_factors, in_factors, ranks) -> TTMap:
    shapes = [(ranks[k], m, n, ranks[k + 1]) for k, (m, n) in enumerate(zip(out_factors, in_factors))]
    return TTMap.from_cores([rng.standard_normal(s).astype(np.float32) * 0.3 for s in shapes])


def bt_map(rng, out_factors, in_factors, rank, blocks) -> BTMap:
    return BTMap.from_blocks([
        (rng.standard_normal([rank] * len(out_factors)).astype(np.float32) * 0.3,
         [rng.standard_normal((m, n, rank)).astype(np.float32) * 0.3 for m, n in zip(out_factors, in_factors)])
        for _ in range(blocks)])


def ht_map(rng, out_factors, in_factors, rank) -> HTMap:
    tree = balanced_tree(len(out_factors))
    leaves = [rng.standard_normal((m, n, rank)).astype(np.float32) * 0.3 for m, n in zip(out_factors, in_factors)]
    transfers = {"": rng.standard_normal((1, rank, rank)).astype(np.float32) * 0.3}
    transfers.update({path: rng.standard_normal((rank, rank, rank)).astype(np.float32) * 0.3 for path in ("0", "1")})
    return HTMap.from_tree(tree, leaves, transfers)


def lstm_module(seq=STEPS) -> Module:
    """One LSTM layer, separate gates: W maps in TT, BT, HT, dense; R maps TT."""
    rng = np.random.default_rng(0)
    module = Module("lstm")
    builder = Builder(module)
    x = builder.input("x", TensorType((seq, "batch", FEATURES), F32))
    w = [tt_map(rng, [2, 3], [4, 6], [1, 3, 1]), bt_map(rng, [2, 3], [4, 6], 2, 2),
         ht_map(rng, [1, 2, 1, 3], [2, 2, 2, 3], 2), DenseMap(rng.standard_normal((HIDDEN, FEATURES)).astype(np.float32))]
    r = [tt_map(rng, [2, 3], [3, 2], [1, 2, 1]) for _ in range(4)]
    op = builder.op("lstm", [x], {"hidden_size": HIDDEN, "w": w, "r": r,
                                  "bias": rng.standard_normal((1, 8 * HIDDEN)).astype(np.float32)}, loc="LSTM_0")
    module.outputs = [op.results[1]]
    verify_module(module)
    return module


def run(module: Module) -> np.ndarray:
    x = np.random.default_rng(1).standard_normal((STEPS, 3, FEATURES)).astype(np.float32)
    (result,) = run_module(module, {"x": x}).values()
    return result


def test_the_pass_is_registered_with_typed_options():
    cls = PASSES["order-contractions"]
    assert str(cls(cost="cycles", pes=16)) == "order-contractions{cost=cycles pes=16}"
    with pytest.raises(Exception, match="option 'precontract'"):
        PassManager.parse("order-contractions{precontract=sometimes}")


def test_every_decomposed_map_gets_a_schedule_and_results_do_not_change():
    module = lstm_module()
    before = run(module)
    PassManager.parse("order-contractions{batch=3}").run(module)   # verifies after the pass
    op = module.ops_of("lstm")[0]
    for key in ("w", "r"):
        for linear_map in op.attrs[key]:
            if isinstance(linear_map, DenseMap):
                assert "schedule" not in linear_map.meta()
                continue
            meta = linear_map.meta()["schedule"]
            assert meta["batch"] == 3 and meta["time_steps"] == (STEPS if key == "w" else 1)
            assert isinstance(linear_map.schedule, MapSchedule)
    after = run(module)
    np.testing.assert_allclose(after, before, rtol=1e-4, atol=1e-5)
    again = OrderContractions(batch=3)
    assert again.run(module) is False
    assert OrderContractions(batch=4).run(module) is True


def test_time_steps_fall_back_to_one_for_a_symbolic_sequence_and_follow_the_option():
    module = lstm_module(seq="seq")
    PassManager.parse("order-contractions").run(module)
    assert module.ops_of("lstm")[0].attrs["w"][0].meta()["schedule"]["time_steps"] == 1
    PassManager.parse("order-contractions{time-steps=7}").run(module)
    assert module.ops_of("lstm")[0].attrs["w"][0].meta()["schedule"]["time_steps"] == 7


def test_schedules_print_and_parse_back_identically():
    module = lstm_module()
    PassManager.parse("order-contractions{cost=cycles pes=8 overhead=2}").run(module)
    text = print_module(module)
    assert "schedule = {batch = 1, time_steps = 5, cost = \"cycles\"" in text
    assert "pes = 8, overhead = 2, steps = [[[" in text
    parsed = parse_module(text, module_tensors(module))
    assert print_module(parsed) == text
    np.testing.assert_array_equal(run(parsed), run(module))


def test_an_edited_schedule_is_rejected_when_parsed():
    module = lstm_module()
    PassManager.parse("order-contractions{precontract=never}").run(module)
    text = print_module(module)
    first = module.ops_of("lstm")[0].attrs["w"][0].schedule.schedules[0].steps[0]
    edited = text.replace(f", {first.macs}, {first.size}, \"run\"]", f", {first.macs + 1}, {first.size}, \"run\"]", 1)
    assert edited != text
    with pytest.raises((ParseError, VerifyError), match="schedule step 0: costs"):
        parse_module(edited, module_tensors(module))


def test_the_cost_option_changes_the_schedule_where_objectives_disagree():
    rng = np.random.default_rng(2)
    linear_map = tt_map(rng, [2, 4, 4], [2, 8, 8], [1, 4, 2, 1])
    module = Module("linear")
    builder = Builder(module)
    x = builder.input("x", TensorType(("batch", 128), F32))
    module.outputs = [builder.op("linear", [x], {"weight": linear_map}).result]
    trees = {}
    for cost in ("macs", "memory"):
        PassManager.parse(f"order-contractions{{cost={cost} precontract=never}}").run(module)
        scheduled = module.ops_of("linear")[0].attrs["weight"].schedule.schedules[0]
        trees[cost] = (scheduled.tree(), scheduled.macs, scheduled.peak)
    assert trees["macs"][0] != trees["memory"][0]
    assert trees["macs"][1] < trees["memory"][1] and trees["memory"][2] < trees["macs"][2]


def test_the_report_lists_naive_scheduled_and_dense_macs_per_step():
    module = lstm_module()
    PassManager.parse("order-contractions{batch=2}").run(module)
    report = contraction_report(module)
    names = [entry["name"] for entry in report["maps"]]
    assert len(names) == 7 and all(".w." in n or ".r." in n for n in names)
    for entry in report["maps"]:
        macs = entry["macs_per_step"]
        assert macs["scheduled"] <= macs["naive"]
        assert entry["search_seconds"] < 1.0 and entry["method"] == "exact"
    tt_entry = report["maps"][0]
    linear_map = module.ops_of("lstm")[0].attrs["w"][0]
    assert tt_entry["macs_per_step"]["dense"] == HIDDEN * FEATURES * 2
    network = map_networks(linear_map, 2 * STEPS)[0]
    assert tt_entry["macs_per_step"]["naive"] == -(-naive_schedule(network).macs // STEPS)
    total = report["total"]["macs_per_step"]
    assert total["scheduled"] == sum(e["macs_per_step"]["scheduled"] for e in report["maps"])


def test_a_schedule_read_back_from_text_reports_the_same_costs_without_timings():
    module = lstm_module()
    PassManager.parse("order-contractions{batch=2}").run(module)
    again = parse_module(print_module(module), module_tensors(module))
    timed, untimed = contraction_report(module), contraction_report(again)
    for entry in timed["maps"]:
        assert entry.pop("search_seconds") >= 0 and entry.pop("method") == "exact"
    assert timed["total"].pop("search_seconds") >= 0
    assert timed == untimed and "search_seconds" not in untimed["total"]


def test_precontraction_shows_in_the_reported_parameters():
    rng = np.random.default_rng(3)
    linear_map = tt_map(rng, [4, 4, 4, 6], [16, 8, 9, 53], [1, 4, 4, 4, 1])
    schedule = search_map_schedule(linear_map, 1, 1, CostModel("macs"), "auto")
    report = schedule.report(linear_map)
    assert report["params"]["map"] == linear_map.params() < report["params"]["stored"]
    assert report["macs_per_step"]["scheduled"] < 2_128_896 < report["macs_per_step"]["dense"]
    assert schedule.search.method == "exact" and schedule.search.seconds < 1.0


def test_a_cast_map_keeps_its_schedule():
    module = lstm_module()
    PassManager.parse("order-contractions").run(module)
    linear_map = module.ops_of("lstm")[0].attrs["w"][2]
    wide = linear_map.astype(np.float64)
    assert wide.meta() == linear_map.meta() and wide.schedule is not None
    x = np.random.default_rng(4).standard_normal((3, FEATURES))
    np.testing.assert_allclose(wide.apply(x), x @ linear_map.to_dense().astype(np.float64).T, rtol=1e-5, atol=1e-6)


def test_refuses_a_quantized_module():
    from tensorgate.errors import PassError
    from tensorgate.ir import FixedType

    module = Module("q")
    build = Builder(module)
    x = build.input("x", TensorType((2, 4), FixedType(8, 4)))
    module.outputs = [build.op("relu", [x]).result]
    with pytest.raises(PassError, match="quantized"):
        PASSES["order-contractions"]().run(module)
