"""Building a design into a shared library, cached by content hash."""

from __future__ import annotations

import hashlib
import json
import os
import re
import shutil
import sys
import tempfile
import time
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path

from .design import Port, RtlDesign, parse_ports, ports_include
from .toolchain import (
    BUILD_RECIPE, HARNESS_CPP, LIBRARY_NAME, LOG_NAME, MAKE_VARIABLES, MANIFEST_NAME, MODEL_PREFIX, PORTS_INCLUDE,
    USER_CFLAGS, VERILATOR_FLAGS, VerilatorError, cache_dir, first_error, run_tool, verilator_executable,
    verilator_version,
)


@dataclass(frozen=True)
class RtlBuild:
    """A built design in the cache: its shared library and its ports."""

    design: RtlDesign
    directory: Path
    ports: dict[str, Port]
    build_seconds: float
    cached: bool

    @property
    def library(self) -> Path:
        return self.directory / LIBRARY_NAME


def build(design: RtlDesign, *, cache: Path | None = None, progress: bool | None = None) -> RtlBuild:
    """Build ``design`` (or find it in the cache) and return the build.

    ``progress``: show a status display while building; ``None`` shows it when
    stderr is a terminal.
    """
    root = Path(cache) if cache is not None else cache_dir()
    key = design.key()
    final = root / f"{design.top}-{key[:20]}"
    if (final / MANIFEST_NAME).is_file():
        return _load_build(design, final, cached=True)
    try:
        root.mkdir(parents=True, exist_ok=True)
    except OSError as exc:
        raise VerilatorError(f"cannot create the build cache {root}: {exc.strerror} "
                             "(set TENSORGATE_CACHE to a writable directory)") from None
    console = progress_console(progress)
    started = time.perf_counter()
    work = Path(tempfile.mkdtemp(prefix=f".{final.name}.", dir=root))
    try:
        with console.status(f"Building [bold]{design.top}[/] with Verilator") as status:
            _build_into(design, root, work, status.update)
        elapsed = time.perf_counter() - started
        _write_manifest(work, design, key, elapsed)
        _publish(work, final)
    finally:
        shutil.rmtree(work, ignore_errors=True)
    console.print(f"[green]Built[/] {design.top} in {elapsed:.1f} s -> {final}")
    return _load_build(design, final, cached=False)


def progress_console(progress: bool | None):
    from rich.console import Console

    console = Console(stderr=True)
    if progress is None:
        progress = console.is_terminal
    console.quiet = not progress
    return console


def _build_into(design: RtlDesign, root: Path, work: Path, say) -> None:
    """Verilate, generate the port glue, compile; the library lands in ``work``."""
    log = work / LOG_NAME
    sources = work / "src"
    sources.mkdir()
    copied = []
    for source in design.sources:  # build exactly the bytes that were hashed
        target = sources / source.name
        shutil.copyfile(source, target)
        copied.append(target)
    harness = sources / HARNESS_CPP.name
    shutil.copyfile(HARNESS_CPP, harness)
    obj = work / "obj"

    say(f"Verilating [bold]{design.top}[/]")
    args = [str(verilator_executable()), "--cc", "--exe", "--prefix", MODEL_PREFIX,
            "--top-module", design.top, "--no-timing", "-Wno-fatal", "--Mdir", str(obj),
            "-o", LIBRARY_NAME, "-LDFLAGS", "-shared", f"-I{sources}", *VERILATOR_FLAGS]
    for flag in USER_CFLAGS:
        args += ["-CFLAGS", flag]
    if design.trace:
        args.append("--trace")
    args += [_parameter_flag(name, value) for name, value in design.parameters]
    args += [str(p) for p in copied] + [str(harness)]
    originals = {str(copy): str(source) for copy, source in zip(copied, design.sources)}
    _checked(args, None, log, design.top, originals)

    ports = parse_ports((obj / f"{MODEL_PREFIX}.h").read_text())
    (sources / PORTS_INCLUDE).write_text(ports_include(ports))
    (work / "ports.json").write_text(json.dumps([p.__dict__ for p in ports.values()]))

    runtime = _runtime_objects(root, obj, log, design.top, say)
    say(f"Compiling [bold]{design.top}[/] (C++)")
    make = _make_command(obj) + ["VM_GLOBAL_FAST=", "VM_GLOBAL_SLOW=",
                                 "USER_LDLIBS=" + " ".join(str(o) for o in runtime)]
    _checked(make, obj, log, design.top)
    shutil.move(str(obj / LIBRARY_NAME), work / LIBRARY_NAME)
    shutil.rmtree(obj)
    shutil.rmtree(sources)


