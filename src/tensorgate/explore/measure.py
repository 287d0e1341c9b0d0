"""Measuring one point: the inputs every task shares, the task itself (``evaluate_point``,
run in-process or on a Dask worker) and the row it returns.

A task gets the sweep's ``SweepInputs`` (the model's bytes, the validation data, the
dense float reference and the options) and one ``Point``.  It imports the model, runs
the point's pipeline, measures the result against the reference and returns the point's
record: a JSON-ready dict, the same whichever process made it.  What a process prepares
for a sweep (the imported model, the calibration file) and the float structures it
built (decomposition, fine-tune, contraction order) are kept per process, keyed by the
sweep's fingerprint, so a worker does that work once per sweep and per structure.

Quality is measured on one output against the dense float model: ``rel_error`` is
``‖y − y_float‖ / ‖y_float‖`` (Frobenius), ``agreement`` the fraction of rows whose argmax
over the last axis matches, ``accuracy`` (with labels) the fraction whose argmax equals
the label.

Fixed point has no softmax: when the output is a softmax or log-softmax, a quantized
point runs the module without it (its logits, from the integer golden model) and the
same function is applied to the logits in float64 before comparing, so the metrics are
of the model's own output and the argmax is unchanged.

``cycles_per_step``: the Verilog accelerator's compile-time estimate at the point's P
lanes, divided by the program's time steps, for one sequence (symbolic input dimensions
bound to 1).  The accelerator runs quantized modules only; the estimate depends on the
program's structure, not on the widths, so a float point gets the estimate of its
structure quantized at ``CYCLE_ESTIMATE_BITS``.  A point whose cycles cannot be
estimated keeps its other numbers and says why in ``message``.

With ``simulate``, a quantized point is also compiled to the Verilog accelerator and run
under Verilator on the whole validation data: ``sim_cycles`` is what the run took,
``bit_exact`` whether its outputs equal the integer golden model's.  The accelerator is
built once per distinct configuration (P, code width, memory depths) and cached by
content hash on the machine that runs the point (``runtime.verilator``: published
atomically, so workers sharing a machine share the cache safely).

A point the compiler refuses (a ``TensorgateError``: a pass rejecting the model or an
option) returns a failed record with the first line of the reason; it is not retried,
since the same inputs give the same refusal.
"""

from __future__ import annotations

import hashlib
import json
import tempfile
import time
from collections import OrderedDict
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from ..errors import ExecutionError, TensorgateError, UsageError
from ..ir.core import Module
from ..ir.npz import read_npz
from .points import ExploreOptions, Point, bits_csv

CYCLE_ESTIMATE_BITS = 16
DEFAULT_LABELS_KEY = "labels"
SOFTMAX_KINDS = ("softmax", "log_softmax")
KEPT_SWEEPS = 2
"""Sweeps whose prepared model a process keeps (a worker usually serves one at a time)."""
KEPT_STRUCTURES = 8
"""Float structures a process keeps per sweep, for the bit widths that share one."""


# --- the inputs of every task -------------------------------------------------------------


@dataclass(frozen=True)
class SweepInputs:
    """Everything a task needs besides its point, sent once to each worker."""

    model_bytes: bytes
    model_name: str
    inputs: dict[str, np.ndarray]
    labels: np.ndarray | None
    output: str
    reference: np.ndarray
    options: ExploreOptions
    fingerprint: str

    @property
    def has_labels(self) -> bool:
        return self.labels is not None


