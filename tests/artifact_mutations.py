"""Mutations of real artifacts for fuzzing the artifact loader (``test_artifact_fuzz.py``
and ``benchmarks/fuzz_artifacts.py``).

``mutate(artifact, choose)`` applies one to three edits to an artifact directory: a
manifest key deleted or given another value (wrong types, paths out of the directory,
huge or negative numbers), the whole manifest replaced or truncated, an entry of the
``files`` map changed, a file deleted, truncated, extended, linked or turned into a
folder, ``model.tgir``'s weights file or one of its types rewritten, ``model.npz``
replaced by an empty or lying archive; each edit optionally rehashed, as a tamperer
would.  ``choose`` is a ``Chooser``: hypothesis's ``data.draw`` (shrinkable) or a seeded
``random.Random``.  ``outcome(artifact)`` runs the loader, the simulator's checks and
the ``run`` and ``inspect`` commands and says whether anything but a tensorgate error
escaped.
"""

from __future__ import annotations

import contextlib
import hashlib
import io
import json
import os
import random
import re
import shutil
import zipfile
from pathlib import Path
from typing import Protocol, Sequence, TypeVar

import numpy as np

T = TypeVar("T")

ODD_VALUES = [None, True, False, 0, -1, 3, 2 ** 40, 2 ** 70, -2 ** 63, 1.5, float("inf"), "", "abc", "model.tgir",
              "model.npz", "../model.tgir", "../other/model.tgir", "/etc/passwd", "rtl/../model.tgir", "./model.tgir",
              "model.tgir\u0000", "a" * 300, [], [1, "a"], {}, {"name": 1}, {"a": {"b": [None]}}, ["batch", -3],
              [{"name": "x", "shape": [1], "dtype": "f32"}], "0" * 64, "f" * 64]
PATH_VALUES = ["/etc/passwd", "../outside.npz", "../other/model.tgir", "sub/../model.npz", "model.npz/", "",
               ".", "..", "/", "model.tgir\\x", "~/model.npz", "%2e%2e/model.npz"]


class Chooser(Protocol):
    def pick(self, options: Sequence[T]) -> T: ...

    def coin(self) -> bool: ...


class RandomChooser:
    """A ``Chooser`` over a seeded ``random.Random``."""

    def __init__(self, seed: int):
        self.rng = random.Random(seed)

    def pick(self, options: Sequence[T]) -> T:
        return options[self.rng.randrange(len(options))]

    def coin(self) -> bool:
        return self.rng.random() < 0.5


def sha256(path: Path) -> str:
    return hashlib.sha256(path.read_bytes()).hexdigest()


def rehash(artifact: Path) -> None:
    """Record the current hashes of the regular files the manifest lists (if it can be read)."""
    try:
        manifest = json.loads((artifact / "manifest.json").read_text())
        files = manifest["files"]
        manifest["files"] = {name: sha256(artifact / name) if isinstance(name, str) and
                             (artifact / name).is_file() and not (artifact / name).is_symlink() else digest
                             for name, digest in files.items()}
    except (ValueError, KeyError, TypeError, AttributeError, OSError):
        return
    (artifact / "manifest.json").write_text(json.dumps(manifest))


def key_paths(value, prefix=()) -> list[tuple]:
    """Every path of keys and indices into a JSON value (the root included)."""
    paths = [prefix]
    if isinstance(value, dict):
        for key, item in value.items():
            paths += key_paths(item, prefix + (key,))
    elif isinstance(value, list):
        for index, item in enumerate(value):
            paths += key_paths(item, prefix + (index,))
    return paths


def _parent(manifest, path: tuple):
    for step in path[:-1]:
        manifest = manifest[step]
    return manifest


