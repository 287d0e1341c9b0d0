"""The ONNX conventions tensorgate's importer and its ``onnx`` target share: opsets,
the producer name, metadata keys, and how IR element types map to ONNX's."""

from __future__ import annotations

from onnx import TensorProto

from ..ir.types import BOOL, F32, F64, I32, I64, ElementType

OPSET = 18
QDQ_OPSET = 21
"""Quantized modules need QuantizeLinear/DequantizeLinear with int16 (opset 21)."""
IR_VERSION = 10
PRODUCER = "tensorgate"
ONNX_FILE = "model.onnx"
ANNOTATIONS_KEY = "tensorgate.map"
STRUCTURAL_META = ("out_factors", "in_factors", "out_pad", "in_pad", "ranks", "tree")
"""Meta entries of a decomposed map that its lowering shows; the rest (the schedule, the
decomposition error) are annotations, carried as the metadata entry ``tensorgate.map``."""
SCAN_KEYS = {"lstm": "tensorgate.lstm", "gru": "tensorgate.gru", "rnn": "tensorgate.rnn"}
"""Per recurrent op kind, the metadata key of its Scan lowering (its scalar attributes
and where its maps, bias and peepholes are, for the importer)."""
EXTERNAL_DATA_BYTES = 1 << 30
"""Models whose weights exceed this are written with the weights in ``model.onnx.data``
(a protobuf message cannot exceed 2 GiB)."""

ONNX_TYPES: dict[ElementType, int] = {
    F32: TensorProto.FLOAT, F64: TensorProto.DOUBLE, I32: TensorProto.INT32, I64: TensorProto.INT64,
    BOOL: TensorProto.BOOL,
}
ELEMENT_TYPES: dict[int, ElementType] = {onnx_type: element for element, onnx_type in ONNX_TYPES.items()}
EINSUM_LETTERS = "abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ"
