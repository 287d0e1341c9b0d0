"""The ``tensorgate`` command line: thin glue from arguments to frontend, passes,
backends and runtimes.

Exit codes: 0 success, 1 a compile/run error (one line on stderr), 2 a usage error.
``--verbose`` adds the traceback of an error.
"""

from __future__ import annotations

import argparse
import os
import sys
import traceback
from pathlib import Path

import numpy as np
from rich.console import Console

from . import __version__
from .errors import ExecutionError, TensorgateError, UsageError

TARGETS = ("numpy", "onnx", "verilog")


def main(argv: list[str] | None = None) -> int:
    parser = build_parser()
    args = parser.parse_args(argv)
    if not getattr(args, "handler", None):
        parser.print_help()
        return 2
    try:
        args.handler(args)
    except TensorgateError as exc:
        print(f"error: {exc}", file=sys.stderr)
        if args.verbose:
            traceback.print_exc()
        return exc.exit_code
    except KeyboardInterrupt:
        print("interrupted", file=sys.stderr)
        return 130
    except Exception as exc:  # a bug: say so, keep the message short unless --verbose
        print(f"internal error: {type(exc).__name__}: {exc} (rerun with --verbose for the traceback "
              "and report it)", file=sys.stderr)
        if args.verbose:
            traceback.print_exc()
        return 1
    return 0


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="tensorgate",
        description="Compile trained LSTMs, GRUs and RNNs from ONNX into tensor-compressed models and hardware.",
    )
    parser.add_argument("--version", action="version", version=f"tensorgate {__version__}")
    common = argparse.ArgumentParser(add_help=False)
    parser.add_argument("-v", "--verbose", action="store_true", help="show tracebacks of errors")
    common.add_argument("-v", "--verbose", action="store_true", default=argparse.SUPPRESS,
                        help="show tracebacks of errors")
    sub = parser.add_subparsers(title="commands", metavar="COMMAND")

    inspect = sub.add_parser("inspect", parents=[common], help="summarize a model or artifact",
                             description="Ops, recurrent layers (LSTM, GRU, RNN), parameters and MACs per time step "
                                         "of an ONNX model or a compiled artifact.")
    inspect.add_argument("model", type=path_argument, help="an .onnx file or an artifact directory")
    add_import_options(inspect)
    inspect.add_argument("--ir", action="store_true", help="print the IR text instead of the summary")
    inspect.add_argument("--json", action="store_true", help="print the summary as JSON")
    inspect.set_defaults(handler=cmd_inspect)

    comp = sub.add_parser("compile", parents=[common], help="run a pass pipeline and write an artifact",
                          description="Import MODEL, run the pipeline and write an artifact directory.")
    comp.add_argument("model", type=path_argument, help="the .onnx model to compile")
    add_import_options(comp)
    comp.add_argument("-p", "--pipeline", default="canonicalize, dce",
                      help="pass pipeline text, e.g. 'canonicalize, dce' (see `tensorgate passes`)")
    comp.add_argument("--target", choices=TARGETS, default="numpy",
                      help="backend: numpy (IR + weights), onnx (standard ONNX), verilog (PE-array RTL, "
                           "program and memory images; needs a quantized module) (default: numpy)")
    comp.add_argument("--pes", type=pes_count, default=16, metavar="P",
                      help="multiply-accumulate lanes of the verilog accelerator, a power of two (default: 16)")
    comp.add_argument("--tune", action="store_true",
                      help="onnx target: measure each way of writing the model in onnxruntime (one thread) and "
                           "write the fastest; the manifest records the measurements")
    comp.add_argument("-o", "--output", type=path_argument, required=True, help="artifact directory to write")
    comp.add_argument("--calibration", type=path_argument, metavar="FILE.npz",
                      help="model inputs by input name: measure the compiled model's output error against the "
                           "imported model on them (default: the calibration= of the pipeline's decompose, "
                           "select-ranks or quantize)")
    comp.add_argument("--warn-error", type=fraction, metavar="FRACTION",
                      help="warn when an output moves by more than this share of its range, or a classifier "
                           "changes more than this share of its top-1 decisions (default: 0.05)")
    comp.add_argument("--time-passes", action="store_true", help="print a table of pass run times")
    comp.add_argument("--print-ir-after-all", action="store_true", help="print the IR after every pass")
    comp.add_argument("--print-ir-after", action="append", default=[], metavar="PASS",
                      help="print the IR after the named pass (repeatable)")
    comp.add_argument("--dump-ir", type=path_argument, metavar="DIR", help="write the IR after every pass to DIR")
    comp.add_argument("--no-verify", action="store_true", help="skip verifying the IR after each pass")
    comp.set_defaults(handler=cmd_compile)

    run = sub.add_parser("run", parents=[common], help="run an artifact on inputs",
                         description="Run a compiled artifact with the NumPy runtime.")
    run.add_argument("artifact", type=path_argument, help="artifact directory from `tensorgate compile`")
    run.add_argument("--input", type=path_argument, required=True,
                     help=".npz keyed by the model's input names (or .npy for a single-input model)")
    run.add_argument("--output", type=path_argument, required=True, help=".npz to write, keyed by output names")
    run.add_argument("--dtype", choices=("float32", "float64"), default="float32",
                     help="float precision of the run (default: float32; float artifacts only)")
    run.add_argument("--kernel", choices=("auto", "numpy", "onnxruntime"),
                     help="the float runtime's recurrent kernel: 'onnxruntime' runs each LSTM/GRU/RNN layer in "
                          "onnxruntime (float32), 'numpy' in NumPy, 'auto' (default) onnxruntime for dense float32 "
                          "layers and NumPy for the rest (float artifacts only)")
    run.add_argument("--raw", action="store_true",
                     help="write the integer codes of a quantized artifact's outputs, not their real values")
    run.add_argument("--raw-input", action="store_true",
                     help="take a quantized artifact's inputs as integer fixed-point codes (default: real values "
                          "of any numeric dtype, quantized by value)")
    run.set_defaults(handler=cmd_run)

    sim = sub.add_parser("simulate", parents=[common], help="run a verilog artifact under Verilator",
                         description="Build the artifact's accelerator with Verilator (cached) and run it "
                                     "cycle by cycle; outputs equal `run` bit for bit.")
    sim.add_argument("artifact", type=path_argument, help="artifact directory from `compile --target verilog`")
    sim.add_argument("--input", type=path_argument, required=True,
                     help=".npz keyed by the model's input names (or .npy for a single-input model)")
    sim.add_argument("--output", type=path_argument, required=True, help=".npz to write, keyed by output names")
    sim.add_argument("--stats", type=path_argument, metavar="STATS.json",
                     help="write cycles, cycles per step, MAC bound, PE utilization and speed")
    sim.add_argument("--trace", type=path_argument, metavar="WAVE.vcd", help="write a VCD waveform")
    sim.add_argument("--raw", action="store_true", help="write integer output codes, not real values")
    sim.add_argument("--raw-input", action="store_true",
                     help="take the inputs as integer fixed-point codes (default: real values, quantized by value)")
    sim.set_defaults(handler=cmd_simulate)

    synth = sub.add_parser("synth", parents=[common], help="synthesize a verilog artifact with yosys (and nextpnr)",
                           description="Synthesize the artifact's RTL with yosys from PyPI for DEVICE and, for "
                                       "devices nextpnr places (ECP5), place and route it at --freq; write the "
                                       "resources, the fit against the device and the placed Fmax and critical "
                                       "path to ARTIFACT/synth.json.")
    synth.add_argument("artifact", type=path_argument, help="artifact directory from `compile --target verilog`")
    synth.add_argument("--device", required=True, metavar="DEVICE",
                       help=f"target chip: {', '.join(synth_devices())}")
    synth.add_argument("--freq", type=positive_number, default=100.0, metavar="MHZ",
                       help="target clock of place-and-route in MHz (default: 100)")
    synth.add_argument("--timeout", type=positive_number, default=4 * 3600.0, metavar="SECONDS",
                       help="time limit of each tool run (default: 14400)")
    synth.add_argument("--uram", choices=("auto", "on", "off"), default="auto",
                       help="UltraScale+ UltraRAM: auto maps each memory to block RAM or URAM, whichever "
                            "leaves the device's budgets least full; on maps every memory but the shallow "
                            "(LUT RAM) ones to URAM; off keeps all in block RAM (default: auto)")
    synth.add_argument("--no-place", action="store_true", help="stop after synthesis (no nextpnr)")
    synth.add_argument("--seed", type=int, default=1, help="nextpnr placement seed (default: 1)")
    synth.add_argument("--work-dir", type=path_argument, metavar="DIR",
                       help="keep the tools' scripts, logs and netlist in DIR (default: a temporary directory)")
    synth.set_defaults(handler=cmd_synth)

    explore = sub.add_parser("explore", parents=[common], help="sweep methods x ranks x P x bits; CSV and Pareto plot",
                             description="Compile MODEL with every decomposition method, rank, accelerator size "
                                         "and bit width; measure parameters, accuracy (or output error), MACs and "
                                         "accelerator cycles on --data; write OUTDIR/explore.csv, "
                                         "OUTDIR/pareto.png and one JSON per point in OUTDIR/points/. Points run "
                                         "as Dask tasks: on local worker processes (--workers) or on a cluster "
                                         "(--scheduler).")
    explore.add_argument("model", type=path_argument, help="the .onnx model to explore")
    explore.add_argument("--data", type=path_argument, required=True,
                         help=".npz with the model's inputs by name (also the quantize calibration) and "
                              "optional integer labels")
    explore.add_argument("--labels-key", metavar="KEY",
                         help="name of the labels array (default: 'labels' if the data has it)")
    explore.add_argument("--output", metavar="NAME", help="the model output to measure (needed if it has several)")
    explore.add_argument("--methods", default="dense,tt,bt,ht",
                         help="comma-separated: dense, tt, bt, ht (default: dense,tt,bt,ht)")
    explore.add_argument("--ranks", default="2,4,8",
                         help="comma-separated ranks: tt/ht max-rank, bt tucker-rank (default: 2,4,8)")
    explore.add_argument("--bits", default="none,8,16",
                         help="comma-separated widths: none (float) or 2..32 (default: none,8,16)")
    explore.add_argument("--weights", choices=("input", "recurrent", "all"), default="all",
                         help="recurrent weights to decompose, W, R or both (default: all)")
    explore.add_argument("--pes", default="16", metavar="P[,P...]",
                         help="comma-separated accelerator MAC lanes for the cycle estimate, powers of two "
                              "(default: 16)")
    explore.add_argument("--finetune", action="store_true",
                         help="fine-tune each decomposed point before measuring it: on the data's labels, or "
                              "without labels to match the imported model (distillation)")
    explore.add_argument("--finetune-teacher", choices=("auto", "imported", "none"), default="auto",
                         help="the fine-tune step's teacher: auto (the imported model when the data has no "
                              "labels), imported (also with labels: mixed), none (labels only)")
    explore.add_argument("--finetune-epochs", type=int, default=5, metavar="N",
                         help="epochs of the fine-tune step (default: 5)")
    explore.add_argument("--simulate", action="store_true",
                         help="run each quantized point's accelerator under Verilator on --data: cycles taken "
                              "and whether it equals the golden model bit for bit (builds cached per machine)")
    explore.add_argument("--synth", metavar="DEVICE",
                         help="synthesize each quantized point's accelerator for DEVICE (as `tensorgate synth`): "
                              "LUT, FF, DSP, block RAM, URAM, fits, and the placed Fmax on ECP5; adds a "
                              "resources-vs-quality row to the plot (minutes per point)")
    explore.add_argument("--synth-freq", type=positive_number, default=100.0, metavar="MHZ",
                         help="place-and-route target clock of --synth (default: 100)")
    explore.add_argument("--workers", type=int, metavar="N",
                         help="local worker processes (default: one per core; 1 runs serially in this process)")
    explore.add_argument("--scheduler", metavar="ADDRESS",
                         help="run on an existing Dask cluster, e.g. tcp://HOST:8786 (see `dask scheduler`)")
    explore.add_argument("--resume", action="store_true",
                         help="keep the points already in OUTDIR/points from the same sweep; run only the rest")
    explore.add_argument("-o", "--output-dir", type=path_argument, required=True, help="directory to write")
    explore.set_defaults(handler=cmd_explore)

    passes = sub.add_parser("passes", parents=[common], help="list every pass with its options")
    passes.set_defaults(handler=cmd_passes)

    demo = sub.add_parser("demo", parents=[common],
                          help="compile and run the bundled LSTM classifier next to onnxruntime")
    demo.set_defaults(handler=cmd_demo)
    return parser


