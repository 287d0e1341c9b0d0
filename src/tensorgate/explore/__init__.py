"""`tensorgate explore`: sweep decomposition methods × ranks × accelerator lanes × bit
widths on one model and validation data; write ``explore.csv`` and ``pareto.png`` and
print a summary table.

Every point is the pipeline ``canonicalize, dce, decompose{method=M weights=W <rank
option>=R}, [finetune{...}], order-contractions{cost=cycles pes=P}`` and, for an integer
bit width B, ``quantize{bits=B calibration=<the data's inputs>}``.  The rank is
``max-rank`` for TT and HT and ``tucker-rank`` (one block) for BT; method ``dense`` skips
``decompose`` (no rank).  With ``finetune`` each decomposed point is trained (the
``finetune`` pass, seeded) before its contraction order is chosen: on the data's labels,
or without labels to match the imported model (``finetune_teacher``).

Points are independent tasks (``measure.evaluate_point``): run one after another in this
process, on a ``LocalCluster`` of worker processes, or on an existing Dask cluster
(``schedule``).  Each finished point is stored at once as ``OUT/points/<point>.json``
(``store``); ``resume`` takes the stored points of the same sweep and runs only the
rest.  The CSV and the plot are functions of the rows alone (``report``), so they are
the same, timings aside, however the points ran.

Modules: ``points`` (options, the points), ``measure`` (one point), ``schedule`` (where
points run, retries, progress), ``store`` (the output directory), ``report`` (CSV, plot,
table), ``sweep`` (the whole).
"""

from .measure import Result, SweepInputs, evaluate_point, without_trailing_softmax
from .points import ExploreOptions, Point, parse_bits, parse_methods, parse_pes, parse_ranks, sweep_points
from .report import COLUMNS, TIMING_COLUMNS, pareto_mask
from .schedule import Execution
from .store import CSV_FILE, PLOT_FILE, POINTS_DIR
from .sweep import Sweep, explore, run_explore

__all__ = [
    "COLUMNS", "CSV_FILE", "PLOT_FILE", "POINTS_DIR", "TIMING_COLUMNS", "Execution", "ExploreOptions", "Point",
    "Result", "Sweep", "SweepInputs", "evaluate_point", "explore", "pareto_mask", "parse_bits", "parse_methods",
    "parse_pes", "parse_ranks", "run_explore", "sweep_points", "without_trailing_softmax",
]
