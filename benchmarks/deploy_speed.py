"""Deployable speed on one thread: a TT-LSTM in onnxruntime and in the NumPy runtime,
against the dense model and a hand-written tensordot chain (issue 16).

Table 1, per configuration (the TT-LSTM UCF11 shape, input 57600 = 8·20·20·18, hidden
256, the four gates' W stacked as 1024 = 16·4·4·4, TT ranks 4; the FL-TT-LSTM shape,
input 61056 = 16·8·9·53, hidden 384 = 4·4·4·6, one TT of ranks 4 per gate), T=6:

* dense onnxruntime: the ONNX ``LSTM`` node with W rebuilt densely from the same cores,
  so every row computes the same function (``max |diff|`` is against this row);
* tensorgate numpy: the float runtime (``runtime.float_kernels.float_executor``, its
  default ``auto`` kernel, which runs a layer with a decomposed W in NumPy) on the module
  after ``order-contractions``;
* tensorgate onnx: onnxruntime on the ``onnx`` target's export of that module (default
  lowering choices), and with ``--tune`` (the choices onnxruntime ran fastest at export
  time, named in the row);
* hand tensordot: the reference, written out here: each TT contracted from its last
  core to its first by ``np.tensordot`` for all time steps at once, then the LSTM cell
  loop with preallocated buffers.

Every row runs on one thread (onnxruntime ``intra_op_num_threads=1``, threadpoolctl for
NumPy's BLAS), on the same inputs in the same process; times are the best of repeated
rounds, each running every compressed row once in turn (the least disturbed by other work
on the machine, and disturbed alike).  Targets: both tensorgate rows
at least 20x faster than dense onnxruntime on UCF11 batch 1, and within 1.3x of the
hand chain.

Table 2: ``runtime_dense.py``'s table (tensorgate's dense float runtime, with its NumPy
and its onnxruntime recurrent kernel, against onnxruntime, one LSTM layer, T=16, one
thread).  Target: within 2x.

Table 3 (``--verilator``): simulated cycles per second of the FL-TT-LSTM accelerator
under Verilator at P = 16, 64, 128 (``accelerator.py``'s model and measurement), the best
of interleaved rounds, per wall second and per CPU second of the simulating thread (the
machine's load average is in the title).

    python benchmarks/deploy_speed.py [--repeats N] [--quick] [--verilator [P ...]] [--verilator-rounds N]
"""

from __future__ import annotations

import argparse
import sys
from dataclasses import dataclass

import numpy as np
import onnx
from onnx import TensorProto, helper, numpy_helper
from rich.console import Console
from rich.table import Table
from threadpoolctl import threadpool_limits

from runtime_dense import any_met, dense_table, interleaved_best_ms, one_thread_session, verdict
from tensorgate.backend.onnx_export import export_onnx, tune_choices
from tensorgate.ir import F32, DenseMap, Module, TensorType, TTMap, verify_module
from tensorgate.ir.builder import Builder
from tensorgate.ir.stats import recurrent_macs_per_step
from tensorgate.passes import PassManager
from tensorgate.runtime.float_kernels import float_executor

STEPS = 6
SPEEDUP_TARGET, HAND_TARGET = 20.0, 1.3


@dataclass(frozen=True)
class Shape:
    """A TT-LSTM: W of ``gates`` maps (1 stacked or 4 per gate), each a TT of these factors."""

    name: str
    inputs: int
    hidden: int
    in_factors: tuple[int, ...]
    out_factors: tuple[int, ...]
    ranks: tuple[int, ...]
    gates: int


UCF11 = Shape("TT-LSTM UCF11", 57600, 256, (8, 20, 20, 18), (16, 4, 4, 4), (1, 4, 4, 4, 1), 1)
FL_TT = Shape("FL-TT-LSTM", 61056, 384, (16, 8, 9, 53), (4, 4, 4, 6), (1, 4, 4, 4, 1), 4)
CASES = [(UCF11, 1), (UCF11, 32), (FL_TT, 1), (FL_TT, 32)]


def tt_module(shape: Shape, batch: int, seed: int = 0) -> Module:
    """The TT-LSTM as IR (seeded random cores scaled to keep the gates in range, dense R,
    ONNX's two biases), its final h the output, contraction orders chosen for ``batch``."""
    rng = np.random.default_rng(seed)
    std = shape.inputs ** (-1 / (2 * len(shape.in_factors)))

    def tt(out_factors):
        return TTMap.from_cores([(rng.standard_normal((shape.ranks[k], m, n, shape.ranks[k + 1])) * std / 2)
                                 .astype(np.float32) for k, (m, n) in enumerate(zip(out_factors, shape.in_factors))])

    hidden = shape.hidden
    module = Module(shape.name.lower().replace(" ", "_").replace("-", "_"))
    build = Builder(module)
    x = build.input("x", TensorType((STEPS, batch, shape.inputs), F32))
    lstm = build.op("lstm", [x], {
        "hidden_size": hidden,
        "w": [tt(shape.out_factors) for _ in range(shape.gates)],
        "r": [DenseMap((rng.uniform(-1, 1, (4 * hidden, hidden)) / np.sqrt(hidden)).astype(np.float32))],
        "bias": (rng.uniform(-1, 1, (1, 8 * hidden)) / np.sqrt(hidden)).astype(np.float32),
    }, names=["y", "y_h", "y_c"])
    module.outputs = [lstm.results[1]]
    verify_module(module)
    return PassManager.parse(f"order-contractions{{batch={batch}}}").run(module)


