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
  1,200 digits as inputs (``augment=4``: four mixups or noisy copies per digit), the 597
  others held out;
* ``torch 2-layer BiLSTM``: ``nn.LSTM(40, 64, num_layers=2, bidirectional=True,
  batch_first=True)`` as torch initializes it (seeded), exported by torch 2.13's
  TorchScript exporter, its output sequence the output; random normal inputs (2,048
  sequences of 12 steps to learn from, 512 held out);
* ``Silero VAD`` 6.2.3 (``silero_vad.onnx``, ``--bind sr=16000``, one 576-sample chunk and
  the LSTM state per call) and ``ddddocr`` 1.6.1 (``common.onnx``, a 64x160 image): the
  shipped ONNX models, partitioned by the importer into host regions (the STFT/Conv front
  end, the VAD's Conv/Sigmoid head) and the recurrent core.  Fine-tuning trains the core
  (``passes/trained_region.py``): the front end runs once per sample in onnxruntime, and
  the teacher is the imported model's core outputs (the VAD's state and head features;
  ddddocr's logits, its head being a tensorgate ``linear``).  They import at batch 1, so
  the samples are stacked along a leading axis.  VAD inputs: seeded speech-like audio
  (voiced syllables on a varying pitch, pauses, noise) cut into chunks, with the states
  the imported model reaches on it (48 sequences of 40 chunks to learn from, ``augment=2``,
  12 held out); its error is the largest change of the speech probability when each model runs
  the held-out sequences on its own state (the target: within 0.02), and the warning
  column is what a compile measuring per call would say.  ddddocr inputs: seeded images
  of 4-6 random characters drawn in Pillow's default font with noise (192 to learn from,
  48 held out), normalized as ddddocr does.

The wheels are fetched like ``benchmarks/real_models.py`` does (``pip download --no-deps``
into the cache, ``--models DIR``, default ``$TENSORGATE_MODELS`` or
``~/.cache/tensorgate/models``); offline, their rows say what to fetch.

Target (the compression issue): at least 5x fewer parameters in the recurrent layers
with an output error of at most 2% of the range.  Exits non-zero when a model misses it.

A data-aware start of the distillation was measured and does not help.  Fitting each
decomposed map of the BiLSTM by L-BFGS to ``min tr((M - W) Σ (M - W)^T)``, ``Σ`` the
second moment of the inputs the imported model feeds that map (its input rows for
``W``, its hidden states for ``R``), cuts the maps' squared relative output error from
0.73-0.75 to 0.38-0.69 (``W``) and 0.12-0.46 (``R``), and the output error before
distillation from 40.2% to 35.0%; but after three epochs of this script's distillation
(the cosine over the three) it is 17.8%, against 15.4% from TT-SVD, and after the
BiLSTM's twenty epochs 13.2% against 13.1% (the fit: branch ``distill-fitmaps``,
``finetune{fit-maps=true}``).  On the digits LSTM it lowers the held-out agreement
(``tests/digits_classifier.py``).

Why the VAD row stays far off: its error is the largest change over all chunks of the
held-out streams, each model on its own state, so one chunk the student still calls
speech after the teacher has let go reads as ~0.9.  Learning also from the student's
own states (after each round it runs the training audio on its own state, and those
calls, labelled by the teacher, join the data: DAgger) instead of the teacher's alone
was measured on 24 streams of 40 chunks, three rounds of four epochs: 0.89 -> 0.64 ->
0.85 with the student's states, 0.89 -> 0.68 -> 0.97 without.  Neither settles in runs
this short: the error is set by single chunks and jumps between rounds, whichever
states the student learns from.

    python benchmarks/distill.py [--quick] [--models DIR] [--decompose PIPELINE] [--only NAME]