def add_import_options(command: argparse.ArgumentParser) -> None:
    """``--bind`` and ``--shape``, the options of importing an ONNX model."""
    command.add_argument("--bind", type=bound_input, action="append", default=[], metavar="NAME=VALUE",
                         help="fix an input to a constant: a number or comma-separated numbers, e.g. sr=16000 "
                              "(repeatable); the module has no such input and If nodes on it take their branch")
    command.add_argument("--shape", type=input_shape, action="append", default=[], metavar="NAME=DIMS",
                         help="fix an input's dims, e.g. input=1x576 (repeatable; NAME= for a scalar)")


def _name_and_text(text: str) -> tuple[str, str]:
    name, equals, value = text.partition("=")
    if not equals or not name:
        raise argparse.ArgumentTypeError(f"'{text}' is not NAME=VALUE")
    return name, value


def bound_input(text: str) -> tuple[str, object]:
    """``--bind NAME=VALUE``: an int, a float, or a comma-separated list of them."""
    name, value = _name_and_text(text)
    try:
        numbers = [int(part) if part.strip().lstrip("+-").isdigit() else float(part) for part in value.split(",")]
    except ValueError:
        raise argparse.ArgumentTypeError(f"{name}={value}: '{value}' is not a number or a comma-separated "
                                         "list of numbers") from None
    return name, numbers[0] if len(numbers) == 1 else numbers


