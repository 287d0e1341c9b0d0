"""What a sweep shows: the Pareto marking, ``explore.csv``, the plot and the summary table.
Everything here is a function of the results alone, so the outputs are the same
whichever process or cluster measured the points."""

from __future__ import annotations

import csv
from pathlib import Path

from rich import box
from rich.table import Table

from .measure import Result
from .points import METHODS, bits_csv, bits_text

COLUMNS = ("method", "rank", "bits", "pes", "finetune", "status", "params", "compression", "accuracy", "rel_error",
           "agreement", "macs_per_step", "cycles_per_step", "sim_cycles", "bit_exact", "lut", "ff", "dsp", "bram", "uram",
           "fits", "fmax_mhz", "pareto", "seconds", "message")
TIMING_COLUMNS = ("seconds",)
"""Columns that measure the machine, not the point: they differ from run to run."""
METHOD_COLORS = {"dense": "#333333", "tt": "#1f77b4", "bt": "#d62728", "ht": "#2ca02c"}
BITS_MARKERS = ("o", "s", "^", "D", "v", "P", "X", "*")


def pareto_mask(points: list[tuple[float, float]], higher_is_better: bool) -> list[bool]:
    """For ``(cost, quality)`` points: True where no other point has cost <= and quality at
    least as good, one of them strictly (fewer parameters, better quality)."""
    sign = 1.0 if higher_is_better else -1.0
    scored = [(cost, sign * quality) for cost, quality in points]

    def dominated(point: tuple[float, float]) -> bool:
        return any(c <= point[0] and q >= point[1] and (c, q) != point for c, q in scored)

    return [not dominated(point) for point in scored]


def mark_pareto(results: list[Result], accuracy: bool) -> None:
    """Set ``pareto`` on the successful results: fewest parameters for their quality."""
    ok = [r for r in results if r.ok]
    for result, optimal in zip(ok, pareto_mask([(r.params, quality(r, accuracy)) for r in ok],
                                               higher_is_better=accuracy)):
        result.pareto = optimal


def quality(result: Result, accuracy: bool) -> float:
    return result.accuracy if accuracy else result.rel_error


def write_csv(path: Path, results: list[Result]) -> None:
    with open(path, "w", newline="") as stream:
        writer = csv.DictWriter(stream, fieldnames=COLUMNS, lineterminator="\n")
        writer.writeheader()
        writer.writerows(result.row() for result in results)


def plot_pareto(path: Path, results: list[Result], accuracy: bool, title: str) -> None:
    """Three panels: quality against parameters (log) and against cycles per step (sharing
    the quality axis), and cycles per step against parameters.  Colour by method, marker
    by bit width, Pareto-optimal points (parameters vs quality) ringed, the front joined.
    Synthesized points (``explore --synth``) add a row: quality against LUTs, block RAMs
    and the placed Fmax."""
    import matplotlib

    matplotlib.use("Agg")
    from matplotlib.figure import Figure

    ok = [r for r in results if r.ok]
    widths = sorted({r.point.bits for r in results}, key=lambda b: (b is not None, b or 0))
    synthesized = any(r.lut is not None for r in ok)
    figure = Figure(figsize=(17, 10 if synthesized else 5), layout="constrained")
    grid = figure.subplots(2 if synthesized else 1, 3, squeeze=False)
    params_axes, cycles_axes, cost_axes = grid[0]
    cycles_axes.sharey(params_axes)
    if synthesized:
        _plot_synthesis(grid[1], ok, widths, accuracy)

    def quality_of(result: Result) -> float:
        return quality(result, accuracy)

    _scatter(params_axes, ok, widths, lambda r: r.params, quality_of, with_pes=False)
    _scatter(cycles_axes, ok, widths, lambda r: r.cycles_per_step, quality_of)
    _scatter(cost_axes, ok, widths, lambda r: r.params, lambda r: r.cycles_per_step)
    quality_label = "accuracy" if accuracy else "relative output error vs float"
    params_axes.set(xscale="log", xlabel="parameters (log scale)", ylabel=quality_label,
                    title=f"{quality_label} vs parameters")
    cycles_axes.set(xlabel="accelerator cycles per time step", title=f"{quality_label} vs cycles")
    cost_axes.set(xscale="log", xlabel="parameters (log scale)", ylabel="accelerator cycles per time step",
                  title="parameters vs cycles")
    if not accuracy:
        params_axes.set_yscale("symlog", linthresh=_linthresh(ok))
    front = sorted((r.params, quality_of(r)) for r in ok if r.pareto)
    if front:
        xs, ys = zip(*front)
        params_axes.step(xs, ys, where="post", color="black", linewidth=1, alpha=0.6, zorder=2)
    cost_axes.legend(handles=_legend(results, widths), loc="best", fontsize=8)
    failed = len(results) - len(ok)
    figure.suptitle(f"{title}: {len(ok)} points" + (f" ({failed} failed, not shown)" if failed else ""))
    figure.savefig(path, format="png", dpi=110, metadata={"Software": None})


