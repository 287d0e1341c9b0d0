"""Compression users can trust: default ``decompose`` plus label-free distillation on
trained or shipped recurrent models, measured side by side in one run.

Each model is compiled with ``canonicalize, dce`` and ``decompose`` (the defaults: ranks from
eps 0.9, W and a large R, maps that do not pay left dense), measured against the
imported model on held-out inputs (``passes/fidelity.py``: the largest change of each
output over its range; top-1 agreement for class scores), then fine-tuned without
labels (``finetune{data=INPUTS}``: the imported model is the teacher) and measured
again.  Columns: the parameters of the recurrent layers (their W and R maps and
biases) before and after, the output error before and after distillation, and
whether ``compile`` would warn (error above 5%).

Models:

* ``digits LSTM``: the trained classifier of the tests (``tests/data/digits_lstm.onnx``),
  1,200 digits as inputs, the 597 others held out;
* ``torch 2-layer BiLSTM``: ``nn.LSTM(40, 64, num_layers=2, bidirectional=True,
  batch_first=True)`` as torch initializes it (seeded), exported by torch 2.13's
  TorchScript exporter, its output sequence the output; random normal inputs (2,048
  sequences of 12 steps to learn from, 512 held out);
* ``Silero VAD`` (``--bind sr=16000``, input 1x576) and ``ddddocr`` (a 64x160 image):
  the shipped ONNX models (``--models DIR``, the real-models cache), partitioned by the
  importer into host regions and the recurrent core; their rows show what default
  ``decompose`` does to the recurrent layers and say why they are not distilled yet.

Target (the compression issue): at least 5x fewer parameters in the recurrent layers
with an output error of at most 2% of the range.  Exits non-zero when a model misses it.

    python benchmarks/distill.py [--quick] [--models /work/notes/real_models/cache]
"""

from __future__ import annotations

import argparse
import contextlib
import io
import math
import sys
import tempfile
import time
import warnings
from dataclasses import dataclass
from pathlib import Path

import numpy as np
from rich.console import Console
from rich.table import Table

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "tests"))

from digits_classifier import STORED, TRAIN, digits  # noqa: E402
from tensorgate.errors import TensorgateError  # noqa: E402
from tensorgate.frontend import import_onnx  # noqa: E402
from tensorgate.passes import PassManager  # noqa: E402
from tensorgate.interpreter import run_module  # noqa: E402
from tensorgate.passes.fidelity import DEFAULT_WARN_ERROR, class_scores, measure_fidelity  # noqa: E402
from tensorgate.passes.quantization.report import top1_agreement  # noqa: E402

COMPRESSION_TARGET, ERROR_TARGET = 5.0, 0.02
DECOMPOSE = "decompose"
DISTILL = "finetune{data=%s epochs=%d lr=%g schedule=cosine}"
SHIPPED = {  # file in the cache, and how to import it (--bind, --shape)
    "Silero VAD": ("ex/silero_vad/data/silero_vad.onnx", {"sr": 16000}, {"input": [1, 576], "state": [2, 1, 128]}),
    "ddddocr": ("ex/ddddocr/common.onnx", {}, {"input1": [1, 1, 64, 160]}),
}
SHIPPED_SAMPLES = 8
"""Random inputs each shipped model's output error is measured on, one call each: VAD
audio as uniform noise in [-0.1, 0.1] with a zero state, ddddocr images uniform in [-1, 1]."""
NOT_DISTILLED = ("not distilled: it imports with a static batch of 1 (no batch axis to train along), and the "
                 "torch twin has no kernel for its host region")


@dataclass(frozen=True)
class Case:
    """A model, the inputs it learns from and the inputs it is measured on."""

    name: str
    path: Path
    train: dict[str, np.ndarray]
    test: dict[str, np.ndarray]
    epochs: int
    lr: float


@dataclass(frozen=True)
class Row:
    name: str
    params: tuple[int, int] | None = None
    errors: tuple[float, float] | None = None
    warnings: tuple[bool, bool] | None = None
    seconds: float = 0.0
    problem: str | None = None

    @property
    def met(self) -> bool:
        return (self.problem is None and self.params[0] >= COMPRESSION_TARGET * self.params[1]
                and self.errors[1] <= ERROR_TARGET)


def recurrent_params(module) -> int:
    """Parameters of the module's LSTM layers: W and R as stored, biases and peepholes."""
    total = 0
    for op in module.ops_of("lstm"):
        total += sum(m.params() for m in op.attrs["w"] + op.attrs["r"])
        total += sum(op.attrs[key].size for key in ("bias", "peepholes") if op.attrs[key] is not None)
    return total


def bilstm_onnx(path: Path) -> Path:
    import torch

    class BiLSTM(torch.nn.Module):
        def __init__(self):
            super().__init__()
            self.rnn = torch.nn.LSTM(40, 64, num_layers=2, bidirectional=True, batch_first=True)

        def forward(self, x):
            return self.rnn(x)[0]

    torch.manual_seed(0)
    with warnings.catch_warnings(), contextlib.redirect_stdout(io.StringIO()):
        warnings.simplefilter("ignore")
        torch.onnx.export(BiLSTM().eval(), (torch.zeros(2, 12, 40),), path, input_names=["x"], output_names=["y"],
                          dynamic_axes={"x": {0: "batch"}}, opset_version=17, dynamo=False)
    return path


def cases(workdir: Path, quick: bool) -> list[Case]:
    sequences, _ = digits()
    rng = np.random.default_rng(0)
    sizes = (512, 128) if quick else (2048, 512)
    return [
        Case("digits LSTM (trained)", STORED, {"x": sequences[:, :TRAIN]}, {"x": sequences[:, TRAIN:]},
             5 if quick else 30, 0.02),
        Case("torch 2-layer BiLSTM", bilstm_onnx(workdir / "bilstm.onnx"),
             {"x": rng.standard_normal((sizes[0], 12, 40)).astype(np.float32)},
             {"x": rng.standard_normal((sizes[1], 12, 40)).astype(np.float32)}, 2 if quick else 20, 0.01),
    ]


