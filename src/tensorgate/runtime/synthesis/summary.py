"""The rich summary of a synthesis: the device's budgets used, each memory's primitive, and
the placed clock."""

from __future__ import annotations

from rich.table import Table

from .devices import BRAM, DEVICES


def summary_table(result: dict) -> Table:
    """One row per budget of the device (used, available, share), the fit in the title."""
    verdict = "fits" if result["fit"]["fits"] else "does NOT fit"
    table = Table(title=f"{result['top']} (P={result.get('pes')}) on {result['device']}: {verdict}")
    for column in ("resource", "used", "available", "share"):
        table.add_column(column, justify="left" if column == "resource" else "right")
    for budget in result["fit"]["budgets"]:
        over = budget["used"] > budget["available"]
        share = f"{budget['share']:.1%}"
        table.add_row(budget["name"], f"{budget['used']:,.0f}", f"{budget['available']:,}",
                      f"[bold red]{share}[/]" if over else share)
    return table


def memory_table(result: dict) -> Table | None:
    """One row per memory: its primitive on the device, copies x depth x width and the
    cells it takes; the title says whether yosys's block-RAM and URAM counts equal their
    sum (``None`` for a result without a memory plan)."""
    memories = result.get("memories")
    if not memories:
        return None
    counts = memories["counts"]
    verdict = "equal" if memories["estimate_equals_synthesis"] else "DIFFER"

    def figure(kind: str, which: str) -> str:
        value = counts[kind][which]
        return "-" if value is None else f"{value:,.1f}".removesuffix(".0")

    block = DEVICES[result["device"]].resource(BRAM).name
    table = Table(title=f"memories (--uram {memories['uram']}): estimate {figure('bram', 'estimate')} {block}, "
                        f"{figure('uram', 'estimate')} URAM; yosys {figure('bram', 'synthesized')} {block}, "
                        f"{figure('uram', 'synthesized')} URAM: {verdict}")
    for column in ("memory", "primitive", "copies x depth x width", "cells"):
        table.add_column(column, justify="left" if column in ("memory", "primitive") else "right")
    for name, entry in memories["estimate"]["by_memory"].items():
        cells = ", ".join(f"{count:,} {cell}" for cell, count in entry["cells"].items()) or "LUT RAM"
        table.add_row(name, entry["primitive"], f"{entry['copies']} x {entry['depth']:,} x {entry['width']}", cells)
    return table


def timing_lines(result: dict) -> list[str]:
    """The placed-and-routed clock and the critical path, or why there is none."""
    timing = result.get("timing")
    if not timing or timing.get("fmax_mhz") is None:
        return list(result.get("notes", []))
    verdict = "met" if timing["met"] else "missed"
    lines = [f"Fmax {timing['fmax_mhz']:.2f} MHz placed and routed (target {timing['target_mhz']:g} MHz: {verdict})"]
    path = timing.get("critical_path")
    if path:
        lines.append(f"critical path {path['delay_ns']:.2f} ns = {path['logic_ns']:.2f} ns in cells + "
                     f"{path['routing_ns']:.2f} ns routing, {path['logic_levels']} logic steps, "
                     f"{path['start']} -> {path['end']}")
    return lines + list(result.get("notes", []))
