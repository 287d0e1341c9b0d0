"""`tensorgate explore`: sweep decomposition methods × ranks × bit widths on one model and
validation data; write ``explore.csv`` and ``pareto.png`` and print a summary table.

Every configuration is the pipeline ``canonicalize, dce, decompose{method=M weights=W
<rank option>=R}, order-contractions{cost=cycles pes=P}`` and, for an integer bit width B,
``quantize{bits=B calibration=<the data's inputs>}``.  The rank is ``max-rank`` for TT and
HT and ``tucker-rank`` (one block) for BT; method ``dense`` skips ``decompose`` (one row per
bit width, no rank).  The decomposition runs once per method and rank; each bit width
quantizes a copy.

Quality is measured on one output against the dense float model: ``rel_error`` is
``‖y − y_float‖ / ‖y_float‖`` (Frobenius), ``agreement`` the fraction of rows whose argmax
over the last axis matches, ``accuracy`` (with labels) the fraction whose argmax equals
the label.  The Pareto front is over parameters (fewer is better) and accuracy (with
labels, higher is better) or ``rel_error`` (lower is better).

Fixed point has no softmax: when the output is a softmax or log-softmax, a quantized
configuration runs the module without it (its logits, from the integer golden model) and
the same function is applied to the logits in float64 before comparing, so the metrics
are of the model's own output and the argmax is unchanged.

``cycles_per_step``: the Verilog accelerator's compile-time estimate at ``--pes`` lanes,
divided by the program's time steps, for one sequence (symbolic input dimensions bound to
1).  The accelerator runs quantized modules only; the estimate depends on the program's
structure, not on the widths, so a float configuration gets the estimate of its structure
quantized at ``CYCLE_ESTIMATE_BITS``.  A configuration whose cycles cannot be estimated
keeps its other numbers and says why in ``message``.

A configuration that fails (a pass refusing the model) is a row with ``status=failed``
and the reason.  The output directory is written to a temporary sibling and renamed, so
it is complete or absent.
"""

from __future__ import annotations

import csv
import tempfile
from dataclasses import dataclass
from pathlib import Path
from typing import Callable

import numpy as np
from rich import box
from rich.console import Console
from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeElapsedColumn
from rich.table import Table

from .errors import ExecutionError, TensorgateError, UsageError
from .ir.core import Module

METHODS = ("dense", "tt", "bt", "ht")
RANK_OPTION = {"tt": "max-rank", "ht": "max-rank", "bt": "tucker-rank"}
WEIGHTS = ("input", "recurrent", "all")
MIN_BITS, MAX_BITS = 2, 32
FLOAT_BITS = "none"
CYCLE_ESTIMATE_BITS = 16
DEFAULT_LABELS_KEY = "labels"
CSV_FILE = "explore.csv"
PLOT_FILE = "pareto.png"
COLUMNS = ("method", "rank", "bits", "status", "params", "compression", "accuracy", "rel_error", "agreement",
           "macs_per_step", "cycles_per_step", "pareto", "message")
SOFTMAX_KINDS = ("softmax", "log_softmax")


# --- options ------------------------------------------------------------------------------


def parse_methods(text: str) -> tuple[str, ...]:
    """``"tt,bt"`` -> ``("tt", "bt")``; each one of ``METHODS``, no repeats."""
    methods = _split(text, "--methods")
    unknown = [m for m in methods if m not in METHODS]
    if unknown:
        raise UsageError(f"--methods: unknown method(s) {', '.join(unknown)} (choose from {', '.join(METHODS)})")
    return methods


def parse_ranks(text: str) -> tuple[int, ...]:
    """``"2,4,8"`` -> ``(2, 4, 8)``; each an integer >= 1, no repeats."""
    items = _split(text, "--ranks")
    ranks = []
    for item in items:
        if not item.isdigit() or int(item) < 1:
            raise UsageError(f"--ranks: '{item}' is not an integer >= 1 (e.g. --ranks 2,4,8)")
        ranks.append(int(item))
    return _unique(ranks, "--ranks")


def parse_bits(text: str) -> tuple[int | None, ...]:
    """``"none,8,16"`` -> ``(None, 8, 16)``: ``none`` is float, else a width in [2, 32]."""
    bits: list[int | None] = []
    for item in _split(text, "--bits"):
        if item == FLOAT_BITS:
            bits.append(None)
        elif item.isdigit() and MIN_BITS <= int(item) <= MAX_BITS:
            bits.append(int(item))
        else:
            raise UsageError(f"--bits: '{item}' is neither '{FLOAT_BITS}' nor a width in [{MIN_BITS}, {MAX_BITS}]")
    return _unique(bits, "--bits")


