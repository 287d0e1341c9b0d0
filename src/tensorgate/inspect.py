"""`tensorgate inspect`: a summary of a module as data, and its rendering as tables; and
the summary a compile prints (parameters, output error, warnings)."""

from __future__ import annotations

from collections import Counter
from dataclasses import dataclass, field

from rich.console import Console
from rich.markup import escape
from rich.table import Table

from .backend.artifact import contraction_totals, partition_summary, value_signature
from .ir.core import Module
from .ir.ops import activation_names, num_directions, recurrent_ops
from .ir.stats import model_stats, recurrent_macs_per_step
from .passes.fidelity import measure_fidelity, unmeasured

NO_DATA = ("no calibration data: give compile --calibration FILE.npz, or calibration= to decompose, "
           "select-ranks or quantize")


def inspect_summary(module: Module) -> dict:
    """Inputs, outputs, op counts, recurrent layers (LSTM, GRU, RNN), linear maps and
    parameter totals."""
    stats = model_stats(module)
    layers = []
    for op in recurrent_ops(module.ops):
        x = op.operands[0].type
        layers.append({
            "name": op.results[0].name,
            "node": op.loc,
            "op": op.kind,
            "direction": op.attrs["direction"],
            "layout": op.attrs["layout"],
            "input_size": x.shape[2],
            "hidden_size": op.attrs["hidden_size"],
            "directions": num_directions(op),
            "gates": "stacked" if len(op.attrs["w"]) == num_directions(op) else "separate",
            "activations": activation_names(op),
            **({"linear_before_reset": op.attrs["linear_before_reset"]} if op.kind == "gru" else {}),
            "formats": sorted({m.format for m in op.attrs["w"] + op.attrs["r"]}),
            "macs_per_step": recurrent_macs_per_step(op),
        })
    return {
        "module": module.name,
        "inputs": [value_signature(v) for v in module.inputs],
        "outputs": [value_signature(v) for v in module.outputs],
        "ops": dict(sorted(Counter(op.kind for op in module.ops).items())),
        "recurrent_layers": layers,
        "macs_per_step": sum(layer["macs_per_step"] for layer in layers),
        "maps": [info.as_dict() for info in stats.maps],
        "params": {
            "dense": stats.params_dense,
            "compressed": stats.params_compressed,
            "compression": round(stats.compression, 3),
        },
        "contraction": contraction_totals(module),
        "partition": partition_summary(module) if module.ops_of("host") else None,
        "not_raised": list(getattr(module, "notes", [])),
        "warnings": list(getattr(module, "warnings", [])),
    }


def render_summary(summary: dict, console: Console | None = None) -> None:
    """Print the summary as tables (160 columns wide when not on a terminal)."""
    console = console or Console()
    if not console.is_terminal:
        console = Console(width=160, file=console.file)
    console.print(f"[bold]module[/bold] {summary['module']}")
    for key in ("inputs", "outputs"):
        for sig in summary[key]:
            console.print(escape(f"  {key[:-1]:6} {sig['name']}: {sig['dtype']}[{','.join(map(str, sig['shape']))}]"))
    console.print("  ops    " + ", ".join(f"{k} x{v}" for k, v in summary["ops"].items()))
    if summary["recurrent_layers"]:
        table = Table(title="recurrent layers")
        for column in ("layer", "op", "direction", "input", "hidden", "gates", "W/R formats", "MACs/step"):
            table.add_column(column, justify="right" if column in ("input", "hidden", "MACs/step") else "left",
                             overflow="fold")
        for layer in summary["recurrent_layers"]:
            table.add_row(escape(layer["name"]), _op_label(layer), layer["direction"], str(layer["input_size"]),
                          str(layer["hidden_size"]), layer["gates"], ",".join(layer["formats"]),
                          f"{layer['macs_per_step']:,}")
        console.print(table)
    table = Table(title="linear maps")
    for column in ("map", "format", "shape", "factors (in:out)", "ranks", "params", "compression", "MACs"):
        table.add_column(column, justify="right" if column in ("params", "compression", "MACs") else "left",
                         overflow="fold", min_width=24 if column == "map" else None)
    for info in summary["maps"]:
        factors = info["factors"]
        table.add_row(escape(info["name"]), info["format"], "x".join(map(str, info["shape"])),
                      "x".join(map(str, factors["in"])) + ":" + "x".join(map(str, factors["out"])),
                      ",".join(map(str, info["ranks"])) or "-", f"{info['params']:,}",
                      f"{info['compression']:.1f}x", f"{info['macs']:,}")
    console.print(table)
    if summary["contraction"]:
        _render_contraction(summary, console)
    if summary["partition"]:
        _render_partition(summary["partition"], console)
    for note in summary["not_raised"]:
        console.print(escape(f"not raised: {note}"))
    for warning in summary["warnings"]:
        console.print(escape(f"warning: {warning}"))
    params = summary["params"]
    console.print(f"parameters: {params['dense']:,} dense, {params['compressed']:,} stored "
                  f"({params['compression']:.1f}x); recurrent MACs per time step: {summary['macs_per_step']:,}")


