"""The ``finetune`` pass: train a (decomposed) model's weights with PyTorch, on labelled
data or, without labels, to match the imported model's outputs (distillation).

Decomposing a trained LSTM costs accuracy; a few epochs of training the cores (and the
other weights) win most of it back.  The pass builds the module's torch twin
(``passes.torch_model``: the cores are parameters and are contracted, never multiplied
out), trains it with Adam, and writes the trained tensors back into the module's maps,
which keep their formats, ranks and schedules.

Data: ``data=FILE.npz`` holds the model's input(s) by input name and, optionally,
``labels``, integer class indices, one per sample.  The samples run along each input's
batch axis: its dim named ``batch``, or else (with labels) the one axis whose length is
the number of labels, (without) the input's one symbolic dim.

A model imported with fixed input shapes (a shipped model at batch 1, say) has no batch
axis; its samples are stacked along an extra leading axis instead (``x[i]`` is one call's
input, all inputs stacked alike, no labels), or given along the axis its type fixes at 1
(``[8, 6, F]`` for an input ``[1, 6, F]``), and the torch twin is mapped over them
(``torch.func.vmap``).

Host regions (ONNX that onnxruntime runs around the recurrent core: a CNN or STFT front
end, a post-processing head) hold no weights tensorgate compiles, and torch cannot
backpropagate through them.  The pass trains the tensorgate region between them
(``passes.trained_region``): the ops before it that depend on no weight (the front end)
run once on every sample, and their results are the region's inputs; the teacher's
values are the imported model's where the region hands over to a host region or to the
model's outputs (for silero VAD: the LSTM state and the features its Conv/Sigmoid head
reads, not the probability the head computes).

Teacher: ``teacher=imported`` trains the module to match the outputs of the imported
model, the module as its pass pipeline first received it (``Module.imported``, kept by
the pass manager), run in float64 on the same inputs.  A user compressing a model
usually has inputs but no labels, and the imported model is then the only reference
there is.  ``teacher=auto`` (the default) is ``imported`` when the data has no labels
and ``none`` when it has; ``none`` trains on the labels alone.  With labels and
``teacher=imported`` the loss mixes both: ``(1 - w) · label loss + w · teacher loss``,
``w = teacher-weight``.

Augmentation (``augment=N``, without labels; default 0): the teacher labels any input, so
the training split is joined by ``N`` synthetic inputs per sample, made once before the
first epoch (seeded): half are mixups ``λ a + (1 - λ) b`` of two random samples, half a
sample plus Gaussian noise of ``noise`` (default 0.3) times the input's standard
deviation.  The student then learns the teacher's function around the data, not only at
its points, which is what it meets on inputs it has not seen.

Trained outputs: with labels, the model is a classifier: the trained output
(``output=NAME``, needed only if there are several) is ``[batch, classes]`` and the loss
is taken on its logits, i.e. the operand of a final ``softmax`` / ``log_softmax``, or
the output itself.  Without labels: ``output=NAME``, or every float output.

Label loss, per sample with ``p_t`` the softmax probability of the true class:

* ``ce``: ``-α_t log p_t``;
* ``focal`` (Lin et al., 2017): ``-α_t (1 - p_t)^γ log p_t``, ``γ = gamma`` (default 2);

with ``α_t = alpha[label]`` for per-class ``alpha``, the one value for a scalar, 1 without;
the batch loss is their mean.  Teacher loss (``distill``), summed over the trained outputs:

* ``mse``: the mean squared difference from the teacher's output, divided by the
  variance of the teacher's output over the data (so outputs of any scale weigh alike);
* ``kl``: ``KL(p_teacher || p_student)`` of the softmax over the last axis, per sample,
  averaged; a softmax (log-softmax) output is compared as the probabilities it holds,
  any other output as logits;
* ``auto``: ``kl`` for an output made by a softmax or log-softmax, ``mse`` otherwise.

Metrics per epoch, on the training samples (as seen during the epoch) and on the
validation split (``val-split``, held out at random, after the epoch): loss; with
labels, accuracy and macro recall (the mean over classes of the fraction of each class's
samples predicted right; classes absent from a split are left out); with a teacher and
a ``[batch, classes]`` output, the top-1 agreement with the teacher.

``schedule=cosine`` lowers the learning rate from ``lr`` to 0 over all steps (a cosine);
``constant`` keeps it.  Everything random (the validation split, the order of the
samples) follows ``seed``, and torch is seeded with it, so a run is repeatable.
PyTorch is an optional dependency: without it the pass fails saying how to install it.
"""

