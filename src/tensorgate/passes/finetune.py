"""The ``finetune`` pass: train a (decomposed) model's weights on labelled data with PyTorch.

Decomposing a trained LSTM costs accuracy; a few epochs of training the cores (and the
other weights) on the task's data win most of it back.  The pass builds the module's
torch twin (``passes.torch_model``: the cores are parameters and are contracted, never
multiplied out), trains it with Adam, and writes the trained tensors back into the
module's maps, which keep their formats, ranks and schedules.

Data: ``data=FILE.npz`` holds the model's input(s) by input name and ``labels``, integer
class indices, one per sample.  The samples run along each input's batch axis: its dim
named ``batch``, or else the one axis whose length is the number of labels.  The model
is a classifier: the trained output (``output=NAME``, needed only if there are several)
is ``[batch, classes]``; the loss is taken on its logits, i.e. the operand of a final
``softmax`` / ``log_softmax``, or the output itself.

Loss, per sample with ``p_t`` the softmax probability of the true class:

* ``ce``: ``-α_t log p_t``;
* ``focal`` (Lin et al., 2017): ``-α_t (1 - p_t)^γ log p_t``, ``γ = gamma`` (default 2);

with ``α_t = alpha[label]`` for per-class ``alpha``, the one value for a scalar, 1 without;
the batch loss is their mean.  Metrics per epoch, on the training samples (as seen
during the epoch) and on the validation split (``val-split``, held out at random, after
the epoch): loss, accuracy, and macro recall (the mean over classes of the fraction of
each class's samples predicted right; classes absent from a split are left out).

Everything random (the validation split, the order of the samples) follows ``seed``,
and torch is seeded with it, so a run is repeatable.  PyTorch is an optional
dependency: without it the pass fails saying how to install it.
"""

from __future__ import annotations

import json
import math
import zipfile
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import ClassVar, Literal

import numpy as np

from ..errors import PassError, PipelineError
from ..ir.core import Module, Value
from ..ir.linear_map import LinearMap
from ..ir.types import FloatType, IntType
from .base import Pass, option

INSTALL_HINT = "pip install 'tensorgate[train]' (torch==2.13.0)"
DEFAULT_GAMMA = 2.0
SINGLE_THREAD_MACS = 1 << 22
"""Models whose maps cost fewer multiply-accumulates than this per optimization step
(per time step, for an LSTM's) train on one torch thread: waking more threads for tiny
tensors costs more than it saves, and far more on a busy machine."""


@dataclass(frozen=True)
class Finetune(Pass):
    """Train the module's weights on ``data`` (see the module docstring)."""

    name: ClassVar[str] = "finetune"
    doc: ClassVar[str] = "Train the cores and other weights on labelled data (.npz) with PyTorch."

    data: Path | None = option(None, doc=".npz with the model's input(s) by name and integer 'labels'")
    epochs: int = option(10, min=1, doc="passes over the training samples")
    lr: float = option(1e-3, min=0, doc="Adam learning rate (> 0)")
    batch: int = option(32, min=1, doc="samples per optimization step")
    loss: Literal["ce", "focal"] = option("ce", doc="cross-entropy or focal loss")
    gamma: float | None = option(None, min=0, doc="focal loss focusing exponent (default 2)")
    alpha: tuple[float, ...] | None = option(None, min=0, doc="loss weight: one value, or one per class")
    val_split: float = option(0.0, min=0, max=0.9, doc="fraction of the samples held out for validation")
    seed: int = option(0, doc="seed of the split, the sample order and torch")
    output: str | None = option(None, doc="the output to train (needed if the model has several)")
    trainable: Literal["all", "maps"] = option("all", doc="train every weight, or only the linear maps")
    report: Path | None = option(None, doc="write the per-epoch metrics to this JSON file")

    def __post_init__(self) -> None:
        super().__post_init__()
        if self.data is None:
            raise PipelineError("pass 'finetune': option 'data' is required (an .npz of inputs and 'labels')")
        if self.lr <= 0:
            raise PipelineError(f"pass 'finetune': option 'lr' must be > 0, got {self.lr}")
        if self.gamma is not None and self.loss != "focal":
            raise PipelineError("pass 'finetune': option 'gamma' applies to loss=focal only")

    def run(self, module: Module) -> bool:
        from ..fixedpoint.quant_attrs import require_float

        require_float(module, f"pass '{self.name}'")
        history = finetune(module, self)
        if self.report is not None:
            try:
                Path(self.report).write_text(json.dumps([asdict(epoch) for epoch in history], indent=2) + "\n")
            except OSError as exc:
                raise PassError(f"cannot write the report to '{self.report}': {exc.strerror or exc}") from None
        return True