def measure(case: Case, workdir: Path, console: Console) -> Row:
    start = time.perf_counter()
    module = PassManager.parse("canonicalize, dce").run(import_onnx(case.path))
    dense = recurrent_params(module)
    PassManager.parse(DECOMPOSE).run(module)
    before = measure_fidelity(module.imported, module, case.test, "held-out")
    data = workdir / f"{case.name.split()[0]}-inputs.npz"
    np.savez(data, **case.train)
    shapes = ", ".join(f"{name}{list(array.shape)}" for name, array in case.train.items())
    console.print(f"{case.name}: fine-tuning without labels on {shapes}")
    PassManager.parse(DISTILL % (data, case.epochs, case.lr)).run(module)
    after = measure_fidelity(module.imported, module, case.test, "held-out")
    return Row(case.name, (dense, recurrent_params(module)), (before.error, after.error),
               (before.exceeds(DEFAULT_WARN_ERROR), after.exceeds(DEFAULT_WARN_ERROR)), time.perf_counter() - start)


def shipped(name: str, path: Path, bind: dict, shapes: dict) -> Row:
    """A shipped model's row: what default ``decompose`` does to its recurrent layers, and
    why it is not distilled here."""
    if not path.is_file():
        return Row(name, problem=f"not found: {path}")
    start = time.perf_counter()
    try:
        module = PassManager.parse("canonicalize, dce").run(import_onnx(path, bind=bind, shapes=shapes))
    except TensorgateError as exc:
        return Row(name, problem=f"does not import: {str(exc)[:150]}")
    dense = recurrent_params(module)
    PassManager.parse(DECOMPOSE).run(module)
    before = shipped_error(module)
    return Row(name, params=(dense, recurrent_params(module)), errors=(before, math.nan),
               warnings=(before > DEFAULT_WARN_ERROR, False), seconds=time.perf_counter() - start,
               problem=NOT_DISTILLED)


def shipped_error(module) -> float:
    """The output error of ``module`` against the imported model over ``SHIPPED_SAMPLES``
    random inputs (batch 1 each), as ``passes/fidelity.py`` defines it: the worst output's
    largest change over its range across the samples (1 - top-1 agreement for class scores)."""
    rng = np.random.default_rng(0)
    reference, compressed = {}, {}
    for _ in range(SHIPPED_SAMPLES):
        inputs = {value.name: random_input(value, rng) for value in module.inputs}
        for outputs, network in ((reference, module.imported), (compressed, module)):
            for name, array in run_module(network, inputs, dtype=np.float64).items():
                outputs.setdefault(name, []).append(array)
    errors = []
    for value in module.outputs:
        ref, ours = np.stack(reference[value.name]), np.stack(compressed[value.name])
        if class_scores(value):
            errors.append(1 - top1_agreement(ref, ours))
        else:
            errors.append(float(np.abs(ours - ref).max() / np.ptp(ref)) if np.ptp(ref) else math.inf)
    return max(errors)


def random_input(value, rng) -> np.ndarray:
    shape = [int(dim) for dim in value.type.shape]
    if value.name == "state":
        return np.zeros(shape, np.float32)
    scale = 0.1 if value.name == "input" else 1.0
    return rng.uniform(-scale, scale, shape).astype(np.float32)


def table(rows: list[Row]) -> Table:
    result = Table(title="default decompose + label-free distillation (output error on held-out inputs)")
    for column in ("model", "recurrent params before -> after", "output error before -> after distillation",
                   "warning shown? before / after", "seconds", "target"):
        result.add_column(column, justify="left" if column in ("model", "target") else "right", overflow="fold")
    for row in rows:
        if row.params is None:
            result.add_row(row.name, "-", "-", "-", "-", row.problem)
            continue
        if row.problem is not None:
            (dense, compressed), before = row.params, row.errors[0]
            result.add_row(row.name, f"{dense:,} -> {compressed:,} ({dense / compressed:.1f}x)",
                           f"{before:.1%} -> (not run)", f"{'yes' if row.warnings[0] else 'no'} / -",
                           f"{row.seconds:.0f}", row.problem)
            continue
        (dense, compressed), (before, after) = row.params, row.errors
        result.add_row(row.name, f"{dense:,} -> {compressed:,} ({dense / compressed:.1f}x)",
                       f"{before:.1%} -> {after:.1%}", " / ".join("yes" if w else "no" for w in row.warnings),
                       f"{row.seconds:.0f}", "met" if row.met else "MISSED")
    return result


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true", help="few epochs and inputs (a smoke run)")
    parser.add_argument("--models", type=Path, help="folder of the shipped models (the real-models cache)")
    args = parser.parse_args(argv)
    console = Console(width=max(Console().width, 200))
    with tempfile.TemporaryDirectory() as tmp:
        rows = [measure(case, Path(tmp), console) for case in cases(Path(tmp), args.quick)]
    if args.models is not None:
        rows += [shipped(name, args.models / relative, bind, shapes) for name, (relative, bind, shapes)
                 in SHIPPED.items()]
    console.print(table(rows))
    console.print("error: the largest change of an output over its range, or 1 - top-1 agreement for class scores; "
                  f"target: >= {COMPRESSION_TARGET:.0f}x fewer recurrent parameters at <= {ERROR_TARGET:.0%}")
    return 0 if all(row.met for row in rows) else 1


if __name__ == "__main__":
    sys.exit(main())
