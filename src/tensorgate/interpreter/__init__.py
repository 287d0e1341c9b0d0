"""The executable definition of the IR: NumPy kernels for every op, the float executor
(``run_module``) and the integer golden model (``run_fixed``).

Passes use it to evaluate a module (canonicalize folds constants with its kernels,
calibration and rank selection run the model on data), the backends to evaluate data
movement at compile time, and the runtimes to run artifacts.
"""

from . import lstm  # registers the lstm kernel
from .executor import Executor, check_inputs, run_module
from .golden import FixedExecutor, run_fixed
from .kernels import KERNELS, Kernel

__all__ = ["lstm", "Executor", "check_inputs", "run_module", "FixedExecutor", "run_fixed",
           "KERNELS", "Kernel"]