Training runs on one torch thread (``OMP_NUM_THREADS=1`` is set before torch loads): the
models are small, and more threads on a busy machine make every step slower.
"""

from __future__ import annotations

import argparse
import contextlib
import io
import math
import os
import sys
import tempfile
import time
import warnings
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
from rich.console import Console
from rich.table import Table

os.environ.setdefault("OMP_NUM_THREADS", "1")
sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "tests"))
sys.path.insert(0, str(Path(__file__).resolve().parent))

from digits_classifier import STORED, TRAIN, digits
from real_models import Offline, member

from tensorgate.frontend import import_onnx
from tensorgate.interpreter.executor import Executor
from tensorgate.passes import PassManager
from tensorgate.passes.fidelity import DEFAULT_WARN_ERROR, class_scores, measure_fidelity
from tensorgate.passes.quantization.report import top1_agreement

COMPRESSION_TARGET, ERROR_TARGET = 5.0, 0.02
DECOMPOSE = "decompose"
DISTILL = "finetune{data=%s epochs=%d lr=%g batch=%d augment=%d schedule=cosine}"
VAD_CHUNK, VAD_HOP, VAD_RATE = 576, 512, 16000
"""A silero VAD call reads 576 samples: 64 of context and 512 new ones (16 kHz)."""
OCR_CHARACTERS = "0123456789abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ"


@dataclass(frozen=True)
class Case:
    """A model; ``inputs(module)`` gives the inputs it learns from and the data it is
    measured on (which may depend on the imported model: VAD states); ``error(imported,
    compressed, test)`` the output error and whether a compile would warn."""

    name: str
    path: Callable[[], Path]
    inputs: Callable[[object], tuple[dict[str, np.ndarray], object]]
    error: Callable[[object, object, object], tuple[float, bool]]
    epochs: int
    lr: float
    batch: int = 32
    augment: int = 0
    bind: dict = field(default_factory=dict)
    shapes: dict = field(default_factory=dict)


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


# --- errors -----------------------------------------------------------------------------------


def batched_error(imported, module, test: dict[str, np.ndarray]) -> tuple[float, bool]:
    """``passes/fidelity.py``'s output error on a batch of held-out inputs."""
    fidelity = measure_fidelity(imported, module, test, "held-out")
    return fidelity.error, fidelity.exceeds(DEFAULT_WARN_ERROR)


def per_call_error(imported, module, stacked: dict[str, np.ndarray]) -> float:
    """The output error as ``passes/fidelity.py`` defines it, over calls of a model with a
    static batch (``stacked[name][i]`` is call ``i``'s input): the worst output's largest
    change over its range across the calls (1 - top-1 agreement for class scores)."""
    outputs = {}
    for network in (imported, module):
        executor = Executor(network, np.float64)
        calls = [executor.run({name: array[i] for name, array in stacked.items()})
                 for i in range(len(next(iter(stacked.values()))))]
        outputs[id(network)] = {v.name: np.stack([call[v.name] for call in calls]) for v in module.outputs}
    errors = []
    for value in module.outputs:
        ref, ours = outputs[id(imported)][value.name], outputs[id(module)][value.name]
        if class_scores(value):
            errors.append(1 - top1_agreement(ref, ours))
        else:
            errors.append(float(np.abs(ours - ref).max() / np.ptp(ref)) if np.ptp(ref) else math.inf)
    return max(errors)


def stacked_error(imported, module, test: dict[str, np.ndarray]) -> tuple[float, bool]:
    error = per_call_error(imported, module, test)
    return error, error > DEFAULT_WARN_ERROR


# --- the models -------------------------------------------------------------------------------


def digits_case(workdir: Path, quick: bool) -> Case:
    sequences, _ = digits()
    return Case("digits LSTM (trained)", lambda: STORED,
                lambda module: ({"x": sequences[:, :TRAIN]}, {"x": sequences[:, TRAIN:]}), batched_error,
                5 if quick else 30, 0.02, 64, 4)


def bilstm_case(workdir: Path, quick: bool) -> Case:
    rng = np.random.default_rng(0)
    sizes = (512, 128) if quick else (2048, 512)
    train, test = (rng.standard_normal((size, 12, 40)).astype(np.float32) for size in sizes)
    return Case("torch 2-layer BiLSTM", lambda: bilstm_onnx(workdir / "bilstm.onnx"),
                lambda module: ({"x": train}, {"x": test}), batched_error, 2 if quick else 20, 0.01)


