"""`tensorgate explore` on Dask, resumed and failing: the same rows serially and on a
two-process ``LocalCluster`` reached through ``--scheduler``; ``--resume`` runs no point
again; a worker killed mid-task and a point that cannot be built (rank 0) do not stop
the sweep; an unexpected error is retried once, then recorded."""

from __future__ import annotations

import csv
import json
import os
import sys

import cloudpickle
import dask
import pytest
from distributed import Client, LocalCluster
from distributed.diagnostics.plugin import WorkerPlugin

from tensorgate.cli import main
from tensorgate.demo import demo_files
from tensorgate.explore import TIMING_COLUMNS, Execution, ExploreOptions, Point, run_explore, schedule, sweep_points

MODEL, INPUTS = demo_files()
SWEEP = ["--methods", "dense,tt", "--ranks", "2", "--bits", "none,8", "--pes", "8,16"]
OPTIONS = ExploreOptions(methods=("dense", "tt"), ranks=(2,), bits=(None, 8), pes=(8, 16))
KILLED = Point("tt", 2, 8, 16)


def read_rows(out) -> list[dict[str, str]]:
    with open(out / "explore.csv", newline="") as stream:
        return [{k: v for k, v in row.items() if k not in TIMING_COLUMNS} for row in csv.DictReader(stream)]


def record(out, point: Point) -> dict:
    return json.loads((out / "points" / f"{point.name}.json").read_text())


@pytest.fixture(scope="module")
def cluster():
    """Two worker processes; the scheduler reports a task as lost at the first worker
    that dies running it, so a killed worker reaches explore's own retry."""
    with dask.config.set({"distributed.scheduler.allowed-failures": 0}):
        local = LocalCluster(n_workers=2, threads_per_worker=1, processes=True, dashboard_address=":0")
    with local, Client(local) as client:
        yield local.scheduler_address, client


@pytest.fixture(scope="module")
def serial(tmp_path_factory):
    out = tmp_path_factory.mktemp("serial") / "out"
    assert main(["explore", str(MODEL), "--data", str(INPUTS), *SWEEP, "--workers", "1", "-o", str(out)]) == 0
    return out


def test_cluster_gives_the_serial_rows(serial, cluster, tmp_path, capsys):
    address, _ = cluster
    out = tmp_path / "out"
    assert main(["explore", str(MODEL), "--data", str(INPUTS), *SWEEP, "--scheduler", address, "-o", str(out)]) == 0
    assert address in capsys.readouterr().err  # "exploring 8 points on ADDRESS"
    rows = read_rows(out)
    assert len(rows) == 8 and all(r["status"] == "ok" for r in rows)
    assert rows == read_rows(serial)
    assert (out / "pareto.png").read_bytes() == (serial / "pareto.png").read_bytes()


def count_evaluations(monkeypatch) -> list[Point]:
    """Record every point the serial runner measures."""
    seen: list[Point] = []
    evaluate = schedule.evaluate_point

    def counted(inputs, point):
        seen.append(point)
        return evaluate(inputs, point)

    monkeypatch.setattr(schedule, "evaluate_point", counted)
    return seen


def test_resume_recomputes_nothing(serial, tmp_path, monkeypatch):
    out = tmp_path / "out"
    assert main(["explore", str(MODEL), "--data", str(INPUTS), *SWEEP, "--workers", "1", "-o", str(out)]) == 0
    stored = {p.name: (p.stat().st_mtime_ns, p.read_bytes()) for p in (out / "points").iterdir()}
    csv_text = (out / "explore.csv").read_text()
    seen = count_evaluations(monkeypatch)
    sweep = run_explore(MODEL, INPUTS, out, OPTIONS, Execution(workers=2), resume=True)
    assert seen == [] and (sweep.computed, sweep.resumed) == (0, 8)
    assert {p.name: (p.stat().st_mtime_ns, p.read_bytes()) for p in (out / "points").iterdir()} == stored
    assert (out / "explore.csv").read_text() == csv_text  # timings too: they are the stored ones
    (out / "points" / f"{KILLED.name}.json").unlink()
    sweep = run_explore(MODEL, INPUTS, out, OPTIONS, Execution(workers=1), resume=True)
    assert seen == [KILLED] and (sweep.computed, sweep.resumed) == (1, 7)
    assert read_rows(out) == read_rows(serial)


