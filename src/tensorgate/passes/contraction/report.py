"""The contraction report of a module: for `inspect` and ``manifest.json``.

For every decomposed map that carries a schedule (``order-contractions``), per time
step: the MACs of the naive left-to-right order, of the schedule, and of the dense
product (``macs_per_step = {naive, scheduled, dense}``), the peak intermediate, the
parameters stored before and after precontraction, and the search time.  The search
time is measured here, by running the search again with the options recorded in the
schedule (it takes milliseconds); the IR text holds no timings, so it stays
deterministic.  ``reproduced`` says whether that search still yields the recorded
schedule (false for a hand-edited or stale schedule).
"""

from __future__ import annotations

from typing import Any

from ...ir.core import Module
from .maps import MapSchedule


def contraction_report(module: Module, time_search: bool = True) -> dict[str, Any]:
    """``{"maps": [per-map entries], "total": {...}}`` over the scheduled maps of ``module``."""
    from ...backend.report import module_maps

    entries = []
    for info in module_maps(module):
        schedule = getattr(info.map, "schedule", None)
        if not isinstance(schedule, MapSchedule):
            continue
        entry = {"name": info.name, "format": info.map.format, **schedule.report(info.map)}
        if time_search:
            again, results = MapSchedule.search(info.map, schedule.batch, schedule.time_steps, schedule.cost,
                                                schedule.precontract)
            entry["search_seconds"] = sum(r.seconds for r in results)
            entry["method"] = "exact" if all(r.method == "exact" for r in results) else "heuristic"
            entry["reproduced"] = again.to_meta() == schedule.to_meta()
        entries.append(entry)
    return {"maps": entries, "total": _total(entries)}


def _total(entries: list[dict[str, Any]]) -> dict[str, Any]:
    total: dict[str, Any] = {
        "macs_per_step": {key: sum(e["macs_per_step"][key] for e in entries) for key in ("naive", "scheduled", "dense")},
        "peak": max((e["peak"] for e in entries), default=0),
        "params": {key: sum(e["params"][key] for e in entries) for key in ("map", "stored")},
    }
    if all("search_seconds" in e for e in entries):
        total["search_seconds"] = sum(e["search_seconds"] for e in entries)
    return total
