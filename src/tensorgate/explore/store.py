"""The output directory of a sweep: ``points/`` (one JSON record per finished point,
each written atomically the moment it is known) and the ``explore.csv`` / ``pareto.png``
made from them at the end, each written atomically too.

A record carries the sweep's fingerprint (model bytes, data bytes and the options that
change the numbers), so ``--resume`` takes a stored point only for the same sweep and
refuses a directory made from another.  A point that failed after its retries (a worker
lost or an unexpected error, not a compiler refusal) is stored too, marked to be tried
again on resume.
"""

from __future__ import annotations

import json
import os
import shutil
import tempfile
from collections.abc import Callable
from pathlib import Path

from ..backend.artifact import check_creatable
from ..errors import TensorgateError
from .measure import Result
from .points import Point

POINTS_DIR = "points"
CSV_FILE = "explore.csv"
PLOT_FILE = "pareto.png"
RECORD_FORMAT = 1
OWN_ENTRIES = (POINTS_DIR, CSV_FILE, PLOT_FILE)
FILE_MODE = 0o644


class PointStore:
    """``OUT/points`` of one sweep (fingerprint ``fingerprint``).  Nothing is written
    before the first point is saved: a sweep that fails to start leaves ``OUT`` as it was.
    Without ``resume`` the first save clears an earlier explore output there."""

    def __init__(self, out_dir: Path, fingerprint: str, resume: bool):
        self.out_dir = Path(out_dir)
        _check_is_explore_output(self.out_dir)
        self.directory = self.out_dir / POINTS_DIR
        self.fingerprint = fingerprint
        self.resume = resume
        self._ready = False

    def _prepare(self) -> None:
        if self._ready:
            return
        if not self.resume:
            for name in OWN_ENTRIES:
                path = self.out_dir / name
                if path.is_dir():
                    shutil.rmtree(path)
                else:
                    path.unlink(missing_ok=True)
        try:
            self.directory.mkdir(parents=True, exist_ok=True)
        except OSError as exc:
            raise TensorgateError(f"cannot create output '{self.out_dir}': {exc.strerror or exc}") from None
        self._ready = True

    def path(self, point: Point) -> Path:
        return self.directory / f"{point.name}.json"

    def finished(self, points: list[Point]) -> dict[Point, Result]:
        """With ``resume``, the stored results of ``points`` that need no new run."""
        results: dict[Point, Result] = {}
        if not self.resume:
            return results
        for point in points:
            record = self._read(point)
            if record is not None and not record["retry_on_resume"]:
                results[point] = Result.from_json(record)
        return results

    def _read(self, point: Point) -> dict | None:
        path = self.path(point)
        if not path.is_file():
            return None
        try:
            record = json.loads(path.read_text())
            result = Result.from_json(record)
        except (OSError, ValueError, KeyError, TypeError) as exc:
            raise TensorgateError(f"--resume: cannot read the point record '{path}' ({exc}); "
                                  "remove it or rerun without --resume") from None
        if record.get("fingerprint") != self.fingerprint or result.point != point:
            raise TensorgateError(f"--resume: '{path}' is a point of another sweep (other model, data or "
                                  "options); rerun without --resume to replace it, or choose another -o")
        return record

    def save(self, result: Result, attempts: int, retry_on_resume: bool = False) -> None:
        """Write ``result``'s record atomically."""
        self._prepare()
        record = {"format": RECORD_FORMAT, "fingerprint": self.fingerprint, **result.to_json(),
                  "attempts": attempts, "retry_on_resume": retry_on_resume}
        write_atomically(self.path(result.point), lambda path: path.write_text(json.dumps(record, indent=1) + "\n"))


def _check_is_explore_output(out_dir: Path) -> None:
    if not out_dir.exists():
        check_creatable(Path(os.path.abspath(out_dir)), out_dir)
        return
    foreign = [p.name for p in out_dir.iterdir() if p.name not in OWN_ENTRIES and not p.name.startswith(".")] \
        if out_dir.is_dir() else [out_dir.name]
    if foreign:
        raise TensorgateError(f"output '{out_dir}' exists and is not an explore output; "
                              "choose another path or remove it")


def write_atomically(path: Path, write: Callable[[Path], None]) -> None:
    """``write(tmp)`` a sibling temporary file, then rename it to ``path``."""
    descriptor, name = tempfile.mkstemp(prefix=f".{path.stem}.", suffix=path.suffix, dir=path.parent)
    os.close(descriptor)
    tmp = Path(name)
    try:
        write(tmp)
        tmp.chmod(FILE_MODE)
        os.replace(tmp, path)
    except BaseException:
        tmp.unlink(missing_ok=True)
        raise
