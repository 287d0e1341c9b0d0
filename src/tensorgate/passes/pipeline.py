"""Pipeline text: parse ``canonicalize, dce, decompose{method=tt ranks=1,4,4,4,1}`` into
pass instances, and print them back.

The grammar is ``pipeline.lark``.  Every error (syntax, unknown pass, unknown option,
bad value) is a ``PipelineError`` whose message points at the offending column::

    pipeline error at column 25: unknown option 'max-rnk' for pass 'decompose' (...)
      canonicalize, decompose{max-rnk=8}
                              ^

``str(pipeline)`` is canonical (only options that differ from their defaults, in
declaration order) and parses back to an equal pipeline.
"""

from __future__ import annotations

import difflib
import re
from dataclasses import dataclass
from importlib import resources
from typing import Iterator, Mapping

import lark

from ..errors import PipelineError
from .base import OptionValueError, Pass

_PARSER = lark.Lark(
    resources.files(__package__).joinpath("pipeline.lark").read_text(),
    start="pipeline",
    parser="lalr",
)

_TERMINAL_WORDS = {  # in the order they are listed in messages
    "NAME": "a pass name",
    "BARE": "a value",
    "STRING": "a quoted string",
    "LBRACE": "'{'",
    "EQUAL": "'='",
    "COMMA": "','",
    "RBRACE": "'}'",
    "$END": "the end of the pipeline",
}


@dataclass(frozen=True)
class Pipeline:
    """An ordered sequence of configured passes."""

    passes: tuple[Pass, ...] = ()

    def __post_init__(self) -> None:
        object.__setattr__(self, "passes", tuple(self.passes))

    def __iter__(self) -> Iterator[Pass]:
        return iter(self.passes)

    def __len__(self) -> int:
        return len(self.passes)

    def __str__(self) -> str:
        return ", ".join(str(p) for p in self.passes)

    @staticmethod
    def parse(text: str, registry: Mapping[str, type[Pass]] | None = None) -> "Pipeline":
        return parse_pipeline(text, registry)


def parse_pipeline(text: str, registry: Mapping[str, type[Pass]] | None = None) -> Pipeline:
    """Parse pipeline text against ``registry`` (default: all registered passes)."""
    if registry is None:
        from .registry import PASSES

        registry = PASSES
    try:
        tree = _PARSER.parse(text)
    except lark.exceptions.UnexpectedInput as exc:
        raise _error(text, _position_of(exc, text), _syntax_message(exc, text)) from None
    return Pipeline(tuple(_build_pass(node, text, registry) for node in tree.children))


def _build_pass(node: lark.Tree, text: str, registry: Mapping[str, type[Pass]]) -> Pass:
    name_token = node.children[0]
    cls = registry.get(str(name_token))
    if cls is None:
        raise _error(text, name_token.start_pos,
                     f"unknown pass '{name_token}'{_suggest(str(name_token), registry)}")
    values: dict[str, object] = {}
    option_nodes = node.children[1].children if len(node.children) > 1 else []
    for option_node in option_nodes:
        key_token, *value_tokens = option_node.children
        spec = cls.option_named(str(key_token))
        if spec is None:
            valid = [s.text_name for s in cls.options()]
            problem = (f"pass '{cls.name}' takes no options" if not valid else
                       f"unknown option '{key_token}' for pass '{cls.name}'"
                       f"{_suggest(str(key_token), valid)}")
            raise _error(text, key_token.start_pos, problem)
        if spec.field in values:
            raise _error(text, key_token.start_pos,
                         f"option '{key_token}' is given twice for pass '{cls.name}'")
        try:
            values[spec.field] = spec.parse([_unquote(t) for t in value_tokens])
        except OptionValueError as exc:
            raise _error(text, value_tokens[exc.item].start_pos,
                         f"option '{key_token}' of pass '{cls.name}' {exc}") from None
    try:
        return cls(**values)
    except PipelineError as exc:  # a cross-option check in the pass's __post_init__
        raise _error(text, name_token.start_pos, str(exc)) from None


def _unquote(token: lark.Token) -> str:
    if token.type == "STRING":
        return re.sub(r"\\(.)", r"\1", str(token)[1:-1], flags=re.DOTALL)
    return str(token)


def _suggest(word: str, valid) -> str:
    """`` (did you mean 'x'? valid: a, b, c)`` for an unknown name."""
    valid = sorted(valid)
    close = difflib.get_close_matches(word, valid, n=1)
    hint = f"did you mean '{close[0]}'? " if close else ""
    return f" ({hint}valid: {', '.join(valid)})"


def _position_of(exc: lark.exceptions.UnexpectedInput, text: str) -> int:
    if isinstance(exc, lark.exceptions.UnexpectedEOF):
        return len(text)
    if isinstance(exc, lark.exceptions.UnexpectedToken) and exc.token.type == "$END":
        return len(text)
    return exc.pos_in_stream


def _syntax_message(exc: lark.exceptions.UnexpectedInput, text: str) -> str:
    position = _position_of(exc, text)
    if isinstance(exc, lark.exceptions.UnexpectedCharacters):
        found = text[position]
        if found == '"':
            return "unterminated quoted string"
        expected = exc.allowed
    else:
        found = None if position >= len(text) else str(exc.token)
        expected = exc.expected
    words = [word for name, word in _TERMINAL_WORDS.items() if name in expected]
    if "RBRACE" in expected and "NAME" in expected:  # inside braces, a name starts an option
        words[0] = "an option name"
    what = "end of pipeline" if found is None else f"'{found}'"
    return f"unexpected {what}; expected {' or '.join(words)}"


def _error(text: str, position: int, message: str) -> PipelineError:
    """A ``PipelineError`` with the line of ``text`` holding ``position`` and a caret."""
    line_start = text.rfind("\n", 0, position) + 1
    line_end = text.find("\n", position)
    line = text[line_start:] if line_end < 0 else text[line_start:line_end]
    column = position - line_start + 1
    line_number = text.count("\n", 0, position) + 1
    where = f"line {line_number}, column {column}" if "\n" in text else f"column {column}"
    pad = "".join(c if c == "\t" else " " for c in line[:column - 1])
    return PipelineError(f"pipeline error at {where}: {message}\n  {line}\n  {pad}^")
