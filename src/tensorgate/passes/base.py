"""The pass base class and typed pass options.

A pass is a frozen dataclass whose fields are its options::

    @dataclass(frozen=True)
    class Decompose(Pass):
        name: ClassVar[str] = "decompose"
        doc: ClassVar[str] = "Replace dense linear maps by tensor decompositions."

        method: Literal["tt", "bt", "ht"] = option("tt", doc="decomposition format")
        max_rank: int = option(8, doc="largest rank of any core", min=1)
        ranks: tuple[int, ...] | None = option(None, doc="explicit ranks, e.g. 1,4,4,4,1")

        def run(self, module: Module) -> bool: ...

In pipeline text an option is spelled in kebab case (``max-rank=8``).  Option types:
``int``, ``float``, ``bool``, ``str``, ``pathlib.Path``, ``Literal[...]`` of strings
(an enum), ``tuple[int, ...]`` and ``tuple[float, ...]`` (comma-separated lists,
never empty), each optionally ``| None`` when the default is ``None`` (pipeline text
cannot spell ``None``, so it can only be the default).  Values are checked when a
pass is constructed, from Python or from text, so an invalid pass never exists.  A
pass with checks across options overrides ``__post_init__``, calls
``super().__post_init__()`` first, and raises ``PipelineError`` with a sentence.
"""

from __future__ import annotations

import dataclasses
import functools
import math
import re
import types
import typing
from dataclasses import dataclass
from pathlib import Path
from typing import Any, ClassVar, Literal

from ..errors import PipelineError
from ..ir.core import Module

BARE_VALUE = re.compile(r"[A-Za-z0-9_./:+\-]+")
"""A value that needs no quotes in pipeline text (the grammar's BARE terminal)."""

_SCALAR_KINDS = {int: "int", float: "float", bool: "bool", str: "str", Path: "path"}
_LIST_KINDS = {int: "int-list", float: "float-list"}


def option(default: Any, *, doc: str = "", min: float | None = None, max: float | None = None):
    """Declare a pass option: its default, a short doc, and an optional inclusive range
    (for numbers, or for every element of a list)."""
    return dataclasses.field(default=default, metadata={"doc": doc, "min": min, "max": max})


class OptionValueError(ValueError):
    """A value does not fit an option; ``item`` is the index of the offending list item."""

    def __init__(self, message: str, item: int = 0):
        super().__init__(message)
        self.item = item


@dataclass(frozen=True)
class OptionSpec:
    """What one pass option accepts, derived from its dataclass field."""

    field: str
    kind: str  # int, float, bool, str, path, enum, int-list, float-list
    default: Any
    optional: bool = False
    choices: tuple[str, ...] = ()
    minimum: float | None = None
    maximum: float | None = None
    doc: str = ""

    @property
    def text_name(self) -> str:
        """The option's name in pipeline text (kebab case)."""
        return self.field.replace("_", "-")

    @property
    def is_list(self) -> bool:
        return self.kind.endswith("-list")

    def describe_type(self) -> str:
        """Human description such as ``int >= 1`` or ``one of tt, bt, ht``."""
        if self.kind == "enum":
            text = "one of " + ", ".join(self.choices)
        elif self.is_list:
            text = f"list of {self.kind[:-5]}"
        else:
            text = self.kind
        if self.minimum is not None and self.maximum is not None:
            text += f" in [{_number(self.minimum)}, {_number(self.maximum)}]"
        elif self.minimum is not None:
            text += f" >= {_number(self.minimum)}"
        elif self.maximum is not None:
            text += f" <= {_number(self.maximum)}"
        return text

    def check(self, value: Any) -> Any:
        """``value`` in canonical form (lists as tuples, ints as floats where floats are
        expected); raise ``OptionValueError`` if it does not fit."""
        if value is None:
            if self.optional:
                return None
            raise OptionValueError("must not be None")
        if self.is_list:
            if isinstance(value, (str, bytes)) or not isinstance(value, (tuple, list)):
                raise OptionValueError(f"expects a list of {self.kind[:-5]}, got {value!r}")
            if not value:
                raise OptionValueError("expects at least one value")
            element = self.kind[:-5]
            return tuple(self._check_scalar(element, item, index) for index, item in enumerate(value))
        return self._check_scalar(self.kind, value, 0)

    def _check_scalar(self, kind: str, value: Any, index: int) -> Any:
        if kind == "int":
            if isinstance(value, bool) or not isinstance(value, int):
                raise OptionValueError(f"expects an integer, got {value!r}", index)
        elif kind == "float":
            if isinstance(value, bool) or not isinstance(value, (int, float)) or math.isnan(value):
                raise OptionValueError(f"expects a number, got {value!r}", index)
            value = float(value)
        elif kind == "bool":
            if not isinstance(value, bool):
                raise OptionValueError(f"expects true or false, got {value!r}", index)
        elif kind == "enum":
            if value not in self.choices:
                raise OptionValueError(f"must be one of {', '.join(self.choices)}; got {value!r}", index)
        elif kind == "str":
            if not isinstance(value, str):
                raise OptionValueError(f"expects a string, got {value!r}", index)
        elif kind == "path":
            if not isinstance(value, (str, Path)):
                raise OptionValueError(f"expects a path, got {value!r}", index)
            value = Path(value)
        if self.minimum is not None and value < self.minimum:
            raise OptionValueError(f"must be >= {_number(self.minimum)}, got {_number(value)}", index)
        if self.maximum is not None and value > self.maximum:
            raise OptionValueError(f"must be <= {_number(self.maximum)}, got {_number(value)}", index)
        return value

    def parse(self, items: list[str]) -> Any:
        """Convert the text items of ``name=a,b,c`` (quotes already removed) to a checked
        value; raise ``OptionValueError`` naming the offending item."""
        if not self.is_list and len(items) > 1:
            raise OptionValueError("takes a single value (quote it to include commas)", 1)
        element = self.kind[:-5] if self.is_list else self.kind
        values = [self._parse_scalar(element, item, index) for index, item in enumerate(items)]
        return self.check(values if self.is_list else values[0])

    def _parse_scalar(self, kind: str, text: str, index: int) -> Any:
        if kind == "int":
            try:
                return int(text)
            except ValueError:
                raise OptionValueError(f"expects an integer, got '{text}'", index) from None
        if kind == "float":
            try:
                return float(text)
            except ValueError:
                raise OptionValueError(f"expects a number, got '{text}'", index) from None
        if kind == "bool":
            if text not in ("true", "false"):
                raise OptionValueError(f"expects true or false, got '{text}'", index)
            return text == "true"
        return text

    def format(self, value: Any) -> str:
        """Canonical text of a checked value; ``parse`` reads it back to an equal value."""
        if self.is_list:
            return ",".join(_format_scalar(item) for item in value)
        return _format_scalar(value)