def test_resume_refuses_points_of_another_sweep(tmp_path, capsys):
    out = tmp_path / "out"
    sweep = ["explore", str(MODEL), "--data", str(INPUTS), "--methods", "tt", "--ranks", "2", "--bits", "none",
             "--workers", "1", "-o", str(out)]
    assert main(sweep) == 0
    assert main([*sweep, "--weights", "input", "--resume"]) == 1
    assert "is a point of another sweep" in capsys.readouterr().err
    assert main([*sweep, "--weights", "input"]) == 0  # without --resume the old points are replaced


class KillOnFirstRun(WorkerPlugin):
    """Kills the worker process the first time it starts the task of ``point``."""

    def __init__(self, point: Point, marker: str):
        self.key_part, self.marker = f"explore-{point.name}-", marker

    def transition(self, key, start, finish, *args, **kwargs):
        if finish == "executing" and self.key_part in str(key) and not os.path.exists(self.marker):
            open(self.marker, "w").close()
            os._exit(1)


def test_killed_worker_and_failing_point(serial, cluster, tmp_path):
    address, client = cluster
    marker = tmp_path / "killed"
    cloudpickle.register_pickle_by_value(sys.modules[__name__])
    client.register_plugin(KillOnFirstRun(KILLED, str(marker)), name="kill-once")
    impossible = Point("tt", 0, None, 16)
    out = tmp_path / "out"
    try:
        sweep = run_explore(MODEL, INPUTS, out, OPTIONS, Execution(scheduler=address),
                            points=[*sweep_points(OPTIONS), impossible])
    finally:
        client.unregister_worker_plugin("kill-once")
        cloudpickle.unregister_pickle_by_value(sys.modules[__name__])
        client.wait_for_workers(2)
    assert marker.exists()  # a worker did die running the point
    rows = read_rows(out)
    assert rows[:-1] == read_rows(serial)
    assert rows[-1]["status"] == "failed" and "'max-rank' of pass 'decompose' must be >= 1" in rows[-1]["message"]
    assert "\n" not in rows[-1]["message"] and sum(not r.ok for r in sweep.results) == 1
    assert record(out, KILLED)["attempts"] == 2 and record(out, impossible)["attempts"] == 1


def test_unexpected_errors_are_retried_once(serial, tmp_path, monkeypatch):
    evaluate = schedule.evaluate_point
    calls: list[Point] = []
    flaky, broken = Point("tt", 2, None, 8), Point("dense", None, 8, 16)

    def failing(inputs, point):
        calls.append(point)
        if point == broken or (point == flaky and calls.count(flaky) == 1):
            raise MemoryError("out of memory")
        return evaluate(inputs, point)

    monkeypatch.setattr(schedule, "evaluate_point", failing)
    out = tmp_path / "out"
    sweep = run_explore(MODEL, INPUTS, out, OPTIONS, Execution(workers=1))
    assert calls.count(flaky) == calls.count(broken) == 2 and len(calls) == 10
    rows = read_rows(out)
    expected = read_rows(serial)
    failed_row = next(i for i, r in enumerate(rows) if r["status"] == "failed")
    assert sweep.results[failed_row].point == broken and rows[failed_row]["message"] == "MemoryError: out of memory"
    assert [r for i, r in enumerate(rows) if i != failed_row] == [r for i, r in enumerate(expected) if i != failed_row]
    assert record(out, broken)["retry_on_resume"] and record(out, flaky)["attempts"] == 2
    monkeypatch.setattr(schedule, "evaluate_point", evaluate)
    sweep = run_explore(MODEL, INPUTS, out, OPTIONS, Execution(workers=1), resume=True)
    assert sweep.computed == 1 and read_rows(out) == expected


def test_workers_of_another_version_are_refused(cluster, tmp_path, monkeypatch, capsys):
    import tensorgate

    address, _ = cluster
    monkeypatch.setattr(tensorgate, "__version__", "0.0.0-client")
    out = tmp_path / "out"
    assert main(["explore", str(MODEL), "--data", str(INPUTS), *SWEEP, "--scheduler", address, "-o", str(out)]) == 1
    err = capsys.readouterr().err
    assert "workers run another tensorgate than this 0.0.0-client" in err and "Traceback" not in err
    assert not out.exists()