def _parameter_flag(name: str, value: int | str) -> str:
    if isinstance(value, str):
        return f'-G{name}="{value}"'
    return f"-G{name}={int(value)}"


def _make_command(obj: Path) -> list[str]:
    jobs = max(1, min(4, os.cpu_count() or 1))
    return ["make", "-C", str(obj), "-f", f"{MODEL_PREFIX}.mk", f"-j{jobs}",
            f"PYTHON3={sys.executable}", *MAKE_VARIABLES]


def _runtime_objects(root: Path, obj: Path, log: Path, top: str, say) -> list[Path]:
    """Verilator's runtime objects for this flag set, compiled once and cached."""
    classes = (obj / f"{MODEL_PREFIX}_classes.mk").read_text()
    names = _make_list(classes, "VM_GLOBAL_FAST") + _make_list(classes, "VM_GLOBAL_SLOW")
    flags = sorted(re.findall(r"^(VM_\w+ = \S+)$", classes, re.MULTILINE))
    key = hashlib.sha256(repr((BUILD_RECIPE, verilator_version(), names, flags, MAKE_VARIABLES, USER_CFLAGS))
                         .encode()).hexdigest()[:20]
    directory = root / f"runtime-{key}"
    objects = [directory / f"{name}.o" for name in names]
    if all(o.is_file() for o in objects):
        return objects
    say("Compiling the Verilator runtime (once per Verilator version)")
    _checked(_make_command(obj) + [f"{name}.o" for name in names], obj, log, top)
    staging = Path(tempfile.mkdtemp(prefix=f".{directory.name}.", dir=root))
    try:
        for name in names:
            shutil.copyfile(obj / f"{name}.o", staging / f"{name}.o")
        _publish(staging, directory)
    finally:
        shutil.rmtree(staging, ignore_errors=True)
    return objects


def _make_list(makefile: str, variable: str) -> list[str]:
    """Names listed as ``VARIABLE += \\`` continuation lines in a Verilator makefile."""
    match = re.search(rf"^{variable} \+= \\\n((?:  \S+ \\\n)*)", makefile, re.MULTILINE)
    return [word for word in match.group(1).split() if word != "\\"] if match else []


def _checked(args: list[str], cwd: Path | None, log: Path, top: str,
             originals: Mapping[str, str] | None = None) -> None:
    """Run a build step, append its output to the log, raise its first error on failure.

    ``originals`` maps the scratch copies of sources back to the user's paths in messages.
    """
    result = run_tool(args, cwd)
    output = result.stdout
    for copy, original in (originals or {}).items():
        output = output.replace(copy, original)
    with log.open("a") as stream:
        stream.write("$ " + " ".join(args) + "\n" + output + "\n")
    if result.returncode != 0:
        kept = _keep_log(log, top)
        raise VerilatorError(f"Verilator build of {top} failed: {first_error(output)} (full log: {kept})")


def _keep_log(log: Path, top: str) -> Path:
    """Copy a failed build's log out of the work directory (which is removed)."""
    kept = log.parent.parent / "failed" / f"{top}.log"
    kept.parent.mkdir(exist_ok=True)
    shutil.copyfile(log, kept)
    return kept


def _write_manifest(work: Path, design: RtlDesign, key: str, seconds: float) -> None:
    manifest = {"top": design.top, "parameters": dict(design.parameters), "trace": design.trace,
                "sources": [str(s) for s in design.sources], "key": key,
                "verilator": verilator_version(), "build_seconds": round(seconds, 3)}
    (work / MANIFEST_NAME).write_text(json.dumps(manifest, indent=2))


def _publish(staging: Path, final: Path) -> None:
    """Move a finished directory into place; if another process got there first, keep theirs."""
    try:
        os.rename(staging, final)
    except OSError:
        if not final.is_dir():
            raise


def _load_build(design: RtlDesign, directory: Path, cached: bool) -> RtlBuild:
    manifest = json.loads((directory / MANIFEST_NAME).read_text())
    ports = {p["name"]: Port(**p) for p in json.loads((directory / "ports.json").read_text())}
    seconds = 0.0 if cached else manifest["build_seconds"]
    return RtlBuild(design, directory, ports, seconds, cached)