def prepare_inputs(model_path: Path, data_path: Path, options: ExploreOptions) -> SweepInputs:
    """Read and check the model and the data, and run the dense float model on the data
    once: bad input fails here, before any task starts."""
    model_path = Path(model_path)
    try:
        model_bytes = model_path.read_bytes()
    except OSError as exc:
        raise TensorgateError(f"cannot read model '{model_path}': {exc.strerror or exc}") from None
    module = _import_model(model_bytes, model_path.name)
    inputs, labels, output, reference = load_validation(Path(data_path), module, options)
    if options.finetune and options.finetune_teacher == "none" and labels is None:
        raise UsageError(f"--finetune-teacher none: data file '{data_path}' has no labels "
                         f"('{options.labels_key or DEFAULT_LABELS_KEY}') to train on; without labels the "
                         "fine-tune step distills from the imported model (--finetune-teacher auto)")
    digest = hashlib.sha256(model_bytes)
    digest.update(Path(data_path).read_bytes())
    digest.update(json.dumps(options.measurement(), sort_keys=True).encode())
    return SweepInputs(model_bytes, model_path.name, inputs, labels, output, reference, options,
                       digest.hexdigest()[:16])


def _import_model(model_bytes: bytes, name: str) -> Module:
    import onnx
    from google.protobuf.message import DecodeError

    from ..frontend import import_onnx
    from ..passes import PassManager

    try:
        model = onnx.load_model_from_string(model_bytes)
    except DecodeError as exc:
        raise TensorgateError(f"model '{name}' is not a readable ONNX file ({exc})") from None
    if not model.graph.name:
        model.graph.name = name
    return PassManager.parse("canonicalize, dce").run(import_onnx(model))


def load_validation(path: Path, module: Module, options: ExploreOptions
                    ) -> tuple[dict[str, np.ndarray], np.ndarray | None, str, np.ndarray]:
    """Read ``path``: every model input by name, plus labels; run the float model on it.
    Returns the inputs, the labels (or None), the output measured and its float values."""
    from ..interpreter import check_inputs, run_module

    if not path.is_file():
        raise UsageError(f"data file '{path}' does not exist")
    arrays = read_npz(path, "data file")
    input_names = [v.name for v in module.inputs]
    labels_key = options.labels_key or DEFAULT_LABELS_KEY
    if options.labels_key is not None and labels_key not in arrays:
        raise TensorgateError(f"data file '{path}' has no labels array '{labels_key}' (it has {', '.join(arrays)})")
    missing = [name for name in input_names if name not in arrays]
    unknown = [name for name in arrays if name not in input_names and name != labels_key]
    if missing or unknown:
        problem = (f"lacks the model input(s) {', '.join(missing)}" if missing
                   else f"has array(s) {', '.join(unknown)} that are neither model inputs nor labels "
                        f"('{labels_key}'; see --labels-key)")
        raise TensorgateError(f"data file '{path}' {problem} (the model's inputs are {', '.join(input_names)})")
    inputs = {name: arrays[name] for name in input_names}
    try:
        check_inputs(module, inputs)
    except ExecutionError as exc:
        raise TensorgateError(f"data file '{path}': {exc}") from None
    output = _output_name(module, options.output)
    reference = np.asarray(run_module(module, inputs)[output], np.float64)
    labels = arrays.get(labels_key)
    if labels is not None and (labels.dtype.kind not in "iu" or labels.shape != reference.shape[:-1]):
        raise TensorgateError(f"data file '{path}': labels '{labels_key}' must be integers of shape "
                              f"{list(reference.shape[:-1])} (output '{output}' without its last axis), got "
                              f"{labels.dtype}{list(labels.shape)}")
    return inputs, labels, output, reference


def _output_name(module: Module, requested: str | None) -> str:
    names = [v.name for v in module.outputs]
    if requested is None:
        if len(names) != 1:
            raise UsageError(f"the model has outputs {', '.join(names)}: choose one with --output")
        return names[0]
    if requested not in names:
        raise UsageError(f"--output '{requested}' is not an output of the model ({', '.join(names)})")
    return requested


# --- one point's row ----------------------------------------------------------------------


