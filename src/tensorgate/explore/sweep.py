"""The sweep: check the inputs, take the points already stored (``--resume``), run the
rest (``schedule``), storing each as it finishes, then mark the Pareto front and write
``explore.csv`` and ``pareto.png``."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

from rich.console import Console

from .measure import Result, prepare_inputs
from .points import ExploreOptions, Point, sweep_points
from .report import mark_pareto, plot_pareto, summary_table, write_csv
from .schedule import Execution, run_points
from .store import CSV_FILE, PLOT_FILE, PointStore, write_atomically

SERIAL = Execution(workers=1)


@dataclass
class Sweep:
    """A finished sweep: the results in sweep order, whether quality is accuracy (labels
    given) rather than relative error, and how many points were computed or resumed."""

    results: list[Result]
    accuracy: bool
    computed: int
    resumed: int


def explore(model_path: Path, data_path: Path, options: ExploreOptions, execution: Execution = SERIAL,
            out_dir: Path | None = None, resume: bool = False, console: Console | None = None,
            points: list[Point] | None = None) -> Sweep:
    """Measure ``points`` (default: the product of ``options``).  With ``out_dir`` each
    finished point is stored in ``out_dir/points``; with ``resume`` the points stored
    there by the same sweep are taken as they are."""
    console = console or Console(stderr=True)
    points = sweep_points(options) if points is None else points
    inputs = prepare_inputs(model_path, data_path, options)
    store = PointStore(out_dir, inputs.fingerprint, resume) if out_dir is not None else None
    results = store.finished(points) if store is not None else {}
    if results:
        console.print(f"resuming: {len(results)} of {len(points)} points already in {store.directory}")

    def keep(result: Result, attempts: int, lost: bool) -> None:
        results[result.point] = result
        if store is not None:
            store.save(result, attempts, retry_on_resume=lost)

    todo = [p for p in points if p not in results]
    run_points(inputs, todo, execution, keep, console, resumed=len(points) - len(todo))
    ordered = [results[p] for p in points]
    mark_pareto(ordered, inputs.has_labels)
    return Sweep(ordered, inputs.has_labels, computed=len(todo), resumed=len(points) - len(todo))


def run_explore(model_path: Path, data_path: Path, out_dir: Path, options: ExploreOptions,
                execution: Execution = SERIAL, resume: bool = False, console: Console | None = None,
                progress_console: Console | None = None, points: list[Point] | None = None) -> Sweep:
    """The whole command: sweep, store the points, write the CSV and the plot, print the
    summary table."""
    out_dir = Path(out_dir)
    sweep = explore(model_path, data_path, options, execution, out_dir, resume, progress_console, points)
    write_atomically(out_dir / CSV_FILE, lambda path: write_csv(path, sweep.results))
    write_atomically(out_dir / PLOT_FILE, lambda path: plot_pareto(path, sweep.results, sweep.accuracy,
                                                                   Path(model_path).name))
    (console or Console()).print(summary_table(sweep.results, sweep.accuracy))
    return sweep
