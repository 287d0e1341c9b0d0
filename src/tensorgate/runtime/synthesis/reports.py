"""Reading the tools' machine-readable reports: yosys ``stat -json`` (cells of the
flattened design by type) and nextpnr's ``--report`` JSON (utilization, the achieved
clock, the critical path)."""

from __future__ import annotations

import json
from dataclasses import asdict, dataclass
from pathlib import Path

from .tools import SynthesisError

STEP_KINDS_LOGIC = ("clk-to-q", "logic", "setup")
"""nextpnr path steps spent in cells; ``routing`` steps are the rest."""


def _read_json(path: Path, what: str) -> dict:
    try:
        return json.loads(Path(path).read_text())
    except FileNotFoundError:
        raise SynthesisError(f"{what} wrote no report ({path})") from None
    except json.JSONDecodeError as exc:
        raise SynthesisError(f"{what}'s report {path} is not valid JSON: {exc}") from None


def read_yosys_cells(path: Path, top: str) -> dict[str, int]:
    """Cell counts by type of the design in yosys's ``stat -json`` at ``path`` (the whole
    design's totals; the top module's when yosys gives no totals)."""
    stat = _read_json(path, "yosys stat")
    design = stat.get("design") or stat.get("modules", {}).get(f"\\{top}")
    if design is None or "num_cells_by_type" not in design:
        raise SynthesisError(f"yosys stat report {path} has no cell counts for '{top}'")
    return {cell: int(count) for cell, count in design["num_cells_by_type"].items()}


@dataclass(frozen=True)
class CriticalPath:
    """The slowest register-to-register path: its delay split into time in cells and in
    routing, where it starts and ends, and its steps (type, delay, from, to, net)."""

    delay_ns: float
    logic_ns: float
    routing_ns: float
    start: str
    end: str
    logic_levels: int
    steps: list[dict]

    def as_dict(self) -> dict:
        return asdict(self)


@dataclass(frozen=True)
class PlacedDesign:
    """What nextpnr reports of a placed-and-routed design."""

    fmax_mhz: float | None
    target_mhz: float | None
    clock: str | None
    utilization: dict[str, dict[str, int]]
    critical_path: CriticalPath | None

    @property
    def timing_met(self) -> bool | None:
        if self.fmax_mhz is None or self.target_mhz is None:
            return None
        return self.fmax_mhz >= self.target_mhz


def read_nextpnr_report(path: Path) -> PlacedDesign:
    report = _read_json(path, "nextpnr")
    clocks = report.get("fmax", {})
    clock = min(clocks, key=lambda name: clocks[name]["achieved"]) if clocks else None
    paths = [p for p in report.get("critical_paths", []) if p.get("path")]
    slowest = max(paths, key=lambda p: sum(step["delay"] for step in p["path"]), default=None)
    utilization = {name: {"used": int(entry["used"]), "available": int(entry["available"])}
                   for name, entry in report.get("utilization", {}).items()}
    return PlacedDesign(fmax_mhz=round(clocks[clock]["achieved"], 2) if clock else None,
                        target_mhz=clocks[clock].get("constraint") if clock else None, clock=clock,
                        utilization=utilization, critical_path=critical_path(slowest["path"]) if slowest else None)


def _pin(end: dict) -> str:
    return f"{end.get('cell', '?')}.{end.get('port', '?')}"


def critical_path(steps: list[dict]) -> CriticalPath:
    logic = sum(step["delay"] for step in steps if step["type"] in STEP_KINDS_LOGIC)
    routing = sum(step["delay"] for step in steps if step["type"] not in STEP_KINDS_LOGIC)
    kept = [{"type": step["type"], "delay_ns": round(step["delay"], 3), "from": _pin(step["from"]),
             "to": _pin(step["to"]), **({"net": step["net"]} if step.get("net") else {})} for step in steps]
    return CriticalPath(delay_ns=round(logic + routing, 3), logic_ns=round(logic, 3), routing_ns=round(routing, 3),
                        start=_pin(steps[0]["from"]), end=_pin(steps[-1]["to"]),
                        logic_levels=sum(step["type"] == "logic" for step in steps), steps=kept)