def _format_scalar(value: Any) -> str:
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, (int, float)):
        return repr(value)
    text = str(value)
    if BARE_VALUE.fullmatch(text):
        return text
    return '"' + text.replace("\\", "\\\\").replace('"', '\\"') + '"'


def _number(value: float) -> str:
    return repr(value) if isinstance(value, float) and not value.is_integer() else str(int(value))


@dataclass(frozen=True)
class Pass:
    """Base class of all passes: a frozen dataclass whose fields are its options.

    Subclasses set ``name`` (kebab case, as written in pipelines) and ``doc`` (one
    line) and implement ``run``.
    """

    name: ClassVar[str]
    doc: ClassVar[str]

    def __post_init__(self) -> None:
        for spec in self.options():
            try:
                value = spec.check(getattr(self, spec.field))
            except OptionValueError as exc:
                raise PipelineError(f"pass '{self.name}': option '{spec.text_name}' {exc}") from None
            object.__setattr__(self, spec.field, value)

    def run(self, module: Module) -> bool:
        """Transform ``module`` in place; return whether anything changed."""
        raise NotImplementedError(f"pass '{self.name}' does not implement run()")

    @classmethod
    def options(cls) -> tuple[OptionSpec, ...]:
        """The pass's options in declaration order."""
        return _option_specs(cls)

    @classmethod
    def option_named(cls, text_name: str) -> OptionSpec | None:
        return next((spec for spec in cls.options() if spec.text_name == text_name), None)

    def changed_options(self) -> dict[str, Any]:
        """``text name -> value`` of the options that differ from their defaults."""
        return {
            spec.text_name: getattr(self, spec.field)
            for spec in self.options()
            if getattr(self, spec.field) != spec.check(spec.default)
        }

    def __str__(self) -> str:
        """Canonical pipeline text: the name, then the non-default options in braces."""
        changed = self.changed_options()
        if not changed:
            return self.name
        specs = {spec.text_name: spec for spec in self.options()}
        body = " ".join(f"{key}={specs[key].format(value)}" for key, value in changed.items())
        return f"{self.name}{{{body}}}"


@functools.cache
def _option_specs(cls: type[Pass]) -> tuple[OptionSpec, ...]:
    """Derive option specs from the dataclass fields; a declaration the pipeline text
    cannot express is a programming error (``TypeError``)."""
    hints = typing.get_type_hints(cls)
    specs = []
    for field in dataclasses.fields(cls):
        spec = _spec_for(cls, field, hints[field.name])
        spec.check(spec.default)
        specs.append(spec)
    return tuple(specs)


def _spec_for(cls: type, field: dataclasses.Field, hint: Any) -> OptionSpec:
    where = f"{cls.__name__}.{field.name}"
    if field.default is dataclasses.MISSING:
        raise TypeError(f"pass option {where} needs a default")
    optional = False
    if typing.get_origin(hint) in (typing.Union, types.UnionType):
        members = [arg for arg in typing.get_args(hint) if arg is not type(None)]
        if len(members) != 1 or len(typing.get_args(hint)) != 2:
            raise TypeError(f"pass option {where}: only 'X | None' unions are supported")
        if field.default is not None:
            raise TypeError(f"pass option {where}: an optional option must default to None")
        optional, hint = True, members[0]
    kind, choices = _kind_of(hint)
    if kind is None:
        raise TypeError(f"pass option {where} has unsupported type {hint!r}")
    meta = field.metadata
    return OptionSpec(field.name, kind, field.default, optional, choices,
                      meta.get("min"), meta.get("max"), meta.get("doc", ""))


def _kind_of(hint: Any) -> tuple[str | None, tuple[str, ...]]:
    if hint in _SCALAR_KINDS:
        return _SCALAR_KINDS[hint], ()
    origin, args = typing.get_origin(hint), typing.get_args(hint)
    if origin is Literal and args and all(isinstance(a, str) for a in args):
        return "enum", args
    if origin is tuple and len(args) == 2 and args[1] is Ellipsis and args[0] in _LIST_KINDS:
        return _LIST_KINDS[args[0]], ()
    return None, ()