from __future__ import annotations

import json
import math
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import ClassVar, Literal

import numpy as np

from ..errors import PassError, PipelineError
from ..ir.core import Module, Value
from ..ir.linear_map import LinearMap
from ..ir.types import FloatType, IntType
from .base import Pass, option
from .trained_region import TrainedRegion, trained_region

INSTALL_HINT = "pip install 'tensorgate[train]' (torch==2.13.0)"
DEFAULT_GAMMA = 2.0
DEFAULT_NOISE = 0.3
SINGLE_THREAD_MACS = 1 << 22
"""Models whose maps cost fewer multiply-accumulates than this per optimization step
(per time step, for an LSTM's) train on one torch thread: waking more threads for tiny
tensors costs more than it saves, and far more on a busy machine."""


@dataclass(frozen=True)
class Finetune(Pass):
    """Train the module's weights on ``data`` (see the module docstring)."""

    name: ClassVar[str] = "finetune"
    doc: ClassVar[str] = ("Train the cores and other weights with PyTorch: on labelled data, or to match the "
                          "imported model (.npz without labels).")

    data: Path | None = option(None, doc=".npz with the model's input(s) by name and, optionally, integer 'labels'")
    epochs: int = option(10, min=1, doc="passes over the training samples")
    lr: float = option(1e-3, min=0, doc="Adam learning rate (> 0)")
    batch: int = option(32, min=1, doc="samples per optimization step")
    loss: Literal["ce", "focal"] = option("ce", doc="label loss: cross-entropy or focal loss")
    gamma: float | None = option(None, min=0, doc="focal loss focusing exponent (default 2)")
    alpha: tuple[float, ...] | None = option(None, min=0, doc="loss weight: one value, or one per class")
    teacher: Literal["auto", "imported", "none"] = option(
        "auto", doc="match the imported model's outputs: auto (when the data has no labels), imported, none")
    distill: Literal["auto", "mse", "kl"] = option(
        "auto", doc="teacher loss: kl on softmax outputs and mse on others (auto), mse, or kl")
    teacher_weight: float = option(0.5, min=0, max=1, doc="with labels and a teacher: the teacher loss's weight")
    schedule: Literal["constant", "cosine"] = option("constant", doc="learning rate: constant, or cosine decay to 0")
    val_split: float = option(0.0, min=0, max=0.9, doc="fraction of the samples held out for validation")
    augment: int = option(0, min=0, doc="without labels: synthetic inputs per training sample (mixup and noise)")
    noise: float = option(DEFAULT_NOISE, min=0, doc="augment: the noise's standard deviation, in the input's")
    seed: int = option(0, doc="seed of the split, the sample order and torch")
    output: str | None = option(None, doc="the output to train (with labels: needed if the model has several)")
    trainable: Literal["all", "maps"] = option("all", doc="train every weight, or only the linear maps")
    report: Path | None = option(None, doc="write the per-epoch metrics to this JSON file")

    def __post_init__(self) -> None:
        super().__post_init__()
        if self.data is None:
            raise PipelineError("pass 'finetune': option 'data' is required (an .npz of the model's inputs, "
                                "with 'labels' or without)")
        if self.lr <= 0:
            raise PipelineError(f"pass 'finetune': option 'lr' must be > 0, got {self.lr}")
        if self.gamma is not None and self.loss != "focal":
            raise PipelineError("pass 'finetune': option 'gamma' applies to loss=focal only")
        if self.teacher == "none" and self.augment:
            raise PipelineError("pass 'finetune': option 'augment' needs the teacher to label the inputs it makes")

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
    """One epoch's loss; accuracy and macro recall with labels, top-1 agreement with the
    teacher for a ``[batch, classes]`` output (``None`` where they do not apply)."""

    loss: float
    accuracy: float | None
    macro_recall: float | None
    agreement: float | None = None


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
    """Inputs by name and their batch axes; the labels, if any; the teacher's outputs
    (``targets``, by output name) and their batch axes, once known.  ``stacked``: the
    samples run along an extra leading axis, one call of the model each."""

    inputs: dict[str, np.ndarray]
    axes: dict[str, int]
    labels: np.ndarray | None
    targets: dict[str, np.ndarray] = field(default_factory=dict)
    target_axes: dict[str, int] = field(default_factory=dict)
    stacked: bool = False
    source: Dataset | None = None
    """The model's inputs for the same samples, where ``inputs`` are those of the trained
    region of a model with host regions (``core_data``)."""

    def __len__(self) -> int:
        name = next(iter(self.inputs))
        return self.inputs[name].shape[self.axes[name]]

    def take(self, rows: np.ndarray) -> "Dataset":
        return Dataset({name: np.take(array, rows, axis=self.axes[name]) for name, array in self.inputs.items()},
                       self.axes, None if self.labels is None else self.labels[rows],
                       {name: np.take(array, rows, axis=self.target_axes[name])
                        for name, array in self.targets.items()}, self.target_axes, self.stacked,
                       None if self.source is None else self.source.take(rows))

    def with_inputs(self, inputs: dict[str, np.ndarray], axes: dict[str, int]) -> Dataset:
        """The same samples with ``inputs`` for the trained region (``self`` as their source)."""
        return Dataset(inputs, axes, self.labels, self.targets, self.target_axes, self.stacked, self)

    def joined(self, other: Dataset) -> Dataset:
        """The samples of ``self`` and then those of ``other`` (no labels)."""
        def join(mine, theirs, axes):
            return {name: np.concatenate([array, theirs[name]], axis=axes[name]) for name, array in mine.items()}

        return Dataset(join(self.inputs, other.inputs, self.axes), self.axes, None,
                       join(self.targets, other.targets, self.target_axes), self.target_axes, self.stacked,
                       None if self.source is None else self.source.joined(other.source))