def _split(text: str, option: str) -> tuple[str, ...]:
    items = tuple(item.strip() for item in text.split(","))
    if not all(items):
        raise UsageError(f"{option}: expected a comma-separated list without empty items, got '{text}'")
    return _unique(items, option)


def _unique(items, option: str) -> tuple:
    repeated = sorted({str(item) for item in items if items.count(item) > 1})
    if repeated:
        raise UsageError(f"{option}: {', '.join(repeated)} given more than once")
    return tuple(items)


@dataclass(frozen=True)
class ExploreOptions:
    """What to sweep and how to measure it."""

    methods: tuple[str, ...] = ("dense", "tt", "bt", "ht")
    ranks: tuple[int, ...] = (2, 4, 8)
    bits: tuple[int | None, ...] = (None, 8, 16)
    weights: str = "all"
    pes: int = 16
    labels_key: str | None = None
    output: str | None = None

    def __post_init__(self) -> None:
        if self.pes < 1 or self.pes & (self.pes - 1):
            raise UsageError(f"--pes must be a power of two, got {self.pes}")
        if self.weights not in WEIGHTS:
            raise UsageError(f"--weights must be one of {', '.join(WEIGHTS)}, got '{self.weights}'")
        if not (self.methods and self.bits and (self.ranks or set(self.methods) == {"dense"})):
            raise UsageError("--methods, --ranks and --bits must each name at least one value")


@dataclass(frozen=True)
class Config:
    """One point of the sweep."""

    method: str
    rank: int | None
    bits: int | None

    def structure_pipeline(self, options: ExploreOptions) -> str:
        """The float passes: decomposition (unless dense) and contraction order."""
        passes = ["canonicalize", "dce"]
        if self.method != "dense":
            passes.append(f"decompose{{method={self.method} weights={options.weights} "
                          f"{RANK_OPTION[self.method]}={self.rank}}}")
            passes.append(f"order-contractions{{cost=cycles pes={options.pes}}}")
        return ", ".join(passes)

    def label(self) -> str:
        rank = "" if self.rank is None else f" r={self.rank}"
        return f"{self.method}{rank} {_bits_text(self.bits)}"


def configurations(options: ExploreOptions) -> list[Config]:
    """Methods × ranks × bits in the order given (dense: one configuration per width)."""
    configs = []
    for method in options.methods:
        for rank in (None,) if method == "dense" else options.ranks:
            configs.extend(Config(method, rank, bits) for bits in options.bits)
    return configs


def _bits_text(bits: int | None) -> str:
    return "float" if bits is None else f"{bits}-bit"


# --- data ---------------------------------------------------------------------------------


@dataclass
class Validation:
    """The model inputs of the data file, its labels (or None) and the dense float output."""

    inputs: dict[str, np.ndarray]
    labels: np.ndarray | None
    output: str
    reference: np.ndarray


def load_validation(path: Path, module: Module, options: ExploreOptions) -> Validation:
    """Read ``path``: every model input by name, plus labels; run the float model on it."""
    from .interpreter import check_inputs, run_module

    path = Path(path)
    if not path.is_file():
        raise UsageError(f"data file '{path}' does not exist")
    try:
        with np.load(path, allow_pickle=False) as data:
            arrays = {key: data[key] for key in data.files}
    except (OSError, ValueError, EOFError) as exc:
        raise TensorgateError(f"data file '{path}' is not a readable .npz ({exc})") from None
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
    return Validation(inputs, labels, output, reference)


def _output_name(module: Module, requested: str | None) -> str:
    names = [v.name for v in module.outputs]
    if requested is None:
        if len(names) != 1:
            raise UsageError(f"the model has outputs {', '.join(names)}: choose one with --output")
        return names[0]
    if requested not in names:
        raise UsageError(f"--output '{requested}' is not an output of the model ({', '.join(names)})")
    return requested


# --- one configuration --------------------------------------------------------------------


