"""tensorgate's float runtime vs onnxruntime latency on dense ONNX LSTMs, one thread (target: within 2x).

Each model is one LSTM layer (T=16) built with onnx.helper, imported by tensorgate's
frontend and run on the same inputs in the same process, on one thread (onnxruntime
``intra_op_num_threads=1``, threadpoolctl for NumPy's BLAS), three ways: onnxruntime on
the model, and tensorgate's float runtime (``runtime.float_kernels.float_executor``)
with each recurrent kernel: ``numpy`` (the interpreter's NumPy kernel) and
``onnxruntime`` (the layer run as a one-op ONNX model in a session built once per layer;
what ``auto``, the default, picks for a dense layer).  Times are the best of repeated
rounds, each running all three once in turn (the least disturbed by other work on the
machine, and disturbed alike); a ratio is tensorgate's time over onnxruntime's, and
``max |diff|`` is against onnxruntime's output.  The verdict says which kernel is within
the target on every configuration.  The title
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
from tensorgate.runtime.float_kernels import float_executor

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


KERNELS = {"tensorgate numpy": "numpy", "tensorgate ort-kernel": "onnxruntime"}
"""The rows of tensorgate's float runtime: its name in the table, and its ``kernel``."""


def dense_table(repeats: int) -> tuple[Table, dict[str, float]]:
    """The table of every configuration, and each tensorgate kernel's worst ratio to
    onnxruntime.  Call it under a one-thread BLAS limit."""
    table = Table(title=f"dense LSTM, tensorgate's float runtime (NumPy kernel, onnxruntime kernel) vs onnxruntime, "
                        f"T={STEPS}, one thread (best of {repeats} interleaved rounds; NumPy BLAS: {blas_kernels()}; "
                        f"load {os.getloadavg()[0]:.1f})")
    for column in ("hidden", "input", "batch", "onnxruntime ms", *(f"{row} ms" for row in KERNELS), "numpy ratio",
                   "ort-kernel ratio", "numpy max |diff|", "ort-kernel max |diff|"):
        table.add_column(column, justify="right")
    worst = dict.fromkeys(KERNELS, 0.0)
    for hidden, features, batch in CONFIGS:
        model = lstm_model(features, hidden)
        x = np.random.default_rng(1).standard_normal((STEPS, batch, features)).astype(np.float32)
        session, module = one_thread_session(model), import_onnx(model)
        runs = {"onnxruntime": lambda: session.run(["Y_h"], {"x": x})[0]}
        for row, kernel in KERNELS.items():
            executor = float_executor(module, kernel=kernel, threads=1)
            runs[row] = lambda executor=executor: executor.run({"x": x})["Y_h"]
        times = interleaved_best_ms(runs, repeats)
        reference = runs["onnxruntime"]()
        ratios = {row: times[row] / times["onnxruntime"] for row in KERNELS}
        worst = {row: max(worst[row], ratios[row]) for row in KERNELS}
        diffs = [np.abs(runs[row]() - reference).max() for row in KERNELS]
        table.add_row(str(hidden), str(features), str(batch), f"{times['onnxruntime']:.3f}",
                      *(f"{times[row]:.3f}" for row in KERNELS), *(f"{ratios[row]:.2f}x" for row in KERNELS),
                      *(f"{diff:.1e}" for diff in diffs))
    return table, worst


def verdict(worst: dict[str, float]) -> str:
    """Which of tensorgate's kernels is within the target on every configuration."""
    parts = [f"{row} (worst {ratio:.2f}x) -> {'met' if ratio <= TARGET else 'NOT met'}" for row, ratio in worst.items()]
    return f"dense float runtime within {TARGET:.0f}x of onnxruntime at batch 1 and 32: " + "; ".join(parts)


def any_met(worst: dict[str, float]) -> bool:
    return any(ratio <= TARGET for ratio in worst.values())


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--repeats", type=int, default=50)
    args = parser.parse_args()
    with threadpool_limits(limits=1):
        table, worst = dense_table(args.repeats)
    console = Console(width=max(Console().width, 200))
    console.print(table)
    console.print(verdict(worst))
    return 0 if any_met(worst) else 1


if __name__ == "__main__":
    sys.exit(main())
