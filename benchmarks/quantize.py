"""Output SQNR and top-1 agreement of the integer golden model against float, versus bits.

The model is the trained digits classifier of ``tests/digits_classifier.py`` (an ``nn.LSTM``
8 -> 32 with a linear head, exported by PyTorch), dense and with its LSTM maps in TT
format.  For each width ``bits`` (weights, activations and cell state alike) it is
quantized with calibration on 256 training digits and run on all 1797 digits; the
table gives the SQNR of the logits (dB), the top-1 agreement with the float model of
the same network, the accuracy on the digit labels, and the seconds to quantize and
run both models.

    python benchmarks/quantize.py [--bits 4 16] [--activation pwl|lut] [--rounding nearest-even|half-away]
"""

from __future__ import annotations

import argparse
import sys
import tempfile
import time
from pathlib import Path

import numpy as np
from rich.console import Console
from rich.table import Table

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "tests"))

from digits_classifier import (  # noqa: E402
    CALIBRATION, accuracy, decomposed, digits, float_module, train_digits_classifier,
)

from tensorgate.passes.quantization.report import sqnr_db, top1_agreement  # noqa: E402
from tensorgate.passes.quantize import Quantize  # noqa: E402
from tensorgate.interpreter import run_fixed  # noqa: E402
from tensorgate.interpreter import run_module  # noqa: E402


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--bits", nargs=2, type=int, default=(4, 16), metavar=("LOW", "HIGH"))
    parser.add_argument("--activation", choices=("pwl", "lut"), default="pwl")
    parser.add_argument("--rounding", choices=("nearest-even", "half-away"), default="nearest-even")
    args = parser.parse_args()
    console = Console(width=max(Console().width, 110))
    sequences, labels = digits()
    with tempfile.TemporaryDirectory() as tmp:
        with console.status("training the digits classifier"):
            dense = float_module(train_digits_classifier(Path(tmp) / "digits.onnx"))
        calibration = Path(tmp) / "calibration.npz"
        np.savez(calibration, x=sequences[:, :CALIBRATION])
        models = {"dense": dense, "tt": decomposed(dense, "tt")}
        references = {name: run_module(m, {"x": sequences}, dtype=np.float64)["logits"] for name, m in models.items()}
        table = Table(title=f"integer golden model vs float on 1797 digits ({args.activation}, {args.rounding})")
        table.add_column("bits", justify="right")
        for name in models:
            for column in ("SQNR dB", "top-1 agree", "accuracy"):
                table.add_column(f"{name} {column}", justify="right")
        table.add_column("seconds", justify="right")
        table.add_row("float", *[cell for name in models for cell in
                                 ("-", "-", f"{accuracy(references[name], labels):.2%}")], "-")
        for bits in range(args.bits[0], args.bits[1] + 1):
            cells = []
            started = time.perf_counter()
            for name, model in models.items():
                with console.status(f"{name} at {bits} bits"):
                    quantized = model.copy()
                    Quantize(bits=bits, calibration=calibration, activation=args.activation,
                             rounding=args.rounding).run(quantized)
                    logits = run_fixed(quantized, {"x": sequences})["logits"]
                reference = references[name]
                cells += [f"{sqnr_db(reference, logits):.1f}", f"{top1_agreement(reference, logits):.2%}",
                          f"{accuracy(logits, labels):.2%}"]
            table.add_row(str(bits), *cells, f"{time.perf_counter() - started:.1f}")
    console.print(table)


if __name__ == "__main__":
    main()
