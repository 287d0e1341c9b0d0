"""Compress a digits LSTM with TT, BT and HT, fine-tune, quantize, simulate: one table.

    python examples/digits/run.py            # the full study (~5 min on 2 cores)
    python examples/digits/run.py --quick    # a smoke run of every stage (~30 s)

Steps: build the imbalanced digits split (``data.py``), train the dense LSTM classifier
in PyTorch and export it to ONNX (``train.py``), import it, then for every method and
rank setting: ``decompose`` (W and R, 4 modes), ``order-contractions``, ``finetune``
with cross-entropy and with focal loss (same epochs, learning rate and seed), evaluate
the float model (NumPy runtime) on the balanced test set, ``quantize`` to 8 and 16 bits
with calibration sequences from the training set and evaluate the integer golden model
(accuracy and top-1 agreement with the float model).  Every 8-bit model is compiled for
the Verilog accelerator (P MAC lanes) and simulated with Verilator on a few test
sequences; its outputs must equal the golden model's bit for bit, and the table reports
its cycles per time step.  The table is printed and written as markdown to ``results.md``.
"""

from __future__ import annotations

import argparse
import contextlib
import io
import json
import re
import sys
import tempfile
import time
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from data import CLASSES, MINORITY, MINORITY_FRACTION, Split, imbalanced_split
from train import HIDDEN, train_dense

EXAMPLE_DIR = Path(__file__).resolve().parent


@dataclass(frozen=True)
class Settings:
    """What one run does: the study, or its quick smoke version."""

    dense_epochs: int
    finetune_epochs: int
    configs: tuple[tuple[str, str, str], ...]
    """(method, label, decompose options) per compressed model."""
    simulated_sequences: int
    calibration_sequences: int = 256
    finetune_lr: float = 3e-3
    finetune_batch: int = 32
    pes: int = 16
    seed: int = 0


FULL = Settings(
    dense_epochs=30, finetune_epochs=10, simulated_sequences=4,
    configs=(("tt", "r≤8", "method=tt max-rank=8"), ("tt", "r≤4", "method=tt max-rank=4"),
             ("bt", "4 blocks, r≤4", "method=bt blocks=4 tucker-rank=4"),
             ("bt", "2 blocks, r≤4", "method=bt blocks=2 tucker-rank=4"),
             ("ht", "r≤8", "method=ht max-rank=8"), ("ht", "r≤4", "method=ht max-rank=4")))
QUICK = Settings(dense_epochs=2, finetune_epochs=1, simulated_sequences=1, calibration_sequences=64,
                 configs=(("tt", "r≤4", "method=tt max-rank=4"),))
LOSSES = ("ce", "focal")
BITS = (8, 16)


@dataclass
class Row:
    """One model of the table: its size, float metrics, quantized metrics, hardware."""

    model: str
    ranks: str
    loss: str
    params: int
    compression: float
    float_metrics: dict
    quantized: dict[int, dict] = field(default_factory=dict)
    cycles_per_step: float | None = None
    bit_exact: bool | None = None


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true", help="a fast smoke run of every stage")
    parser.add_argument("--work", type=Path, help="keep the data, models and artifacts here (default: a temp dir)")
    parser.add_argument("--results", type=Path,
                        help="markdown table to write (default: results.md here, or in --work with --quick)")
    parser.add_argument("--verbose", action="store_true", help="show the per-epoch fine-tuning progress")
    args = parser.parse_args(argv)
    settings = QUICK if args.quick else FULL
    with contextlib.ExitStack() as stack:
        work = args.work or Path(stack.enter_context(tempfile.TemporaryDirectory(prefix="digits-")))
        work.mkdir(parents=True, exist_ok=True)
        results = args.results or (work / "results.md" if args.quick else EXAMPLE_DIR / "results.md")
        Study(settings, work, args.verbose).run(results)
    return 0