def edit_manifest(artifact: Path, choose: Chooser) -> None:
    try:
        text = (artifact / "manifest.json").read_text()
        manifest = json.loads(text)
    except (OSError, ValueError):
        return
    action = choose.pick(["delete", "replace", "replace", "path", "root", "truncate", "files"])
    if action == "root":
        (artifact / "manifest.json").write_text(json.dumps(choose.pick(ODD_VALUES)))
        return
    if action == "truncate":
        (artifact / "manifest.json").write_bytes(text.encode()[: choose.pick([0, 1, 10, len(text) // 2])] +
                                                 choose.pick([b"", b"\xff\xfe"]))
        return
    if action == "files" and isinstance(manifest, dict) and isinstance(manifest.get("files"), dict):
        files = manifest["files"]
        name = choose.pick(PATH_VALUES + sorted(files))
        ir = artifact / "model.tgir"
        files[name] = choose.pick([files.get(name, "0" * 64), "0" * 64, "xyz", None, 7,
                                   sha256(ir) if ir.is_file() else "1" * 64])
        if choose.coin() and files:
            del files[choose.pick(sorted(files))]
    else:
        paths = [p for p in key_paths(manifest) if p]
        if not paths:
            return
        path = choose.pick(paths)
        parent = _parent(manifest, path)
        if action == "delete":
            del parent[path[-1]]
        else:
            parent[path[-1]] = choose.pick(PATH_VALUES if action == "path" else ODD_VALUES)
    (artifact / "manifest.json").write_text(json.dumps(manifest))


def edit_file(artifact: Path, choose: Chooser) -> None:
    names = sorted(p.relative_to(artifact).as_posix() for p in artifact.rglob("*")
                   if p.is_file() and not p.is_symlink())
    if not names:
        return
    path = artifact / choose.pick(names)
    action = choose.pick(["delete", "truncate", "append", "link", "folder", "flip"])
    data = path.read_bytes()
    if action == "delete":
        path.unlink()
    elif action == "truncate":
        path.write_bytes(data[: choose.pick([0, 1, len(data) // 2])])
    elif action == "append":
        path.write_bytes(data + choose.pick([b"\n", b"\0", b"garbage"]))
    elif action == "flip" and data:
        index = choose.pick(range(len(data)))
        path.write_bytes(data[:index] + bytes([data[index] ^ 0x5A]) + data[index + 1:])
    elif action == "link":
        outside = artifact.parent / f"outside-{path.name}"
        outside.write_bytes(data)
        path.unlink()
        path.symlink_to(choose.pick([outside, Path("/etc/passwd"), Path("missing")]))
    elif action == "folder":
        path.unlink()
        path.mkdir()


def edit_ir(artifact: Path, choose: Chooser) -> None:
    ir = artifact / "model.tgir"
    if not ir.is_file() or ir.is_symlink():
        return
    text = ir.read_text(errors="replace")
    action = choose.pick(["weights", "type", "name"])
    if action == "weights":
        text = re.sub(r'weights "[^"]*"', lambda m: f'weights "{choose.pick(PATH_VALUES)}"', text, count=1)
    elif action == "type":
        types = re.findall(r"(?:f32|f64|i64|fix<\d+,\d+>)\[[^\]]*\]", text)
        if types:
            old = choose.pick(types)
            text = text.replace(old, choose.pick(["i64[batch,11]", "f32[]", "f32[batch,10]", "fix<0,5>[2]",
                                                  "f32[-1]", "f64[batch,8,8]"]), 1)
    else:
        text = text.replace("%image_rows", choose.pick(["%x", "%image_rows2", "%probabilities"]), 1)
    ir.write_text(text)


def edit_weights(artifact: Path, choose: Chooser) -> None:
    weights = artifact / "model.npz"
    if weights.is_symlink() or weights.is_dir():
        return
    action = choose.pick(["empty-archive", "huge-header", "object", "not-npy", "drop-key"])
    if action == "empty-archive":
        np.savez(weights)
    elif action == "huge-header":
        header = io.BytesIO()
        np.lib.format.write_array_header_1_0(header, {"descr": "<f4", "fortran_order": False,
                                                      "shape": choose.pick([(1 << 40, 8, 8), (0,), (-1,)])})
        with zipfile.ZipFile(weights, "w") as archive:
            archive.writestr("x.npy", header.getvalue() + bytes(16))
    elif action == "object":
        np.savez(weights, x=np.array([{"a": 1}], dtype=object), allow_pickle=True)
    elif action == "not-npy":
        with zipfile.ZipFile(weights, "w") as archive:
            archive.writestr("x.npy", b"not an array")
    elif weights.is_file():
        with contextlib.suppress(Exception), np.load(weights) as data:
            arrays = {k: data[k] for k in data.files}
            if arrays:
                del arrays[choose.pick(sorted(arrays))]
                np.savez(weights, **arrays)


EDITS = [edit_manifest, edit_manifest, edit_file, edit_ir, edit_weights]


def mutate(artifact: Path, choose: Chooser) -> list[str]:
    """Apply one to three edits to ``artifact`` (each rehashed or not); return their names."""
    applied = []
    for _ in range(choose.pick([1, 1, 2, 3])):
        edit = choose.pick(EDITS)
        edit(artifact, choose)
        if choose.coin():
            rehash(artifact)
        applied.append(edit.__name__)
    return applied


def outcome(artifact: Path, inputs: Path) -> str:
    """``"ok"``, ``"refused"`` (a tensorgate error) or ``"internal error: ..."``: the loader,
    the simulator's checks of a verilog artifact (no build), then the ``run`` and
    ``inspect`` commands, on a mutated artifact."""
    from tensorgate.backend.artifact import load_artifact
    from tensorgate.cli import main
    from tensorgate.errors import TensorgateError
    from tensorgate.runtime.simulator import Simulator

    loaded = {}
    for load in (load_artifact, Simulator):
        try:
            load(artifact)
            loaded[load] = True
        except TensorgateError:
            loaded[load] = False
        except Exception as exc:  # what the fuzzing looks for
            return f"internal error: {load.__name__} raised {type(exc).__name__}: {exc}"
    codes = []
    for command in (["run", str(artifact), "--input", str(inputs), "--output", str(artifact.parent / "out.npz")],
                    ["inspect", str(artifact), "--json"]):
        err = io.StringIO()
        with contextlib.redirect_stderr(err), contextlib.redirect_stdout(io.StringIO()):
            codes.append(main(command))
        if "internal error" in err.getvalue() or "Traceback" in err.getvalue():
            return err.getvalue().strip().splitlines()[-1]
    return "ok" if loaded[load_artifact] and codes[0] == 0 else "refused"


def fresh_copy(source: Path, into: Path) -> Path:
    """``source`` copied to ``into/artifact`` (replacing an earlier copy and its neighbours)."""
    if into.exists():
        shutil.rmtree(into)
    into.mkdir(parents=True)
    return Path(shutil.copytree(source, into / "artifact", symlinks=True))


def build_bases(directory: Path) -> tuple[list[Path], Path]:
    """The artifacts the fuzzing starts from (the demo model: numpy, onnx, and quantized
    for the verilog target) and an input file for them."""
    import onnx
    from onnx import TensorProto, helper

    from tensorgate.cli import main
    from tensorgate.demo import demo_files

    model_path, inputs_path = demo_files()
    model = onnx.load(model_path)
    softmax = model.graph.node[-1]
    del model.graph.node[-1]
    del model.graph.output[:]
    model.graph.output.append(helper.make_tensor_value_info(softmax.input[0], TensorProto.FLOAT, ["batch", 10]))
    onnx.save(model, directory / "logits.onnx")
    quantize = ["-p", "canonicalize, dce, quantize"]
    recipes = {"numpy": [str(model_path)], "onnx": [str(model_path), "--target", "onnx"],
               "verilog": [str(directory / "logits.onnx"), *quantize, "--target", "verilog", "--pes", "4"]}
    with contextlib.redirect_stdout(io.StringIO()), contextlib.redirect_stderr(io.StringIO()):
        for name, args in recipes.items():
            assert main(["compile", *args, "-o", str(directory / name)]) == 0, name
    with np.load(inputs_path) as data:
        np.savez(directory / "in.npz", image_rows=data["image_rows"][:2])
    return [directory / name for name in recipes], directory / "in.npz"


def cleanup(artifact: Path) -> None:
    """Undo what would stop the next copy (folders made read-only, and the like)."""
    for path in [artifact.parent, *artifact.parent.rglob("*")]:
        with contextlib.suppress(OSError):
            if not path.is_symlink():
                os.chmod(path, 0o700 if path.is_dir() else 0o600)
