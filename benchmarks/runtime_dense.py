"""NumPy runtime vs onnxruntime latency on dense ONNX LSTMs (target: within 2x).

Each model is one LSTM layer (T=16) built with onnx.helper, imported by tensorgate's
frontend and run by both runtimes on the same inputs in the same process; the table
shows the best of repeated runs (the least disturbed by other work on the machine, as
timeit recommends) and the ratio ours/onnxruntime.

    python benchmarks/runtime_dense.py [--repeats N]
"""

from __future__ import annotations

import argparse
import sys
import time

import numpy as np
import onnx
import onnxruntime
from onnx import TensorProto, helper, numpy_helper
from rich.console import Console
from rich.table import Table

from tensorgate.frontend import import_onnx
from tensorgate.interpreter import Executor

STEPS = 16
CONFIGS = [(hidden, features, batch) for hidden in (128, 512) for features in (256, 4096) for batch in (1, 32)]


def lstm_model(features: int, hidden: int, seed: int = 0) -> onnx.ModelProto:
    """One forward LSTM layer, batch and time symbolic, weights as initializers."""
    rng = np.random.default_rng(seed)
    scale = 1 / np.sqrt(hidden)
    weights = {
        "W": rng.uniform(-scale, scale, (1, 4 * hidden, features)).astype(np.float32),
        "R": rng.uniform(-scale, scale, (1, 4 * hidden, hidden)).astype(np.float32),
        "B": rng.uniform(-scale, scale, (1, 8 * hidden)).astype(np.float32),
    }
    node = helper.make_node("LSTM", ["x", "W", "R", "B"], ["Y", "Y_h"], hidden_size=hidden)
    graph = helper.make_graph(
        [node], "lstm",
        [helper.make_tensor_value_info("x", TensorProto.FLOAT, ["seq", "batch", features])],
        [helper.make_tensor_value_info("Y_h", TensorProto.FLOAT, [1, "batch", hidden])],
        [numpy_helper.from_array(v, k) for k, v in weights.items()],
    )
    return helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)])


def best_seconds(fn, repeats: int) -> float:
    fn()
    best = float("inf")
    for _ in range(repeats):
        start = time.perf_counter()
        fn()
        best = min(best, time.perf_counter() - start)
    return best


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--repeats", type=int, default=50)
    args = parser.parse_args()
    table = Table(title=f"dense LSTM latency, T={STEPS} (best of {args.repeats})")
    for column in ("hidden", "input", "batch", "onnxruntime ms", "tensorgate ms", "ratio", "max |diff|"):
        table.add_column(column, justify="right")
    worst = 0.0
    for hidden, features, batch in CONFIGS:
        model = lstm_model(features, hidden)
        x = np.random.default_rng(1).standard_normal((STEPS, batch, features)).astype(np.float32)
        session = onnxruntime.InferenceSession(model.SerializeToString(), providers=["CPUExecutionProvider"])
        executor = Executor(import_onnx(model))
        ref = session.run(["Y_h"], {"x": x})[0]
        ours = executor.run({"x": x})["Y_h"]
        t_ort = best_seconds(lambda: session.run(["Y_h"], {"x": x}), args.repeats)
        t_ours = best_seconds(lambda: executor.run({"x": x}), args.repeats)
        worst = max(worst, t_ours / t_ort)
        table.add_row(str(hidden), str(features), str(batch), f"{t_ort * 1e3:.3f}", f"{t_ours * 1e3:.3f}",
                      f"{t_ours / t_ort:.2f}x", f"{np.abs(ours - ref).max():.1e}")
    console = Console(width=max(Console().width, 160))
    console.print(table)
    console.print(f"worst ratio {worst:.2f}x (target: within 2x of onnxruntime) -> "
                  f"{'met' if worst <= 2 else 'NOT met'}")
    return 0 if worst <= 2 else 1


if __name__ == "__main__":
    sys.exit(main())
