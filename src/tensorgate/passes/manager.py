"""The pass manager: runs a pipeline over a module, with instrumentation around each pass.

Instrumentation objects see the module before the pipeline and before/after every
pass: verification after each pass (on by default), per-pass wall time, printing the
IR after some or all passes, and dumping it to a directory.  A failure inside a pass
is a ``PassError`` naming the pass and its position in the pipeline, with the
original exception chained as its cause.
"""

from __future__ import annotations

import sys
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Iterable, Mapping, TextIO

from rich.table import Table

from ..errors import PassError, PipelineError, TensorgateError, VerifyError
from ..ir.core import Module
from ..ir.verifier import verify_module
from .base import Pass
from .pipeline import Pipeline, parse_pipeline

IR_DUMP_SUFFIX = ".tgir"


@dataclass(frozen=True)
class PassStep:
    """One pass at its position (1-based) in a pipeline of ``count`` passes."""

    pass_: Pass
    position: int
    count: int

    def describe(self) -> str:
        return f"pass '{self.pass_.name}' (position {self.position} of {self.count})"


class Instrumentation:
    """Hooks around a pipeline run; subclasses override the ones they need."""

    def before_pipeline(self, module: Module) -> None:
        """Called once, before the first pass."""

    def before_pass(self, step: PassStep, module: Module) -> None:
        """Called before ``step`` runs."""

    def after_pass(self, step: PassStep, module: Module, changed: bool) -> None:
        """Called after ``step`` ran and returned ``changed``."""


class VerifyEach(Instrumentation):
    """Verify the input module, and the module after every pass."""

    def before_pipeline(self, module: Module) -> None:
        try:
            verify_module(module)
        except VerifyError as exc:
            raise VerifyError(f"the module is invalid before the pipeline runs: {exc}") from exc

    def after_pass(self, step: PassStep, module: Module, changed: bool) -> None:
        try:
            verify_module(module)
        except VerifyError as exc:
            raise VerifyError(f"the module is invalid after {step.describe()}: {exc}") from exc


@dataclass(frozen=True)
class PassTime:
    step: PassStep
    seconds: float
    changed: bool


class PassTiming(Instrumentation):
    """Wall time of every pass run (instrumentation excluded when installed first)."""

    def __init__(self) -> None:
        self.records: list[PassTime] = []
        self._started = 0.0

    def before_pipeline(self, module: Module) -> None:
        self.records = []

    def before_pass(self, step: PassStep, module: Module) -> None:
        self._started = time.perf_counter()

    def after_pass(self, step: PassStep, module: Module, changed: bool) -> None:
        self.records.append(PassTime(step, time.perf_counter() - self._started, changed))

    def table(self) -> Table:
        """A rich table: position, pass, milliseconds, share of the total, changed."""
        total = sum(r.seconds for r in self.records)
        table = Table(title="pass timing")
        for column, justify in (("#", "right"), ("pass", "left"), ("time (ms)", "right"),
                                ("share", "right"), ("changed", "left")):
            table.add_column(column, justify=justify)
        for record in self.records:
            share = record.seconds / total if total else 0.0
            table.add_row(str(record.step.position), record.step.pass_.name,
                          f"{record.seconds * 1e3:.3f}", f"{share:.1%}",
                          "yes" if record.changed else "no")
        table.add_section()
        table.add_row("", "total", f"{total * 1e3:.3f}", "100.0%" if total else "", "")
        return table


class PrintIR(Instrumentation):
    """Print the IR to ``stream`` after every pass, or after the passes named in ``after``."""

    def __init__(self, stream: TextIO | None = None, after: Iterable[str] | None = None):
        self.stream = stream
        self.after = None if after is None else frozenset(after)

    def after_pass(self, step: PassStep, module: Module, changed: bool) -> None:
        from ..ir.printer import print_module

        if self.after is not None and step.pass_.name not in self.after:
            return
        stream = self.stream or sys.stderr
        note = "" if changed else ", unchanged"
        stream.write(f"// ----- IR after {step.describe()}{note} -----\n")
        stream.write(print_module(module))
        stream.flush()