def dense_model(module: Module) -> onnx.ModelProto:
    """The same LSTM with W rebuilt densely: what the uncompressed model computes."""
    lstm = module.ops_of("lstm")[0]
    weights = {
        "W": np.concatenate([m.to_dense() for m in lstm.attrs["w"]])[None].astype(np.float32),
        "R": lstm.attrs["r"][0].matrix[None],
        "B": lstm.attrs["bias"],
    }
    x = module.inputs[0]
    node = helper.make_node("LSTM", ["x", "W", "R", "B"], ["", "y_h"], hidden_size=lstm.attrs["hidden_size"])
    graph = helper.make_graph(
        [node], "dense", [helper.make_tensor_value_info("x", TensorProto.FLOAT, list(x.type.shape))],
        [helper.make_tensor_value_info("y_h", TensorProto.FLOAT, None)],
        [numpy_helper.from_array(v, k) for k, v in weights.items()])
    return helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)])


def tt_chain(cores: list[np.ndarray], x: np.ndarray) -> np.ndarray:
    """``W x`` for the rows of ``x`` ``[rows, Πn]``: the cores contracted from the last to
    the first by tensordot, the output modes collected in reverse and flipped at the end."""
    d = len(cores)
    t = x.reshape((x.shape[0],) + tuple(c.shape[2] for c in cores))
    t = np.tensordot(t, cores[-1][..., 0], axes=([d], [2]))  # rows, n_1..n_{d-1}, r, m_d
    for k in range(d - 2, 0, -1):
        t = np.tensordot(t, cores[k], axes=([k + 1, t.ndim - 2], [2, 3]))  # ..., r_k, m_{k+1}
    t = np.tensordot(t, cores[0][0], axes=([1, t.ndim - 2], [1, 2]))  # rows, m_d .. m_1
    return t.transpose((0,) + tuple(range(d, 0, -1))).reshape(x.shape[0], -1)


class HandLSTM:
    """The reference: the input projection of all steps by ``tt_chain``, then the cell
    with σ as 0.5 + 0.5·tanh(x/2) over one preallocated gate buffer per step."""

    def __init__(self, module: Module):
        lstm = module.ops_of("lstm")[0]
        self.cores = [[c.astype(np.float32) for c in m.cores] for m in lstm.attrs["w"]]
        self.r_t = np.ascontiguousarray(lstm.attrs["r"][0].matrix.T)
        hidden = self.hidden = lstm.attrs["hidden_size"]
        bias = lstm.attrs["bias"][0]
        self.bias = bias[:4 * hidden] + bias[4 * hidden:]
        self.halves = np.repeat(np.array([0.5, 0.5, 0.5, 1.0], np.float32), hidden)

    def run(self, x: np.ndarray) -> np.ndarray:
        steps, batch, _ = x.shape
        hidden, rows = self.hidden, x.reshape(steps * batch, -1)
        gates_x = np.concatenate([tt_chain(cores, rows) for cores in self.cores], axis=1)
        gates_x += self.bias
        gates_x = gates_x.reshape(steps, batch, 4 * hidden)
        h = np.zeros((batch, hidden), np.float32)
        c = np.zeros_like(h)
        gates = np.empty((batch, 4 * hidden), np.float32)
        for t in range(steps):
            np.matmul(h, self.r_t, out=gates)
            gates += gates_x[t]
            gates *= self.halves
            np.tanh(gates, out=gates)
            sigmoids = gates[:, :3 * hidden]
            sigmoids *= 0.5
            sigmoids += 0.5
            c *= gates[:, 2 * hidden:3 * hidden]
            c += gates[:, :hidden] * gates[:, 3 * hidden:]
            h = gates[:, hidden:2 * hidden] * np.tanh(c)
        return h[None]


def best_ms(fn, repeats: int) -> float:
    return interleaved_best_ms({"": fn}, repeats)[""]


