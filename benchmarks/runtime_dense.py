"""NumPy runtime vs onnxruntime latency on dense ONNX LSTMs, one thread (target: within 2x).

Each model is one LSTM layer (T=16) built with onnx.helper, imported by tensorgate's
frontend and run by both runtimes on the same inputs in the same process, on one thread
(onnxruntime ``intra_op_num_threads=1``, threadpoolctl for NumPy's BLAS).  Times are the
best of repeated rounds, each running both once in turn (the least disturbed by other
work on the machine, and disturbed alike); the ratio is ours/onnxruntime.  The title
names NumPy's BLAS and the kernels it runs (OpenBLAS takes them from OPENBLAS_CORETYPE
when set: this machine's environment pins Haswell, AVX2, on an AVX-512 CPU), and the
load average.  This is the table ``deploy_speed.py`` prints too.

    python benchmarks/runtime_dense.py [--repeats N]
"""

from __future__ import annotations

import argparse
import os
import sys
import time

import numpy as np
import onnx
import onnxruntime
from onnx import TensorProto, helper, numpy_helper
from rich.console import Console
from rich.table import Table
from threadpoolctl import threadpool_info, threadpool_limits

from tensorgate.frontend import import_onnx
from tensorgate.interpreter import Executor

STEPS = 16
CONFIGS = [(hidden, features, batch) for hidden in (128, 512) for features in (256, 4096) for batch in (1, 32)]
TARGET = 2.0


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


def one_thread_session(model: onnx.ModelProto) -> onnxruntime.InferenceSession:
    options = onnxruntime.SessionOptions()
    options.intra_op_num_threads = options.inter_op_num_threads = 1
    options.execution_mode = onnxruntime.ExecutionMode.ORT_SEQUENTIAL
    return onnxruntime.InferenceSession(model.SerializeToString(), options, providers=["CPUExecutionProvider"])


def interleaved_best_ms(fns: dict, repeats: int) -> dict[str, float]:
    """The best time of each function over ``repeats`` rounds that run each once in turn,
    so that other work on the machine disturbs all of them alike."""
    for fn in fns.values():
        fn()
    best = dict.fromkeys(fns, float("inf"))
    for _ in range(repeats):
        for name, fn in fns.items():
            start = time.perf_counter()
            fn()
            best[name] = min(best[name], time.perf_counter() - start)
    return {name: seconds * 1e3 for name, seconds in best.items()}


def blas_kernels() -> str:
    """The BLAS NumPy runs on and its kernels, e.g. ``openblas Haswell``."""
    blas = [info for info in threadpool_info() if info.get("user_api") == "blas"]
    if not blas:
        return "none found"
    return " ".join(str(blas[0][key]) for key in ("internal_api", "architecture") if blas[0].get(key))


def dense_table(repeats: int) -> tuple[Table, bool]:
    """The table of every configuration, and whether each ratio is within the target.
    Call it under a one-thread BLAS limit."""
    table = Table(title=f"dense LSTM, NumPy runtime vs onnxruntime, T={STEPS}, one thread (best of {repeats} "
                        f"interleaved rounds; NumPy BLAS: {blas_kernels()}; load {os.getloadavg()[0]:.1f})")
    for column in ("hidden", "input", "batch", "onnxruntime ms", "tensorgate ms", "ratio", "max |diff|"):
        table.add_column(column, justify="right")
    worst = 0.0
    for hidden, features, batch in CONFIGS:
        model = lstm_model(features, hidden)
        x = np.random.default_rng(1).standard_normal((STEPS, batch, features)).astype(np.float32)
        session, executor = one_thread_session(model), Executor(import_onnx(model))
        times = interleaved_best_ms({"theirs": lambda: session.run(["Y_h"], {"x": x}),
                                     "ours": lambda: executor.run({"x": x})}, repeats)
        theirs, ours = times["theirs"], times["ours"]
        worst = max(worst, ours / theirs)
        diff = np.abs(executor.run({"x": x})["Y_h"] - session.run(["Y_h"], {"x": x})[0]).max()
        table.add_row(str(hidden), str(features), str(batch), f"{theirs:.3f}", f"{ours:.3f}", f"{ours / theirs:.2f}x",
                      f"{diff:.1e}")
    return table, worst <= TARGET


def verdict(met: bool) -> str:
    return f"dense NumPy runtime within {TARGET:.0f}x of onnxruntime -> {'met' if met else 'NOT met'}"


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--repeats", type=int, default=50)
    args = parser.parse_args()
    with threadpool_limits(limits=1):
        table, met = dense_table(args.repeats)
    console = Console(width=max(Console().width, 160))
    console.print(table)
    console.print(verdict(met))
    return 0 if met else 1


if __name__ == "__main__":
    sys.exit(main())
