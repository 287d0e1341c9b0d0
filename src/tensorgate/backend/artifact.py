"""Artifact directories: the compiled model, its weights and ``manifest.json``.

An artifact is written into a temporary sibling directory and renamed into place,
so ``OUT`` is either complete or absent; an existing artifact at ``OUT`` is replaced
only once the new one is complete.  The manifest lists every file written with its
sha256 (``files``); ``load_artifact`` (``loading.py``) reads only those, unchanged.
"""

from __future__ import annotations

import json
import os
import shutil
import tempfile
from collections import Counter
from pathlib import Path
from typing import Callable

from .. import __version__
from ..errors import TensorgateError
from ..ir.core import Module, Value
from ..ir.stats import contraction_report, model_stats, partition_regions, recurrent_steps
from ..onnx_form.host import region_op_counts
from .loading import IR_FILE, MANIFEST, file_hashes, is_artifact, load_artifact

__all__ = ["IR_FILE", "MANIFEST", "build_manifest", "check_creatable", "check_destination", "is_artifact",
           "load_artifact", "write_artifact", "write_numpy_artifact"]


def value_signature(value: Value) -> dict:
    return {"name": value.name, "shape": list(value.type.shape), "dtype": str(value.type.dtype)}


def build_manifest(module: Module, target: str, pipeline: str, source: str, report: dict | None = None) -> dict:
    """The manifest of ``module``; ``report`` adds entries the compile measured (its
    ``output_error``), and the module's notes (maps left dense, ...) come last."""
    stats = model_stats(module)
    manifest = {
        "tensorgate_version": __version__,
        "target": target,
        "source": source,
        "pipeline": pipeline,
        "ir": IR_FILE,
        "inputs": [value_signature(v) for v in module.inputs],
        "outputs": [value_signature(v) for v in module.outputs],
        "params": {
            "dense": stats.params_dense,
            "compressed": stats.params_compressed,
            "compression": round(stats.compression, 3),
        },
        "maps": [info.as_dict() for info in stats.maps],
        **contraction_totals(module),
        **({"partition": partition_summary(module)} if module.ops_of("host") else {}),
        **(report or {}),
    }
    if module.notes:
        manifest["notes"] = list(module.notes)
    return manifest


def contraction_totals(module: Module) -> dict:
    """``macs_per_step`` {naive, scheduled, dense} and search time over the scheduled maps
    (empty when no map carries a schedule), read from the schedules the IR holds."""
    report = contraction_report(module)
    if not report["maps"]:
        return {}
    total = report["total"]
    return {"macs_per_step": total["macs_per_step"], "peak_intermediate": total["peak"],
            "contraction_search_seconds": round(total.get("search_seconds", 0.0), 6)}


def partition_summary(module: Module) -> dict:
    """The regions (kind, ops, values in and out, MACs per call) and the share of MACs
    the tensorgate regions compute, per call and per time step of the recurrent core;
    MAC figures are ``None`` where a shape is symbolic."""
    regions = []
    for region in partition_regions(module):
        if region.kind == "host":
            (op,) = region.ops
            ops = region_op_counts(op)
            inputs, outputs = [v.name for v in op.inputs], [v.name for v in op.results]
        else:
            ops = dict(sorted(Counter(op.kind for op in region.ops).items()))
            members = {id(op) for op in region.ops}
            inputs = sorted({v.name for op in region.ops for v in op.inputs if v.producer is None or (
                id(v.producer) not in members and v.producer.kind != "const")})
            outputs = [v.name for op in region.ops for v in op.results if any(v is o for o in module.outputs)
                       or any(id(user) not in members for user in module.users(v))]
        regions.append({"kind": region.kind, "node": region.ops[0].loc, "ops": ops, "inputs": inputs,
                        "outputs": outputs, "macs": region.macs})
    macs = {kind: _sum_or_none(r["macs"] for r in regions if r["kind"] == kind) for kind in ("tensorgate", "host")}
    total = None if None in macs.values() else macs["tensorgate"] + macs["host"]
    steps = recurrent_steps(module)
    return {"regions": regions, "macs": {**macs, "total": total}, "steps": steps,
            "tensorgate_share": None if not total else round(macs["tensorgate"] / total, 6),
            "macs_per_step": None if total is None or not steps else {
                kind: value / steps for kind, value in {**macs, "total": total}.items()}}


def _sum_or_none(values) -> int | None:
    values = list(values)
    return None if None in values else sum(values)


