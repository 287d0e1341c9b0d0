"""The tensorgate IR: typed SSA values, ops, modules, linear maps, verifier, text form."""

from .core import Module, Op, Value
from .linear_map import FORMATS, DenseMap, LinearMap, register_format
from .ops import OP_SPECS
from .tensor_formats import BTMap, HTMap, TTMap  # registers the tt, bt and ht formats
from .types import F32, F64, I64, FixedType, FloatType, IntType, TensorType, element_type
from .verifier import verify_module

__all__ = [
    "Module", "Op", "Value", "FORMATS", "DenseMap", "LinearMap", "register_format", "OP_SPECS",
    "F32", "F64", "I64", "FixedType", "FloatType", "IntType", "TensorType", "element_type",
    "verify_module",
]
