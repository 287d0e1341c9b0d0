"""Reading an artifact directory back, confined to that directory.

An artifact is untrusted input: ``manifest.json`` and ``model.tgir`` may have been edited
by hand or by someone else.  So every file the loader opens is named relatively, inside
the directory (no absolute path, no ``..``, no symbolic link on the way), is a regular
file, and matches the sha256 that ``write_artifact`` recorded for it in the manifest's
``files`` map.  A failing check is an ``ArtifactError`` that names the file, never the
file's content.
"""

from __future__ import annotations

import hashlib
import json
import os
import stat
from pathlib import Path, PurePosixPath

from ..errors import ArtifactError, TensorgateError
from ..ir.core import Module

MANIFEST = "manifest.json"
IR_FILE = "model.tgir"
HASH = "sha256"
TARGETS = ("numpy", "onnx", "verilog")
MAX_PES = 1024
"""The most MAC lanes an accelerator may have (``--pes`` and a manifest's ``hardware.pes``):
far beyond any recurrent layer's width, small enough that lowering and building stay bounded."""


def is_artifact(path: Path) -> bool:
    return Path(path).is_dir() and (Path(path) / MANIFEST).is_file()


def file_hashes(directory: Path) -> dict[str, str]:
    """``{relative name: sha256}`` of every regular file below ``directory`` except the
    manifest, sorted by name (the ``files`` map of a manifest)."""
    directory = Path(directory)
    names = sorted(p.relative_to(directory).as_posix() for p in directory.rglob("*") if p.is_file())
    return {name: _sha256(directory / name) for name in names if name != MANIFEST}


def _sha256(path: Path) -> str:
    with open(path, "rb") as file:
        return hashlib.file_digest(file, HASH).hexdigest()


def confined_path(root: Path, name: object, what: str) -> Path:
    """``root / name`` for a ``name`` that stays inside ``root``: a relative POSIX name in
    canonical form, without ``..``, whose components are no symbolic links and whose
    last component is a regular file.  ``what`` says where the name came from."""
    if not isinstance(name, str) or not name:
        raise ArtifactError(f"{what}: expected a file name, got {_short(name)}")
    pure = PurePosixPath(name)
    if (pure.is_absolute() or "\\" in name or "\0" in name or ".." in pure.parts or str(pure) != name
            or pure.parts in ((), (".",))):
        raise ArtifactError(f"{what}: '{_short(name)}' is not a plain relative name inside the artifact "
                            "(absolute paths, '..' and links out are refused)")
    path = root
    for part in pure.parts:
        path = path / part
        try:
            mode = os.lstat(path).st_mode
        except OSError:
            raise ArtifactError(f"{what}: file '{name}' is missing") from None
        if stat.S_ISLNK(mode):
            raise ArtifactError(f"{what}: '{name}' is a symbolic link; an artifact holds its files itself")
    if not stat.S_ISREG(mode):
        raise ArtifactError(f"{what}: '{name}' is not a regular file")
    return path


def _short(value: object, limit: int = 60) -> str:
    text = repr(value) if not isinstance(value, str) else value
    return text if len(text) <= limit else text[:limit] + "..."


def check_files(root: Path, files: object, shown: Path | None = None) -> dict[str, str]:
    """Check the manifest's ``files`` map: every listed file is inside ``root``, regular,
    and has the recorded sha256.  Returns the map; errors name the artifact as ``shown``."""
    shown = root if shown is None else shown
    where = f"artifact '{shown}': {MANIFEST} 'files'"
    if not isinstance(files, dict):
        raise ArtifactError(f"{where} must map file names to their {HASH} (recompile the artifact "
                            "with this tensorgate if it is older)")
    for name, digest in files.items():
        if not isinstance(digest, str) or len(digest) != 64 or any(c not in "0123456789abcdef" for c in digest):
            raise ArtifactError(f"{where}: the {HASH} of '{_short(name)}' is not 64 hex digits")
        path = confined_path(root, name, where)
        if _sha256(path) != digest:
            raise ArtifactError(f"artifact '{shown}': file '{name}' does not match its {HASH} in {MANIFEST} "
                                "(it changed after the artifact was written)")
    return files


def _manifest_error(path: Path, key: str, problem: str) -> ArtifactError:
    return ArtifactError(f"artifact '{path}': {MANIFEST} '{key}' {problem}")


def _require(entries: dict, path: Path, key: str, kind: type, what: str, prefix: str = ""):
    """``entries[key]``, which must exist and be a ``kind`` (``what`` in the message; a
    bool is no int); ``prefix`` locates ``entries`` in the manifest (``hardware.``)."""
    if key not in entries:
        raise _manifest_error(path, prefix + key, "is missing")
    value = entries[key]
    if not isinstance(value, kind) or isinstance(value, bool) and kind is not bool:
        raise _manifest_error(path, prefix + key, f"must be {what}, not {_short(value)}")
    return value