def read_data(path: Path, module: Module) -> tuple[dict[str, np.ndarray], np.ndarray | None]:
    """The inputs and the labels (``None`` if there are none) of ``path``."""
    from .quantization.calibrate import read_npz

    path = Path(path)
    arrays = read_npz(path, "finetune: data file")
    expected = [v.name for v in module.inputs] + ["labels"]
    missing = [name for name in expected[:-1] if name not in arrays]
    unknown = [name for name in arrays if name not in expected]
    if missing or unknown:
        problem = f"lacks {', '.join(missing)}" if missing else f"has unknown arrays {', '.join(unknown)}"
        raise PassError(f"finetune: data file '{path}' {problem} (expected the model's inputs "
                        f"{', '.join(expected[:-1])} and, optionally, 'labels')")
    labels = arrays.pop("labels", None)
    if labels is not None and (labels.ndim != 1 or labels.dtype.kind not in "iu" or not len(labels)):
        raise PassError(f"finetune: data file '{path}': 'labels' must be a non-empty 1-d integer array "
                        f"of class indices, got {labels.dtype}{list(labels.shape)}")
    return arrays, labels


def dataset_of(path: Path, module: Module, arrays: dict[str, np.ndarray], labels: np.ndarray | None) -> Dataset:
    """The samples of ``arrays`` (read from ``path``) along each input's batch axis."""
    samples = None if labels is None else len(labels)
    arrays = {**arrays, **{value.name: _restacked(value, arrays[value.name]) for value in module.inputs}}
    stacked = {value.name: _stacked(path, value, arrays[value.name], labels) for value in module.inputs}
    if len(set(stacked.values())) > 1:
        raise PassError(f"finetune: data file '{path}': inputs {', '.join(n for n, s in stacked.items() if s)} "
                        f"stack their samples along an extra leading axis and "
                        f"{', '.join(n for n, s in stacked.items() if not s)} do not; stack all or none")
    axes = {value.name: 0 if stacked[value.name] else _batch_axis(path, value, arrays[value.name], samples)
            for value in module.inputs}
    counts = {name: arrays[name].shape[axis] for name, axis in axes.items()}
    if len(set(counts.values())) > 1:
        raise PassError(f"finetune: data file '{path}': the inputs hold different numbers of samples "
                        f"({', '.join(f'{name}: {count}' for name, count in counts.items())})")
    return Dataset(arrays, axes, None if labels is None else labels.astype(np.int64), stacked=any(stacked.values()))