@dataclass
class Result:
    """A configuration's row of ``explore.csv``."""

    config: Config
    status: str = "ok"
    params: int | None = None
    compression: float | None = None
    accuracy: float | None = None
    rel_error: float | None = None
    agreement: float | None = None
    macs_per_step: int | None = None
    cycles_per_step: float | None = None
    pareto: bool = False
    message: str = ""

    @property
    def ok(self) -> bool:
        return self.status == "ok"

    def row(self) -> dict[str, str]:
        values = {
            "method": self.config.method, "rank": self.config.rank, "bits": _bits_csv(self.config.bits),
            "status": self.status, "params": self.params, "compression": self.compression,
            "accuracy": self.accuracy, "rel_error": self.rel_error, "agreement": self.agreement,
            "macs_per_step": self.macs_per_step, "cycles_per_step": self.cycles_per_step,
            "pareto": str(self.pareto).lower() if self.ok else "", "message": self.message,
        }
        return {key: _csv_text(value) for key, value in values.items()}


def _bits_csv(bits: int | None) -> str:
    return FLOAT_BITS if bits is None else str(bits)


def _csv_text(value) -> str:
    if value is None:
        return ""
    if isinstance(value, float):
        return f"{value:.6g}"
    return str(value)


class Evaluator:
    """Measures configurations of one model on one validation set."""

    def __init__(self, module: Module, validation: Validation, options: ExploreOptions, calibration: Path):
        from .ir.stats import model_stats

        self.module = module
        self.validation = validation
        self.options = options
        self.calibration = calibration
        self.dense_params = model_stats(module).params_compressed
        self.has_labels = validation.labels is not None

    def structure(self, config: Config) -> Module:
        """The float module of ``config`` (its decomposition and contraction order)."""
        from .passes import PassManager

        return PassManager.parse(config.structure_pipeline(self.options)).run(self.module.copy())

    def evaluate(self, config: Config, structure: Module) -> Result:
        """Run ``config`` (``structure``, quantized if it has bits) and measure it."""
        from .interpreter import run_module
        from .ir.stats import lstm_macs_per_step, model_stats

        stats = model_stats(structure)
        result = Result(config, params=stats.params_compressed,
                        compression=self.dense_params / max(stats.params_compressed, 1),
                        macs_per_step=sum(lstm_macs_per_step(op) for op in structure.ops_of("lstm")))
        if config.bits is None:
            output = run_module(structure, self.validation.inputs)[self.validation.output]
            lowered = None
        else:
            lowered, restore = self.quantize(structure, config.bits)
            output = restore(self._run_fixed(lowered))
        self._measure(result, np.asarray(output, np.float64))
        try:
            if lowered is None:
                lowered = self.quantize(structure, CYCLE_ESTIMATE_BITS)[0]
            result.cycles_per_step = cycles_per_step(lowered, self.options.pes)
        except TensorgateError as exc:
            result.message = f"no cycle estimate: {exc}"
        return result

    def quantize(self, structure: Module, bits: int) -> tuple[Module, Callable[[np.ndarray], np.ndarray]]:
        """A quantized copy of ``structure`` computing the chosen output (its logits if that
        is a softmax), and the function turning its result into the output."""
        from .passes import PassManager

        module, restore = without_trailing_softmax(structure.copy(), self.validation.output)
        PassManager.parse(f"quantize{{bits={bits} calibration={self.calibration}}}").run(module)
        return module, restore

    def _run_fixed(self, module: Module) -> np.ndarray:
        from .interpreter import run_fixed

        return run_fixed(module, self.validation.inputs)[module.outputs[0].name]

    def _measure(self, result: Result, output: np.ndarray) -> None:
        reference = self.validation.reference
        scale = np.linalg.norm(reference)
        result.rel_error = float(np.linalg.norm(output - reference) / (scale if scale > 0 else 1.0))
        predicted = output.argmax(axis=-1)
        result.agreement = float(np.mean(predicted == reference.argmax(axis=-1)))
        if self.has_labels:
            result.accuracy = float(np.mean(predicted == self.validation.labels))

    def quality(self, result: Result) -> float:
        return result.accuracy if self.has_labels else result.rel_error


def without_trailing_softmax(module: Module, output: str) -> tuple[Module, Callable[[np.ndarray], np.ndarray]]:
    """``module`` reduced to the one output ``output``; if that is a softmax or log-softmax,
    to its input, with the function that applies it again (float64)."""
    from .passes import PassManager

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
    from .backend.verilog.artifact import static_shapes
    from .backend.verilog.lower import lower

    image = lower(module, pes, static_shapes(module))
    return image.cycles_estimate / max(image.steps, 1)


# --- the sweep ----------------------------------------------------------------------------


