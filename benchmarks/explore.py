"""Scaling of `tensorgate explore`: one worker against two on this machine, and a model
of a 500-point sweep on W workers.

The sweep: the trained digits classifier of ``tests/digits_classifier.py`` (an ``nn.LSTM``
8 -> 32 with a linear head, stored as ``tests/data/digits_lstm.onnx``) on all 1797
digits with their labels, methods tt, bt, ht × ranks 4, 8 × bits float, 8 × P 8, 16:
24 points.  It runs three times, side by side in one process, each from a fresh output
directory: serially in this process (``--workers 1``), and on a ``LocalCluster`` of 1 and
of 2 single-threaded worker processes (what ``--workers N`` starts); every point runs on
one BLAS thread in all three.  Each wall
time includes everything: the cluster's start, shipping the model and data, each
worker's first import of the model.  The ratio is 1 worker's wall time over 2 workers'.
The rows must be identical (timings aside) in all three.

The 500-point model uses the per-point seconds measured on the 1-worker cluster (each
point timed on its worker, with no other worker of ours competing; its share of the
per-worker preparation included): the 24 times repeated in sweep order up to 500,
handed out greedily to W single-threaded workers (each point to the first worker free,
as Dask's scheduler does for equal tasks), plus the fixed cost measured on the 1-worker
run (its wall time minus the worker's busy seconds).  Points of one sweep differ little in cost, so the makespan is about
(500 / W) × the mean point time; the fixed cost (cluster start, shipping the inputs)
bounds the speedup once the per-worker share gets small.

    python benchmarks/explore.py
"""

from __future__ import annotations

import heapq
import io
import os
import sys
import tempfile
import time
from pathlib import Path

import numpy as np
from rich.console import Console
from rich.table import Table

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "tests"))

from digits_classifier import STORED, digits  # noqa: E402

from tensorgate.explore import TIMING_COLUMNS, Execution, ExploreOptions, run_explore  # noqa: E402
from tensorgate.explore.schedule import local_cluster  # noqa: E402

OPTIONS = ExploreOptions(methods=("tt", "bt", "ht"), ranks=(4, 8), bits=(None, 8), pes=(8, 16))
SERIAL = "serial"
MODELLED_POINTS = 500
MODELLED_WORKERS = (1, 2, 4, 8, 16, 32, 64, 128)


def main() -> int:
    console = Console(width=max(Console().width, 110))
    quiet = Console(file=io.StringIO())
    sequences, labels = digits()
    load_before = os.getloadavg()
    with tempfile.TemporaryDirectory() as tmp:
        data = Path(tmp) / "digits.npz"
        np.savez(data, x=sequences, labels=labels)
        runs = {SERIAL: timed(data, Path(tmp) / "serial", Execution(workers=1), quiet)}
        for workers in (1, 2):
            runs[workers] = timed(data, Path(tmp) / f"cluster{workers}", workers, quiet)
    load_after = os.getloadavg()
    rows = [[{k: v for k, v in r.row().items() if k not in TIMING_COLUMNS} for r in results]
            for _, results in runs.values()]
    identical = all(other == rows[0] for other in rows[1:])
    console.print(measured_table(runs, identical))
    console.print(f"load average (1, 5, 15 min) before: {fmt_load(load_before)}, after: {fmt_load(load_after)} "
                  f"on {os.cpu_count()} cores (the machine is shared)")
    console.print(model_table(runs[1]))
    failed = sum(not r.ok for r in runs[SERIAL][1])
    console.print(f"rows identical in all three runs: {'yes' if identical else 'NO'}; failed points: {failed}")
    return 0 if identical and not failed else 1


def timed(data: Path, out: Path, execution: Execution | int, quiet: Console) -> tuple[float, list]:
    """Wall seconds and results of the sweep; an ``int`` is the LocalCluster of that many
    workers that ``--workers N`` starts, started (and closed) inside the timing."""
    started = time.perf_counter()
    if isinstance(execution, Execution):
        sweep = run_explore(STORED, data, out, OPTIONS, execution, console=quiet, progress_console=quiet)
    else:
        with local_cluster(execution) as cluster:
            sweep = run_explore(STORED, data, out, OPTIONS, Execution(scheduler=cluster.scheduler_address),
                                console=quiet, progress_console=quiet)
    return time.perf_counter() - started, sweep.results


def measured_table(runs: dict, identical: bool) -> Table:
    table = Table(title=f"24-point explore sweep of the digits LSTM on 1797 digits (rows identical: {identical})")
    for column in ("run", "wall s", "sum of point s", "mean point s", "wall vs 1 worker"):
        table.add_column(column, justify="right")
    one = runs[1][0]
    for name, (wall, results) in runs.items():
        seconds = [r.seconds for r in results]
        label = name if name == SERIAL else f"{name} worker{'s' if name > 1 else ''}"
        table.add_row(label, f"{wall:.2f}", f"{sum(seconds):.2f}", f"{np.mean(seconds):.3f}", f"{one / wall:.2f}x")
    return table


def model_table(run: tuple[float, list]) -> Table:
    wall, results = run
    seconds = [r.seconds for r in results]
    fixed = max(0.0, wall - sum(seconds))
    serial = modelled(seconds, 1, fixed)
    table = Table(title=f"model: {MODELLED_POINTS} points on W workers, from the 24 per-point times of the "
                        f"1-worker run (mean {np.mean(seconds):.3f} s) + fixed cost {fixed:.2f} s")
    for column in ("W", "modelled wall s", "speedup vs W=1", "efficiency", "worker-seconds"):
        table.add_column(column, justify="right")
    for workers in MODELLED_WORKERS:
        total = modelled(seconds, workers, fixed)
        table.add_row(str(workers), f"{total:,.1f}", f"{serial / total:.1f}x", f"{serial / total / workers:.0%}",
                      f"{total * workers:,.0f}")
    return table


def modelled(seconds: list[float], workers: int, fixed: float) -> float:
    repeated = [seconds[i % len(seconds)] for i in range(MODELLED_POINTS)]
    return fixed + max(makespan_loads(repeated, workers))


def makespan_loads(seconds: list[float], workers: int) -> list[float]:
    """Each worker's busy seconds when points go in order to the first worker free."""
    free = [(0.0, worker) for worker in range(workers)]
    for duration in seconds:
        load, worker = heapq.heappop(free)
        heapq.heappush(free, (load + duration, worker))
    return [load for load, _ in free]


def fmt_load(load: tuple[float, float, float]) -> str:
    return ", ".join(f"{value:.2f}" for value in load)


if __name__ == "__main__":
    sys.exit(main())