def speech_like(rng: np.random.Generator, chunks: int) -> np.ndarray:
    """Seeded speech-like audio for ``chunks`` VAD calls: voiced syllables (a harmonic
    series on a wavering pitch, shaped by three formant peaks) between pauses, over noise."""
    size = chunks * VAD_HOP + VAD_CHUNK - VAD_HOP
    audio = rng.normal(0, rng.uniform(0.002, 0.02), size)
    start = int(rng.uniform(0, 0.3) * VAD_RATE)
    while start < size:
        length = min(int(rng.uniform(0.1, 0.4) * VAD_RATE), size - start)
        if length > 1 and rng.random() < 0.7:
            time_ = np.arange(length) / VAD_RATE
            pitch = rng.uniform(90, 250) * (1 + 0.1 * np.sin(2 * np.pi * rng.uniform(1, 4) * time_))
            phase = 2 * np.pi * np.cumsum(pitch) / VAD_RATE
            formants = rng.uniform((300, 900, 2200), (900, 2200, 3200))
            voice = sum(np.sin(k * phase) * (0.1 + sum(np.exp(-((k * pitch - f) / 250) ** 2) for f in formants)) / k
                        for k in range(1, 25))
            envelope = np.sin(np.pi * np.arange(length) / length) ** 0.5
            audio[start:start + length] += rng.uniform(0.1, 0.6) * envelope * voice / np.abs(voice).max()
        start += length + int(rng.uniform(0.05, 0.4) * VAD_RATE)
    return np.clip(audio, -1, 1).astype(np.float32)


def vad_stream(module, audio: np.ndarray) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """``module`` run over ``audio`` chunk by chunk on its own state, as silero VAD is
    used: every call's input and state (stacked) and the speech probabilities."""
    executor = Executor(module, np.float64)
    state = np.zeros((2, 1, 128), np.float32)
    chunks, states, probabilities = [], [], []
    for start in range(0, len(audio) - VAD_CHUNK + 1, VAD_HOP):
        chunk = audio[None, start:start + VAD_CHUNK]
        outputs = executor.run({"input": chunk, "state": state})
        chunks.append(chunk)
        states.append(state)
        probabilities.append(float(outputs["output"].reshape(-1)[0]))
        state = outputs["stateN"].astype(np.float32)
    return np.stack(chunks), np.stack(states), np.array(probabilities)


def vad_error(imported, module, audios: list[np.ndarray]) -> tuple[float, bool]:
    """The largest change of the speech probability over the held-out sequences, each
    model on its own state; and whether the per-call output error (the imported model's
    states) passes the warning threshold."""
    worst, calls = 0.0, {"input": [], "state": []}
    for audio in audios:
        chunks, states, reference = vad_stream(imported, audio)
        worst = max(worst, float(np.abs(vad_stream(module, audio)[2] - reference).max()))
        calls["input"].append(chunks)
        calls["state"].append(states)
    stacked = {name: np.concatenate(arrays) for name, arrays in calls.items()}
    return worst, per_call_error(imported, module, stacked) > DEFAULT_WARN_ERROR


