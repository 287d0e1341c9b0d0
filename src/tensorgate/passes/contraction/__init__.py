"""Choosing contraction orders for decomposed linear maps.

``order_contractions`` picks the pairwise steps of one tensor network under a
``CostModel`` (exact dynamic programming when small, a heuristic beyond);
``search_map_schedule`` does so for every network of a map and returns the
``MapSchedule`` the ``order-contractions`` pass attaches.  The networks, schedules and
cost models themselves are IR data (``ir.contraction``).
"""

from .maps import search_map_schedule
from .search import EXACT_LIMIT, SearchResult, opt_einsum_schedule, order_contractions

__all__ = ["search_map_schedule", "EXACT_LIMIT", "SearchResult", "opt_einsum_schedule", "order_contractions"]
