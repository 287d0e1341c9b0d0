"""Write the ONNX conformance cases for LSTM into ``onnx_lstm_conformance/``.

The onnx wheel ships the case generators (``onnx.backend.test.case``) but not the
data they produce, so this script runs them once and stores each case the way the
ONNX backend test data is laid out:
``<case>/model.onnx`` and ``<case>/test_data_set_0/{input,output}_<i>.pb``.
The expected outputs come from onnx's own NumPy reference (``LSTMHelper``).

Run from anywhere: ``python tests/data/make_lstm_conformance.py``.
"""

from __future__ import annotations

import warnings
from pathlib import Path

import onnx
from onnx import numpy_helper

CASES = (
    "test_lstm_defaults", "test_lstm_with_initial_bias", "test_lstm_with_peepholes",
    "test_lstm_batchwise", "test_lstm_reverse", "test_lstm_bidirectional",
)
OUT = Path(__file__).resolve().parent / "onnx_lstm_conformance"


def main() -> None:
    from onnx.backend.test.case.node import collect_testcases

    with warnings.catch_warnings():  # other ops' generators warn while being imported
        warnings.simplefilter("ignore")
        cases = {case.name: case for case in collect_testcases("LSTM")}
    for name in CASES:
        case = cases[name]
        directory = OUT / name
        data = directory / "test_data_set_0"
        data.mkdir(parents=True, exist_ok=True)
        onnx.save(case.model, directory / "model.onnx")
        (inputs, outputs), = case.data_sets
        graph = case.model.graph
        for kind, infos, arrays in (("input", graph.input, inputs), ("output", graph.output, outputs)):
            for index, (info, array) in enumerate(zip(infos, arrays, strict=True)):
                tensor = numpy_helper.from_array(array, info.name)
                (data / f"{kind}_{index}.pb").write_bytes(tensor.SerializeToString())
        print(f"wrote {directory}")


if __name__ == "__main__":
    main()
