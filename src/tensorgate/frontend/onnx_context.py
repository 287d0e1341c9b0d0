"""The state of one ONNX import and what an op handler sees of it.

``ImportState`` maps ONNX value names to IR values, holds the constants
(initializers and ``Constant`` outputs, turned into ``const`` ops only when an op
uses them as a value), and creates IR ops whose result types come from the IR's own
inference merged with ONNX shape inference.  ``NodeContext`` is the view of one
node that a handler gets: its attributes, its inputs as IR values or constants, and
ways to emit ops for its outputs.

Handlers register with ``@handles(op_type, attrs=..., since=...)``: ``attrs`` is every
attribute the handler understands (any other attribute on a node is an error) and
``since`` the oldest version of the op's schema it implements.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, Callable

import numpy as np
import onnx
from onnx import TensorProto, numpy_helper

from ..errors import FrontendError, VerifyError
from ..ir.core import Module, Op, Value
from ..ir.ops import OP_SPECS, const_values
from ..ir.types import UNKNOWN, Dim, TensorType

SUPPORTED_DTYPES = tuple(np.dtype(d) for d in (np.float32, np.float64, np.int32, np.int64, np.bool_))


def element_type_name(onnx_type: int) -> str:
    """``FLOAT16`` for ``TensorProto.FLOAT16``: for messages about unsupported types."""
    return TensorProto.DataType.Name(onnx_type)


@dataclass(frozen=True)
class HandlerSpec:
    """How one ONNX op type is imported."""

    fn: Callable[["NodeContext"], None]
    attrs: frozenset[str]
    since: int


HANDLERS: dict[str, HandlerSpec] = {}


def handles(*op_types: str, attrs: tuple[str, ...] = (), since: int = 1):
    """Register the decorated function as the importer of ``op_types``."""

    def register(fn):
        for op_type in op_types:
            HANDLERS[op_type] = HandlerSpec(fn, frozenset(attrs), since)
        return fn

    return register


class TypeMismatch(Exception):
    """ONNX shape inference and the IR's inference disagree about a value."""


def merge_types(inferred: TensorType, declared: TensorType | None) -> TensorType:
    """Combine the IR's inferred type with the type ONNX declares for the same value.

    Per dim, a static size from either side wins, then a name the IR propagated, then
    ONNX's name, then ``"?"``.  Raises ``TypeMismatch`` when they contradict.
    """
    if declared is None:
        return inferred
    if declared.dtype != inferred.dtype or declared.rank != inferred.rank:
        raise TypeMismatch(f"ONNX gives {declared}, the op gives {inferred}")
    dims: list[Dim] = []
    for ours, theirs in zip(inferred.shape, declared.shape):
        if isinstance(ours, int) and isinstance(theirs, int) and ours != theirs:
            raise TypeMismatch(f"ONNX gives {declared}, the op gives {inferred}")
        if isinstance(ours, int) or isinstance(theirs, int):
            dims.append(ours if isinstance(ours, int) else theirs)
        else:
            dims.append(ours if ours != UNKNOWN else theirs)
    return TensorType(tuple(dims), inferred.dtype)


class ImportState:
    """Everything known while the nodes of one graph are imported in order."""

    def __init__(self, origin: str, declared_types: dict[str, TensorType | None],
                 all_names: set[str], graph_outputs: set[str]):
        self.origin = origin
        self.module = Module("main")
        self.declared_types = declared_types
        self.graph_outputs = graph_outputs
        self.values: dict[str, Value] = {}
        self.constants: dict[str, np.ndarray] = {}
        self._constant_locs: dict[str, str] = {}
        self._taken = set(all_names)

    def fresh_name(self, hint: str) -> str:
        """A value name used neither by the ONNX graph nor by an earlier op."""
        name, counter = hint, 0
        while name in self._taken:
            counter += 1
            name = f"{hint}_{counter}"
        self._taken.add(name)
        return name

    def add_input(self, name: str, type: TensorType) -> Value:
        value = Value(name, type)
        self.module.inputs.append(value)
        self.values[name] = value
        return value

    def add_constant(self, name: str, array: np.ndarray, loc: str) -> None:
        """Record a constant; it becomes a ``const`` op when first used as a value."""
        self.constants[name] = array
        self._constant_locs[name] = loc

    def is_defined(self, name: str) -> bool:
        return name in self.values or name in self.constants

    def value(self, name: str) -> Value:
        """The IR value for an ONNX value name, creating the ``const`` op on first use."""
        if name not in self.values:
            self.check_constant_dtype(name)
            try:
                op = self.create("const", [], {"value": self.constants[name]}, self._constant_locs[name], [name])
            except TypeMismatch as exc:
                raise FrontendError(f"{self.origin}: constant '{name}': {exc}") from None
            self.values[name] = op.result
        return self.values[name]

    def check_constant_dtype(self, name: str) -> None:
        dtype = self.constants[name].dtype
        if dtype not in SUPPORTED_DTYPES:
            raise FrontendError(f"{self.origin}: constant '{name}' has element type {dtype}, "
                                "which tensorgate does not support")

    def create(self, kind: str, operands: list[Value | None], attrs: dict[str, Any], loc: str,
               names: list[str]) -> Op:
        """Append an op whose results get exactly ``names``; raises ``VerifyError`` or
        ``TypeMismatch`` when its types do not work out."""
        spec = OP_SPECS[kind]
        full_attrs = {key: attrs.get(key, default) for key, default in spec.attrs.items()}
        unknown = set(attrs) - set(spec.attrs)
        if unknown:
            raise AssertionError(f"'{kind}' has no attribute(s) {sorted(unknown)}")
        op = Op(kind, operands, [], full_attrs, "")
        consts = const_values(v.producer for v in op.inputs if v.producer is not None)
        types = spec.infer(op, consts)
        if len(types) != len(names):
            raise AssertionError(f"'{kind}' gives {len(types)} results, {len(names)} names given")
        op.loc = loc
        op.results = [
            Value(name, merge_types(t, self.declared_types.get(name)), op) for name, t in zip(names, types)
        ]
        self.module.ops.append(op)
        return op


