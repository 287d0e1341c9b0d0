"""Parameter counts of the papers' reference configurations (DESIGN.md section 3):
built directly in the IR with seeded random cores (no decomposition needed), and the
FL-TT-LSTM exported from torch, where the exporter's own constants (the zero initial
states of a static batch) must not count."""

from __future__ import annotations

import contextlib
import io
import warnings

import numpy as np
import pytest

from models import TorchRecurrent, torch_classifier
from tensorgate.frontend import import_onnx
from tensorgate.ir.stats import model_stats
from tensorgate.ir import F32, DenseMap, Module, TensorType, TTMap, verify_module
from tensorgate.ir.builder import Builder
from tensorgate.passes import PassManager

INPUT, HIDDEN, CLASSES = 61056, 384, 11
IN_FACTORS, OUT_FACTORS, RANKS = (16, 8, 9, 53), (4, 4, 4, 6), (1, 4, 4, 4, 1)


def tt_gate(rng) -> TTMap:
    cores = [rng.standard_normal((RANKS[k], OUT_FACTORS[k], IN_FACTORS[k], RANKS[k + 1])).astype(np.float32)
             for k in range(4)]
    return TTMap.from_cores(cores)


def fl_tt_lstm() -> Module:
    """FL-TT-LSTM: TT ranks [1,4,4,4,1] on each gate's W, dense R, ONNX's two biases,
    an 11-class linear head."""
    rng = np.random.default_rng(0)
    module = Module("fl_tt_lstm")
    build = Builder(module)
    x = build.input("x", TensorType((6, 1, INPUT), F32))
    lstm = build.op("lstm", [x], {
        "hidden_size": HIDDEN,
        "w": [tt_gate(rng) for _ in range(4)],
        "r": [DenseMap(rng.standard_normal((4 * HIDDEN, HIDDEN)).astype(np.float32))],
        "bias": rng.standard_normal((1, 8 * HIDDEN)).astype(np.float32),
    })
    shape = build.const(np.array([1, HIDDEN], np.int64))
    last = build.op("reshape", [lstm.results[1], shape]).result
    head = build.op("linear", [last], {"weight": DenseMap(rng.standard_normal((CLASSES, HIDDEN)).astype(np.float32)),
                                       "bias": np.zeros(CLASSES, np.float32)})
    module.outputs = [head.result]
    verify_module(module)
    return module


@pytest.mark.parametrize("fold_biases, dense, compressed", [
    (True, 94_377_611, 606_059),  # the paper's 94.38M -> 0.60M
    (False, 94_377_611 + 1_536, 606_059 + 1_536),
])
def test_fl_tt_lstm_parameter_counts(fold_biases, dense, compressed):
    module = fl_tt_lstm()
    if fold_biases:
        assert PassManager.parse("canonicalize").run(module) is module
        assert module.ops_of("lstm")[0].attrs["bias"].shape == (1, 4 * HIDDEN)
    stats = model_stats(module)
    assert (stats.params_dense, stats.params_compressed) == (dense, compressed)


@pytest.mark.slow
def test_fl_tt_lstm_exported_from_torch_counts_the_papers_parameters(tmp_path):
    """nn.LSTM(61056, 384) + Linear(384, 11), batch 1: torch writes h0 and c0 as
    [1, 1, 384] zero constants (768 numbers; the importer's constant folding merges the
    two into one) that are inputs of the recurrence, not weights."""
    torch = pytest.importorskip("torch")

    class FLTTLSTM(torch.nn.Module):
        def __init__(self):
            super().__init__()
            self.lstm = torch.nn.LSTM(INPUT, HIDDEN)
            self.head = torch.nn.Linear(HIDDEN, CLASSES)

        def forward(self, x):
            _, (h, _) = self.lstm(x)
            return self.head(h[-1])

    torch.manual_seed(0)
    path = tmp_path / "fl_tt_lstm.onnx"
    with warnings.catch_warnings(), contextlib.redirect_stdout(io.StringIO()):
        warnings.simplefilter("ignore")
        torch.onnx.export(FLTTLSTM().eval(), (torch.zeros(6, 1, INPUT),), path, input_names=["x"],
                          output_names=["logits"], opset_version=17, dynamo=False)
    module = PassManager.parse("canonicalize, dce").run(import_onnx(path))
    initial_states = [op for op in module.ops if op.kind == "const" and op.attrs["value"].shape == (1, 1, HIDDEN)]
    assert initial_states, "the export should carry its zero initial state as a constant"
    assert model_stats(module).params_dense == 94_377_611
    shape = "x".join(map(str, IN_FACTORS)) + ":" + "x".join(map(str, OUT_FACTORS))
    PassManager.parse(f"decompose{{weights=input gates=separate shape={shape} ranks=1,4,4,4,1}}").run(module)
    stats = model_stats(module)
    assert (stats.params_dense, stats.params_compressed) == (94_377_611, 606_059)


@pytest.mark.parametrize("exporter", ["torchscript", "dynamo"])
@pytest.mark.parametrize("dynamic", [True, False])
@pytest.mark.parametrize("layers, bidirectional", [(1, False), (2, True)])
def test_imported_parameters_are_torchs_parameters(torch_export, exporter, dynamic, layers, bidirectional):
    """Before any pass, the count is torch's own ``sum(p.numel())``, whatever constants
    the exporter adds (static batches get their zero initial states as constants)."""
    pytest.importorskip("torch")
    config = TorchRecurrent(exporter=exporter, dynamic=dynamic, num_layers=layers, bidirectional=bidirectional,
                       head="linear", input_size=6, hidden_size=5)
    expected = sum(p.numel() for p in torch_classifier(config).parameters())
    assert model_stats(import_onnx(torch_export(config))).params_dense == expected


def test_quantized_weights_still_count():
    """Quantizing turns weights, biases included, into integer codes; they are the same parameters."""
    from tensorgate.demo import demo_files
    from tensorgate.explore import without_trailing_softmax

    module, _ = without_trailing_softmax(PassManager.parse("canonicalize, dce").run(import_onnx(demo_files()[0])),
                                         "probabilities")
    before = model_stats(module)
    PassManager.parse("decompose{method=tt max-rank=2}, quantize{bits=8}").run(module)
    after = model_stats(module)
    assert after.params_dense == before.params_dense and after.params_compressed < before.params_compressed
    assert after.params_compressed == sum(info.map.params() for info in after.maps) + before.params_dense - sum(
        info.map.out_dim * info.map.in_dim for info in before.maps)
