"""`tensorgate demo`: the bundled LSTM digit classifier, compiled and run next to
onnxruntime, then quantized, compiled to the PE-array accelerator and simulated under
Verilator, bit-exact with the integer golden model."""

from __future__ import annotations

import tempfile
from importlib import resources
from pathlib import Path

import numpy as np
from rich.console import Console
from rich.table import Table

from .errors import TensorgateError

DEMO_PIPELINE = "canonicalize, dce"
HARDWARE_PIPELINE = "canonicalize, dce, order-contractions, quantize{bits=16 calibration=%s}"
HARDWARE_PES = 16


def demo_files() -> tuple[Path, Path]:
    data = resources.files("tensorgate") / "data"
    return Path(str(data / "demo_lstm.onnx")), Path(str(data / "demo_inputs.npz"))


def run_demo(console: Console | None = None) -> dict[str, np.ndarray]:
    """Import, compile (numpy target), run; print a table beside onnxruntime's outputs.

    Returns both outputs so tests can check the same numbers the table shows.
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
    console.print(f"model: {model_path.name} (LSTM 8->16, linear head, 10 digit classes)")
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
    hardware = run_hardware(import_onnx(model_path), images, labels, str(model_path), console)
    return {"tensorgate": ours, "onnxruntime": reference, **hardware}


def run_hardware(module, images, labels, source: str, console: Console) -> dict[str, np.ndarray]:
    """Quantize to 16 bits, compile for the PE array, simulate under Verilator and show
    that every output code equals the integer golden model's."""
    from .backend.verilog.artifact import write_verilog_artifact
    from .explore import without_trailing_softmax
    from .interpreter import run_fixed
    from .passes import PassManager
    from .runtime.simulator import Simulator

    module, _ = without_trailing_softmax(module, module.outputs[0].name)  # fixed point has no softmax
    with tempfile.TemporaryDirectory() as tmp:
        calibration = Path(tmp) / "calibration.npz"
        np.savez(calibration, image_rows=images)
        pipeline = HARDWARE_PIPELINE % calibration
        PassManager.parse(pipeline).run(module)
        artifact = write_verilog_artifact(module, Path(tmp) / "hw", pipeline, source, HARDWARE_PES)
        with console.status("building the accelerator with Verilator and simulating"):
            simulated, stats = Simulator(artifact).run({"image_rows": images}, raw=True)
    golden = run_fixed(module, {"image_rows": images}, raw=True)
    name = module.outputs[0].name
    table = Table(title=f"16-bit fixed point: integer golden model vs Verilator ({HARDWARE_PES} PEs)")
    for column in ("sample", "label", "golden class", "verilator class", "bit-exact"):
        table.add_column(column, justify="right")
    for index, (mine, theirs) in enumerate(zip(golden[name], simulated[name])):
        table.add_row(str(index), str(labels[index]), str(mine.argmax()), str(theirs.argmax()),
                      "yes" if np.array_equal(mine, theirs) else "[red]NO[/red]")
    console.print(table)
    exact = np.array_equal(golden[name], simulated[name])
    console.print(f"{'every output code equal' if exact else 'MISMATCH'}; {stats['cycles']:,} cycles "
                  f"({stats['cycles_per_step']:,.0f} per time step, MAC bound {stats['mac_bound_cycles']:,.0f}), "
                  f"simulated at {stats['cycles_per_second'] / 1e6:.1f} M cycles/s")
    if not exact:
        raise TensorgateError("the simulated accelerator differs from the integer golden model")
    return {"golden": golden[name], "verilator": simulated[name]}