def _restacked(value: Value, array: np.ndarray) -> np.ndarray:
    """Samples of a fixed-shape input given along the axis its type fixes at 1 (8 samples
    of ``[1, 6, F]`` as ``[8, 6, F]``), stacked along a new leading axis instead
    (``[8, 1, 6, F]``); any other array as it is."""
    dims = value.type.shape
    if array.ndim != len(dims) or not all(isinstance(dim, int) for dim in dims):
        return array
    off = [axis for axis, (dim, size) in enumerate(zip(dims, array.shape)) if dim != size]
    if len(off) != 1 or dims[off[0]] != 1:
        return array
    return np.expand_dims(np.moveaxis(array, off[0], 0), off[0] + 1)


def _stacked(path: Path, value: Value, array: np.ndarray, labels: np.ndarray | None) -> bool:
    """Whether ``array`` stacks samples of a fixed-shape input along an extra leading axis
    (``array[i]`` is one call's ``value``): the way to train a model imported with a static
    batch, a shipped model at batch 1 say."""
    dims = value.type.shape
    if array.ndim != len(dims) + 1 or not all(isinstance(dim, int) for dim in dims):
        return False
    if tuple(array.shape[1:]) != tuple(dims):
        raise PassError(f"finetune: data file '{path}': input '{value.name}' has shape {list(array.shape)}; "
                        f"stacked samples of {value.type} need [samples, {', '.join(map(str, dims))}]")
    if labels is not None:
        raise PassError(f"finetune: data file '{path}': labels with stacked samples (input '{value.name}', "
                        f"{value.type}) are not supported; learn from the imported model (no labels)")
    return True


def _batch_axis(path: Path, value: Value, array: np.ndarray, samples: int | None) -> int:
    """The axis of ``array`` along which the samples run; the others must fit the type.
    ``samples`` is the number of labels (``None`` without labels)."""
    where = f"finetune: data file '{path}': input '{value.name}'"
    dims = value.type.shape
    if array.ndim != len(dims):
        raise PassError(f"{where} has shape {list(array.shape)}, expected rank {len(dims)} ({value.type})")
    if isinstance(value.type.dtype, FloatType) and (array.dtype.kind not in "fiu" or not np.isfinite(array).all()):
        raise PassError(f"{where} must hold finite numbers")
    if isinstance(value.type.dtype, IntType) and array.dtype.kind not in "iu":
        raise PassError(f"{where} must hold integers ({value.type})")
    named = [axis for axis, dim in enumerate(dims) if dim == "batch"]
    if samples is None:
        candidates = named or [axis for axis, dim in enumerate(dims) if not isinstance(dim, int)]
        if len(candidates) != 1:
            raise PassError(f"{where} ({value.type}): without labels the samples run along the dim named 'batch' "
                            "or the one symbolic dim; name the batch dim 'batch' in the model")
    else:
        candidates = named or [axis for axis, size in enumerate(array.shape) if size == samples]
        if len(candidates) != 1:
            reason = "no axis" if not candidates else f"axes {candidates} all"
            raise PassError(f"{where}: {reason} of shape {list(array.shape)} match the {samples} labels; "
                            "name the batch dim 'batch' in the model to say which")
    axis = candidates[0]
    if samples is not None and array.shape[axis] != samples:
        raise PassError(f"{where} has {array.shape[axis]} samples along its batch axis {axis}, "
                        f"but there are {samples} labels")
    for index, (dim, size) in enumerate(zip(dims, array.shape)):
        if index != axis and isinstance(dim, int) and dim != size:
            raise PassError(f"{where} has shape {list(array.shape)}, expected {value.type} (batch axis {axis})")
    return axis


