"""Running a sweep's points: one after another in this process, or as independent tasks
on Dask (a ``LocalCluster`` of worker processes started here, or an existing cluster's
scheduler), with a progress bar of points done, running and failed.  A point runs on one
thread wherever it runs (Dask's nanny gives each worker one BLAS thread; the serial path
sets the same): the parallelism is across points, and no number depends on how many
threads shared a sum.

A point is tried at most ``ATTEMPTS`` times.  A compiler refusal is a result, not a
failure (``measure.evaluate_point``); an unexpected exception, or the loss of the worker
running it, costs an attempt.  After the last attempt the point is a failed row with
the one-line error, and the sweep goes on.  The ``LocalCluster`` here tells its
scheduler to give up on a task at the first worker it kills (``allowed-failures`` 0), so
a point that kills its worker is tried twice in all; an existing cluster's scheduler
follows its own ``distributed.scheduler.allowed-failures`` (Dask's default: 3) before
reporting the loss, and the point is then tried once more.
"""

from __future__ import annotations

import logging
import os
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass

from rich.console import Console
from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeElapsedColumn

from ..errors import TensorgateError, UsageError
from .measure import Result, SweepInputs, evaluate_point, failed, one_line
from .points import Point

ATTEMPTS = 2
REFRESH_SECONDS = 0.5
CONNECT_TIMEOUT = "10s"

OnResult = Callable[[Result, int, bool], None]
"""Called with each point's result, its attempts, and whether it failed after them all."""


@dataclass(frozen=True)
class Execution:
    """Where the points run: ``scheduler`` (an existing cluster's address), else ``workers``
    local processes (``None``: one per core; 1: serially in this process)."""

    workers: int | None = None
    scheduler: str | None = None

    def __post_init__(self) -> None:
        if self.workers is not None and self.workers < 1:
            raise UsageError(f"--workers must be >= 1, got {self.workers}")
        if self.workers is not None and self.scheduler is not None:
            raise UsageError("--workers and --scheduler exclude each other (the cluster has its workers)")

    def local_workers(self, points: int) -> int:
        """Worker processes to start for ``points`` points: never more than points."""
        cores = len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else os.cpu_count() or 1
        return max(1, min(self.workers or cores, points))


def run_points(inputs: SweepInputs, points: list[Point], execution: Execution, on_result: OnResult,
               console: Console, resumed: int = 0) -> None:
    """Measure every point of ``points``, calling ``on_result`` as each one finishes."""
    if not points:
        return
    if execution.scheduler is None and execution.local_workers(len(points)) == 1:
        with _Tracker(console, len(points) + resumed, resumed) as tracker:
            _run_serially(inputs, points, on_result, tracker)
        return
    with _client(execution, len(points)) as client:
        link = _dashboard_link(client)
        where = execution.scheduler or f"{execution.local_workers(len(points))} local worker processes"
        console.print(f"exploring {len(points)} points on {where}" + (f"; dashboard {link}" if link else ""))
        with _Tracker(console, len(points) + resumed, resumed) as tracker:
            _run_on_cluster(client, inputs, points, on_result, tracker)


def _run_serially(inputs: SweepInputs, points: list[Point], on_result: OnResult, tracker: _Tracker) -> None:
    """One point after another on one BLAS thread, as on a Dask worker (whose nanny sets
    one), so that no number depends on how a library split its sums across threads."""
    from threadpoolctl import threadpool_limits

    with threadpool_limits(limits=1, user_api="blas"):
        for point in points:
            _run_one(inputs, point, on_result, tracker)


def _run_one(inputs: SweepInputs, point: Point, on_result: OnResult, tracker: _Tracker) -> None:
    tracker.show(running=1, current=point)
    for attempt in range(1, ATTEMPTS + 1):
        try:
            result, lost = Result.from_json(evaluate_point(inputs, point)), False
            break
        except Exception as exc:  # an unexpected error costs an attempt; the sweep goes on
            result, lost = failed(point, one_line(exc)), True
    tracker.finished(result)
    on_result(result, attempt, lost)


def _run_on_cluster(client, inputs: SweepInputs, points: list[Point], on_result: OnResult,
                    tracker: _Tracker) -> None:
    from distributed import wait

    shared = client.scatter(inputs, broadcast=True, hash=False)

    def submit(point: Point, attempt: int):
        key = f"explore-{point.name}-{inputs.fingerprint}-{attempt}"
        return client.submit(evaluate_point, shared, point, key=key, pure=False)

    attempts = {submit(point, 1): (point, 1) for point in points}
    while attempts:
        try:
            done = wait(list(attempts), timeout=REFRESH_SECONDS, return_when="FIRST_COMPLETED").done
        except TimeoutError:
            done = set()
        for future in done:
            point, attempt = attempts.pop(future)
            if future.status == "finished":
                result = Result.from_json(future.result())
                tracker.finished(result)
                on_result(result, attempt, False)
            elif attempt < ATTEMPTS:
                attempts[submit(point, attempt + 1)] = (point, attempt + 1)
            else:
                result = failed(point, _failure(future))
                tracker.finished(result)
                on_result(result, attempt, True)
            future.release()
        tracker.show(running=_executing_tasks(client))


