"""Parse the text form of a Module (grammar: ``ir.lark``; layout: ``printer.py``).

``parse_module(text, tensors)`` rebuilds values, ops, attributes (arrays with their exact
dtypes and bits) and linear maps; ``@key`` references are looked up in ``tensors``.  It
does not verify the result: callers run ``verify_module``.  Errors are ``ParseError``s
that name the line and column, show the line with a caret and say what was expected.
"""

from __future__ import annotations

import functools
import json
from importlib import resources
from typing import Any, Mapping

import numpy as np
from lark import Lark, Token, Transformer, Tree, v_args
from lark.exceptions import UnexpectedCharacters, UnexpectedEOF, UnexpectedInput, UnexpectedToken, VisitError

from ..errors import ParseError, TensorgateError
from .core import Module, Op, Value
from .linear_map import FORMATS
from .ops import OP_SPECS, REQUIRED
from .printer import ARRAY_DTYPES
from .types import TensorType, element_type

_TERMINAL_DESCRIPTIONS = {
    "VALUE": "a value (%name)",
    "AT_NAME": "@name",
    "NAME": "a name",
    "STRING": "a string",
    "INT": "an integer",
    "FLOAT": "a float",
    "DTYPE": "an element type such as f32",
    "$END": "end of input",
}


@functools.cache
def _lark() -> Lark:
    grammar = resources.files("tensorgate.ir").joinpath("ir.lark").read_text(encoding="utf-8")
    return Lark(grammar, parser="lalr", maybe_placeholders=True)


def parse_module(text: str, tensors: Mapping[str, np.ndarray] | None = None, *,
                 source: str = "<ir>") -> Module:
    """The Module that ``text`` describes; ``tensors`` holds the arrays its ``@key``
    references name (e.g. ``printer.module_tensors`` of the printed module, or an npz)."""
    return parse_text(text, source=source).build(tensors or {})


def parse_text(text: str, *, source: str = "<ir>") -> "ParsedText":
    """Parse the grammar only, so a caller can read the header (``sidecar``) and find
    the tensors before building the module."""
    try:
        tree = _lark().parse(text)
    except UnexpectedInput as exc:
        raise _syntax_error(text, source, exc) from None
    return ParsedText(text, source, tree)


class ParsedText:
    """A syntactically valid module text, not yet built into a Module."""

    def __init__(self, text: str, source: str, tree: Tree):
        self.text, self.source, self.tree = text, source, tree

    @property
    def sidecar(self) -> str | None:
        """The weights file named in the header (``weights "model.npz"``), if any."""
        weights = self.tree.children[2]
        return None if weights is None else _unquote(weights.children[0])

    def build(self, tensors: Mapping[str, np.ndarray]) -> Module:
        try:
            return _ModuleBuilder(self, tensors).transform(self.tree)
        except VisitError as exc:
            if isinstance(exc.orig_exc, ParseError):
                raise exc.orig_exc from None
            raise

    def error(self, token: Token, message: str) -> ParseError:
        return _located_error(self.text, self.source, token.line, token.column, message)


def _located_error(text: str, source: str, line: int, column: int, message: str) -> ParseError:
    lines = text.splitlines() or [""]
    line = min(max(line, 1), len(lines))
    return ParseError(f"{source}:{line}:{column}: {message}\n  {lines[line - 1]}\n  {' ' * (column - 1)}^")


def _syntax_error(text: str, source: str, exc: UnexpectedInput) -> ParseError:
    if isinstance(exc, UnexpectedToken):
        expected = exc.accepts or exc.expected
        token = exc.token
        found = "end of input" if token.type == "$END" else repr(str(token))
        line, column = (exc.line, exc.column) if token.type != "$END" else _end_position(text)
    elif isinstance(exc, UnexpectedCharacters):
        expected, found = exc.allowed, repr(text[exc.pos_in_stream])
        line, column = exc.line, exc.column
    elif isinstance(exc, UnexpectedEOF):
        expected, found = exc.expected, "end of input"
        line, column = _end_position(text)
    else:
        raise exc
    expected_text = _describe_terminals(expected or ())
    message = f"unexpected {found}" + (f"; expected {expected_text}" if expected_text else "")
    return _located_error(text, source, line, column, message)


def _end_position(text: str) -> tuple[int, int]:
    lines = text.splitlines() or [""]
    return len(lines), len(lines[-1]) + 1