def synthetic_inputs(data: Dataset, count: int, noise: float, rng: np.random.Generator) -> Dataset:
    """``count`` new inputs per sample of ``data``, unlabelled: half are mixups
    ``λ a + (1 - λ) b`` of two random samples (``λ`` uniform in [0, 1]), half a random
    sample plus Gaussian noise of ``noise`` times the input's standard deviation.  An
    integer input (sequence lengths) takes the first sample's value."""
    total = count * len(data)
    mixed = total // 2
    first, second = rng.integers(0, len(data), (2, total))
    weights = rng.uniform(0, 1, mixed)
    inputs = {}
    for name, array in data.inputs.items():
        axis = data.axes[name]
        if array.dtype.kind != "f":
            inputs[name] = np.take(array, first, axis=axis)
            continue
        shape = [1] * array.ndim
        shape[axis] = mixed
        weight = weights.reshape(shape).astype(array.dtype)
        mixups = weight * np.take(array, first[:mixed], axis=axis) + (1 - weight) * np.take(
            array, second[:mixed], axis=axis)
        picked = np.take(array, first[mixed:], axis=axis)
        noisy = picked + (noise * float(np.std(array)) * rng.standard_normal(picked.shape)).astype(array.dtype)
        inputs[name] = np.concatenate([mixups, noisy], axis=axis)
    return Dataset(inputs, data.axes, None, stacked=data.stacked)


def split_dataset(data: Dataset, fraction: float, rng: np.random.Generator) -> tuple[Dataset, Dataset | None]:
    """A random ``fraction`` of the samples held out for validation."""
    held = math.floor(fraction * len(data))  # < len(data): fraction <= 0.9
    if not held:
        return data, None
    order = rng.permutation(len(data))
    return data.take(np.sort(order[held:])), data.take(np.sort(order[:held]))


# --- the teacher ----------------------------------------------------------------------------


def uses_teacher(config: Finetune, labelled: bool) -> bool:
    """Whether the loss matches the imported model (``teacher``: auto is yes without labels)."""
    if config.teacher == "none" and not labelled:
        raise PassError(f"finetune: data file '{config.data}' has no 'labels' and teacher=none: give labels, "
                        "or learn from the imported model (teacher=imported or auto)")
    return config.teacher == "imported" or config.teacher == "auto" and not labelled


def distilled_outputs(module: Module, output: str | None, hosted: bool = False) -> list[Value]:
    """The outputs matched to the teacher's: ``output``, or every float output.  ``module``
    is the model, or (``hosted``) the trained core of a model with host regions."""
    names = [v.name for v in module.outputs]
    if output is not None:
        if output not in names:
            where = "the tensorgate region between the host regions computes no output" if hosted else \
                "the model has no output"
            raise PassError(f"finetune: {where} '{output}' (outputs: {', '.join(names)})")
        return [module.outputs[names.index(output)]]
    chosen = [v for v in module.outputs if isinstance(v.type.dtype, FloatType)]
    if not chosen:
        raise PassError("finetune: the model has no float output to match to the teacher's")
    return chosen


def attach_targets(data: Dataset, module: Module, outputs: list[Value]) -> Dataset:
    """``data`` with the imported model's values of the names of ``outputs`` on its inputs
    (float64, then float32) and the batch axis of each."""
    teacher = module.imported
    if teacher is None:
        raise PassError("finetune: the teacher is the imported model, and this module has none: run finetune "
                        "in a pass pipeline (the pass manager keeps the module it was given as the teacher)")
    by_name = {v.name: v for v in teacher.values()}
    missing = [v.name for v in outputs if v.name not in by_name]
    if missing:
        raise PassError(f"finetune: the imported model has no value {', '.join(missing)} to learn from")
    reference = run_samples(Module(teacher.name, teacher.inputs, teacher.ops, [by_name[v.name] for v in outputs]),
                            data)
    targets = {v.name: reference[v.name].astype(np.float32) for v in outputs}
    axes = {v.name: 0 if data.stacked else _target_axis(v, targets[v.name], len(data)) for v in outputs}
    return Dataset(data.inputs, data.axes, data.labels, targets, axes, data.stacked)


