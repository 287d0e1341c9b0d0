"""Print a Module as text (the inverse of ``parser.parse_module``).

The text is deterministic, so it can be diffed and kept as a golden file::

    module @main(%x: f32[seq,batch,8]) weights "model.npz" {
      %shape: i64[2] = const {value = dense<[-1, 4]> : i64[2]}
      %Y: f32[seq,1,batch,4], %Y_h: f32[1,batch,4], %Y_c: f32[1,batch,4] = lstm(%x) {hidden_size = 4, w = [dense(w = @Y.w.0.w : f32[16,8])], r = [dense(w = @Y.r.0.w : f32[16,4])], bias = @Y.bias : f32[1,32]} loc("LSTM_0")
      return %Y_h
    }

* Every value is defined with its type; names that are not ``[A-Za-z0-9_][A-Za-z0-9_.]*``
  are quoted (``%"onnx::LSTM_1"``).  Absent optional operands print as ``_``.
* Attributes print in the order of the op's spec; those equal to the spec's default are
  left out (the parser puts them back).
* Tensors of at most ``INLINE_LIMIT`` elements are written inline, bit-exactly; larger
  ones as ``@key : type``, a reference into the sidecar weights (``module_tensors``).
  Keys are readable paths: result name, attribute, list index, map tensor name.
* Linear maps of every registered format print as ``format<meta>(name = tensor, ...)``.
"""

from __future__ import annotations

import json
import re
from typing import Any

import numpy as np

from ..errors import VerifyError
from .core import Module, Op, Value
from .linear_map import LinearMap
from .ops import OP_SPECS, REQUIRED
from .types import TensorType

INLINE_LIMIT = 16
BARE_NAME = re.compile(r"[A-Za-z0-9_][A-Za-z0-9_.]*")
BARE_KEY = re.compile(r"[A-Za-z_][A-Za-z0-9_.]*")
_KEY_JUNK = re.compile(r"[^A-Za-z0-9_.]+")

ARRAY_DTYPES = {
    "i1": np.dtype(np.bool_),
    **{f"f{bits}": np.dtype(f"float{bits}") for bits in (16, 32, 64)},
    **{f"i{bits}": np.dtype(f"int{bits}") for bits in (8, 16, 32, 64)},
    **{f"u{bits}": np.dtype(f"uint{bits}") for bits in (8, 16, 32, 64)},
}
_ARRAY_DTYPE_NAMES = {dtype: name for name, dtype in ARRAY_DTYPES.items()}


def print_module(module: Module, sidecar: str | None = None) -> str:
    """The text of ``module``; ``sidecar`` names the ``.npz`` file holding the
    referenced tensors (written into the header), ``None`` to leave it out."""
    return _Printer().module(module, sidecar)


def module_tensors(module: Module) -> dict[str, np.ndarray]:
    """The tensors that ``print_module(module)`` references by ``@key``, by key."""
    printer = _Printer()
    printer.module(module, None)
    return printer.tensors


def quote(text: str) -> str:
    """``text`` as a double-quoted string literal; non-printable characters are escaped."""
    return '"' + "".join(_escape(ch) for ch in text) + '"'


def _escape(ch: str) -> str:
    if ch in '"\\':
        return "\\" + ch
    return ch if ch.isprintable() else json.dumps(ch)[1:-1]


def name_text(name: str) -> str:
    """A value or symbol name, quoted unless it is a plain identifier."""
    return name if BARE_NAME.fullmatch(name) else quote(name)


def key_text(key: str) -> str:
    """An attribute, meta or tensor-part name."""
    return key if BARE_KEY.fullmatch(key) else quote(key)


def type_text(type: TensorType) -> str:
    dims = ",".join(_dim_text(d) for d in type.shape)
    return f"{type.dtype}[{dims}]"


def _dim_text(dim) -> str:
    if isinstance(dim, (int, np.integer)) and not isinstance(dim, bool):
        return str(int(dim))
    if dim == "?":
        return "?"
    return dim if BARE_KEY.fullmatch(dim) else quote(dim)


def float_text(value: np.floating) -> str:
    """Shortest text that parses back to the same bits.  NaNs other than the default
    quiet NaN keep their bit pattern: ``nan(0xffc00000)``."""
    if not np.isnan(value):
        return str(value)
    bits = int(np.asarray(value).view(f"u{value.itemsize}"))
    default = int(np.asarray(np.nan, value.dtype).view(f"u{value.itemsize}"))
    return "nan" if bits == default else f"nan(0x{bits:0{2 * value.itemsize}x})"


def array_dtype_name(dtype: np.dtype) -> str | None:
    return _ARRAY_DTYPE_NAMES.get(np.dtype(dtype))


def _elements_text(array: np.ndarray) -> str:
    if array.ndim:
        return "[" + ", ".join(_elements_text(row) for row in array) + "]"
    scalar = array[()]
    if array.dtype == np.bool_:
        return "true" if scalar else "false"
    if array.dtype.kind == "f":
        return float_text(scalar)
    return str(int(scalar))


