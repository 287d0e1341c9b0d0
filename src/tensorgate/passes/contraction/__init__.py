"""Contraction ordering for decomposed linear maps: networks, schedules, search, execution.

``network_for_tt/bt/ht`` describe ``y = W x`` as a tensor network, ``order_contractions``
picks the pairwise steps under a ``CostModel``, a ``Schedule`` lists them (and
serializes to plain lists for the IR), and ``execute`` runs exactly those steps.
``maps.MapSchedule`` is the schedule a decomposed map carries (``order-contractions``
attaches it); ``report.contraction_report`` gives the per-map figures for reports.
"""

from .network import BATCH, INPUT, NetworkTensor, TensorNetwork, network_for_bt, network_for_ht, network_for_tt
from .schedule import COMPILE, RUN, Schedule, Step, execute, fold_weights
from .search import (
    EXACT_LIMIT, OBJECTIVES, PRECONTRACT_MODES, CostModel, SearchResult, naive_schedule,
    opt_einsum_schedule, order_contractions,
)

__all__ = [
    "BATCH", "INPUT", "NetworkTensor", "TensorNetwork", "network_for_bt", "network_for_ht", "network_for_tt",
    "COMPILE", "RUN", "Schedule", "Step", "execute", "fold_weights",
    "EXACT_LIMIT", "OBJECTIVES", "PRECONTRACT_MODES", "CostModel", "SearchResult", "naive_schedule",
    "opt_einsum_schedule", "order_contractions",
]
