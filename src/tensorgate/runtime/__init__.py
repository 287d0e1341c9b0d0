"""Running compiled artifacts: the float runtime's choice of recurrent kernel, NumPy or
onnxruntime (``float_kernels``); on the accelerator's RTL, the Verilator harness
(``verilator``: build, cache, ctypes driver) and the cycle-accurate ``Simulator`` of a
verilog artifact.  The float and integer interpreters of the IR are
``tensorgate.interpreter``."""
