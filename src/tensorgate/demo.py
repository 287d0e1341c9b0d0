"""`tensorgate demo`: the whole compiler on the bundled LSTM digit classifier.

The model (``data/demo_lstm.onnx``, trained once by ``examples/demo_model``) is imported
and run next to onnxruntime; then compressed step by step, each stage measured on the
297 held-out digits it never saw (``data/demo_digits.npz``): TT decomposition of its
LSTM maps, label-free fine-tuning (the 1,500 training images without their labels, the
imported model as the teacher), 8-bit quantization (the integer golden model), and the
PE-array accelerator compiled to Verilog and simulated under Verilator, bit-exact with
the golden model, with its cycles per time step.
"""

from __future__ import annotations

import tempfile
from dataclasses import dataclass, replace
from importlib import resources
from pathlib import Path

import numpy as np
from rich.console import Console
from rich.table import Table

from .errors import TensorgateError

DEMO_PIPELINE = "canonicalize, dce"
COMPRESS_PIPELINE = "decompose{method=tt max-rank=4}"
DISTILL_PIPELINE = "finetune{data=%s epochs=16 lr=0.02 schedule=cosine}"
HARDWARE_BITS = 8
HARDWARE_PIPELINE = "order-contractions, quantize{bits=%d calibration=%s}"
HARDWARE_PES = 16
CALIBRATION_IMAGES = 256
PIXEL_SCALE = 16.0
"""The digits' pixels are integers 0..16; the model reads them divided by this."""


def demo_files() -> tuple[Path, Path]:
    data = resources.files("tensorgate") / "data"
    return Path(str(data / "demo_lstm.onnx")), Path(str(data / "demo_inputs.npz"))


@dataclass(frozen=True)
class Digits:
    """The demo's data: the training images (unlabeled) and the held-out test set."""

    train: np.ndarray
    test: np.ndarray
    test_labels: np.ndarray

    @classmethod
    def load(cls) -> "Digits":
        path = resources.files("tensorgate") / "data" / "demo_digits.npz"
        with np.load(str(path)) as data:
            return cls(*(np.asarray(data[key] / PIXEL_SCALE, np.float32) for key in ("train", "test")),
                       data["test_labels"])


@dataclass(frozen=True)
class Stage:
    """One row of the compression table: parameters and top-1 results on the test digits."""

    name: str
    pipeline: str
    params: int
    accuracy: float
    agreement: float
    cycles_per_step: float | None = None


def run_demo(console: Console | None = None) -> dict:
    """Import, compile (numpy target), run beside onnxruntime; then compress, fine-tune,
    quantize and simulate, printing a table of every stage.

    Returns the outputs and stages the tables show, so tests can check the same numbers.
    """
    import onnxruntime

    from .backend.artifact import load_artifact, write_numpy_artifact
    from .frontend import import_onnx
    from .interpreter import run_module
    from .passes import PassManager

    console = console or Console()
    model_path, inputs_path = demo_files()
    with np.load(inputs_path) as data:
        images, labels = data["image_rows"], data["labels"]
    console.print(f"model: {model_path.name} (LSTM 8->16, linear + softmax head, 10 digit classes; trained)")
    module = PassManager.parse(DEMO_PIPELINE).run(import_onnx(model_path))
    with tempfile.TemporaryDirectory() as tmp:
        artifact = write_numpy_artifact(module, Path(tmp) / "demo", DEMO_PIPELINE, str(model_path))
        compiled, manifest = load_artifact(artifact)
        ours = run_module(compiled, {"image_rows": images})["probabilities"]
    session = onnxruntime.InferenceSession(str(model_path), providers=["CPUExecutionProvider"])
    reference = session.run(["probabilities"], {"image_rows": images})[0]
    table = Table(title=f"tensorgate (pipeline: {DEMO_PIPELINE}) vs onnxruntime")
    for column in ("sample", "label", "tensorgate class", "p", "onnxruntime class", "p", "max |diff|"):
        table.add_column(column, justify="right")
    for index, (mine, theirs) in enumerate(zip(ours, reference)):
        table.add_row(str(index), str(labels[index]), str(mine.argmax()), f"{mine.max():.4f}",
                      str(theirs.argmax()), f"{theirs.max():.4f}", f"{np.abs(mine - theirs).max():.1e}")
    console.print(table)
    console.print(f"parameters: {manifest['params']['dense']:,}; all outputs agree within "
                  f"{np.abs(ours - reference).max():.1e}")
    compressed = run_compression(module, Digits.load(), images, str(model_path), console)
    return {"tensorgate": ours, "onnxruntime": reference, **compressed}


