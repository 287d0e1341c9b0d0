"""`tensorgate demo`: the bundled LSTM digit classifier, compiled and run next to onnxruntime."""

from __future__ import annotations

import tempfile
from importlib import resources
from pathlib import Path

import numpy as np
from rich.console import Console
from rich.table import Table

DEMO_PIPELINE = "canonicalize, dce"


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
    from .passes import PassManager
    from .runtime.numpy_runtime import run_module

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
    return {"tensorgate": ours, "onnxruntime": reference}