class Study:
    """The whole example; ``run`` prints the table and writes the markdown."""

    def __init__(self, settings: Settings, work: Path, verbose: bool):
        self.settings, self.work, self.verbose = settings, work, verbose
        self.started = time.perf_counter()

    def log(self, message: str) -> None:
        print(f"[{time.perf_counter() - self.started:6.1f}s] {message}", flush=True)

    def run(self, results: Path) -> None:
        import torch

        torch.set_num_threads(1)  # tiny tensors: more threads only contend on a busy machine
        split = imbalanced_split(self.settings.seed)
        train_counts, test_counts = split.class_counts()
        self.log(f"data: {split.train_x.shape[0]} steps x {split.train_x.shape[2]} features; train per class "
                 f"{train_counts.tolist()}, test per class {test_counts.tolist()}")
        self.split = split
        self.train_data = self.work / "train.npz"
        self.calibration = self.work / "calibration.npz"
        np.savez(self.train_data, x=split.train_x, labels=split.train_y)
        np.savez(self.calibration, x=split.train_x[:, :self.settings.calibration_sequences])

        onnx_path = train_dense(split.train_x, split.train_y, self.work / "dense.onnx", self.settings.dense_epochs,
                                self.settings.seed)
        self.log(f"trained the dense LSTM ({self.settings.dense_epochs} epochs) and exported {onnx_path.name}")
        rows = self.evaluate_all(onnx_path)
        elapsed = time.perf_counter() - self.started
        render(rows, split, self.settings, elapsed, results)

    def evaluate_all(self, onnx_path: Path) -> list:
        from tensorgate.backend.report import model_stats
        from tensorgate.frontend import import_onnx
        from tensorgate.passes import PassManager

        dense = PassManager.parse("canonicalize, dce").run(import_onnx(onnx_path))
        dense_params = model_stats(dense).params_compressed
        rows = [self.evaluate("dense", "-", "ce", dense, dense_params)]
        for method, ranks, options in self.settings.configs:
            decomposed = PassManager.parse(f"decompose{{weights=all {options}}}, order-contractions").run(dense.copy())
            for loss in LOSSES:
                tuned = decomposed.copy()
                self.finetune(tuned, loss, self.work / f"finetune-{slug(method, ranks, loss)}.json")
                rows.append(self.evaluate(method, ranks, loss, tuned, dense_params))
        return rows

    def finetune(self, module, loss: str, report: Path) -> None:
        """Train ``module`` in place; the per-epoch lines only with ``--verbose`` (the
        metrics go to ``report``)."""
        from tensorgate.passes import PassManager

        s = self.settings
        pipeline = PassManager.parse(f"finetune{{data={self.train_data} loss={loss} epochs={s.finetune_epochs} "
                                     f"lr={s.finetune_lr} batch={s.finetune_batch} seed={s.seed} report={report}}}")
        with contextlib.nullcontext() if self.verbose else contextlib.redirect_stderr(io.StringIO()):
            pipeline.run(module)

    def evaluate(self, method: str, ranks: str, loss: str, module, dense_params: int) -> Row:
        """Float metrics, 8/16-bit golden-model metrics and the 8-bit simulation of ``module``."""
        from tensorgate.backend.report import model_stats
        from tensorgate.runtime.fixed_runtime import run_fixed
        from tensorgate.runtime.numpy_runtime import run_module

        params = model_stats(module).params_compressed
        float_logits = run_module(module, {"x": self.split.test_x})["logits"]
        row = Row(method, ranks, loss, params, dense_params / params, classification_metrics(
            float_logits, self.split.test_y))
        for bits in BITS:
            quantized = self.quantize(module, bits)
            logits = run_fixed(quantized, {"x": self.split.test_x})["logits"]
            row.quantized[bits] = {**classification_metrics(logits, self.split.test_y),
                                   "agreement": float(np.mean(logits.argmax(-1) == float_logits.argmax(-1)))}
            if bits == 8:
                row.cycles_per_step, row.bit_exact = self.simulate(quantized, slug(method, ranks, loss))
        self.log(f"{method} {ranks} {loss}: {params:,} params ({row.compression:.1f}x), accuracy "
                 f"{row.float_metrics['accuracy']:.2%} float, {row.quantized[8]['accuracy']:.2%} 8-bit, "
                 f"{row.cycles_per_step:,.0f} cycles/step, bit-exact: {row.bit_exact}")
        return row

    def quantize(self, module, bits: int):
        from tensorgate.passes import PassManager

        return PassManager.parse(f"quantize{{bits={bits} calibration={self.calibration}}}").run(module.copy())

    def simulate(self, quantized, name: str) -> tuple[float, bool]:
        """Cycles per step on the Verilated accelerator, and whether its output codes equal
        the golden model's on the first test sequences."""
        from tensorgate.backend.verilog.artifact import write_verilog_artifact
        from tensorgate.runtime.fixed_runtime import run_fixed
        from tensorgate.runtime.simulator import Simulator

        artifact = write_verilog_artifact(quantized, self.work / f"verilog-{name}", "quantize{bits=8}", name,
                                          self.settings.pes)
        inputs = {"x": self.split.test_x[:, :self.settings.simulated_sequences]}
        outputs, stats = Simulator(artifact, progress=False).run(inputs, raw=True)
        golden = run_fixed(quantized, inputs, raw=True)
        (artifact / "stats.json").write_text(json.dumps(stats, indent=2) + "\n")
        return float(stats["cycles_per_step"]), bool(np.array_equal(outputs["logits"], golden["logits"]))