def input_shape(text: str) -> tuple[str, list[int]]:
    """``--shape NAME=DIMS``: dims separated by ``x``."""
    name, value = _name_and_text(text)
    dims = [part for part in value.split("x")] if value else []
    if not all(part.isdigit() and int(part) > 0 for part in dims):
        raise argparse.ArgumentTypeError(f"{name}={value}: the dims must be positive integers joined by x, "
                                         "e.g. 1x576")
    return name, [int(part) for part in dims]


def import_model(args):
    """Import ``args.model`` with its ``--bind`` and ``--shape`` options."""
    from .frontend import import_onnx

    return import_onnx(args.model, bind=dict(args.bind), shapes=dict(args.shape))


def warn_nan_outputs(outputs: dict[str, np.ndarray]) -> None:
    """One ``warning:`` line per output holding NaN (an overflow inside the model, say)."""
    for name, array in outputs.items():
        if array.dtype.kind == "f" and np.isnan(array).any():
            print(f"warning: output '{name}' holds NaN in {int(np.isnan(array).sum())} of its {array.size} entries",
                  file=sys.stderr)


def print_warnings(module) -> None:
    """The importer's warnings, one ``warning:`` line each, on stderr."""
    for warning in getattr(module, "warnings", []):
        print(f"warning: {warning}", file=sys.stderr)