@dataclass
class Result:
    """A point's measurements: its row of ``explore.csv`` and its record in ``points/``."""

    point: Point
    status: str = "ok"
    finetune: str = ""
    params: int | None = None
    compression: float | None = None
    accuracy: float | None = None
    rel_error: float | None = None
    agreement: float | None = None
    macs_per_step: int | None = None
    cycles_per_step: float | None = None
    sim_cycles: int | None = None
    bit_exact: bool | None = None
    lut: int | None = None
    ff: int | None = None
    dsp: int | None = None
    bram: float | None = None
    uram: int | None = None
    fits: bool | None = None
    fmax_mhz: float | None = None
    seconds: float | None = None
    message: str = ""
    pareto: bool = field(default=False, compare=False)

    MEASURED = ("status", "finetune", "params", "compression", "accuracy", "rel_error", "agreement",
                "macs_per_step", "cycles_per_step", "sim_cycles", "bit_exact", "lut", "ff", "dsp", "bram", "uram",
                "fits", "fmax_mhz", "seconds", "message")
    SYNTHESIZED = ("lut", "ff", "dsp", "bram", "uram", "fits", "fmax_mhz")

    @property
    def ok(self) -> bool:
        return self.status == "ok"

    def row(self) -> dict[str, str]:
        values = {"method": self.point.method, "rank": self.point.rank, "bits": bits_csv(self.point.bits),
                  "pes": self.point.pes, **{name: getattr(self, name) for name in self.MEASURED},
                  "pareto": str(self.pareto).lower() if self.ok else ""}
        return {key: _csv_text(value) for key, value in values.items()}

    def to_json(self) -> dict[str, object]:
        return {"point": self.point.to_json(), **{name: getattr(self, name) for name in self.MEASURED}}

    @classmethod
    def from_json(cls, record: dict) -> Result:
        return cls(Point(**record["point"]), **{name: record.get(name) for name in cls.MEASURED if name in record})


def failed(point: Point, reason: str) -> Result:
    return Result(point, status="failed", message=reason)


def one_line(exc: BaseException) -> str:
    """The first line of an error, prefixed by its class unless it is tensorgate's own."""
    text = next(iter(str(exc).strip().splitlines()), "")
    if isinstance(exc, TensorgateError):
        return text
    return f"{type(exc).__name__}: {text}" if text else type(exc).__name__


def _csv_text(value) -> str:
    if value is None:
        return ""
    if isinstance(value, bool):
        return str(value).lower()
    if isinstance(value, float):
        return f"{value:.6g}"
    return str(value)


# --- the task -----------------------------------------------------------------------------


def evaluate_point(inputs: SweepInputs, point: Point) -> dict[str, object]:
    """Measure ``point``; its record (``Result.to_json``).  A compiler refusal is a failed
    record; anything else raised is left to the caller, which retries it."""
    started = time.perf_counter()
    try:
        result = _workspace(inputs).evaluate(point)
    except TensorgateError as exc:
        result = failed(point, one_line(exc))
    result.seconds = round(time.perf_counter() - started, 3)
    return result.to_json()


_WORKSPACES: OrderedDict[str, Workspace] = OrderedDict()


def _workspace(inputs: SweepInputs) -> Workspace:
    """This process's workspace for the sweep of ``inputs`` (made on first use)."""
    if inputs.fingerprint not in _WORKSPACES:
        _WORKSPACES[inputs.fingerprint] = Workspace(inputs)
        while len(_WORKSPACES) > KEPT_SWEEPS:
            _WORKSPACES.popitem(last=False)[1].close()
    _WORKSPACES.move_to_end(inputs.fingerprint)
    return _WORKSPACES[inputs.fingerprint]