class NodeContext:
    """One ONNX node as its handler sees it."""

    def __init__(self, state: ImportState, node: onnx.NodeProto, loc: str, version: int):
        self.state = state
        self.node = node
        self.loc = loc
        self.version = version

    def error(self, message: str) -> FrontendError:
        return FrontendError(f"{self.state.origin}: node '{self.loc}' ({self.node.op_type}): {message}")

    # --- attributes --------------------------------------------------------------------

    def attr(self, name: str, default: Any = None) -> Any:
        """The attribute's Python value (str for strings, ndarray for tensors), or ``default``."""
        for attribute in self.node.attribute:
            if attribute.name == name:
                return _attribute_value(attribute)
        return default

    # --- inputs ------------------------------------------------------------------------

    def has_input(self, index: int) -> bool:
        return index < len(self.node.input) and self.node.input[index] != ""

    def input(self, index: int) -> Value | None:
        """Input ``index`` as an IR value (``None`` if absent)."""
        return self.state.value(self.node.input[index]) if self.has_input(index) else None

    def constant(self, index: int, role: str) -> np.ndarray | None:
        """Input ``index`` as an array (``None`` if absent); an error unless it is constant."""
        if not self.has_input(index):
            return None
        name = self.node.input[index]
        if name not in self.state.constants:
            named = "" if name == role else f" ('{name}')"
            raise self.error(f"input '{role}'{named} must be an initializer or a Constant output")
        self.state.check_constant_dtype(name)
        return self.state.constants[name]

    def known_constant(self, index: int) -> np.ndarray | None:
        """Input ``index`` as an array if it is a constant, else ``None``."""
        if not self.has_input(index) or self.node.input[index] not in self.state.constants:
            return None
        return self.constant(index, str(index))

    def constant_ints(self, index: int, role: str) -> list[int] | None:
        array = self.constant(index, role)
        return None if array is None else [int(v) for v in np.asarray(array).reshape(-1)]

    # --- outputs -----------------------------------------------------------------------

    def emit(self, kind: str, operands: list[Value | None], attrs: dict[str, Any] | None = None,
             roles: tuple[str, ...] = ()) -> Op:
        """Create the op that produces this node's outputs, in order.

        Its results take the node's output names; a result the node leaves unnamed
        (an omitted optional output) gets a fresh name from ``roles`` (e.g. ``Y_h``).
        """
        fixed = OP_SPECS[kind].num_results
        count = fixed if fixed is not None else len(self.node.output)
        names = []
        for index in range(count):
            onnx_name = self.node.output[index] if index < len(self.node.output) else ""
            role = roles[index] if index < len(roles) else str(index)
            names.append(onnx_name or self.state.fresh_name(f"{self.loc}:{role}"))
        op = self._create(kind, operands, attrs or {}, names)
        for index, value in enumerate(op.results):
            if index < len(self.node.output) and self.node.output[index]:
                self.state.values[self.node.output[index]] = value
        return op

    def temp(self, kind: str, operands: list[Value | None], attrs: dict[str, Any] | None = None,
             role: str = "tmp") -> Value:
        """Create an intermediate op of this node; its result gets a fresh name."""
        name = self.state.fresh_name(f"{self.node.output[0]}:{role}")
        return self._create(kind, operands, attrs or {}, [name]).result

    def const(self, array: np.ndarray, role: str) -> Value:
        """A new ``const`` op belonging to this node."""
        return self.temp("const", [], {"value": np.asarray(array)}, role)

    def set_output(self, output_index: int, value: Value) -> None:
        """Give ``value``, made by this node with ``temp``, the node's output name."""
        name = self.node.output[output_index]
        if value.producer is None or value.producer.loc != self.loc:
            raise AssertionError(f"%{value.name} was not created by node '{self.loc}'")
        try:
            value.type = merge_types(value.type, self.state.declared_types.get(name))
        except TypeMismatch as exc:
            raise self.error(str(exc)) from None
        value.name = name
        self.state.values[name] = value

    def bind(self, output_index: int, value: Value) -> None:
        """Make the node's output ``output_index`` another name for ``value`` (no op)."""
        self.state.values[self.node.output[output_index]] = value

    def _create(self, kind, operands, attrs, names) -> Op:
        try:
            return self.state.create(kind, operands, attrs, self.loc, names)
        except (VerifyError, TypeMismatch) as exc:
            raise self.error(str(exc)) from None


def _attribute_value(attribute: onnx.AttributeProto) -> Any:
    value = onnx.helper.get_attribute_value(attribute)
    if isinstance(value, bytes):
        return value.decode()
    if isinstance(value, onnx.TensorProto):
        return numpy_helper.to_array(value)
    if isinstance(value, list):
        return [v.decode() if isinstance(v, bytes) else v for v in value]
    return value