def load_model(args):
    """Import an ONNX file, or load an artifact directory's module."""
    from .backend.artifact import is_artifact, load_artifact

    if is_artifact(args.model):
        if args.bind or args.shape:
            raise UsageError("--bind and --shape apply to ONNX models, not to a compiled artifact")
        return load_artifact(args.model)[0]
    module = import_model(args)
    print_warnings(module)
    return module


def cmd_inspect(args) -> None:
    from .inspect import inspect_summary, render_summary
    from .ir.printer import print_module

    module = load_model(args)
    if args.ir:
        print(print_module(module), end="")
        return
    summary = inspect_summary(module)
    if args.json:
        import json

        print(json.dumps(summary, indent=2))
    else:
        render_summary(summary)


def path_argument(text: str) -> Path:
    """A file or directory option: any non-empty path (an empty one would mean ``.``)."""
    if not text:
        raise argparse.ArgumentTypeError("the path is empty")
    return Path(text)


def pes_count(text: str) -> int:
    """``--pes``: a power of two up to ``MAX_PES`` (the accelerator splits work across
    lanes by halving; the bound keeps lowering and building finite)."""
    from .backend.loading import MAX_PES

    try:
        value = int(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"'{text}' is not a number") from None
    if value < 1 or value & (value - 1) or value > MAX_PES:
        raise argparse.ArgumentTypeError(f"must be a power of two from 1 to {MAX_PES} (1, 2, 4, ...), not {value}")
    return value


