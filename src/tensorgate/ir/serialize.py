"""Save and load a Module as a text file plus a sidecar ``.npz`` with its large tensors.

``save_module(module, "model.tgir")`` writes ``model.tgir`` (the printed text, whose
header names ``model.npz``) and ``model.npz`` (``printer.module_tensors``, saved without
pickle).  Both are written to temporary files first and renamed into place, so a failure
leaves neither half-written.  ``load_module`` reads the text, then the sidecar its header
names, relative to the text file.
"""

from __future__ import annotations

import os
import tempfile
from pathlib import Path
from typing import Callable

import numpy as np

from ..errors import ParseError, TensorgateError
from .core import Module
from .npz import read_npz
from .parser import parse_text
from .printer import module_tensors, print_module


def save_module(module: Module, path: str | os.PathLike) -> None:
    """Write ``module`` to ``path`` and, if it has large tensors, ``path`` with suffix ``.npz``."""
    path = Path(path)
    sidecar = path.with_suffix(".npz")
    if sidecar == path:
        raise TensorgateError(f"cannot save IR text as '{path}': the name is reserved for its weights file")
    tensors = module_tensors(module)
    text = print_module(module, sidecar.name if tensors else None)
    staged: list[tuple[str, Path]] = []
    try:
        staged.append((_stage(path, lambda f: f.write(text.encode("utf-8"))), path))
        if tensors:
            staged.append((_stage(sidecar, lambda f: np.savez(f, allow_pickle=False, **tensors)), sidecar))
        for temporary, final in reversed(staged):
            os.replace(temporary, final)
    except OSError as exc:
        raise TensorgateError(f"cannot save IR to '{path}': {exc}") from None
    finally:
        for temporary, _ in staged:
            if os.path.exists(temporary):
                os.unlink(temporary)


def _stage(final: Path, write) -> str:
    """Write a temporary file next to ``final`` with ``write(file)``; return its path."""
    handle, temporary = tempfile.mkstemp(dir=final.parent, prefix=f".{final.name}.", suffix=".tmp")
    try:
        with os.fdopen(handle, "wb") as file:
            write(file)
    except BaseException:
        os.unlink(temporary)
        raise
    return temporary


def load_module(path: str | os.PathLike, resolve_sidecar: Callable[[str], Path] | None = None) -> Module:
    """Read a module written by ``save_module`` (not verified: call ``verify_module``).

    The weights file its header names must be a bare file name beside ``path`` (as
    ``save_module`` writes it), never a path elsewhere; ``resolve_sidecar(name)`` may
    check it further (the artifact loader checks it is listed with its hash) and returns
    its path."""
    path = Path(path)
    try:
        text = path.read_text(encoding="utf-8")
    except (OSError, UnicodeDecodeError) as exc:
        raise ParseError(f"cannot read IR file '{path}': {exc}") from None
    parsed = parse_text(text, source=str(path))
    if parsed.sidecar is None:
        return parsed.build({})
    name = parsed.sidecar
    if not name or name in (".", "..") or "/" in name or "\\" in name or "\0" in name:
        raise ParseError(f"{path}: its weights file must be a file name beside it, not '{name[:60]}'")
    sidecar = path.parent / name if resolve_sidecar is None else resolve_sidecar(name)
    return parsed.build(read_npz(sidecar, f"{path}: its weights file", ParseError))