def slug(*words: str) -> str:
    """A file name made of ``words`` (letters, digits and dashes)."""
    return re.sub(r"[^a-z0-9]+", "-", " ".join(words).lower().replace("≤", "")).strip("-")


def classification_metrics(logits: np.ndarray, labels: np.ndarray) -> dict:
    """Accuracy, macro precision/recall/F1 and the mean recall of the minority digits."""
    from sklearn.metrics import precision_recall_fscore_support

    predictions = logits.argmax(axis=-1)
    precision, recall, f1, _ = precision_recall_fscore_support(labels, predictions, labels=list(range(CLASSES)),
                                                               zero_division=0)
    return {"accuracy": float(np.mean(predictions == labels)), "precision": float(precision.mean()),
            "recall": float(recall.mean()), "f1": float(f1.mean()),
            "minority_recall": float(recall[list(MINORITY)].mean())}


# --- the table ----------------------------------------------------------------------------

COLUMNS = ("model", "ranks", "loss", "params", "compression", "accuracy", "macro P", "macro R", "macro F1",
           "recall 7-9", "8-bit acc", "8-bit agree", "16-bit acc", "16-bit agree", "cycles/step")


def table_cells(row: Row) -> list[str]:
    f, q8, q16 = row.float_metrics, row.quantized[8], row.quantized[16]
    percent = "{:.1%}".format
    return [row.model, row.ranks, row.loss, f"{row.params:,}", f"{row.compression:.1f}x", percent(f["accuracy"]),
            percent(f["precision"]), percent(f["recall"]), percent(f["f1"]), percent(f["minority_recall"]),
            percent(q8["accuracy"]), percent(q8["agreement"]), percent(q16["accuracy"]), percent(q16["agreement"]),
            f"{row.cycles_per_step:,.0f}" + ("" if row.bit_exact else " (not bit-exact)")]