def fraction(text: str) -> float:
    """``--warn-error``: a share in [0, 1]."""
    try:
        value = float(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"'{text}' is not a number") from None
    if not 0 <= value <= 1:
        raise argparse.ArgumentTypeError(f"{value} is not a share in [0, 1] (0.05 is 5%)")
    return value


def cmd_compile(args) -> None:
    from .backend.artifact import check_destination
    from .inspect import compile_report
    from .passes import PassManager
    from .passes.fidelity import DEFAULT_WARN_ERROR, pipeline_calibration
    from .passes.quantization.calibrate import load_calibration

    pm = PassManager.parse(
        args.pipeline,
        verify_each=not args.no_verify,
        time_passes=args.time_passes,
        print_ir_after_all=args.print_ir_after_all,
        print_ir_after=args.print_ir_after,
        dump_ir=args.dump_ir,
    )
    if args.calibration is not None and not args.calibration.is_file():
        raise UsageError(f"--calibration: file '{args.calibration}' does not exist")
    if args.tune and args.target != "onnx":
        raise UsageError(f"--tune applies to --target onnx, not to --target {args.target}")
    check_destination(args.output)
    console = Console(stderr=True)
    with console.status(f"importing {args.model}"):
        module = import_model(args)
    print_warnings(module)
    data = args.calibration or pipeline_calibration(pm.pipeline)
    inputs = None if data is None else load_calibration(data, module)
    if any(p.name == "finetune" for p in pm.pipeline):
        module = pm.run(module)  # finetune shows its own progress bars
    else:
        with console.status(f"running {pm}"):
            module = pm.run(module)
    with console.status("measuring the output error" if inputs is not None else "summarizing"):
        threshold = DEFAULT_WARN_ERROR if args.warn_error is None else args.warn_error
        report = compile_report(module, inputs, str(data), threshold)
    with console.status(f"writing {args.output}"):
        write_target(module, args, str(pm), report.manifest)
    if args.time_passes:
        console.print(pm.timing_table())
    for note in module.notes:
        print(f"note: {note}", file=sys.stderr)
    print(f"wrote {args.output}")
    for line in report.lines:
        print(line)
    for warning in report.warnings:
        print(f"warning: {warning}", file=sys.stderr)


def write_target(module, args, pipeline: str, report: dict | None = None) -> None:
    """Write the artifact of ``args.target`` (``report``: manifest entries the compile measured)."""
    from .backend.artifact import write_numpy_artifact

    if args.target == "onnx":
        from .backend.onnx_export import write_onnx_artifact

        write_onnx_artifact(module, args.output, pipeline, str(args.model), report, tune=getattr(args, "tune", False))
    elif args.target == "verilog":
        from .backend.verilog.artifact import write_verilog_artifact

        write_verilog_artifact(module, args.output, pipeline, str(args.model), args.pes, report)
    else:
        write_numpy_artifact(module, args.output, pipeline, str(args.model), report)


LABELS_KEY = "labels"
"""The array of class labels that data files for ``explore`` and ``finetune`` carry
beside the inputs; ``run`` and ``simulate`` leave it out."""