def validate_manifest(manifest: dict, path: Path) -> None:
    """Check the keys the loader and the runtimes read: their presence, types and ranges.
    Every problem is an ``ArtifactError`` naming the manifest key."""
    _require(manifest, path, "tensorgate_version", str, "a version string")
    target = _require(manifest, path, "target", str, "a string")
    if target not in TARGETS:
        raise _manifest_error(path, "target", f"must be one of {', '.join(TARGETS)}, not {_short(target)}")
    _require(manifest, path, "ir", str, "a file name")
    for key in ("inputs", "outputs"):
        signatures = _require(manifest, path, key, list, "a list of {name, shape, dtype}")
        for index, signature in enumerate(signatures):
            _validate_signature(signature, path, f"{key}[{index}]")
    for key in ("pipeline", "source"):
        if key in manifest:
            _require(manifest, path, key, str, "a string")
    if target == "onnx":
        _require(manifest, path, "onnx", str, "a file name")
    if target == "verilog":
        hardware = _require(manifest, path, "hardware", dict, "an object")
        pes = _require(hardware, path, "pes", int, "an integer", "hardware.")
        if not 1 <= pes <= MAX_PES or pes & (pes - 1):
            raise _manifest_error(path, "hardware.pes", f"must be a power of two from 1 to {MAX_PES}, not {pes}")


def _validate_signature(signature: object, path: Path, where: str) -> None:
    if not isinstance(signature, dict):
        raise _manifest_error(path, where, f"must be an object {{name, shape, dtype}}, not {_short(signature)}")
    _require(signature, path, "name", str, "a string", f"{where}.")
    _require(signature, path, "dtype", str, "a string", f"{where}.")
    shape = _require(signature, path, "shape", list, "a list of dims", f"{where}.")
    if not all(isinstance(d, str) or isinstance(d, int) and not isinstance(d, bool) and d >= 0 for d in shape):
        raise _manifest_error(path, f"{where}.shape", f"must hold sizes >= 0 or symbolic names, not {_short(shape)}")


def check_signatures(module: Module, manifest: dict, path: Path) -> None:
    """The manifest's ``inputs`` and ``outputs`` are the module's (a runtime may read either)."""
    for key, values in (("inputs", module.inputs), ("outputs", module.outputs)):
        actual = [{"name": v.name, "shape": list(v.type.shape), "dtype": str(v.type.dtype)} for v in values]
        if manifest[key] != actual:
            described = ", ".join(f"{v.name}: {v.type}" for v in values)
            raise _manifest_error(path, key, f"does not describe the module's {key} ({described})")


def read_manifest(path: Path) -> dict:
    """The parsed ``manifest.json`` of the artifact directory ``path``."""
    if not is_artifact(path):
        raise TensorgateError(f"'{path}' is not a tensorgate artifact (no {MANIFEST})")
    if (path / MANIFEST).is_symlink():
        raise ArtifactError(f"'{path / MANIFEST}' is a symbolic link; an artifact holds its files itself")
    try:
        manifest = json.loads((path / MANIFEST).read_text(encoding="utf-8"))
    except (json.JSONDecodeError, UnicodeDecodeError) as exc:
        raise ArtifactError(f"'{path / MANIFEST}' is not valid JSON: {exc}") from None
    except OSError as exc:
        raise ArtifactError(f"cannot read '{path / MANIFEST}': {exc.strerror or exc}") from None
    if not isinstance(manifest, dict):
        raise ArtifactError(f"'{path / MANIFEST}' must hold a JSON object, not {type(manifest).__name__}")
    return manifest


def load_artifact(path: Path) -> tuple[Module, dict]:
    """Read an artifact directory back: its verified module and its manifest.  Every file
    read is listed in the manifest's ``files`` map with its hash (module docstring)."""
    from ..ir.serialize import load_module
    from ..ir.verifier import verify_module

    root = Path(path).resolve()
    manifest = read_manifest(Path(path))
    validate_manifest(manifest, Path(path))
    files = check_files(root, manifest.get("files"), Path(path))
    ir_name = manifest["ir"]
    ir_path = confined_path(root, ir_name, f"artifact '{path}': {MANIFEST} 'ir'")
    if ir_name not in files:
        raise ArtifactError(f"artifact '{path}': its IR '{ir_name}' is not listed in the {MANIFEST} 'files'")

    def listed_sidecar(name: str) -> Path:
        where = f"artifact '{path}': the weights file of '{ir_name}'"
        sidecar = confined_path(ir_path.parent, name, where)
        if sidecar.relative_to(root).as_posix() not in files:
            raise ArtifactError(f"{where}: '{name}' is not listed in the {MANIFEST} 'files'")
        return sidecar

    module = load_module(ir_path, resolve_sidecar=listed_sidecar)
    verify_module(module)
    check_signatures(module, manifest, Path(path))
    if "onnx" in manifest:
        confined_path(root, manifest["onnx"], f"artifact '{path}': {MANIFEST} 'onnx'")
        if manifest["onnx"] not in files:
            raise _manifest_error(Path(path), "onnx", f"names '{manifest['onnx']}', which is not listed in 'files'")
    return module, manifest
