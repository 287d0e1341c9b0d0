"""Compress digits LSTM and GRU classifiers (TT, BT, HT), fine-tune, quantize, simulate: one table.

    python examples/digits/run.py            # the full study (~11 min on 2 busy shared cores)
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
its cycles per time step.  A dense GRU classifier, trained the same way, goes through
the same steps (fewer settings, cross-entropy only), simulation included.  The table is
printed and written as markdown to ``results.md``.
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
import torch
from rich.console import Console
from rich.table import Table
from sklearn.metrics import precision_recall_fscore_support

from data import CLASSES, MINORITY, MINORITY_FRACTION, Split, imbalanced_split
from tensorgate.ir.stats import model_stats
from tensorgate.backend.verilog.artifact import write_verilog_artifact
from tensorgate.frontend import import_onnx
from tensorgate.passes import PassManager
from tensorgate.interpreter import run_fixed
from tensorgate.interpreter import run_module
from tensorgate.runtime.simulator import Simulator
from train import HIDDEN, train_dense

EXAMPLE_DIR = Path(__file__).resolve().parent


@dataclass(frozen=True)
class Settings:
    """What one run does: the study, or its quick smoke version."""

    dense_epochs: int
    finetune_epochs: int
    configs: tuple[tuple[str, str, str], ...]
    """(method, label, decompose options) per compressed LSTM."""
    gru_configs: tuple[tuple[str, str, str], ...]
    """The same for the GRU (fine-tuned with cross-entropy only)."""
    simulated_sequences: int
    calibration_sequences: int = 256
    finetune_lr: float = 3e-3
    finetune_batch: int = 32
    pes: int = 16
    seed: int = 0


FULL = Settings(
    dense_epochs=30, finetune_epochs=10, simulated_sequences=4,
    configs=(("tt", "r≤8", "method=tt max-rank=8"), ("tt", "r≤4", "method=tt max-rank=4"),
             ("bt", "4 blocks r≤4", "method=bt blocks=4 tucker-rank=4"),
             ("bt", "2 blocks r≤4", "method=bt blocks=2 tucker-rank=4"),
             ("ht", "r≤8", "method=ht max-rank=8"), ("ht", "r≤4", "method=ht max-rank=4")),
    gru_configs=(("tt", "r≤8", "method=tt max-rank=8"), ("tt", "r≤4", "method=tt max-rank=4"),
                 ("ht", "r≤8", "method=ht max-rank=8")))
QUICK = Settings(dense_epochs=2, finetune_epochs=1, simulated_sequences=1, calibration_sequences=64,
                 configs=(("tt", "r≤4", "method=tt max-rank=4"),),
                 gru_configs=(("tt", "r≤4", "method=tt max-rank=4"),))
LOSSES = ("ce", "focal")
BITS = (8, 16)


@dataclass
class Row:
    """One model of the table: its size, float metrics, quantized metrics, hardware."""

    layer: str
    model: str
    ranks: str
    loss: str
    params: int
    compression: float
    float_metrics: dict = field(default_factory=dict)
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
        self.split = imbalanced_split(settings.seed)
        self.train_data, self.calibration = work / "train.npz", work / "calibration.npz"

    def log(self, message: str) -> None:
        print(f"[{time.perf_counter() - self.started:6.1f}s] {message}", flush=True)

    def run(self, results: Path) -> None:
        torch.set_num_threads(1)  # tiny tensors: more threads only contend on a busy machine
        split, s = self.split, self.settings
        train_counts, test_counts = split.class_counts()
        self.log(f"data: {split.train_x.shape[0]} steps x {split.train_x.shape[2]} features; train per class "
                 f"{train_counts.tolist()}, test per class {test_counts.tolist()}")
        np.savez(self.train_data, x=split.train_x, labels=split.train_y)
        np.savez(self.calibration, x=split.train_x[:, :s.calibration_sequences])
        rows = []
        for layer, configs, losses in (("LSTM", s.configs, LOSSES), ("GRU", s.gru_configs, ("ce",))):
            onnx_path = train_dense(split.train_x, split.train_y, self.work / f"dense-{layer.lower()}.onnx",
                                    s.dense_epochs, s.seed, cell=layer.lower())
            self.log(f"trained the dense {layer} ({s.dense_epochs} epochs) and exported {onnx_path.name}")
            rows += self.evaluate_all(layer, onnx_path, configs, losses)
        render(rows, split, s, time.perf_counter() - self.started, results)

    def evaluate_all(self, layer: str, onnx_path: Path, configs, losses) -> list[Row]:
        """The dense model, then every compressed one fine-tuned with each loss."""
        dense_pipeline = "canonicalize, dce"
        dense = PassManager.parse(dense_pipeline).run(import_onnx(onnx_path))
        dense_params = model_stats(dense).params_compressed
        rows = [self.evaluate(Row(layer, "dense", "-", "ce", dense_params, 1.0), dense, dense_pipeline)]
        for method, ranks, options in configs:
            compress = f"decompose{{weights=all {options}}}, order-contractions"
            decomposed = PassManager.parse(compress).run(dense.copy())
            params = model_stats(decomposed).params_compressed
            for loss in losses:
                report = self.work / f"finetune-{slug(layer, method, ranks, loss)}.json"
                finetune = self.finetune_pass(loss, report)
                tuned = decomposed.copy()
                with contextlib.nullcontext() if self.verbose else contextlib.redirect_stderr(io.StringIO()):
                    PassManager.parse(finetune).run(tuned)
                row = Row(layer, method, ranks, loss, params, dense_params / params)
                rows.append(self.evaluate(row, tuned, f"{dense_pipeline}, {compress}, {finetune}"))
        return rows

    def finetune_pass(self, loss: str, report: Path) -> str:
        """The finetune pass text; its per-epoch metrics go to ``report`` (and to stderr
        with ``--verbose``)."""
        s = self.settings
        return (f"finetune{{data={self.train_data} loss={loss} epochs={s.finetune_epochs} lr={s.finetune_lr} "
                f"batch={s.finetune_batch} seed={s.seed} report={report}}}")

    def evaluate(self, row: Row, module, pipeline: str) -> Row:
        """Fill ``row``: float metrics, 8/16-bit golden-model metrics and the simulation of
        the 8-bit model; ``pipeline`` is what made ``module`` from the ONNX model."""
        float_logits = run_module(module, {"x": self.split.test_x})["logits"]
        row.float_metrics = classification_metrics(float_logits, self.split.test_y)
        for bits in BITS:
            quantize = f"quantize{{bits={bits} calibration={self.calibration}}}"
            quantized = PassManager.parse(quantize).run(module.copy())
            logits = run_fixed(quantized, {"x": self.split.test_x})["logits"]
            row.quantized[bits] = {**classification_metrics(logits, self.split.test_y),
                                   "agreement": float(np.mean(logits.argmax(-1) == float_logits.argmax(-1)))}
            if bits == 8 and row.layer in ON_THE_ACCELERATOR:
                row.cycles_per_step, row.bit_exact = self.simulate(quantized, f"{pipeline}, {quantize}",
                                                                   slug(row.layer, row.model, row.ranks, row.loss))
        hardware = (f"{row.cycles_per_step:,.0f} cycles/step, bit-exact: {row.bit_exact}"
                    if row.cycles_per_step is not None else "not simulated")
        self.log(f"{describe(row)}: {row.params:,} params ({row.compression:.1f}x), accuracy "
                 f"{row.float_metrics['accuracy']:.2%} float, {row.quantized[8]['accuracy']:.2%} 8-bit, {hardware}")
        return row

    def simulate(self, quantized, pipeline: str, name: str) -> tuple[float, bool]:
        """Cycles per time step on the Verilated accelerator, and whether its output codes
        equal the golden model's, on the first test sequences."""
        artifact = write_verilog_artifact(quantized, self.work / f"verilog-{name}", pipeline, f"{name}.onnx",
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
    predictions = logits.argmax(axis=-1)
    precision, recall, f1, _ = precision_recall_fscore_support(labels, predictions, labels=list(range(CLASSES)),
                                                               zero_division=0)
    return {"accuracy": float(np.mean(predictions == labels)), "precision": float(precision.mean()),
            "recall": float(recall.mean()), "f1": float(f1.mean()),
            "minority_recall": float(recall[list(MINORITY)].mean())}


# --- the table ----------------------------------------------------------------------------

ON_THE_ACCELERATOR = ("LSTM", "GRU")
"""The layers whose rows are simulated on the Verilog accelerator."""
COLUMNS = ("layer", "model", "ranks", "loss", "params", "compression", "accuracy", "macro P", "macro R", "macro F1",
           "recall 7-9", "8-bit acc", "8-bit agree", "16-bit acc", "16-bit agree")


def table_cells(row: Row) -> list[str]:
    f, q8, q16 = row.float_metrics, row.quantized[8], row.quantized[16]
    percent = "{:.1%}".format
    if row.cycles_per_step is None:
        hardware = "-"
    else:
        hardware = f"{row.cycles_per_step:,.0f}" + ("" if row.bit_exact else " (not bit-exact)")
    return [row.layer, row.model, row.ranks, row.loss, f"{row.params:,}", f"{row.compression:.1f}x", percent(f["accuracy"]),
            percent(f["precision"]), percent(f["recall"]), percent(f["f1"]), percent(f["minority_recall"]),
            percent(q8["accuracy"]), percent(q8["agreement"]), percent(q16["accuracy"]), percent(q16["agreement"]),
            hardware]


def targets(all_rows: list[Row]) -> list[str]:
    """The example's targets, each with the figures that decide it (on the LSTM rows;
    the GRU's own line last)."""
    rows = [r for r in all_rows if r.layer == "LSTM"]
    dense, compressed = rows[0], rows[1:]
    base = dense.float_metrics["accuracy"]
    small = [r for r in compressed if r.compression >= 20]
    kept = [r for r in small if r.float_metrics["accuracy"] >= base - 0.01]
    best = max(small or compressed, key=lambda r: (r.float_metrics["accuracy"], r.compression))
    lines = [f"- >= 20x fewer parameters, <= 1 point accuracy loss after fine-tuning: {met(kept)} "
             f"({len(kept)} of {len(small)} models at >= 20x; the most accurate, {describe(best)}, "
             f"{best.float_metrics['accuracy']:.1%} vs dense {base:.1%})"]
    judged = kept or small
    costs = {describe(r): r.float_metrics["accuracy"] - r.quantized[8]["accuracy"] for r in judged}
    cheap = [name for name, cost in costs.items() if cost <= 0.005]
    lines.append(f"- 8-bit costs <= 0.5 point more (on the {'models above' if kept else 'models at >= 20x'}): "
                 f"{met(cheap)} ({len(cheap)} of {len(judged)}; float minus 8-bit accuracy: "
                 + ", ".join(f"{name} {100 * cost:+.1f}" for name, cost in costs.items()) + " points)")
    recall = {(r.model, r.ranks, r.loss): r.float_metrics["minority_recall"] for r in compressed}
    settings = list(dict.fromkeys((r.model, r.ranks) for r in compressed))
    gains = [recall[(*setting, "focal")] - recall[(*setting, "ce")] for setting in settings]
    wins = sum(gain > 0 for gain in gains)
    lines.append(f"- focal beats cross-entropy on the recall of digits 7-9: {met(wins > len(settings) / 2)} "
                 f"(better in {wins}, equal in {sum(gain == 0 for gain in gains)}, worse in "
                 f"{sum(gain < 0 for gain in gains)} of {len(settings)} settings; focal minus CE: "
                 + ", ".join(f"{model} {ranks} {100 * gain:+.1f}" for (model, ranks), gain in zip(settings, gains))
                 + " points)")
    simulated = [r for r in all_rows if r.layer in ON_THE_ACCELERATOR]
    lines.append(f"- Verilator outputs equal the golden model's bit for bit: "
                 f"{met(all(r.bit_exact for r in simulated))} (every 8-bit LSTM and GRU model)")
    grus = [r for r in all_rows if r.layer == "GRU"]
    if grus:
        agreeing = [r for r in grus if r.quantized[8]["agreement"] >= 0.98]
        lines.append(f"- GRU: 8-bit golden model agrees with the float model on >= 98% of the test digits: "
                     f"{met(len(agreeing) == len(grus))} ({len(agreeing)} of {len(grus)}; "
                     + ", ".join(f"{describe(r)} {r.quantized[8]['agreement']:.1%}" for r in grus)
                     + ")")
    return lines


def met(condition) -> str:
    return "met" if condition else "NOT met"


def describe(row: Row) -> str:
    """``tt r≤8 ce`` for an LSTM row, ``GRU tt r≤8`` (``GRU dense``) for a GRU row."""
    if row.layer == "LSTM":
        return f"{row.model} {row.ranks} {row.loss}"
    return f"{row.layer} {row.model}" + ("" if row.ranks == "-" else f" {row.ranks}")


def render(rows: list[Row], split: Split, settings: Settings, elapsed: float, results: Path) -> None:
    """Print the table and the targets; write both, with the setup, as markdown."""
    train_counts, test_counts = split.class_counts()
    setup = (f"Digits as 7 frames of 256 pixels; LSTM(256, {HIDDEN}) or GRU(256, {HIDDEN}) + linear head. "
             f"Training set: every image of "
             f"digits 0-6, {MINORITY_FRACTION:.0%} of digits 7-9 ({train_counts.tolist()} per class); balanced "
             f"test set ({test_counts[0]} per class). Fine-tuning: {settings.finetune_epochs} epochs, Adam lr "
             f"{settings.finetune_lr}, batch {settings.finetune_batch}, seed {settings.seed}; focal gamma 2, no alpha. "
             f"Quantized with {settings.calibration_sequences} calibration sequences; golden model on the "
             f"{len(split.test_y)} test sequences; Verilator on {settings.simulated_sequences} sequence(s), "
             f"P={settings.pes}. Total run time {elapsed:.0f} s.")
    columns = COLUMNS + (f"cycles/step (batch {settings.simulated_sequences})",)
    console = Console(width=None if sys.stdout.isatty() else 200)
    table = Table(title="digits: dense vs TT/BT/HT LSTM and GRU, fine-tuned, quantized, simulated")
    for column in columns:
        table.add_column(column, justify="left" if column in ("layer", "model", "ranks", "loss") else "right")
    for row in rows:
        table.add_row(*table_cells(row))
    console.print(table)
    lines = targets(rows)
    console.print("\n".join(lines))
    markdown = ["| " + " | ".join(columns) + " |",
                "|" + "|".join("---" if c in ("layer", "model", "ranks", "loss") else "--:" for c in columns) + "|"]
    markdown += ["| " + " | ".join(table_cells(row)) + " |" for row in rows]
    results.write_text("\n".join([setup, "", *markdown, "", *lines]) + "\n")
    console.print(f"wrote {results}")


if __name__ == "__main__":
    sys.exit(main())