def read_inputs(path: Path, input_names: list[str]) -> dict[str, np.ndarray]:
    """Inputs from ``.npz`` (keyed by name) or ``.npy`` (single-input models), headers
    checked before anything is allocated.  A ``labels`` array that is no input is left
    out with a note."""
    from .ir.npz import read_npy, read_npz

    if not path.is_file():
        raise UsageError(f"input file '{path}' does not exist")
    if path.suffix == ".npy":
        if len(input_names) != 1:
            raise ExecutionError(f"a .npy input needs a single-input model; this one takes "
                                 f"{', '.join(input_names)}: use an .npz keyed by these names")
        return {input_names[0]: read_npy(path, "input file", ExecutionError)}
    arrays = read_npz(path, "input file", ExecutionError)
    if LABELS_KEY in arrays and LABELS_KEY not in input_names:
        del arrays[LABELS_KEY]
        print(f"note: '{path}' holds '{LABELS_KEY}', which is no input of the model: left out "
              "(labels are for explore and finetune)", file=sys.stderr)
    return arrays


def check_output_file(path: Path, option: str) -> None:
    """Refuse an output file that cannot be written, before anything runs: a directory,
    a missing or unwritable folder."""
    if path.is_dir():
        raise UsageError(f"{option} '{path}' is a directory; give the name of the file to write")
    folder = path.parent
    if not folder.is_dir():
        problem = "is a file, not a folder" if folder.exists() else "does not exist"
        raise UsageError(f"cannot write '{path}': folder '{folder}' {problem}")
    if not os.access(folder, os.W_OK | os.X_OK) or path.exists() and not os.access(path, os.W_OK):
        raise UsageError(f"cannot write '{path}': {'it' if path.exists() else f'folder {folder}'} is not writable")


def cmd_run(args) -> None:
    """Run an artifact: the integer golden model for a quantized one, else the float runtime."""
    from .backend.artifact import load_artifact
    from .fixedpoint.quant_attrs import is_quantized

    check_output_file(args.output, "--output")
    module, _ = load_artifact(args.artifact)
    inputs = read_inputs(args.input, [v.name for v in module.inputs])
    if is_quantized(module):
        if args.kernel is not None:
            raise UsageError("--kernel chooses the float runtime's recurrent kernel; a quantized artifact runs "
                             "the integer golden model")
        from .interpreter import run_fixed

        outputs = run_fixed(module, inputs, raw=args.raw, raw_input=args.raw_input)
    else:
        for flag in ("raw", "raw_input"):
            if getattr(args, flag):
                raise UsageError(f"--{flag.replace('_', '-')} needs a quantized artifact (compile with a "
                                 "'quantize' pass)")
        from .runtime.float_kernels import run_float

        outputs = run_float(module, inputs, dtype=np.dtype(args.dtype), kernel=args.kernel or "auto")
    write_npz(args.output, outputs)
    warn_nan_outputs(outputs)
    print(f"wrote {args.output} ({', '.join(f'{k}{list(v.shape)}' for k, v in outputs.items())})")


def write_npz(path: Path, arrays: dict[str, np.ndarray]) -> None:
    """Write ``arrays`` to ``path`` via a temporary file, so a failure leaves nothing."""
    path = Path(path)
    if not path.parent.is_dir():
        raise UsageError(f"cannot write '{path}': folder '{path.parent}' does not exist")
    tmp = path.with_name(f".{path.name}.tmp.npz")
    try:
        np.savez(tmp, **arrays)
        tmp.replace(path)
    except OSError as exc:
        raise TensorgateError(f"cannot write '{path}': {exc.strerror or exc}") from None
    finally:
        tmp.unlink(missing_ok=True)