def _failure(future) -> str:
    """Why a task did not finish: its error, or what became of it (e.g. cancelled)."""
    return one_line(future.exception()) if future.status == "error" else f"the task was {future.status}"


@contextmanager
def _client(execution: Execution, points: int) -> Iterator:
    """A Dask client of the scheduler at ``execution.scheduler``, or of a new
    ``LocalCluster`` of single-threaded worker processes, closed with the client."""
    from distributed import Client

    if execution.scheduler is not None:
        try:
            client = Client(execution.scheduler, timeout=CONNECT_TIMEOUT)
        except (OSError, TimeoutError) as exc:
            raise TensorgateError(f"--scheduler: cannot reach the Dask scheduler at '{execution.scheduler}' "
                                  f"({one_line(exc)})") from None
        with client:
            _check_workers(client, execution.scheduler)
            yield client
        return
    with local_cluster(execution.local_workers(points)) as cluster, Client(cluster) as client:
        yield client


def local_cluster(workers: int):
    """The ``LocalCluster`` of ``--workers N``: single-threaded worker processes, a
    scheduler that reports a lost task at the first dead worker, a dashboard on a free
    port, and glibc's own malloc tuning in the workers: the nanny's default
    ``MALLOC_TRIM_THRESHOLD_`` (which returns freed memory to the system at once) makes
    every large NumPy temporary fault its pages in again, 2.4x slower points here."""
    import dask
    from distributed import LocalCluster

    with dask.config.set({"distributed.scheduler.allowed-failures": 0,
                          "distributed.nanny.pre-spawn-environ.MALLOC_TRIM_THRESHOLD_": None}):
        return LocalCluster(n_workers=workers, threads_per_worker=1, processes=True, dashboard_address=":0",
                            silence_logs=logging.ERROR)


def _check_workers(client, address: str) -> None:
    """Refuse a cluster whose workers cannot run the tasks: tensorgate missing or another version."""
    from .. import __version__

    try:
        versions = client.run(_tensorgate_version)
    except Exception as exc:  # the workers could not even unpickle the call: no tensorgate there
        raise TensorgateError(f"--scheduler: the workers of '{address}' cannot run tensorgate "
                              f"({one_line(exc)}); install it where the workers run") from None
    other = sorted({f"{worker} has {version}" for worker, version in versions.items() if version != __version__})
    if other:
        raise TensorgateError(f"--scheduler: workers run another tensorgate than this {__version__}: "
                              f"{', '.join(other)}")


def _tensorgate_version() -> str:
    from .. import __version__

    return __version__


def _dashboard_link(client) -> str | None:
    """The Dask dashboard's address, when the scheduler serves one."""
    return client.dashboard_link if "dashboard" in client.scheduler_info().get("services", {}) else None


def _executing_tasks(client) -> int:
    counts = client.run(_executing_on_worker, on_error="ignore")
    return sum(counts.values())


def _executing_on_worker(dask_worker) -> int:
    return len(dask_worker.state.executing)


class _Tracker:
    """The progress bar: points done, running and failed (resumed points count as done)."""

    def __init__(self, console: Console, total: int, resumed: int):
        columns = (TextColumn("{task.description}"), BarColumn(), MofNCompleteColumn(),
                   TextColumn("{task.fields[counts]}"), TimeElapsedColumn())
        self.progress = Progress(*columns, console=console, transient=True)
        self.done, self.failed, self.running = resumed, 0, 0
        self.task = self.progress.add_task("exploring", total=total, completed=resumed, counts="")

    def __enter__(self) -> _Tracker:
        self.progress.start()
        self.show(running=0)
        return self

    def __exit__(self, *exc_info) -> None:
        self.progress.stop()

    def finished(self, result: Result) -> None:
        self.done += 1
        self.failed += not result.ok
        self.progress.advance(self.task)

    def show(self, running: int, current: Point | None = None) -> None:
        description = f"exploring {current.label()}" if current else "exploring"
        counts = f"[green]{self.done - self.failed} done[/] [cyan]{running} running[/] [red]{self.failed} failed[/]"
        self.progress.update(self.task, description=description, counts=counts)