def run_compression(module, digits: Digits, images: np.ndarray, source: str, console: Console) -> dict:
    """TT decomposition, label-free fine-tuning, 8-bit quantization and the accelerator
    under Verilator, each stage measured on the held-out digits."""
    from .explore import without_trailing_softmax
    from .interpreter import run_fixed, run_module
    from .ir.stats import model_stats
    from .passes import PassManager

    reference = run_module(module, {"image_rows": digits.test}, dtype=np.float64)["probabilities"].argmax(-1)

    def stage(name: str, pipeline: str, network, predicted: np.ndarray) -> Stage:
        return Stage(name, pipeline, model_stats(network).params_compressed,
                     float(np.mean(predicted == digits.test_labels)), float(np.mean(predicted == reference)))

    def float_classes(network) -> np.ndarray:
        return run_module(network, {"image_rows": digits.test}, dtype=np.float64)["probabilities"].argmax(-1)

    stages = [stage("imported (float)", DEMO_PIPELINE, module, reference)]
    student = PassManager.parse(COMPRESS_PIPELINE).run(module.copy())
    stages.append(stage("TT-SVD", COMPRESS_PIPELINE, student, float_classes(student)))
    with tempfile.TemporaryDirectory() as tmp:
        unlabeled = Path(tmp) / "unlabeled.npz"
        np.savez(unlabeled, image_rows=digits.train)
        distill = DISTILL_PIPELINE % unlabeled
        console.print(f"fine-tuning without labels on {len(digits.train):,} training digits "
                      "(teacher: the imported model)")
        PassManager.parse(distill).run(student)
        stages.append(stage("+ label-free fine-tuning", distill.replace(str(unlabeled), "TRAIN.npz"), student,
                            float_classes(student)))
        logits, _ = without_trailing_softmax(student.copy(), "probabilities")  # fixed point has no softmax
        calibration = Path(tmp) / "calibration.npz"
        np.savez(calibration, image_rows=digits.train[:CALIBRATION_IMAGES])
        quantize = HARDWARE_PIPELINE % (HARDWARE_BITS, calibration)
        PassManager.parse(quantize).run(logits)
        name = logits.outputs[0].name
        fixed = run_fixed(logits, {"image_rows": digits.test})[name].argmax(-1)
        hardware = run_hardware(logits, images, source, Path(tmp), console)
        stages.append(replace(stage(f"+ {HARDWARE_BITS}-bit, PE array", quantize.replace(str(calibration), "CAL.npz"),
                                    logits, fixed), cycles_per_step=hardware["cycles_per_step"]))
    float_agreement = float(np.mean(fixed == float_classes(student)))
    console.print(stages_table(stages, len(digits.test)))
    for row in stages:
        console.print(f"  {row.name}: {row.pipeline}", markup=False, highlight=False)
    console.print(f"{HARDWARE_BITS}-bit top-1 agreement with the fine-tuned float model: {float_agreement:.1%}")
    return {"stages": stages, "quantized_agreement": float_agreement, **hardware}


def stages_table(stages: list[Stage], samples: int) -> Table:
    """Parameters, accuracy, agreement with the imported model and cycles per time step
    of each stage (the pipelines are printed under it)."""
    table = Table(title=f"the compiler, stage by stage, on {samples} held-out digits")
    for column in ("stage", "parameters", "accuracy", "agreement", "cycles/step"):
        table.add_column(column, justify="left" if column == "stage" else "right")
    dense = stages[0].params
    for row in stages:
        cycles = "-" if row.cycles_per_step is None else f"{row.cycles_per_step:,.0f}"
        table.add_row(row.name, f"{row.params:,} ({dense / row.params:.1f}x)", f"{row.accuracy:.1%}",
                      f"{row.agreement:.1%}", cycles)
    return table


def run_hardware(module, images: np.ndarray, source: str, workdir: Path, console: Console) -> dict[str, np.ndarray]:
    """Compile the quantized ``module`` for the PE array, simulate it under Verilator and
    show that every output code equals the integer golden model's."""
    from .backend.verilog.artifact import write_verilog_artifact
    from .interpreter import run_fixed
    from .runtime.simulator import Simulator

    artifact = write_verilog_artifact(module, workdir / "hw", "demo", source, HARDWARE_PES)
    with console.status("building the accelerator with Verilator and simulating"):
        simulated, stats = Simulator(artifact).run({"image_rows": images}, raw=True)
    golden = run_fixed(module, {"image_rows": images}, raw=True)
    name = module.outputs[0].name
    table = Table(title=f"{HARDWARE_BITS}-bit PE array ({HARDWARE_PES} PEs) under Verilator vs the integer golden "
                        "model")
    for column in ("sample", "golden class", "verilator class", "bit-exact"):
        table.add_column(column, justify="right")
    for index, (mine, theirs) in enumerate(zip(golden[name], simulated[name])):
        table.add_row(str(index), str(mine.argmax()), str(theirs.argmax()),
                      "yes" if np.array_equal(mine, theirs) else "[red]NO[/red]")
    console.print(table)
    exact = np.array_equal(golden[name], simulated[name])
    console.print(f"{'every output code equal' if exact else 'MISMATCH'}; {stats['cycles']:,} cycles "
                  f"({stats['cycles_per_step']:,.0f} per time step, MAC bound {stats['mac_bound_cycles']:,.0f}), "
                  f"simulated at {stats['cycles_per_second'] / 1e6:.1f} M cycles/s")
    if not exact:
        raise TensorgateError("the simulated accelerator differs from the integer golden model")
    return {"golden": golden[name], "verilator": simulated[name], "cycles_per_step": stats["cycles_per_step"]}
