"""Frontends: read trained models into the tensorgate IR.

``import_onnx(path_or_model)`` reads an ONNX model (dense LSTMs and the head and
shape ops around them) into a verified ``Module``.
"""

from .onnx_import import import_onnx

__all__ = ["import_onnx"]