@dataclass(frozen=True)
class Metrics:
    loss: float
    accuracy: float
    macro_recall: float


@dataclass(frozen=True)
class Epoch:
    """The metrics of one epoch (``validation`` is ``None`` without a split)."""

    epoch: int
    train: Metrics
    validation: Metrics | None


def import_torch():
    """The ``torch`` module, or a ``PassError`` saying how to install it."""
    try:
        import torch
    except ImportError:
        raise PassError(f"finetune needs PyTorch, which is not installed: {INSTALL_HINT}") from None
    return torch


# --- data -------------------------------------------------------------------------------


@dataclass
class Dataset:
    """Inputs by name, their batch axes and the labels."""

    inputs: dict[str, np.ndarray]
    axes: dict[str, int]
    labels: np.ndarray

    def __len__(self) -> int:
        return len(self.labels)

    def take(self, rows: np.ndarray) -> "Dataset":
        return Dataset({name: np.take(array, rows, axis=self.axes[name]) for name, array in self.inputs.items()},
                       self.axes, self.labels[rows])


def load_dataset(path: Path, module: Module) -> Dataset:
    """The arrays of ``path``, checked against the module's inputs."""
    path = Path(path)
    if not path.is_file():
        raise PassError(f"finetune: data file '{path}' does not exist")
    try:
        with np.load(path, allow_pickle=False) as data:
            arrays = {key: data[key] for key in data.files}
    except (OSError, ValueError, zipfile.BadZipFile) as exc:
        raise PassError(f"finetune: data file '{path}' is not a readable .npz ({exc})") from None
    expected = [v.name for v in module.inputs] + ["labels"]
    missing = [name for name in expected if name not in arrays]
    unknown = [name for name in arrays if name not in expected]
    if missing or unknown:
        problem = f"lacks {', '.join(missing)}" if missing else f"has unknown arrays {', '.join(unknown)}"
        raise PassError(f"finetune: data file '{path}' {problem} (expected the model's inputs "
                        f"{', '.join(expected[:-1])} and 'labels')")
    labels = arrays.pop("labels")
    if labels.ndim != 1 or labels.dtype.kind not in "iu" or not len(labels):
        raise PassError(f"finetune: data file '{path}': 'labels' must be a non-empty 1-d integer array "
                        f"of class indices, got {labels.dtype}{list(labels.shape)}")
    axes = {value.name: _batch_axis(path, value, arrays[value.name], len(labels)) for value in module.inputs}
    return Dataset(arrays, axes, labels.astype(np.int64))