class Workspace:
    """One process's state for one sweep: the imported model, a directory with the data
    files the passes read, and the float structures built so far."""

    def __init__(self, inputs: SweepInputs):
        from ..ir.stats import model_stats

        self.inputs = inputs
        self.module = _import_model(inputs.model_bytes, inputs.model_name)
        self.dense_params = model_stats(self.module).params_compressed
        self._directory = tempfile.TemporaryDirectory(prefix="tensorgate-explore-")
        self.calibration = Path(self._directory.name) / "calibration.npz"
        np.savez(self.calibration, **inputs.inputs)
        self.finetune_step = self._finetune_step() if inputs.options.finetune else None
        self._structures: OrderedDict[str, Module | TensorgateError] = OrderedDict()

    def close(self) -> None:
        self._directory.cleanup()

    def _finetune_step(self) -> str:
        """The fine-tune pass on the validation data, seeded: on its labels, or without
        labels distilled from the imported model, or both (``--finetune-teacher``)."""
        data = Path(self._directory.name) / "finetune.npz"
        labels = {} if self.inputs.labels is None else {"labels": self.inputs.labels}
        np.savez(data, **self.inputs.inputs, **labels)
        output = f" output={self.inputs.output}" if len(self.module.outputs) > 1 else ""
        options = self.inputs.options
        return (f"finetune{{data={data} epochs={options.finetune_epochs} teacher={options.finetune_teacher} "
                f"seed=0{output}}}")

    def finetune_mode(self) -> str:
        """What the fine-tune step trains on, as the ``finetune`` column says it: ``labels``,
        ``distill`` (the imported model's outputs) or ``labels+distill``."""
        teacher = self.inputs.options.finetune_teacher
        if not self.inputs.has_labels:
            return "distill"
        return "labels+distill" if teacher == "imported" else "labels"

    def structure(self, point: Point) -> Module:
        """The float module of ``point`` (decomposition, fine-tune, contraction order), built
        once per pipeline; a refusal is kept and raised again."""
        from ..passes import PassManager

        pipeline = point.structure_pipeline(self.inputs.options, self.finetune_step)
        if pipeline not in self._structures:
            try:
                self._structures[pipeline] = PassManager.parse(pipeline).run(self.module.copy())
            except TensorgateError as exc:
                self._structures[pipeline] = exc
            while len(self._structures) > KEPT_STRUCTURES:
                self._structures.popitem(last=False)
        self._structures.move_to_end(pipeline)
        structure = self._structures[pipeline]
        if isinstance(structure, TensorgateError):
            raise structure
        return structure

    def evaluate(self, point: Point) -> Result:
        """Build ``point`` (quantized if it has bits) and measure it."""
        from ..interpreter import run_module
        from ..ir.ops import recurrent_ops
        from ..ir.stats import model_stats, recurrent_macs_per_step

        structure = self.structure(point)
        stats = model_stats(structure)
        result = Result(point, finetune=self.finetune_mode() if self.finetune_step and point.method != "dense" else "",
                        params=stats.params_compressed,
                        compression=self.dense_params / max(stats.params_compressed, 1),
                        macs_per_step=sum(recurrent_macs_per_step(op) for op in recurrent_ops(structure.ops)))
        if point.bits is None:
            output = run_module(structure, self.inputs.inputs)[self.inputs.output]
            lowered = fixed = None
        else:
            lowered, restore = self.quantize(structure, point.bits)
            fixed = self._run_fixed(lowered)
            output = restore(fixed)
        self._measure(result, np.asarray(output, np.float64))
        try:
            if lowered is None:
                lowered = self.quantize(structure, CYCLE_ESTIMATE_BITS)[0]
            result.cycles_per_step = cycles_per_step(lowered, point.pes)
        except TensorgateError as exc:
            result.message = f"no cycle estimate: {one_line(exc)}"
        hardware = fixed is not None and result.cycles_per_step is not None
        if self.inputs.options.simulate and hardware:
            self._simulate(result, lowered, fixed)
        if self.inputs.options.synth and hardware:
            self._synthesize(result, lowered)
        return result

    def _artifact(self, point: Point, module: Module) -> Path:
        """The point's verilog artifact (written once, for simulation and synthesis)."""
        from ..backend.verilog.artifact import write_verilog_artifact

        artifact = Path(self._directory.name) / point.name
        if not artifact.is_dir():
            write_verilog_artifact(module, artifact, "explore", self.inputs.model_name, point.pes)
        return artifact

    def _simulate(self, result: Result, module: Module, golden: np.ndarray) -> None:
        """Run ``module`` on the Verilated accelerator; its cycles and whether it matches."""
        from ..runtime.simulator import Simulator

        try:
            artifact = self._artifact(result.point, module)
            outputs, stats = Simulator(artifact, progress=False).run(self.inputs.inputs)
        except TensorgateError as exc:
            result.message = f"no simulation: {one_line(exc)}"
            return
        result.sim_cycles = stats["cycles"]
        result.bit_exact = bool(np.array_equal(outputs[module.outputs[0].name], golden))
        if not result.bit_exact:
            result.message = "the simulated accelerator differs from the integer golden model"

    def _synthesize(self, result: Result, module: Module) -> None:
        """Synthesize the point's accelerator for ``--synth DEVICE``: its resources by kind,
        whether it fits, and the placed Fmax where the device is placed and routed."""
        from ..runtime import synthesis

        options = self.inputs.options
        device = synthesis.device_named(options.synth)
        try:
            synthesized = synthesis.synthesize(self._artifact(result.point, module), device,
                                               synthesis.SynthOptions(freq_mhz=options.synth_freq))
        except TensorgateError as exc:
            result.message = "; ".join(filter(None, [result.message, f"no synthesis: {one_line(exc)}"]))
            return
        counts = synthesis.kind_counts(device, synthesized["resources"])
        result.lut, result.ff, result.dsp = counts["lut"], counts["ff"], counts["dsp"]
        result.bram, result.uram = counts["bram"], counts["uram"]
        result.fits = synthesized["fit"]["fits"]
        result.fmax_mhz = (synthesized.get("timing") or {}).get("fmax_mhz")

    def quantize(self, structure: Module, bits: int) -> tuple[Module, Callable[[np.ndarray], np.ndarray]]:
        """A quantized copy of ``structure`` computing the chosen output (its logits if that
        is a softmax), and the function turning its result into the output."""
        from ..passes import PassManager

        module, restore = without_trailing_softmax(structure.copy(), self.inputs.output)
        PassManager.parse(f"quantize{{bits={bits} calibration={self.calibration}}}").run(module)
        return module, restore

    def _run_fixed(self, module: Module) -> np.ndarray:
        from ..interpreter import run_fixed

        return run_fixed(module, self.inputs.inputs)[module.outputs[0].name]

    def _measure(self, result: Result, output: np.ndarray) -> None:
        reference = self.inputs.reference
        scale = np.linalg.norm(reference)
        result.rel_error = float(np.linalg.norm(output - reference) / (scale if scale > 0 else 1.0))
        predicted = output.argmax(axis=-1)
        result.agreement = float(np.mean(predicted == reference.argmax(axis=-1)))
        if self.inputs.has_labels:
            result.accuracy = float(np.mean(predicted == self.inputs.labels))