def _op_label(layer: dict) -> str:
    """``lstm``, ``gru`` (``gru lbr`` with linear_before_reset), ``rnn relu`` (its activations
    where they are not the default tanh)."""
    if layer["op"] == "gru":
        return "gru lbr" if layer["linear_before_reset"] else "gru"
    if layer["op"] == "rnn" and set(layer["activations"]) != {"Tanh"}:
        return "rnn " + ",".join(dict.fromkeys(name.lower() for name in layer["activations"]))
    return layer["op"]


def _render_partition(partition: dict, console: Console) -> None:
    """Each region, its ops, what crosses into and out of it and its MACs; then the share
    of MACs the tensorgate regions (on the accelerator, for the verilog target) compute."""
    table = Table(title="partition (host regions run in onnxruntime)")
    for column in ("region", "kind", "ops", "in -> out", "MACs/call"):
        table.add_column(column, justify="right" if column == "MACs/call" else "left", overflow="fold")
    for k, region in enumerate(partition["regions"]):
        ops = ", ".join(f"{name} x{count}" for name, count in region["ops"].items())
        crossing = f"{', '.join(region['inputs']) or '-'} -> {', '.join(region['outputs'])}"
        table.add_row(f"{k} {escape(region['node'])}", region["kind"], escape(ops), escape(crossing),
                      "?" if region["macs"] is None else f"{region['macs']:,}")
    console.print(table)
    macs = partition["macs"]
    if partition["tensorgate_share"] is None:
        console.print("MAC share of the tensorgate regions: unknown (symbolic shapes; fix them with --shape)")
        return
    line = (f"MACs per call: {macs['tensorgate']:,} in tensorgate regions ({partition['tensorgate_share']:.1%}, "
            f"the accelerator's part for --target verilog), {macs['host']:,} in host regions")
    per_step = partition["macs_per_step"]
    if per_step and partition["steps"] != 1:
        line += (f"; per time step ({partition['steps']} steps): {per_step['tensorgate']:,.0f} and "
                 f"{per_step['host']:,.0f}")
    console.print(line)


def _render_contraction(summary: dict, console: Console) -> None:
    """MACs per time step of each scheduled map: naive order, chosen schedule, dense."""
    table = Table(title="contraction schedules (MACs per time step)")
    for column in ("map", "naive", "scheduled", "dense", "peak intermediate"):
        table.add_column(column, justify="left" if column == "map" else "right", overflow="fold")
    for info in summary["maps"]:
        if "macs_per_step" in info:
            macs = info["macs_per_step"]
            table.add_row(escape(info["name"]), f"{macs['naive']:,}", f"{macs['scheduled']:,}",
                          f"{macs['dense']:,}", f"{info['peak_intermediate']:,}")
    total = summary["contraction"]
    table.add_row("total", *(f"{total['macs_per_step'][k]:,}" for k in ("naive", "scheduled", "dense")),
                  f"{total['peak_intermediate']:,}")
    console.print(table)
    console.print(f"schedule search time: {total['contraction_search_seconds'] * 1e3:.1f} ms")


@dataclass
class CompileReport:
    """What a compile adds to the manifest (``output_error``), prints (``lines``) and warns."""

    manifest: dict
    lines: list[str] = field(default_factory=list)
    warnings: list[str] = field(default_factory=list)


def compile_report(module: Module, inputs: dict | None, data: str, threshold: float) -> CompileReport:
    """The parameters and the output error of the compiled ``module`` against the imported
    model (``module.imported``) on ``inputs`` (named ``data``), warning above ``threshold``.
    Without inputs the error is unmeasured, and each decomposed map's weight error is shown."""
    stats = model_stats(module)
    lines = [f"parameters: {stats.params_dense:,} -> {stats.params_compressed:,} ({stats.compression:.1f}x)"]
    if inputs is None:
        errors = [f"{info.name} {info.map.rel_error:.1%}" for info in stats.maps
                  if info.map.format != "dense" and getattr(info.map, "rel_error", None) is not None]
        lines.append(f"output error: unmeasured ({NO_DATA})" +
                     (f"; weight error per decomposed map: {', '.join(errors)}" if errors else ""))
        return CompileReport({"output_error": unmeasured(NO_DATA)}, lines)
    fidelity = measure_fidelity(module.imported or module, module, inputs, data)
    lines.append(fidelity.summary())
    warnings = [fidelity.warning(threshold)] if fidelity.exceeds(threshold) else []
    return CompileReport({"output_error": fidelity.as_dict(threshold)}, lines, warnings)