def _batch_axis(path: Path, value: Value, array: np.ndarray, samples: int) -> int:
    """The axis of ``array`` along which the samples run; the others must fit the type."""
    where = f"finetune: data file '{path}': input '{value.name}'"
    dims = value.type.shape
    if array.ndim != len(dims):
        raise PassError(f"{where} has shape {list(array.shape)}, expected rank {len(dims)} ({value.type})")
    if isinstance(value.type.dtype, FloatType) and (array.dtype.kind not in "fiu" or not np.isfinite(array).all()):
        raise PassError(f"{where} must hold finite numbers")
    if isinstance(value.type.dtype, IntType) and array.dtype.kind not in "iu":
        raise PassError(f"{where} must hold integers ({value.type})")
    named = [axis for axis, dim in enumerate(dims) if dim == "batch"]
    candidates = named or [axis for axis, size in enumerate(array.shape) if size == samples]
    if len(candidates) != 1:
        reason = "no axis" if not candidates else f"axes {candidates} all"
        raise PassError(f"{where}: {reason} of shape {list(array.shape)} match the {samples} labels; "
                        "name the batch dim 'batch' in the model to say which")
    axis = candidates[0]
    if array.shape[axis] != samples:
        raise PassError(f"{where} has {array.shape[axis]} samples along its batch axis {axis}, "
                        f"but there are {samples} labels")
    for index, (dim, size) in enumerate(zip(dims, array.shape)):
        if index != axis and isinstance(dim, int) and dim != size:
            raise PassError(f"{where} has shape {list(array.shape)}, expected {value.type} (batch axis {axis})")
    return axis


def split_dataset(data: Dataset, fraction: float, rng: np.random.Generator) -> tuple[Dataset, Dataset | None]:
    """A random ``fraction`` of the samples held out for validation."""
    held = math.floor(fraction * len(data))  # < len(data): fraction <= 0.9
    if not held:
        return data, None
    order = rng.permutation(len(data))
    return data.take(np.sort(order[held:])), data.take(np.sort(order[:held]))


# --- training ---------------------------------------------------------------------------


def logits_value(module: Module, output: str | None) -> Value:
    """The value the loss is taken on: the trained output, or the operand of the final
    softmax/log_softmax that makes it."""
    names = [v.name for v in module.outputs]
    if output is None:
        if len(names) != 1:
            raise PassError(f"finetune: the model has outputs {', '.join(names)}; say which to train with output=NAME")
        output = names[0]
    if output not in names:
        raise PassError(f"finetune: the model has no output '{output}' (outputs: {', '.join(names)})")
    value = module.outputs[names.index(output)]
    producer = value.producer
    if producer is not None and producer.kind in ("softmax", "log_softmax") and \
            producer.attrs["axis"] % value.type.rank == value.type.rank - 1:
        value = producer.operands[0]
    if value.type.rank != 2 or not isinstance(value.type.dtype, FloatType):
        raise PassError(f"finetune: output '{output}' is {value.type}; a classifier's [batch, classes] is needed")
    return value


def classification_loss(logits, labels, loss: str, gamma: float | None, alpha):
    """Mean over the batch of ``-α_t (1 - p_t)^γ log p_t`` (``γ = 0`` for ``ce``)."""
    torch = import_torch()
    log_pt = torch.log_softmax(logits, dim=-1).gather(1, labels[:, None])[:, 0]
    per_sample = -log_pt
    if loss == "focal":
        per_sample = per_sample * (1 - torch.exp(log_pt)) ** (DEFAULT_GAMMA if gamma is None else gamma)
    if alpha is not None:
        per_sample = per_sample * (alpha[labels] if alpha.dim() else alpha)
    return per_sample.mean()


def metrics(loss_sum: float, predictions: np.ndarray, labels: np.ndarray) -> Metrics:
    recalls = [np.mean(predictions[labels == c] == c) for c in np.unique(labels)]
    return Metrics(loss_sum / len(labels), float(np.mean(predictions == labels)), float(np.mean(recalls)))