def without_trailing_softmax(module: Module, output: str) -> tuple[Module, Callable[[np.ndarray], np.ndarray]]:
    """``module`` reduced to the one output ``output``; if that is a softmax or log-softmax,
    to its input, with the function that applies it again (float64)."""
    from ..passes import PassManager

    value = next(v for v in module.outputs if v.name == output)
    producer = value.producer
    restore: Callable[[np.ndarray], np.ndarray] = np.asarray
    if producer is not None and producer.kind in SOFTMAX_KINDS:
        axis = producer.attrs["axis"]
        restore = (lambda x: _softmax(x, axis)) if producer.kind == "softmax" else (lambda x: _log_softmax(x, axis))
        value = producer.operands[0]
    module.outputs = [value]
    PassManager.parse("dce").run(module)
    return module, restore


def _log_softmax(x: np.ndarray, axis: int) -> np.ndarray:
    shifted = np.asarray(x, np.float64) - np.max(x, axis=axis, keepdims=True)
    return shifted - np.log(np.sum(np.exp(shifted), axis=axis, keepdims=True))


def _softmax(x: np.ndarray, axis: int) -> np.ndarray:
    return np.exp(_log_softmax(x, axis))


def cycles_per_step(module: Module, pes: int) -> float:
    """The accelerator's compile-time cycle estimate per time step of one sequence."""
    from ..backend.verilog.artifact import static_shapes
    from ..backend.verilog.lower import lower

    image = lower(module, pes, static_shapes(module))
    return image.cycles_estimate / max(image.steps, 1)