def explore(model_path: Path, data_path: Path, options: ExploreOptions,
            console: Console | None = None) -> tuple[list[Result], bool]:
    """Measure every configuration; returns the results (Pareto flags set) and whether
    quality is accuracy (labels given) rather than relative error."""
    from .frontend import import_onnx
    from .passes import PassManager

    configs = configurations(options)
    module = PassManager.parse("canonicalize, dce").run(import_onnx(model_path))
    validation = load_validation(data_path, module, options)
    console = console or Console(stderr=True)
    with tempfile.TemporaryDirectory(prefix="tensorgate-explore-") as tmp:
        calibration = Path(tmp) / "calibration.npz"
        np.savez(calibration, **validation.inputs)
        evaluator = Evaluator(module, validation, options, calibration)
        results = _sweep(evaluator, configs, console)
    ok = [r for r in results if r.ok]
    for result, optimal in zip(ok, pareto_mask([(r.params, evaluator.quality(r)) for r in ok],
                                               higher_is_better=evaluator.has_labels)):
        result.pareto = optimal
    return results, evaluator.has_labels


def _sweep(evaluator: Evaluator, configs: list[Config], console: Console) -> list[Result]:
    """Evaluate ``configs`` with a progress bar; the structure is built once per method and rank."""
    structures: dict[tuple[str, int | None], Module | TensorgateError] = {}
    results = []
    columns = (TextColumn("{task.description}"), BarColumn(), MofNCompleteColumn(), TimeElapsedColumn())
    with Progress(*columns, console=console, transient=True) as progress:
        task = progress.add_task("exploring", total=len(configs))
        for config in configs:
            progress.update(task, description=f"exploring {config.label()}")
            key = (config.method, config.rank)
            try:
                if key not in structures:
                    structures[key] = _structure_or_error(evaluator, config)
                structure = structures[key]
                if isinstance(structure, TensorgateError):
                    raise structure
                results.append(evaluator.evaluate(config, structure))
            except TensorgateError as exc:
                results.append(Result(config, status="failed", message=str(exc)))
            progress.advance(task)
    return results


def _structure_or_error(evaluator: Evaluator, config: Config) -> Module | TensorgateError:
    try:
        return evaluator.structure(config)
    except TensorgateError as exc:
        return exc


def pareto_mask(points: list[tuple[float, float]], higher_is_better: bool) -> list[bool]:
    """For ``(cost, quality)`` points: True where no other point has cost <= and quality at
    least as good, one of them strictly (fewer parameters, better quality)."""
    sign = 1.0 if higher_is_better else -1.0
    scored = [(cost, sign * quality) for cost, quality in points]

    def dominated(point: tuple[float, float]) -> bool:
        return any(c <= point[0] and q >= point[1] and (c, q) != point for c, q in scored)

    return [not dominated(point) for point in scored]


# --- outputs ------------------------------------------------------------------------------


def write_outputs(out_dir: Path, results: list[Result], accuracy: bool, title: str) -> Path:
    """``explore.csv`` and ``pareto.png`` in ``out_dir``, created atomically; an earlier
    explore output there is replaced, any other existing content refused."""
    from .backend.artifact import write_artifact

    def fill(tmp: Path) -> None:
        write_csv(tmp / CSV_FILE, results)
        plot_pareto(tmp / PLOT_FILE, results, accuracy, title)

    return write_artifact(Path(out_dir), fill, marker=CSV_FILE, kind="an explore output")


def write_csv(path: Path, results: list[Result]) -> None:
    with open(path, "w", newline="") as stream:
        writer = csv.DictWriter(stream, fieldnames=COLUMNS, lineterminator="\n")
        writer.writeheader()
        writer.writerows(result.row() for result in results)


METHOD_COLORS = {"dense": "#333333", "tt": "#1f77b4", "bt": "#d62728", "ht": "#2ca02c"}
BITS_MARKERS = ("o", "s", "^", "D", "v", "P", "X", "*")


