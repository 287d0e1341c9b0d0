"""Calibration data for a model of fixed input shapes (issue 15, item 8): a model exported
at batch 1 calibrates on an .npz of 8 samples, run one sample at a time, for quantize's
ranges, its report, compile's output-error measurement and select-ranks' output error."""

from __future__ import annotations

import json

import numpy as np
import onnx
import pytest
from models import OnnxRecurrent, make_onnx_recurrent

from tensorgate.cli import main
from tensorgate.errors import PassError
from tensorgate.frontend import import_onnx
from tensorgate.passes import PassManager
from tensorgate.passes.quantization.calibrate import calibrate, sample_feeds

SAMPLES = 8


def batch_one_model(layout: int) -> onnx.ModelProto:
    """An LSTM with every input shape fixed, batch 1 (layout 1: ``[1, T, I]``, as a
    batch-first export is)."""
    model, _ = make_onnx_recurrent(OnnxRecurrent(batch=1, layout=layout))
    return model


def samples(layout: int, stacked: bool) -> np.ndarray:
    """8 samples of ``X``: along the batch axis the model fixes at 1, or stacked along a
    new leading axis."""
    rng = np.random.default_rng(7)
    one = (1, 4, 5) if layout else (4, 1, 5)
    data = rng.standard_normal((SAMPLES,) + one).astype(np.float32)
    return data if stacked else np.concatenate(list(data), axis=0 if layout else 1)


@pytest.mark.parametrize("layout", [0, 1])
@pytest.mark.parametrize("stacked", [False, True])
def test_calibration_runs_sample_by_sample(layout, stacked):
    module = import_onnx(batch_one_model(layout))
    data = samples(layout, stacked)
    feeds = sample_feeds(module, {"X": data})
    assert len(feeds) == SAMPLES and all(f["X"].shape == module.inputs[0].type.shape for f in feeds)
    ranges = calibrate(module, {"X": data}).ranges
    singles = [calibrate(module, f).ranges for f in feeds]
    for name, seen in ranges.items():
        assert seen.low == min(s[name].low for s in singles) and seen.high == max(s[name].high for s in singles)


def test_data_that_fit_neither_way_are_refused(tmp_path):
    module = import_onnx(batch_one_model(1))
    path = tmp_path / "calibration.npz"
    np.savez(path, X=np.zeros((8, 3, 5), np.float32))  # 3 steps, the model takes 4
    with pytest.raises(PassError, match=r"calibration file .*: input 'X' has shape \[8, 3, 5\], expected \[1,4,5\]"):
        PassManager.parse(f"quantize{{calibration={path}}}").run(module)


def test_compile_quantizes_and_measures_a_batch_one_model_on_8_samples(tmp_path, capsys):
    """The issue's case: refused before with ``expected [1,4,5]``."""
    onnx.save(batch_one_model(1), tmp_path / "model.onnx")
    data = tmp_path / "calibration.npz"
    np.savez(data, X=samples(1, stacked=False))
    report = tmp_path / "report.json"
    pipeline = (f"decompose{{method=tt d=2 max-rank=2 weights=all calibration={data}}}, "
                f"quantize{{bits=8 calibration={data} report={report}}}")
    assert main(["compile", str(tmp_path / "model.onnx"), "-p", pipeline, "-o", str(tmp_path / "art"),
                 "--calibration", str(data)]) == 0
    out = capsys.readouterr().out
    assert "output error against the imported model on" in out
    manifest = json.loads((tmp_path / "art" / "manifest.json").read_text())
    assert manifest["output_error"]["measured"] is True
    assert json.loads(report.read_text())["outputs"]


def test_select_ranks_measures_output_error_sample_by_sample(tmp_path):
    module = import_onnx(batch_one_model(0))
    data = tmp_path / "calibration.npz"
    np.savez(data, X=samples(0, stacked=True))
    PassManager.parse(f"decompose{{method=tt d=2 eps=0 weights=all}}, "
                      f"select-ranks{{eps=0.3 calibration={data}}}").run(module)
    assert any(m.format == "tt" for m in module.ops_of("lstm")[0].attrs["w"])
