"""The executable definition of the IR: NumPy kernels for every op, the float executor
(``run_module``) and the integer golden model (``run_fixed``).

Passes use it to evaluate a module (canonicalize folds constants with its kernels,
calibration and rank selection run the model on data), the backends to evaluate data
movement at compile time, and the runtimes to run artifacts.  The ``host`` op's kernel
(``host``) runs its embedded ONNX region in onnxruntime.
"""

from . import gru, host, lstm, rnn  # register the host and recurrent kernels
from .executor import Executor, check_inputs, run_module
from .golden import FixedExecutor, run_fixed
from .kernels import KERNELS, Kernel

__all__ = ["gru", "host", "lstm", "rnn", "Executor", "check_inputs", "run_module", "FixedExecutor", "run_fixed",
           "KERNELS", "Kernel"]