class DumpIR(Instrumentation):
    """Save the module to ``directory`` before the pipeline (``00-input``) and after
    every pass (``01-canonicalize``, ...), each with its tensor sidecar."""

    def __init__(self, directory: Path | str):
        self.directory = Path(directory)

    def before_pipeline(self, module: Module) -> None:
        try:
            self.directory.mkdir(parents=True, exist_ok=True)
        except OSError as exc:
            raise PipelineError(f"cannot create the IR dump directory '{self.directory}': {exc}") from None
        self._save(module, "00-input")

    def after_pass(self, step: PassStep, module: Module, changed: bool) -> None:
        width = max(2, len(str(step.count)))
        self._save(module, f"{step.position:0{width}d}-{step.pass_.name}")

    def _save(self, module: Module, stem: str) -> None:
        from ..ir.serialize import save_module

        save_module(module, self.directory / f"{stem}{IR_DUMP_SUFFIX}")


class PassManager:
    """Runs a pipeline of passes over a module, in place.

    ``PassManager.parse("canonicalize, dce")`` or ``PassManager([Canonicalize(), ...])``;
    keyword arguments choose the instrumentation: ``verify_each`` (default on),
    ``time_passes`` (then ``timing_table()``), ``print_ir_after_all``,
    ``print_ir_after`` (pass names), ``ir_stream`` (default stderr), ``dump_ir`` (a
    directory), and ``instrumentations`` for custom ones.
    """

    def __init__(
        self,
        passes: Pipeline | Iterable[Pass] = (),
        *,
        verify_each: bool = True,
        time_passes: bool = False,
        print_ir_after_all: bool = False,
        print_ir_after: Iterable[str] = (),
        ir_stream: TextIO | None = None,
        dump_ir: Path | str | None = None,
        instrumentations: Iterable[Instrumentation] = (),
    ):
        self.pipeline = passes if isinstance(passes, Pipeline) else Pipeline(tuple(passes))
        self.timing = PassTiming() if time_passes else None
        self.instrumentations: list[Instrumentation] = [] if self.timing is None else [self.timing]
        if verify_each:
            self.instrumentations.append(VerifyEach())
        print_ir_after = list(print_ir_after)
        if print_ir_after_all or print_ir_after:
            self._check_in_pipeline(print_ir_after)
            after = None if print_ir_after_all else print_ir_after
            self.instrumentations.append(PrintIR(ir_stream, after))
        if dump_ir is not None:
            self.instrumentations.append(DumpIR(dump_ir))
        self.instrumentations.extend(instrumentations)

    @classmethod
    def parse(cls, text: str, registry: Mapping[str, type[Pass]] | None = None,
              **instrumentation) -> "PassManager":
        """A pass manager for pipeline text; ``instrumentation`` as for the constructor."""
        return cls(parse_pipeline(text, registry), **instrumentation)

    def _check_in_pipeline(self, names: list[str]) -> None:
        present = [p.name for p in self.pipeline]
        for name in names:
            if name not in present:
                raise PipelineError(f"cannot print the IR after pass '{name}': it is not in the "
                                    f"pipeline (its passes: {', '.join(present) or 'none'})")

    def run(self, module: Module) -> Module:
        """Run every pass over ``module`` in place and return it.  A module that no
        pipeline ran on before keeps a copy of itself as ``module.imported``."""
        if module.imported is None:
            module.imported = module.copy()
        for instrument in self.instrumentations:
            instrument.before_pipeline(module)
        for position, pass_ in enumerate(self.pipeline, start=1):
            step = PassStep(pass_, position, len(self.pipeline))
            for instrument in self.instrumentations:
                instrument.before_pass(step, module)
            changed = _run_step(step, module)
            for instrument in self.instrumentations:
                instrument.after_pass(step, module, changed)
        return module

    def timing_table(self) -> Table:
        """Per-pass wall time of the last run, as a rich table."""
        if self.timing is None:
            raise PipelineError("pass timing is off: create the PassManager with time_passes=True")
        return self.timing.table()

    def __str__(self) -> str:
        return str(self.pipeline)

    def __repr__(self) -> str:
        return f"PassManager({str(self.pipeline)!r})"


def _run_step(step: PassStep, module: Module) -> bool:
    """Run one pass; any failure becomes a ``PassError`` naming the pass and position."""
    try:
        changed = step.pass_.run(module)
    except TensorgateError as exc:
        raise PassError(f"{step.describe()} failed: {exc}") from exc
    except Exception as exc:
        raise PassError(f"{step.describe()} crashed with {type(exc).__name__}: {exc} "
                        "(a bug in the pass)") from exc
    if not isinstance(changed, bool):
        raise PassError(f"{step.describe()} returned {changed!r} instead of whether it changed the module")
    return changed