def run_samples(module: Module, data: Dataset) -> dict[str, np.ndarray]:
    """``module``'s outputs on the inputs of ``data`` in float64: at once, or one call per
    sample for stacked samples (stacked again along a leading axis)."""
    from ..interpreter.executor import Executor

    executor = Executor(module, np.float64)
    if not data.stacked:
        return executor.run(data.inputs)
    calls = [executor.run({name: array[i] for name, array in data.inputs.items()}) for i in range(len(data))]
    return {v.name: np.stack([call[v.name] for call in calls]) for v in module.outputs}


def core_data(data: Dataset, region: TrainedRegion) -> Dataset:
    """``data`` with the inputs of ``region``'s core in place of the model's: the prefix
    (host regions among it) run once on every sample (float64, then float32)."""
    if region.prefix is None:
        return data
    values = run_samples(region.prefix, data)
    inputs = {v.name: values[v.name].astype(np.float32) if values[v.name].dtype.kind == "f" else values[v.name]
              for v in region.core.inputs}
    axes = {v.name: 0 if data.stacked else _target_axis(v, inputs[v.name], len(data)) for v in region.core.inputs}
    return data.with_inputs(inputs, axes)


def _target_axis(value: Value, array: np.ndarray, samples: int) -> int:
    """The batch axis of the teacher's output ``value``: its dim named ``batch``, or the
    one axis as long as the data has samples."""
    named = [axis for axis, dim in enumerate(value.type.shape) if dim == "batch"]
    candidates = named or [axis for axis, size in enumerate(array.shape) if size == samples]
    if len(candidates) != 1:
        raise PassError(f"finetune: cannot tell the batch axis of output '{value.name}' (shape {list(array.shape)}, "
                        f"{samples} samples); name the batch dim 'batch' in the model")
    return candidates[0]


def softmax_producer(value: Value):
    """The ``softmax`` / ``log_softmax`` op over the last axis that makes ``value``, or ``None``."""
    producer = value.producer
    if producer is not None and producer.kind in ("softmax", "log_softmax") and \
            producer.attrs["axis"] % value.type.rank == value.type.rank - 1:
        return producer
    return None


@dataclass(frozen=True)
class TeacherLoss:
    """How one output is matched to the teacher's: by ``kl`` or ``mse`` (see the module
    docstring); ``computed`` is the value the student computes for it (a softmax
    output's logits), ``scale`` the teacher output's variance (mse)."""

    output: str
    computed: str
    kind: str
    target_form: str  # "probabilities", "log_probabilities" or "logits" (kl); "values" (mse)
    scale: float

    @classmethod
    def of(cls, value: Value, target: np.ndarray, distill: str) -> "TeacherLoss":
        producer = softmax_producer(value)
        kind = distill if distill != "auto" else ("kl" if producer is not None else "mse")
        if kind == "mse":
            return cls(value.name, value.name, "mse", "values", float(np.var(target)) or 1.0)
        if producer is None:
            return cls(value.name, value.name, "kl", "logits", 1.0)
        form = "probabilities" if producer.kind == "softmax" else "log_probabilities"
        return cls(value.name, producer.operands[0].name, "kl", form, 1.0)

    def __call__(self, computed, target):
        torch = import_torch()
        if self.kind == "mse":
            return torch.mean((computed - target) ** 2) / self.scale
        if self.target_form == "probabilities":
            log_target = torch.log(target.clamp_min(1e-30))
        elif self.target_form == "log_probabilities":
            log_target = target
        else:
            log_target = torch.log_softmax(target, dim=-1)
        log_student = torch.log_softmax(computed, dim=-1)
        per_row = torch.sum(torch.exp(log_target) * (log_target - log_student), dim=-1)
        return per_row.mean()


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
    producer = softmax_producer(value)
    if producer is not None:
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


def metrics(loss_sum: float, samples: int, predictions: np.ndarray | None, labels: np.ndarray | None,
            teacher_predictions: np.ndarray | None) -> Metrics:
    """The metrics of ``samples`` samples (see ``Metrics``); ``predictions`` are the
    predicted classes (``None`` for a model that is no classifier)."""
    if predictions is None:
        return Metrics(loss_sum / samples, None, None)
    agreement = None if teacher_predictions is None else float(np.mean(predictions == teacher_predictions))
    if labels is None:
        return Metrics(loss_sum / samples, None, None, agreement)
    recalls = [np.mean(predictions[labels == c] == c) for c in np.unique(labels)]
    return Metrics(loss_sum / samples, float(np.mean(predictions == labels)), float(np.mean(recalls)), agreement)


