"""Passes: IR -> IR transformations with typed options, run by a pass manager.

``PassManager.parse("canonicalize, dce").run(module)``; ``PASSES`` lists every pass;
``describe_passes()`` documents them.  Adding a pass: a ``Pass`` subclass in its own
module plus one line in ``registry.py``.
"""

from .base import OptionSpec, Pass, option
from .canonicalize import Canonicalize
from .dce import DeadCodeElimination
from .manager import (
    DumpIR, Instrumentation, PassManager, PassStep, PassTime, PassTiming, PrintIR, VerifyEach,
)
from .pipeline import Pipeline, parse_pipeline
from .registry import PASSES, describe_passes

__all__ = [
    "OptionSpec", "Pass", "option", "Canonicalize", "DeadCodeElimination", "DumpIR",
    "Instrumentation", "PassManager", "PassStep", "PassTime", "PassTiming", "PrintIR",
    "VerifyEach", "Pipeline", "parse_pipeline", "PASSES", "describe_passes",
]
