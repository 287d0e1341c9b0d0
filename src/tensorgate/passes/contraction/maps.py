"""Choosing the schedule of a decomposed linear map: one search per network of the map."""

from __future__ import annotations

from ...ir.contraction.cost import CostModel
from ...ir.contraction.map_schedule import MapSchedule, SearchRecord, map_networks
from .search import order_contractions


def search_map_schedule(linear_map, batch: int, time_steps: int, cost: CostModel,
                        precontract: str) -> MapSchedule:
    """The schedule of every network of ``linear_map`` for ``time_steps`` steps of
    ``batch`` sequences, with the record of the searches (method, seconds)."""
    results = [order_contractions(network, cost, precontract)
               for network in map_networks(linear_map, batch * time_steps)]
    method = "exact" if all(r.method == "exact" for r in results) else "heuristic"
    record = SearchRecord(method, sum(r.seconds for r in results))
    return MapSchedule([r.schedule for r in results], batch, time_steps, cost, precontract, record)