class Objective:
    """The loss of a batch and the class predictions it makes, for ``config`` on ``data``."""

    def __init__(self, module: Module, config: Finetune):
        torch = import_torch()
        self.config = config
        arrays, labels = read_data(config.data, module)
        self.labelled = labels is not None
        self.teacher = uses_teacher(config, self.labelled)
        self.region = trained_region(module)
        self.classifier: str | None = None
        self.classifier_target: str | None = None
        if self.labelled:
            logits = logits_value(module, config.output)
            _check_labels(labels, logits.type.shape[-1], config)
            self.classifier = logits.name
            outputs = [module.outputs[[v.name for v in module.outputs].index(config.output)]
                       if config.output is not None else module.outputs[0]]
            _check_in_core(self.region, [logits] + outputs)
        else:
            outputs = distilled_outputs(self.region.core, config.output, self.region.prefix is not None)
        data = dataset_of(config.data, module, arrays, labels)
        if config.augment and self.labelled:
            raise PassError(f"finetune: option 'augment' makes inputs without labels, and data file '{config.data}' "
                            "has labels; drop them (the imported model teaches) or augment=0")
        self.module, self.outputs = module, outputs
        self.data = core_data(attach_targets(data, module, outputs) if self.teacher else data, self.region)
        self.teacher_losses = [TeacherLoss.of(v, self.data.targets[v.name], config.distill)
                               for v in outputs] if self.teacher else []
        if self.classifier is None:
            self.classifier, self.classifier_target = self._distilled_classifier(outputs)
        elif self.teacher:
            self.classifier_target = outputs[0].name
        computed = {loss.computed for loss in self.teacher_losses}
        self.names = sorted(computed if self.classifier is None else computed | {self.classifier})
        self.alpha = None if config.alpha is None else torch.tensor(
            config.alpha if len(config.alpha) > 1 else config.alpha[0], dtype=torch.float32)

    def augmented(self, train: Dataset, rng: np.random.Generator) -> Dataset:
        """``train`` and ``augment`` synthetic inputs per sample (``synthetic_inputs``),
        labelled by the teacher, as the trained region takes them."""
        source = train.source if train.source is not None else train
        made = synthetic_inputs(source, self.config.augment, self.config.noise, rng)
        return train.joined(core_data(attach_targets(made, self.module, self.outputs), self.region))

    def _distilled_classifier(self, outputs: list[Value]) -> tuple[str | None, str | None]:
        """The class scores the metrics follow without labels: the first ``[batch, classes]``
        output, by the value the student computes for it."""
        for value, loss in zip(outputs, self.teacher_losses):
            if value.type.rank == 2 and self.data.target_axes[value.name] == 0 and not self.data.stacked:
                return loss.computed, value.name
        return None, None

    def __call__(self, values: dict, batch: Dataset):
        torch = import_torch()
        label_loss = teacher_loss = 0.0
        if self.labelled:
            label_loss = classification_loss(values[self.classifier], torch.as_tensor(batch.labels),
                                             self.config.loss, self.config.gamma, self.alpha)
        if self.teacher:
            teacher_loss = sum(loss(values[loss.computed], torch.as_tensor(batch.targets[loss.output]))
                               for loss in self.teacher_losses)
        if not self.labelled:
            return teacher_loss
        if not self.teacher:
            return label_loss
        weight = self.config.teacher_weight
        return (1 - weight) * label_loss + weight * teacher_loss

    def predictions(self, values: dict) -> np.ndarray | None:
        """The predicted class of each sample (``None`` for a model that is no classifier)."""
        if self.classifier is None:
            return None
        return values[self.classifier].detach().argmax(dim=-1).numpy()

    def metrics(self, loss_sum: float, predictions: np.ndarray | None, data: Dataset,
                order: np.ndarray | None = None) -> Metrics:
        """The metrics of ``predictions`` for the samples of ``data`` (taken in ``order``)."""
        order = np.arange(len(data)) if order is None else order
        if self.classifier is None:
            return metrics(loss_sum, len(data), None, None, None)
        labels = None if data.labels is None else data.labels[order]
        teacher = None if self.classifier_target is None else \
            data.targets[self.classifier_target].argmax(axis=-1)[order]
        return metrics(loss_sum, len(data), predictions, labels, teacher)