def plot_pareto(path: Path, results: list[Result], accuracy: bool, title: str) -> None:
    """Two panels sharing the quality axis: parameters (log) and cycles per step; colour by
    method, marker by bit width, Pareto-optimal points ringed and joined."""
    import matplotlib

    matplotlib.use("Agg")
    from matplotlib.figure import Figure
    from matplotlib.lines import Line2D

    ok = [r for r in results if r.ok]
    quality_label = "accuracy" if accuracy else "relative output error vs float"
    widths = sorted({r.config.bits for r in results}, key=lambda b: (b is not None, b or 0))
    markers = {bits: BITS_MARKERS[i % len(BITS_MARKERS)] for i, bits in enumerate(widths)}
    figure = Figure(figsize=(12, 5), layout="constrained")
    params_axes, cycles_axes = figure.subplots(1, 2, sharey=True)
    for axes, key, xlabel in ((params_axes, "params", "parameters (log scale)"),
                              (cycles_axes, "cycles_per_step", "accelerator cycles per time step")):
        for result in ok:
            x, y = getattr(result, key), result.accuracy if accuracy else result.rel_error
            if x is None:
                continue
            layer = widths.index(result.config.bits)
            axes.scatter(x, y, s=110 * 0.7 ** layer, marker=markers[result.config.bits],
                         color=METHOD_COLORS[result.config.method], edgecolors="black" if result.pareto else "white",
                         linewidths=1.5 if result.pareto else 0.5, zorder=3 + layer)
            if result.config.rank is not None:
                axes.annotate(f"r{result.config.rank}", (x, y), textcoords="offset points", xytext=(5, 4),
                              fontsize=7, color="#555555")
        axes.set_xlabel(xlabel)
        axes.grid(True, alpha=0.3)
    params_axes.set_xscale("log")
    params_axes.set_ylabel(quality_label)
    if not accuracy:
        params_axes.set_yscale("symlog", linthresh=_linthresh(ok))
    front = sorted((r.params, r.accuracy if accuracy else r.rel_error) for r in ok if r.pareto)
    if front:
        xs, ys = zip(*front)
        params_axes.step(xs, ys, where="post", color="black", linewidth=1, alpha=0.6, zorder=2)
    handles = [Line2D([], [], linestyle="", marker="o", color=METHOD_COLORS[m], label=m)
               for m in METHODS if any(r.config.method == m for r in results)]
    handles += [Line2D([], [], linestyle="", marker=markers[b], color="gray", label=_bits_text(b)) for b in widths]
    handles.append(Line2D([], [], linestyle="-", marker="o", color="black", markerfacecolor="white",
                          markeredgewidth=1.5, label="Pareto front"))
    cycles_axes.legend(handles=handles, loc="best", fontsize=8)
    failed = len(results) - len(ok)
    figure.suptitle(f"{title}: {len(ok)} configurations" + (f" ({failed} failed, not shown)" if failed else ""))
    figure.savefig(path, dpi=110)


def _linthresh(results: list[Result]) -> float:
    """The symlog linear range: below the smallest non-zero error (the float model is 0)."""
    errors = [r.rel_error for r in results if r.rel_error]
    return min(errors) / 2 if errors else 1e-6


def summary_table(results: list[Result], accuracy: bool, pes: int) -> Table:
    table = Table(title=f"tensorgate explore: ★ Pareto-optimal (fewer parameters, better "
                        f"{'accuracy' if accuracy else 'error'}); MACs and cycles ({pes} PEs) per time step",
                  box=box.SIMPLE_HEAD, pad_edge=False, collapse_padding=True)
    columns = ["", "method", "rank", "bits", "params", "compr.", "accuracy" if accuracy else "rel. error",
               "agree", "MACs", "cycles"]
    if any(r.message for r in results):
        columns.append("note")
    for column in columns:
        table.add_column(column, justify="left" if column in ("method", "bits", "note") else "right",
                         no_wrap=column != "note")
    for r in results:
        rank = "" if r.config.rank is None else str(r.config.rank)
        bits = _bits_csv(r.config.bits)
        if not r.ok:
            table.add_row("", r.config.method, rank, bits, *[""] * 6, f"[red]failed:[/red] {r.message}")
            continue
        quality = f"{r.accuracy:.1%}" if accuracy else f"{r.rel_error:.2e}"
        cycles = "" if r.cycles_per_step is None else f"{r.cycles_per_step:,.0f}"
        table.add_row("★" if r.pareto else "", r.config.method, rank, bits, f"{r.params:,}", f"{r.compression:.2f}x",
                      quality, f"{r.agreement:.0%}", f"{r.macs_per_step:,}", cycles, *([r.message] if len(columns) > 10 else []))
    return table


def run_explore(model_path: Path, data_path: Path, out_dir: Path, options: ExploreOptions,
                console: Console | None = None, progress_console: Console | None = None) -> list[Result]:
    """The whole command: sweep, write the outputs, print the summary table."""
    results, accuracy = explore(model_path, data_path, options, progress_console)
    write_outputs(out_dir, results, accuracy, Path(model_path).name)
    (console or Console()).print(summary_table(results, accuracy, options.pes))
    return results
