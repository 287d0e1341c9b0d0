"""The rich summary of a synthesis: the device's budgets used, and the placed clock."""

from __future__ import annotations

from rich.table import Table


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