def _plot_synthesis(axes_row, results: list[Result], widths: list, accuracy: bool) -> None:
    """Quality against the synthesized LUTs, block RAMs and placed Fmax (one panel each)."""
    quality_label = "accuracy" if accuracy else "relative output error vs float"
    panels = (("lut", "LUTs"), ("bram", "block RAMs (BRAM36 or DP16KD)"), ("fmax_mhz", "placed Fmax (MHz)"))
    for axes, (column, label) in zip(axes_row, panels):
        _scatter(axes, results, widths, lambda r, c=column: getattr(r, c), lambda r: quality(r, accuracy))
        axes.set(xlabel=label, ylabel=quality_label, title=f"{quality_label} vs {label.split(' (')[0]}")
        if not accuracy:
            axes.set_yscale("symlog", linthresh=_linthresh(results))


def _scatter(axes, results: list[Result], widths: list, x_of, y_of, with_pes: bool = True) -> None:
    """One panel's points, annotated with the rank (and P, where it moves them), smaller
    markers for later widths."""
    for result in results:
        x, y = x_of(result), y_of(result)
        if x is None or y is None:
            continue
        layer = widths.index(result.point.bits)
        axes.scatter(x, y, s=110 * 0.7 ** layer, marker=BITS_MARKERS[layer % len(BITS_MARKERS)],
                     color=METHOD_COLORS[result.point.method], edgecolors="black" if result.pareto else "white",
                     linewidths=1.5 if result.pareto else 0.5, zorder=3 + layer)
        label = " ".join(([] if result.point.rank is None else [f"r{result.point.rank}"])
                         + ([f"P{result.point.pes}"] if with_pes else []))
        if label:
            axes.annotate(label, (x, y), textcoords="offset points", xytext=(5, 4), fontsize=7, color="#555555")
    axes.grid(True, alpha=0.3)


def _legend(results: list[Result], widths: list) -> list:
    from matplotlib.lines import Line2D

    handles = [Line2D([], [], linestyle="", marker="o", color=METHOD_COLORS[m], label=m)
               for m in METHODS if any(r.point.method == m for r in results)]
    handles += [Line2D([], [], linestyle="", marker=BITS_MARKERS[i % len(BITS_MARKERS)], color="gray",
                       label=bits_text(b)) for i, b in enumerate(widths)]
    handles.append(Line2D([], [], linestyle="-", marker="o", color="black", markerfacecolor="white",
                          markeredgewidth=1.5, label="Pareto front"))
    return handles


def _linthresh(results: list[Result]) -> float:
    """The symlog linear range: below the smallest non-zero error (the float model is 0)."""
    errors = [r.rel_error for r in results if r.rel_error]
    return min(errors) / 2 if errors else 1e-6


def summary_table(results: list[Result], accuracy: bool) -> Table:
    table = Table(title=f"tensorgate explore: ★ Pareto-optimal (fewer parameters, better "
                        f"{'accuracy' if accuracy else 'error'}); MACs and cycles (P lanes) per time step",
                  box=box.SIMPLE_HEAD, pad_edge=False, collapse_padding=True)
    simulated = any(r.sim_cycles is not None for r in results)
    synthesized = any(r.lut is not None for r in results)
    columns = ["", "method", "rank", "bits", "P", "params", "compr.", "accuracy" if accuracy else "rel. error",
               "agree", "MACs", "cycles", *(["sim. cycles", "exact"] if simulated else []),
               *(["LUT", "BRAM", "DSP", "fits", "Fmax"] if synthesized else [])]
    notes = any(r.message for r in results)
    for column in columns + (["note"] if notes else []):
        table.add_column(column, justify="left" if column in ("method", "bits", "note") else "right",
                         no_wrap=column != "note")
    for r in results:
        head = [r.point.method, "" if r.point.rank is None else str(r.point.rank), bits_csv(r.point.bits),
                str(r.point.pes)]
        if not r.ok:
            table.add_row("", *head, *[""] * (len(columns) - 5), f"[red]failed:[/red] {r.message}")
            continue
        cells = [f"{r.params:,}", f"{r.compression:.2f}x", f"{r.accuracy:.1%}" if accuracy else f"{r.rel_error:.2e}",
                 f"{r.agreement:.0%}", f"{r.macs_per_step:,}", _number(r.cycles_per_step)]
        if simulated:
            cells += [_number(r.sim_cycles), "" if r.bit_exact is None else "yes" if r.bit_exact else "[red]NO[/red]"]
        if synthesized:
            cells += [_number(r.lut), _number(r.bram), _number(r.dsp),
                      "" if r.fits is None else "yes" if r.fits else "[red]no[/red]",
                      "" if r.fmax_mhz is None else f"{r.fmax_mhz:.1f}"]
        table.add_row("★" if r.pareto else "", *head, *cells, *([r.message] if notes else []))
    return table


def _number(value: float | None) -> str:
    return "" if value is None else f"{value:,.0f}"
