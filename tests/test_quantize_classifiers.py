"""Quantized torch-exported LSTM and GRU classifiers agree with their float models.

Trained digits classifiers (``digits_classifier``, the stored weights), exported by
PyTorch and imported, dense and with their recurrent maps decomposed to TT, BT and HT;
each is quantized with calibration on 256 training digits and run by the integer golden
model on all 1797 digits.  Top-1 agreement with the float model of the same
(decomposed) network: at least 99.9% at 16 bits and 98% at 8 bits (measured on these
weights: LSTM 99.2-99.7%, and 98.8% for BT, whose near-tie logits flip first; GRU
99.5-99.9%).  The GRU also goes through the pipeline the accelerator will take,
``decompose{method=tt weights=input max-rank=4}, order-contractions{cost=cycles pes=16},
quantize{bits=8}``: its TT maps at rank 4 cost accuracy (60% float, untuned), and the
8-bit golden model agrees with that float model on at least 96% of the digits
(measured 97.7%; at 16 bits 100%).  SQNR and agreement are printed (``pytest -s``).
"""

from __future__ import annotations

import numpy as np
import pytest

from digits_classifier import CALIBRATION, STORED, STORED_GRU, accuracy, decomposed, digits, float_module
from tensorgate.interpreter import run_fixed, run_module
from tensorgate.passes import PassManager
from tensorgate.passes.quantization.report import sqnr_db, top1_agreement
from tensorgate.passes.quantize import Quantize

REQUIRED_AGREEMENT = {16: 0.999, 8: 0.98}


@pytest.fixture(scope="module")
def calibration(tmp_path_factory):
    path = tmp_path_factory.mktemp("digits") / "calibration.npz"
    np.savez(path, x=digits()[0][:, :CALIBRATION])
    return path


@pytest.mark.parametrize("cell", ["lstm", "gru"])
@pytest.mark.parametrize("method", ["dense", "tt", "bt", "ht"])
def test_quantized_classifier_agrees_with_float(calibration, cell, method):
    module = float_module(STORED if cell == "lstm" else STORED_GRU)
    assert len(module.ops_of(cell)) == 1
    network = module if method == "dense" else decomposed(module, method)
    sequences, labels = digits()
    reference = run_module(network, {"x": sequences}, dtype=np.float64)["logits"]
    assert accuracy(reference, labels) > 0.9, "the float classifier itself should work"
    for bits, required in REQUIRED_AGREEMENT.items():
        quantized = network.copy()
        Quantize(bits=bits, calibration=calibration).run(quantized)
        logits = run_fixed(quantized, {"x": sequences})["logits"]
        agreement = top1_agreement(reference, logits)
        print(f"{cell} {method} {bits}-bit: SQNR {sqnr_db(reference, logits):.1f} dB, top-1 agreement {agreement:.2%}, "
              f"accuracy {accuracy(logits, labels):.2%} (float {accuracy(reference, labels):.2%})")
        assert agreement >= required, f"{cell} {method} at {bits} bits agrees on {agreement:.2%} of the digits"


def test_tt_gru_through_the_accelerators_pipeline_agrees_with_its_float_model(calibration):
    """The pipeline of the GRU accelerator check (its Verilator half is phase 2)."""
    network = PassManager.parse("decompose{method=tt weights=input max-rank=4}, "
                                "order-contractions{cost=cycles pes=16}").run(float_module(STORED_GRU))
    (gru,) = network.ops_of("gru")
    assert gru.attrs["linear_before_reset"] == 1 and all(m.format == "tt" for m in gru.attrs["w"])
    assert all(m.schedule is not None for m in gru.attrs["w"])
    sequences, labels = digits()
    reference = run_module(network, {"x": sequences}, dtype=np.float64)["logits"]
    for bits, required in ((8, 0.96), (16, 0.999)):
        quantized = PassManager.parse(f"quantize{{bits={bits} calibration={calibration}}}").run(network.copy())
        logits = run_fixed(quantized, {"x": sequences})["logits"]
        agreement = top1_agreement(reference, logits)
        print(f"gru tt r<=4 {bits}-bit: SQNR {sqnr_db(reference, logits):.1f} dB, top-1 agreement {agreement:.2%}, "
              f"accuracy {accuracy(logits, labels):.2%} (float {accuracy(reference, labels):.2%})")
        assert agreement >= required