def _is_default(value: Any, default: Any) -> bool:
    return default is not REQUIRED and type(value) is type(default) and value == default


class _Printer:
    """Prints one module and collects the tensors it references."""

    def __init__(self) -> None:
        self.tensors: dict[str, np.ndarray] = {}
        self._key_of: dict[int, str] = {}  # id(array) -> key: an array shared by attributes is stored once

    def module(self, module: Module, sidecar: str | None) -> str:
        params = ", ".join(self._value_def(v) for v in module.inputs)
        weights = "" if sidecar is None else f" weights {quote(sidecar)}"
        lines = [f"module @{name_text(module.name)}({params}){weights} {{"]
        lines += [f"  {self._op(op)}" for op in module.ops]
        outputs = ", ".join(self._use(v) for v in module.outputs)
        lines += [f"  return {outputs}" if outputs else "  return", "}"]
        return "\n".join(lines) + "\n"

    @staticmethod
    def _value_def(value: Value) -> str:
        return f"%{name_text(value.name)}: {type_text(value.type)}"

    @staticmethod
    def _use(value: Value | None) -> str:
        return "_" if value is None else f"%{name_text(value.name)}"

    def _op(self, op: Op) -> str:
        results = ", ".join(self._value_def(v) for v in op.results)
        text = f"{results} = {op.kind}" if results else op.kind
        if op.operands:
            text += "(" + ", ".join(self._use(v) for v in op.operands) + ")"
        attrs = self._attrs(op)
        if attrs:
            text += " {" + ", ".join(attrs) + "}"
        if op.loc:
            text += f" loc({quote(op.loc)})"
        return text

    def _attrs(self, op: Op) -> list[str]:
        defaults = OP_SPECS[op.kind].attrs if op.kind in OP_SPECS else {}
        order = [k for k in defaults if k in op.attrs] + [k for k in op.attrs if k not in defaults]
        owner = op.results[0].name if op.results else op.kind
        texts = []
        for key in order:
            value = op.attrs[key]
            if not _is_default(value, defaults.get(key, REQUIRED)):
                try:
                    texts.append(f"{key_text(key)} = {self._value(value, [owner, key])}")
                except VerifyError as exc:
                    raise VerifyError(f"{op.describe()}: attribute '{key}': {exc}") from None
        return texts

    def _value(self, value: Any, path: list) -> str:
        """An attribute value; ``path`` names where it sits, for sidecar keys."""
        if value is None:
            return "none"
        if isinstance(value, (bool, np.bool_)):
            return "true" if value else "false"
        if isinstance(value, (int, np.integer)):
            return str(int(value))
        if isinstance(value, (float, np.floating)):
            return float_text(np.float64(value))
        if isinstance(value, str):
            return quote(value)
        if isinstance(value, (list, tuple)):
            return "[" + ", ".join(self._value(v, path + [i]) for i, v in enumerate(value)) + "]"
        if isinstance(value, dict):
            return "{" + ", ".join(self._entries(value, path)) + "}"
        if isinstance(value, np.ndarray):
            return self._tensor(value, path)
        if isinstance(value, LinearMap):
            return self._linear_map(value, path)
        raise VerifyError(f"cannot print a value of type {type(value).__name__}")

    def _entries(self, items: dict, path: list) -> list[str]:
        texts = []
        for key, value in items.items():
            if not isinstance(key, str):
                raise VerifyError(f"dictionary key {key!r} is not a string")
            texts.append(f"{key_text(key)} = {self._value(value, path + [key])}")
        return texts

    def _linear_map(self, value: LinearMap, path: list) -> str:
        meta = value.meta()
        text = value.format + ("<" + ", ".join(self._entries(meta, path)) + ">" if meta else "")
        parts = ", ".join(f"{key_text(k)} = {self._tensor(t, path + [k])}" for k, t in value.tensors().items())
        return f"{text}({parts})"

    def _tensor(self, array: np.ndarray, path: list) -> str:
        dtype_name = array_dtype_name(array.dtype)
        if dtype_name is None:
            raise VerifyError(f"tensors of dtype {array.dtype} cannot be printed")
        type_str = f"{dtype_name}[{','.join(str(d) for d in array.shape)}]"
        if array.size <= INLINE_LIMIT:
            return f"dense<{_elements_text(array)}> : {type_str}"
        key = self._key_of.get(id(array)) or self._new_key(array, path)
        return f"@{key} : {type_str}"

    def _new_key(self, array: np.ndarray, path: list) -> str:
        parts = [_KEY_JUNK.sub("_", str(p)).strip("_.") or "_" for p in path]
        base = ".".join(parts)
        key, counter = base, 0
        while key in self.tensors:
            counter += 1
            key = f"{base}_{counter}"
        self.tensors[key] = array
        self._key_of[id(array)] = key
        return key
