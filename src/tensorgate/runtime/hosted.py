"""Run a quantized module whose core runs on the simulated accelerator and whose other
ops (host regions in onnxruntime, ops the accelerator lacks) run here.

``run_around_core(executor, stages, codes, run_core)`` runs the prefix (``ir.stages``)
with the golden model's own programs (a host region: real values in, results quantized
at the boundary, ``interpreter.host``), hands the core's input codes to ``run_core``,
which returns the core's output codes, runs the suffix on them, and returns the module's
outputs as codes.  Every step but the core is the golden model's, so the outputs equal
``run_fixed``'s bit for bit exactly when ``run_core`` equals the golden model on the core.
"""

from __future__ import annotations

from typing import Callable

import numpy as np

from ..interpreter import FixedExecutor
from ..ir.core import Op
from ..ir.stages import Stages

CoreRunner = Callable[[dict[str, np.ndarray]], dict[str, np.ndarray]]


def run_around_core(executor: FixedExecutor, stages: Stages, codes: dict[str, np.ndarray],
                    run_core: CoreRunner) -> dict[str, np.ndarray]:
    """The module's output codes (see the module docstring); ``codes`` are its input codes."""
    env = dict(codes)
    _run(executor, [op for op in executor.module.ops if op.kind == "const"], env)
    _run(executor, stages.prefix, env)
    env.update(run_core({v.name: env[v.name] for v in stages.core.inputs}))
    _run(executor, stages.suffix, env)
    return {v.name: env[v.name] for v in executor.module.outputs}


def _run(executor: FixedExecutor, ops: list[Op], env: dict[str, np.ndarray]) -> None:
    for op in ops:
        results = executor.run_op(op, [None if v is None else env[v.name] for v in op.operands])
        env.update((value.name, array) for value, array in zip(op.results, results))