def finetune(module: Module, config: Finetune) -> list[Epoch]:
    """Train ``module`` in place as ``config`` says; the metrics of every epoch."""
    torch = import_torch()
    from .torch_model import TorchModel

    objective = Objective(module, config)
    rng = np.random.default_rng(config.seed)
    train, validation = split_dataset(objective.data, config.val_split, rng)
    if config.augment:
        train = objective.augmented(train, rng)
    torch.manual_seed(config.seed)
    model = TorchModel(objective.region.core, config.trainable)
    if not len(model.weights):
        raise PassError("finetune: the model has no weights to train")
    optimizer = torch.optim.Adam(model.parameters(), lr=config.lr)
    steps_per_epoch = math.ceil(len(train) / config.batch)
    scheduler = None if config.schedule == "constant" else torch.optim.lr_scheduler.CosineAnnealingLR(
        optimizer, config.epochs * steps_per_epoch)

    def run(batch: Dataset, learn: bool) -> tuple[float, np.ndarray | None]:
        with torch.set_grad_enabled(learn):
            values = model(batch.inputs, objective.names, stacked=batch.stacked)
            loss = objective(values, batch)
        if learn:
            optimizer.zero_grad()
            loss.backward()
            optimizer.step()
            if scheduler is not None:
                scheduler.step()
        return loss.item() * len(batch), objective.predictions(values)

    history = []
    threads = torch.get_num_threads()
    if _macs_per_sample(module) * config.batch < SINGLE_THREAD_MACS:
        torch.set_num_threads(1)
    try:
        with _Progress(config.epochs, steps_per_epoch) as progress:
            for epoch in range(1, config.epochs + 1):
                history.append(_epoch(epoch, train, validation, rng, config, run, objective, progress))
    finally:
        torch.set_num_threads(threads)
    model.write_back()
    return history


def _epoch(epoch, train, validation, rng, config, run, objective, progress) -> Epoch:
    """One pass over ``train`` in a fresh random order, then the validation split."""
    order = rng.permutation(len(train))
    loss_sum, predictions = 0.0, np.empty(len(train), np.int64)
    for start in range(0, len(train), config.batch):
        rows = order[start:start + config.batch]
        batch_loss, batch_predictions = run(train.take(rows), learn=True)
        if batch_predictions is not None:
            predictions[start:start + len(rows)] = batch_predictions
        loss_sum += batch_loss
        progress.advance()
    result = Epoch(epoch, objective.metrics(loss_sum, predictions, train, order),
                   None if validation is None else objective.metrics(*run(validation, learn=False), validation))
    progress.log(result)
    return result


def _macs_per_sample(module: Module) -> int:
    """Multiply-accumulates of one application of every linear map of the module."""
    return sum(leaf.macs() for op in module.ops for value in op.attrs.values()
               for leaf in (value if isinstance(value, list) else [value]) if isinstance(leaf, LinearMap))


def _check_in_core(region: TrainedRegion, values: list[Value]) -> None:
    """Labels train class scores the tensorgate ops compute, not a host region's."""
    computed = {id(r) for op in region.core.ops for r in op.results}
    behind = [v.name for v in values if id(v) not in computed]
    if region.prefix is not None and behind:
        raise PassError(f"finetune: output '{behind[0]}' is computed by or after a host region, which torch cannot "
                        "train through; train without labels (the imported model teaches the tensorgate region)")


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
            parts = [f"loss {m.loss:.4f}"]
            parts += [f"{name} {value:.3f}" for name, value in (
                ("accuracy", m.accuracy), ("macro recall", m.macro_recall), ("agreement", m.agreement))
                if value is not None]
            return "  ".join(parts)

        line = f"epoch {epoch.epoch}/{self.epochs}  train: {text(epoch.train)}"
        if epoch.validation is not None:
            line += f"  |  validation: {text(epoch.validation)}"
        self.console.print(line, markup=False, highlight=False, soft_wrap=True)