def finetune(module: Module, config: Finetune) -> list[Epoch]:
    """Train ``module`` in place as ``config`` says; the metrics of every epoch."""
    torch = import_torch()
    from .torch_model import TorchModel

    logits = logits_value(module, config.output)
    logits_name, classes = logits.name, logits.type.shape[-1]
    data = load_dataset(config.data, module)
    _check_labels(data.labels, classes, config)
    rng = np.random.default_rng(config.seed)
    train, validation = split_dataset(data, config.val_split, rng)
    torch.manual_seed(config.seed)
    model = TorchModel(module, config.trainable)
    if not len(model.weights):
        raise PassError("finetune: the model has no weights to train")
    optimizer = torch.optim.Adam(model.parameters(), lr=config.lr)
    alpha = None if config.alpha is None else torch.tensor(
        config.alpha if len(config.alpha) > 1 else config.alpha[0], dtype=torch.float32)

    def run(batch: Dataset, learn: bool) -> tuple[float, np.ndarray]:
        labels = torch.as_tensor(batch.labels)
        with torch.set_grad_enabled(learn):
            logits = model(batch.inputs, [logits_name])[logits_name]
            loss = classification_loss(logits, labels, config.loss, config.gamma, alpha)
        if learn:
            optimizer.zero_grad()
            loss.backward()
            optimizer.step()
        return loss.item() * len(batch), logits.detach().argmax(dim=-1).numpy()

    history = []
    threads = torch.get_num_threads()
    if _macs_per_sample(module) * config.batch < SINGLE_THREAD_MACS:
        torch.set_num_threads(1)
    try:
        with _Progress(config.epochs, math.ceil(len(train) / config.batch)) as progress:
            for epoch in range(1, config.epochs + 1):
                history.append(_epoch(epoch, train, validation, rng, config, run, progress))
    finally:
        torch.set_num_threads(threads)
    model.write_back()
    return history


def _epoch(epoch, train, validation, rng, config, run, progress) -> Epoch:
    """One pass over ``train`` in a fresh random order, then the validation split."""
    order = rng.permutation(len(train))
    loss_sum, predictions = 0.0, np.empty(len(train), np.int64)
    for start in range(0, len(train), config.batch):
        rows = order[start:start + config.batch]
        batch_loss, predictions[start:start + len(rows)] = run(train.take(rows), learn=True)
        loss_sum += batch_loss
        progress.advance()
    result = Epoch(epoch, metrics(loss_sum, predictions, train.labels[order]),
                   None if validation is None else metrics(*run(validation, learn=False), validation.labels))
    progress.log(result)
    return result


def _macs_per_sample(module: Module) -> int:
    """Multiply-accumulates of one application of every linear map of the module."""
    return sum(leaf.macs() for op in module.ops for value in op.attrs.values()
               for leaf in (value if isinstance(value, list) else [value]) if isinstance(leaf, LinearMap))


def _check_labels(labels: np.ndarray, classes, config: Finetune) -> None:
    if isinstance(classes, int) and (labels.min() < 0 or labels.max() >= classes):
        raise PassError(f"finetune: labels must be class indices in [0, {classes}), "
                        f"got values from {labels.min()} to {labels.max()}")
    if config.alpha is not None and len(config.alpha) > 1 and len(config.alpha) != classes:
        raise PassError(f"finetune: alpha has {len(config.alpha)} values, the model has {classes} classes")


class _Progress:
    """A progress bar over all optimization steps (on a terminal) and one line per epoch,
    on stderr."""

    def __init__(self, epochs: int, steps_per_epoch: int):
        from rich.console import Console
        from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeRemainingColumn

        self.console = Console(stderr=True)
        self.epochs = epochs
        self.bar = Progress(TextColumn("finetune"), BarColumn(), MofNCompleteColumn(), TimeRemainingColumn(),
                            console=self.console, transient=True, disable=not self.console.is_terminal)
        self.task = self.bar.add_task("finetune", total=epochs * steps_per_epoch)

    def __enter__(self) -> "_Progress":
        self.bar.start()
        return self

    def __exit__(self, *exc) -> None:
        self.bar.stop()

    def advance(self) -> None:
        self.bar.advance(self.task)

    def log(self, epoch: Epoch) -> None:
        def text(m: Metrics) -> str:
            return f"loss {m.loss:.4f}  accuracy {m.accuracy:.3f}  macro recall {m.macro_recall:.3f}"

        line = f"epoch {epoch.epoch}/{self.epochs}  train: {text(epoch.train)}"
        if epoch.validation is not None:
            line += f"  |  validation: {text(epoch.validation)}"
        self.console.print(line, markup=False, highlight=False, soft_wrap=True)