def tt_table(repeats: int, cases) -> tuple[Table, bool]:
    dense_runs = max(3, repeats // 10)
    table = Table(title=f"TT-LSTM latency, T={STEPS}, one thread (best of {repeats} interleaved rounds; dense "
                        f"onnxruntime: best of {dense_runs})")
    for column in ("shape", "batch", "LSTM MACs/step", "runtime", "ms", "vs dense", "vs hand", "max |diff|"):
        table.add_column(column, justify="left" if column in ("shape", "runtime") else "right")
    met = True
    for shape, batch in cases:
        module = tt_module(shape, batch)
        x = np.random.default_rng(1).standard_normal((STEPS, batch, shape.inputs)).astype(np.float32)
        dense = one_thread_session(dense_model(module))
        executor, hand = float_executor(module, threads=1), HandLSTM(module)
        exported = one_thread_session(export_onnx(module))
        choices, _ = tune_choices(module, repeats=dense_runs)
        tuned = one_thread_session(export_onnx(module, choices))
        runs = {
            "dense onnxruntime": lambda: dense.run(None, {"x": x})[0],
            "tensorgate numpy": lambda: executor.run({"x": x})["y_h"],
            "tensorgate onnx": lambda: exported.run(None, {"x": x})[0],
            f"tensorgate onnx tune ({choices.maps}/{choices.recurrent})": lambda: tuned.run(None, {"x": x})[0],
            "hand tensordot": lambda: hand.run(x),
        }
        reference = runs["dense onnxruntime"]()
        times = {"dense onnxruntime": best_ms(runs["dense onnxruntime"], dense_runs),
                 **interleaved_best_ms({name: fn for name, fn in runs.items() if name != "dense onnxruntime"}, repeats)}
        dense_macs = 4 * shape.hidden * (shape.inputs + shape.hidden)
        for name, fn in runs.items():
            macs = dense_macs if name.startswith("dense") else recurrent_macs_per_step(module.ops_of("lstm")[0])
            vs_dense, vs_hand = times["dense onnxruntime"] / times[name], times[name] / times["hand tensordot"]
            if shape is UCF11 and batch == 1 and name.startswith("tensorgate"):
                met &= vs_dense >= SPEEDUP_TARGET and vs_hand <= HAND_TARGET
            table.add_row(shape.name, str(batch), f"{macs:,}", name, f"{times[name]:.3f}", f"{vs_dense:.1f}x",
                          f"{vs_hand:.2f}x", f"{np.abs(fn() - reference).max():.1e}")
        table.add_section()
    return table, met


def verilator_table(pes: list[int], rounds: int) -> Table:
    """Simulated cycles per second of the FL-TT-LSTM accelerator (``accelerator.py``'s
    8-bit model, one step) per lane count: the simulation-speed figure of issue 16.  Each
    round simulates every lane count once in turn; the best round counts (the first also
    builds).  ``cycles/CPU-s`` divides by the simulating thread's CPU time instead of the
    wall time: what one otherwise idle core gives."""
    import os
    import tempfile
    from pathlib import Path

    from accelerator import FL, SIM_SPEED_TARGET, quantized, simulate

    from tensorgate.backend.verilog.artifact import write_verilog_artifact

    table = Table(title=f"Verilator simulation speed, {FL.name} accelerator, 8-bit, T=1, best of {rounds} rounds "
                        f"(target: >= {SIM_SPEED_TARGET / 1e6:.0f}M cycles/s at P=64; load "
                        f"{os.getloadavg()[0]:.1f} on {os.cpu_count()} cores)")
    for column in ("P", "cycles", "build s", "cycles/s", "cycles/CPU-s", "bit-exact"):
        table.add_column(column, justify="right")
    with tempfile.TemporaryDirectory() as tmp:
        module, inputs = quantized(FL, 1, Path(tmp))
        artifacts = {count: write_verilog_artifact(module, Path(tmp) / f"P{count}", "quantize", FL.name, count)
                     for count in pes}
        runs: dict[int, list[dict]] = {count: [] for count in pes}
        for _ in range(rounds):
            for count in pes:
                runs[count].append(simulate(artifacts[count], module, inputs))
        for count in pes:
            first = runs[count][0]
            wall = max(stats["cycles_per_second"] for stats in runs[count])
            cpu = max(stats["cpu_cycles_per_second"] for stats in runs[count])
            table.add_row(str(count), f"{first['cycles']:,}", f"{first['build_seconds']:.1f}", f"{wall / 1e6:.2f}M",
                          f"{cpu / 1e6:.2f}M", "yes" if all(stats["bit_exact"] for stats in runs[count]) else "NO")
    return table


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--repeats", type=int, default=50)
    parser.add_argument("--quick", action="store_true", help="UCF11 batch 1 only, no dense-runtime table")
    parser.add_argument("--verilator", type=int, nargs="*", metavar="P",
                        help="also measure Verilator's simulation speed at these lane counts (default 16 64 128)")
    parser.add_argument("--verilator-rounds", type=int, default=3, metavar="N",
                        help="simulations of each lane count, interleaved (default 3)")
    args = parser.parse_args(argv)
    console = Console(width=max(Console().width, 160))
    with threadpool_limits(limits=1):
        tt, tt_met = tt_table(args.repeats, CASES[:1] if args.quick else CASES)
        console.print(tt)
        dense_worst: dict[str, float] = {}
        if not args.quick:
            dense, dense_worst = dense_table(args.repeats)
            console.print(dense)
    if args.verilator is not None:
        console.print(verilator_table(args.verilator or [16, 64, 128], args.verilator_rounds))
    console.print(f"UCF11 batch 1: both tensorgate rows >= {SPEEDUP_TARGET:.0f}x dense onnxruntime and within "
                  f"{HAND_TARGET}x of the hand chain -> {'met' if tt_met else 'NOT met'}")
    if not args.quick:
        console.print(verdict(dense_worst))
    return 0 if tt_met and (args.quick or any_met(dense_worst)) else 1


if __name__ == "__main__":
    sys.exit(main())
