"""Write the ONNX conformance cases for LSTM, GRU and RNN into ``onnx_recurrent_conformance/``.

The onnx wheel ships the case generators (``onnx.backend.test.case``) but not the
data they produce, so this script runs them once and stores each case the way the
ONNX backend test data is laid out:
``<case>/model.onnx`` and ``<case>/test_data_set_0/{input,output}_<i>.pb``.
The expected outputs come from onnx's own NumPy references (``LSTMHelper``,
``GRUHelper``, ``RNNHelper``).  Several generators draw random weights unseeded, so a
new run writes other (equally valid) cases; the stored ones are the test data.

``collect_testcases(op_type)`` filters on its first call in a process only, so each
op type is generated in a process of its own (about 20 s each).

Run from anywhere: ``python tests/data/make_recurrent_conformance.py [LSTM|GRU|RNN ...]``.
"""

from __future__ import annotations

import subprocess
import sys
import warnings
from pathlib import Path

import onnx
from onnx import numpy_helper

CASES = {
    "LSTM": ("test_lstm_defaults", "test_lstm_with_initial_bias", "test_lstm_with_peepholes",
             "test_lstm_batchwise", "test_lstm_reverse", "test_lstm_bidirectional"),
    "GRU": ("test_gru_defaults", "test_gru_with_initial_bias", "test_gru_seq_length", "test_gru_batchwise",
            "test_gru_reverse", "test_gru_bidirectional"),
    "RNN": ("test_simple_rnn_defaults", "test_simple_rnn_with_initial_bias", "test_rnn_seq_length",
            "test_simple_rnn_batchwise", "test_simple_rnn_reverse", "test_simple_rnn_bidirectional"),
}
OUT = Path(__file__).resolve().parent / "onnx_recurrent_conformance"


def write_cases(op_type: str) -> None:
    """Generate and store the cases of one op type (call once per process)."""
    from onnx.backend.test.case.node import collect_testcases

    with warnings.catch_warnings():  # other ops' generators warn while being imported
        warnings.simplefilter("ignore")
        cases = {case.name: case for case in collect_testcases(op_type)}
    for name in CASES[op_type]:
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


def main(op_types: list[str]) -> None:
    if len(op_types) == 1:
        write_cases(op_types[0])
        return
    for op_type in op_types:
        subprocess.run([sys.executable, __file__, op_type], check=True)


if __name__ == "__main__":
    main(sys.argv[1:] or list(CASES))