def targets(rows: list[Row]) -> list[str]:
    """The example's targets, each with the figures that decide it."""
    dense, compressed = rows[0], rows[1:]
    base = dense.float_metrics["accuracy"]
    small = [r for r in compressed if r.compression >= 20]
    kept = [r for r in small if r.float_metrics["accuracy"] >= base - 0.01]
    best = max(small or compressed, key=lambda r: (r.float_metrics["accuracy"], r.compression))
    lines = [f"- >= 20x fewer parameters with <= 1 point accuracy loss: {'met' if kept else 'NOT met'} "
             f"({len(kept)} of {len(small)} models at >= 20x; best {describe(best)} at "
             f"{best.float_metrics['accuracy']:.1%} vs dense {base:.1%})"]
    cost = [(r.float_metrics["accuracy"] - r.quantized[8]["accuracy"], r) for r in kept]
    cheap = [r for c, r in cost if c <= 0.005]
    lines.append(f"- 8-bit costs <= 0.5 point more (on those models): {'met' if cheap else 'NOT met'} "
                 f"({len(cheap)} of {len(kept)}; costs "
                 + ", ".join(f"{describe(r)} {100 * c:+.1f}" for c, r in cost) + " points)")
    pairs = [(ce, focal) for ce, focal in zip(compressed[::2], compressed[1::2])]
    wins = [focal for ce, focal in pairs
            if focal.float_metrics["minority_recall"] > ce.float_metrics["minority_recall"]]
    ties = [focal for ce, focal in pairs
            if focal.float_metrics["minority_recall"] == ce.float_metrics["minority_recall"]]
    lines.append(f"- focal beats cross-entropy on the recall of digits 7-9: in {len(wins)} of {len(pairs)} "
                 f"settings ({len(ties)} ties); mean recall 7-9 "
                 f"{np.mean([focal.float_metrics['minority_recall'] for _, focal in pairs]):.1%} focal vs "
                 f"{np.mean([ce.float_metrics['minority_recall'] for ce, _ in pairs]):.1%} CE")
    exact = all(r.bit_exact for r in rows)
    lines.append(f"- Verilator outputs equal the golden model's bit for bit: {'yes' if exact else 'NO'} (all 8-bit models)")
    return lines


def describe(row: Row) -> str:
    return f"{row.model} {row.ranks} {row.loss}"


def render(rows: list[Row], split: Split, settings: Settings, elapsed: float, results: Path) -> None:
    from rich.console import Console
    from rich.table import Table

    train_counts, test_counts = split.class_counts()
    setup = (f"Digits as 7 frames of 256 pixels; LSTM(256, {HIDDEN}) + linear head. Training set: every image of "
             f"digits 0-6, {MINORITY_FRACTION:.0%} of digits 7-9 ({train_counts.tolist()} per class); balanced "
             f"test set ({test_counts[0]} per class). Fine-tuning: {settings.finetune_epochs} epochs, Adam lr "
             f"{settings.finetune_lr}, batch {settings.finetune_batch}, seed {settings.seed}; focal gamma 2, no alpha. "
             f"Quantized with {settings.calibration_sequences} calibration sequences; golden model on the "
             f"{len(split.test_y)} test sequences; Verilator on {settings.simulated_sequences} sequence(s), "
             f"P={settings.pes}. Total run time {elapsed:.0f} s.")
    console = Console(width=None if sys.stdout.isatty() else 200)
    table = Table(title="digits: dense vs TT/BT/HT LSTM, fine-tuned, quantized, simulated")
    for column in COLUMNS:
        table.add_column(column, justify="left" if column in ("model", "ranks", "loss") else "right")
    for row in rows:
        table.add_row(*table_cells(row))
    console.print(table)
    lines = targets(rows)
    console.print("\n".join(lines))
    markdown = ["| " + " | ".join(COLUMNS) + " |", "|" + "|".join("---" if c in ("model", "ranks", "loss") else "--:"
                                                                     for c in COLUMNS) + "|"]
    markdown += ["| " + " | ".join(table_cells(row)) + " |" for row in rows]
    results.write_text("\n".join([setup, "", *markdown, "", *lines]) + "\n")
    console.print(f"wrote {results}")


if __name__ == "__main__":
    sys.exit(main())