def check_destination(out_dir: Path, marker: str = MANIFEST, kind: str = "a tensorgate artifact") -> Path:
    """Refuse an ``out_dir`` that ``write_artifact`` could not fill, before any work is done:
    an empty name, a non-empty directory that is not an earlier output of the same kind
    (holding ``marker``), a file, or a place under a file or an unwritable folder.
    Returns the path made absolute, so that its name is never ``.`` or ``..``."""
    if str(out_dir) == "":
        raise TensorgateError("the output path is empty; give a directory to write")
    absolute = Path(os.path.abspath(out_dir))
    if absolute.parent == absolute:
        raise TensorgateError(f"output '{out_dir}' is a file system root; give a directory below it")
    if absolute.exists() and not (absolute / marker).is_file():
        if not absolute.is_dir() or any(absolute.iterdir()):
            raise TensorgateError(f"output '{out_dir}' exists and is not {kind}; "
                                  "choose another path or remove it")
    check_creatable(absolute, out_dir)
    return absolute


def check_creatable(absolute: Path, shown: Path) -> None:
    """Refuse a directory ``absolute`` (shown as ``shown``) whose nearest existing
    ancestor is a file or an unwritable folder."""
    existing = next(p for p in absolute.parents if p.exists())
    if not existing.is_dir():
        raise TensorgateError(f"cannot create output '{shown}': '{existing}' is a file, not a folder")
    if not os.access(existing, os.W_OK | os.X_OK):
        raise TensorgateError(f"cannot create output '{shown}': folder '{existing}' is not writable")


def write_artifact(out_dir: Path, fill: Callable[[Path], None], marker: str = MANIFEST,
                   kind: str = "a tensorgate artifact") -> Path:
    """Create ``out_dir`` atomically: ``fill(tmp_dir)`` writes the files.  An existing
    ``out_dir`` holding ``marker`` (an earlier output of the same kind) is replaced once
    the new one is complete; any other non-empty one is refused (``check_destination``)."""
    shown, out_dir = out_dir, check_destination(out_dir, marker, kind)
    try:
        out_dir.parent.mkdir(parents=True, exist_ok=True)
        tmp = Path(tempfile.mkdtemp(prefix=f".{out_dir.name}.", dir=out_dir.parent))
    except OSError as exc:
        raise TensorgateError(f"cannot create output '{shown}': {exc.strerror or exc}") from None
    try:
        fill(tmp)
        if marker == MANIFEST:
            record_file_hashes(tmp)
        _move_into_place(tmp, out_dir, shown)
    except BaseException:
        shutil.rmtree(tmp, ignore_errors=True)
        raise
    return Path(shown)


def _move_into_place(tmp: Path, out_dir: Path, shown: Path) -> None:
    """Rename ``tmp`` to ``out_dir``; an existing ``out_dir`` is moved aside first and
    removed after, or put back if the rename fails."""
    if not out_dir.exists():
        tmp.rename(out_dir)
        return
    old = Path(tempfile.mkdtemp(prefix=f".{out_dir.name}.old.", dir=out_dir.parent))
    try:
        out_dir.rename(old / "previous")
    except OSError as exc:
        old.rmdir()
        raise TensorgateError(f"cannot replace output '{shown}': {exc.strerror or exc}") from None
    try:
        tmp.rename(out_dir)
    except BaseException:
        (old / "previous").rename(out_dir)
        old.rmdir()
        raise
    shutil.rmtree(old)


def record_file_hashes(directory: Path) -> None:
    """Add the ``files`` map {relative name: sha256} of everything ``directory`` holds to
    its manifest, so that ``load_artifact`` reads only those files, unchanged."""
    manifest_path = directory / MANIFEST
    manifest = json.loads(manifest_path.read_text())
    manifest["files"] = file_hashes(directory)
    manifest_path.write_text(json.dumps(manifest, indent=2) + "\n")


def write_numpy_artifact(module: Module, out_dir: Path, pipeline: str, source: str,
                         report: dict | None = None) -> Path:
    """The ``numpy`` target: IR text, sidecar weights and the manifest (``report``: see
    ``build_manifest``)."""
    from ..ir.serialize import save_module

    def fill(tmp: Path) -> None:
        save_module(module, tmp / IR_FILE)
        manifest = build_manifest(module, "numpy", pipeline, source, report)
        (tmp / MANIFEST).write_text(json.dumps(manifest, indent=2) + "\n")

    return write_artifact(out_dir, fill)
