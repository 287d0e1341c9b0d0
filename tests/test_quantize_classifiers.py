"""Quantized torch-exported LSTM classifiers agree with their float models.

A trained digits classifier (``digits_lstm``, the stored weights), exported by PyTorch
and imported, dense and with its LSTM maps decomposed to TT, BT and HT; each is
quantized with calibration on 256 training digits and run by the integer golden model
on all 1797 digits.  Top-1 agreement with the float model of the same (decomposed)
network: at least 99.9% at 16 bits and 98% at 8 bits (measured on these weights:
99.2-99.7%, and 98.6% for BT, whose near-tie logits flip first).  SQNR and agreement are
printed (``pytest -s``).
"""

from __future__ import annotations

import numpy as np
import pytest

from digits_lstm import CALIBRATION, STORED, accuracy, decomposed, digits, float_module
from tensorgate.interpreter import run_fixed, run_module
from tensorgate.passes.quantization.report import sqnr_db, top1_agreement
from tensorgate.passes.quantize import Quantize

REQUIRED_AGREEMENT = {16: 0.999, 8: 0.98}


@pytest.fixture(scope="module")
def trained(tmp_path_factory):
    directory = tmp_path_factory.mktemp("digits")
    sequences, labels = digits()
    np.savez(directory / "calibration.npz", x=sequences[:, :CALIBRATION])
    return float_module(STORED), directory / "calibration.npz"


@pytest.mark.parametrize("method", ["dense", "tt", "bt", "ht"])
def test_quantized_classifier_agrees_with_float(trained, method):
    module, calibration = trained
    network = module if method == "dense" else decomposed(module, method)
    sequences, labels = digits()
    reference = run_module(network, {"x": sequences}, dtype=np.float64)["logits"]
    assert accuracy(reference, labels) > 0.9, "the float classifier itself should work"
    for bits, required in REQUIRED_AGREEMENT.items():
        quantized = network.copy()
        Quantize(bits=bits, calibration=calibration).run(quantized)
        logits = run_fixed(quantized, {"x": sequences})["logits"]
        agreement = top1_agreement(reference, logits)
        print(f"{method} {bits}-bit: SQNR {sqnr_db(reference, logits):.1f} dB, top-1 agreement {agreement:.2%}, "
              f"accuracy {accuracy(logits, labels):.2%} (float {accuracy(reference, labels):.2%})")
        assert agreement >= required, f"{method} at {bits} bits agrees on {agreement:.2%} of the digits"