def vad_case(cache: Path, quick: bool) -> Case:
    sequences, chunks = (12, 20) if quick else (48, 40)

    def inputs(module):
        rng = np.random.default_rng(0)
        train = [vad_stream(module.imported, speech_like(rng, chunks))[:2] for _ in range(sequences)]
        test = [speech_like(rng, chunks) for _ in range(max(sequences // 4, 2))]
        return {"input": np.concatenate([t[0] for t in train]), "state": np.concatenate([t[1] for t in train])}, test

    return Case("Silero VAD", lambda: member("silero-vad", cache, "silero_vad/data/silero_vad.onnx"), inputs,
                vad_error, 2 if quick else 30, 0.01, 32, 2, {"sr": VAD_RATE},
                {"input": [1, VAD_CHUNK], "state": [2, 1, 128]})


def text_images(rng: np.random.Generator, count: int) -> np.ndarray:
    """``count`` seeded 64x160 images of 4-6 random characters with noise, normalized as
    ddddocr normalizes its input (``(pixel / 255 - 0.5) / 0.5``), stacked as calls."""
    from PIL import Image, ImageDraw, ImageFont

    images = []
    for _ in range(count):
        image = Image.new("L", (160, 64), int(rng.integers(180, 256)))
        draw = ImageDraw.Draw(image)
        font = ImageFont.load_default(size=int(rng.integers(28, 40)))
        text = "".join(rng.choice(list(OCR_CHARACTERS), int(rng.integers(4, 7))))
        draw.text((int(rng.integers(2, 30)), int(rng.integers(4, 18))), text, fill=int(rng.integers(0, 90)),
                  font=font)
        for _ in range(int(rng.integers(0, 4))):
            draw.line([tuple(int(v) for v in rng.integers(0, (160, 64))) for _ in range(2)],
                      fill=int(rng.integers(0, 200)), width=1)
        pixels = np.asarray(image, np.float32) + rng.normal(0, 8, (64, 160))
        images.append((np.clip(pixels, 0, 255) / 255 - 0.5) / 0.5)
    return np.stack(images)[:, None, None].astype(np.float32)


def ocr_case(cache: Path, quick: bool) -> Case:
    sizes = (32, 8) if quick else (192, 48)

    def inputs(module):
        rng = np.random.default_rng(0)
        return {"input1": text_images(rng, sizes[0])}, {"input1": text_images(rng, sizes[1])}

    return Case("ddddocr", lambda: member("ddddocr", cache, "ddddocr/common.onnx"), inputs, stacked_error,
                1 if quick else 4, 0.003, 8, 0, {}, {"input1": [1, 1, 64, 160]})


# --- measuring --------------------------------------------------------------------------------


def measure(case: Case, decompose: str, workdir: Path, console: Console) -> Row:
    start = time.perf_counter()
    try:
        path = case.path()
    except Offline as offline:
        return Row(case.name, problem=f"offline: {offline} is not cached and pip could not fetch it")
    module = PassManager.parse("canonicalize, dce").run(import_onnx(path, bind=case.bind, shapes=case.shapes))
    dense = recurrent_params(module)
    train, test = case.inputs(module)
    PassManager.parse(decompose).run(module)
    before = case.error(module.imported, module, test)
    data = workdir / f"{case.name.split()[0]}-inputs.npz"
    np.savez(data, **train)
    shapes = ", ".join(f"{name}{list(array.shape)}" for name, array in train.items())
    console.print(f"{case.name}: fine-tuning without labels on {shapes}")
    PassManager.parse(DISTILL % (data, case.epochs, case.lr, case.batch, case.augment)).run(module)
    after = case.error(module.imported, module, test)
    return Row(case.name, (dense, recurrent_params(module)), (before[0], after[0]), (before[1], after[1]),
               time.perf_counter() - start)


def table(rows: list[Row], decompose: str) -> Table:
    result = Table(title=f"{decompose} + label-free distillation (output error on held-out inputs)")
    for column in ("model", "recurrent params before -> after", "output error before -> after distillation",
                   "warning shown? before / after", "seconds", "target"):
        result.add_column(column, justify="left" if column in ("model", "target") else "right", overflow="fold")
    for row in rows:
        if row.params is None:
            result.add_row(row.name, "-", "-", "-", "-", row.problem)
            continue
        (dense, compressed), (before, after) = row.params, row.errors
        result.add_row(row.name, f"{dense:,} -> {compressed:,} ({dense / compressed:.1f}x)",
                       f"{before:.1%} -> {after:.1%}", " / ".join("yes" if w else "no" for w in row.warnings),
                       f"{row.seconds:.0f}", "met" if row.met else "MISSED")
    return result


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true", help="few epochs and inputs (a smoke run)")
    parser.add_argument("--models", type=Path,
                        default=Path(os.environ.get("TENSORGATE_MODELS", Path.home() / ".cache/tensorgate/models")),
                        help="cache of the shipped models' wheels (default: $TENSORGATE_MODELS or "
                             "~/.cache/tensorgate/models)")
    parser.add_argument("--decompose", default=DECOMPOSE, help=f"the decompose pass (default: {DECOMPOSE})")
    parser.add_argument("--only", help="run the models whose name contains this text")
    args = parser.parse_args(argv)
    console = Console(width=max(Console().width, 200))
    with tempfile.TemporaryDirectory() as tmp:
        workdir = Path(tmp)
        cases = [digits_case(workdir, args.quick), bilstm_case(workdir, args.quick), vad_case(args.models, args.quick),
                 ocr_case(args.models, args.quick)]
        rows = [measure(case, args.decompose, workdir, console) for case in cases
                if args.only is None or args.only.lower() in case.name.lower()]
    console.print(table(rows, args.decompose))
    console.print("error: the largest change of an output over its range, or 1 - top-1 agreement for class scores "
                  "(VAD: of the speech probability, each model on its own state); "
                  f"target: >= {COMPRESSION_TARGET:.0f}x fewer recurrent parameters at <= {ERROR_TARGET:.0%}")
    return 0 if all(row.met for row in rows) else 1


if __name__ == "__main__":
    sys.exit(main())
