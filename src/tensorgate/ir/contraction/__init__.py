"""Tensor networks of decomposed linear maps and the contraction schedules the IR holds.

``network`` describes ``y = W x`` as a tensor network, a ``schedule.Schedule`` lists
its pairwise steps (and serializes to plain lists for the IR text), ``execute`` runs
exactly those steps, ``cost.CostModel`` is what a schedule was chosen for, and
``map_schedule.MapSchedule`` is the schedule a decomposed map carries.  Choosing a
schedule is a pass (``passes.contraction``); the IR only holds and checks one.
"""

from .cost import OBJECTIVES, PRECONTRACT_MODES, CostModel, naive_schedule
from .map_schedule import MapSchedule, SearchRecord, map_networks
from .network import BATCH, INPUT, NetworkTensor, TensorNetwork, network_for_bt, network_for_ht, network_for_tt
from .schedule import COMPILE, RUN, Schedule, Step, execute, fold_weights

__all__ = [
    "OBJECTIVES", "PRECONTRACT_MODES", "CostModel", "naive_schedule",
    "MapSchedule", "SearchRecord", "map_networks",
    "BATCH", "INPUT", "NetworkTensor", "TensorNetwork", "network_for_bt", "network_for_ht", "network_for_tt",
    "COMPILE", "RUN", "Schedule", "Step", "execute", "fold_weights",
]
