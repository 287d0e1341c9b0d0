"""Frontends: read trained models into the tensorgate IR.

``import_onnx(path_or_model, bind=..., shapes=...)`` reads an ONNX model into a verified
``Module``: dense and tensorized LSTMs and GRUs, dense RNNs, and the head and shape ops
around them as IR ops, everything else as host regions that onnxruntime runs
(``partition``), after constant folding with onnxscript (``folding``).
"""

from .onnx_import import import_onnx

__all__ = ["import_onnx"]