def _describe_terminals(names) -> str:
    terminals = {t.name: t for t in _lark().terminals}
    described = set()
    for name in names:
        if name in _TERMINAL_DESCRIPTIONS:
            described.add(_TERMINAL_DESCRIPTIONS[name])
        elif name in terminals and terminals[name].pattern.type == "str":
            described.add(repr(terminals[name].pattern.value))
        else:
            described.add(name)
    items = sorted(described)
    return " or ".join(items) if len(items) <= 2 else ", ".join(items[:-1]) + " or " + items[-1]


def _unquote(token: str) -> str:
    """The text of a string literal (the grammar admits only JSON escapes)."""
    return json.loads(token, strict=False)


def _name(token: Token) -> str:
    """The name in a ``%name``/``@name`` token or a key/dim token, unquoted."""
    text = token[1:] if token.type in ("VALUE", "AT_NAME") else str(token)
    return _unquote(text) if text.startswith('"') else text


@v_args(inline=True)
class _ModuleBuilder(Transformer):
    """Builds the Module bottom-up.  Children are transformed in text order, so when
    an op's operands are resolved only earlier definitions are known."""

    def __init__(self, parsed: ParsedText, tensors: Mapping[str, np.ndarray]):
        super().__init__()
        self.parsed = parsed
        self.tensors = tensors
        self.values: dict[str, Value] = {}
        self.arrays: dict[str, np.ndarray] = {}  # key -> array, so a key used twice is one array

    def _fail(self, token: Token, message: str) -> ParseError:
        return self.parsed.error(token, message)

    # Module structure.

    def start(self, name, params, weights, *rest) -> Module:
        *ops, outputs = rest
        return Module(_name(name), params or [], ops, outputs)

    def params(self, *defs) -> list[Value]:
        return [self._define(token, type) for token, type in defs]

    def value_def(self, token, type) -> tuple[Token, TensorType]:
        dtype_token, dims = type
        try:
            dtype = element_type(dtype_token)
        except ValueError as exc:
            raise self._fail(dtype_token, str(exc)) from None
        return token, TensorType(dims, dtype)

    def _define(self, token: Token, type: TensorType) -> Value:
        name = _name(token)
        if name in self.values:
            raise self._fail(token, f"value %{name} is defined twice")
        value = self.values[name] = Value(name, type)
        return value

    def type(self, dtype, *dims) -> tuple[Token, tuple]:
        return dtype, tuple(d for d in dims if d is not None)

    def static_dim(self, token) -> int:
        return int(token)

    def symbolic_dim(self, token) -> str:
        return _name(token)

    def unknown_dim(self) -> str:
        return "?"

    def op(self, results, kind, operands, attrs, loc) -> Op:
        values = [self._define(token, type) for token, type in results or []]
        attrs = attrs or {}
        spec = OP_SPECS.get(str(kind))
        if spec is not None:
            for key, default in spec.attrs.items():
                if default is not REQUIRED:
                    attrs.setdefault(key, default)
        return Op(str(kind), operands or [], values, attrs, loc or "")

    def results(self, *defs):
        return list(defs)

    def operands(self, *values):
        return list(values)

    def value_use(self, token) -> Value:
        name = _name(token)
        if name not in self.values:
            raise self._fail(token, f"value %{name} is not defined before this use")
        return self.values[name]

    def absent(self) -> None:
        return None

    def loc(self, token) -> str:
        return _unquote(token)

    def weights(self, token) -> str:
        return _unquote(token)

    def return_stmt(self, *tokens) -> list[Value]:
        return [self.value_use(token) for token in tokens]

    # Attribute values.

    def attr_dict(self, *items) -> dict[str, Any]:
        result: dict[str, Any] = {}
        for token, value in items:
            key = _name(token)
            if key in result:
                raise self._fail(token, f"'{key}' is given twice")
            result[key] = value
        return result

    map_meta = attr_dict

    def attr(self, key, value):
        return key, value

    def int_value(self, token) -> int:
        return int(token)

    def float_value(self, token) -> float:
        return float(self._float_array([token], np.dtype(np.float64))[0])

    def str_value(self, token) -> str:
        return _unquote(token)

    def true_value(self, token) -> bool:
        return True

    def false_value(self, token) -> bool:
        return False

    def none_value(self) -> None:
        return None

    def list_value(self, *items) -> list:
        return list(items)

    def inline_tensor(self, keyword, elements, type) -> np.ndarray:
        dtype, shape = self._array_type(type)
        flat, size = list(_flatten(elements)), int(np.prod(shape))
        if len(flat) != size:
            raise self._fail(keyword, f"tensor has {len(flat)} elements, its type {_type_str(type)} needs {size}")
        return self._array_from_tokens(flat, dtype).reshape(shape)

    def tensor_ref(self, token, type) -> np.ndarray:
        key = _name(token)
        dtype, shape = self._array_type(type)
        if key not in self.arrays:
            if key not in self.tensors:
                where = f"the weights file '{self.parsed.sidecar}'" if self.parsed.sidecar else "the given tensors"
                raise self._fail(token, f"tensor @{key} is not in {where}")
            array = np.asarray(self.tensors[key])
            if array.dtype != dtype or array.shape != shape:
                raise self._fail(token, f"tensor @{key} is {array.dtype}{list(array.shape)}, "
                                        f"the text says {_type_str(type)}")
            self.arrays[key] = array
        return self.arrays[key]

    def _array_type(self, type) -> tuple[np.dtype, tuple[int, ...]]:
        dtype_token, dims = type
        if dtype_token not in ARRAY_DTYPES:
            raise self._fail(dtype_token, f"tensors cannot have element type '{dtype_token}' "
                                          f"(use one of {', '.join(ARRAY_DTYPES)})")
        if not all(isinstance(d, int) for d in dims):
            raise self._fail(dtype_token, f"tensor type {_type_str(type)} must have a static shape")
        return ARRAY_DTYPES[dtype_token], dims

    def _array_from_tokens(self, tokens: list[Token], dtype: np.dtype) -> np.ndarray:
        kinds = {"b": ("TRUE", "FALSE"), "f": ("INT", "FLOAT")}.get(dtype.kind, ("INT",))
        for token in tokens:
            if token.type not in kinds:
                raise self._fail(token, f"'{token}' is not a valid {dtype} element")
        if dtype == np.bool_:
            return np.array([t.type == "TRUE" for t in tokens], dtype=dtype)
        if dtype.kind == "f":
            return self._float_array(tokens, dtype)
        info = np.iinfo(dtype)
        for token in tokens:
            if not info.min <= int(token) <= info.max:
                raise self._fail(token, f"{token} does not fit in {dtype}")
        return np.array([int(t) for t in tokens], dtype=dtype)

    def _float_array(self, tokens: list[Token], dtype: np.dtype) -> np.ndarray:
        """Floats from their text, read as float64 and then converted to ``dtype`` (exact
        for the shortest round-trip text the printer writes); ``nan(0x...)`` gives
        exactly those bits."""
        bits_dtype = np.dtype(f"u{dtype.itemsize}")
        numbers = [0.0 if t.startswith("nan(") else float(t) for t in tokens]
        with np.errstate(over="ignore"):
            array = np.array(numbers).astype(dtype)
        for index, token in enumerate(tokens):
            if token.startswith("nan("):
                pattern = int(token[4:-1], 16)
                if pattern > np.iinfo(bits_dtype).max or not np.isnan(np.array(pattern, bits_dtype).view(dtype)):
                    raise self._fail(token, f"{token} is not a {dtype} NaN bit pattern")
                array.view(bits_dtype)[index] = pattern
            elif np.isinf(array[index]) and "inf" not in token:
                raise self._fail(token, f"{token} does not fit in {dtype}")
        return array

    def linear_map(self, format_token, meta, parts):
        format_name = str(format_token)
        cls = FORMATS.get(format_name)
        if cls is None:
            raise self._fail(format_token, f"unknown linear-map format '{format_name}' "
                                           f"(known: {', '.join(sorted(FORMATS))})")
        try:
            return cls.from_parts(meta or {}, parts or {})
        except (TensorgateError, KeyError, ValueError, TypeError, IndexError) as exc:
            raise self._fail(format_token, f"cannot build a '{format_name}' map from these parts: {exc}") from None

    def map_parts(self, *parts) -> dict[str, np.ndarray]:
        return self.attr_dict(*parts)

    def map_part(self, key, tensor):
        return key, tensor


def _type_str(type) -> str:
    dtype_token, dims = type
    return f"{dtype_token}[{','.join(str(d) for d in dims)}]"


def _flatten(elements):
    if isinstance(elements, Tree):
        for child in elements.children:
            yield from _flatten(child)
    else:
        yield elements