def cmd_simulate(args) -> None:
    """Simulate a verilog artifact; outputs like `run`, statistics to the terminal and --stats."""
    import json

    from .runtime.simulator import Simulator

    for option, path in (("--output", args.output), ("--stats", args.stats), ("--trace", args.trace)):
        if path is not None:
            check_output_file(path, option)
    simulator = Simulator(args.artifact)
    inputs = read_inputs(args.input, [v.name for v in simulator.module.inputs])
    outputs, stats = simulator.run(inputs, trace=args.trace, raw=args.raw, raw_input=args.raw_input)
    write_npz(args.output, outputs)
    if args.stats:
        try:
            args.stats.write_text(json.dumps(stats, indent=2) + "\n")
        except OSError as exc:
            args.output.unlink()
            raise TensorgateError(f"cannot write '{args.stats}': {exc.strerror or exc}; "
                                  f"'{args.output}' is not written either") from None
    print(f"wrote {args.output}: {stats['cycles']:,} cycles ({stats['cycles_per_step']:,.0f} per step, "
          f"MAC bound {stats['mac_bound_cycles']:,.0f}, PE utilization {stats['pe_utilization']:.0%}), "
          f"{stats['cycles_per_second'] / 1e6:.1f} M cycles/s")


def synth_devices() -> list[str]:
    from .runtime.synthesis import DEVICES

    return list(DEVICES)


def positive_number(text: str) -> float:
    try:
        value = float(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"'{text}' is not a number") from None
    if not value > 0:
        raise argparse.ArgumentTypeError(f"{text} is not positive")
    return value


def cmd_synth(args) -> None:
    """Synthesize a verilog artifact; a progress line while the tools run, then the summary."""
    from rich.progress import Progress, SpinnerColumn, TextColumn, TimeElapsedColumn

    from .runtime.synthesis import (
        SynthOptions,
        device_named,
        memory_table,
        read_hardware,
        summary_table,
        synthesize,
        timing_lines,
    )

    device = device_named(args.device)
    read_hardware(args.artifact)  # refuse a wrong artifact before the progress display starts
    options = SynthOptions(freq_mhz=args.freq, timeout_s=args.timeout, uram=args.uram, place=not args.no_place,
                           seed=args.seed, work_dir=args.work_dir)
    console = Console(stderr=True)
    with Progress(SpinnerColumn(), TextColumn("{task.description}"), TimeElapsedColumn(), console=console,
                  transient=True) as progress:
        task = progress.add_task(f"synthesizing {args.artifact} for {device.name}")
        result = synthesize(args.artifact, device, options,
                            lambda step: progress.update(task, description=step[:100]))
    Console().print(summary_table(result))
    memories = memory_table(result)
    if memories is not None:
        Console().print(memories)
    for line in timing_lines(result):
        print(line)
    print(f"wrote {args.artifact / 'synth.json'}")


def cmd_explore(args) -> None:
    from .explore import Execution, ExploreOptions, parse_bits, parse_methods, parse_pes, parse_ranks, run_explore

    options = ExploreOptions(methods=parse_methods(args.methods), ranks=parse_ranks(args.ranks),
                             bits=parse_bits(args.bits), pes=parse_pes(args.pes), weights=args.weights,
                             labels_key=args.labels_key, output=args.output, finetune=args.finetune,
                             finetune_epochs=args.finetune_epochs, finetune_teacher=args.finetune_teacher,
                             simulate=args.simulate, synth=args.synth, synth_freq=args.synth_freq)
    execution = Execution(workers=args.workers, scheduler=args.scheduler)
    try:
        sweep = run_explore(args.model, args.data, args.output_dir, options, execution, resume=args.resume,
                            progress_console=Console(stderr=True))
    except KeyboardInterrupt:
        if (args.output_dir / "points").is_dir():
            print(f"the finished points are in {args.output_dir / 'points'}: add --resume to continue",
                  file=sys.stderr)
        raise
    failed = sum(not r.ok for r in sweep.results)
    print(f"wrote {args.output_dir / 'explore.csv'} and {args.output_dir / 'pareto.png'} "
          f"({sweep.computed} points computed, {sweep.resumed} resumed, {failed} failed)")


def cmd_passes(args) -> None:
    from .passes import describe_passes

    print(describe_passes())


def cmd_demo(args) -> None:
    from .demo import run_demo

    run_demo()


if __name__ == "__main__":
    sys.exit(main())
