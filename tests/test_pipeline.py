"""Pipeline text: parsing, canonical printing, caret diagnostics, option declarations."""

from __future__ import annotations

import re
from dataclasses import dataclass
from pathlib import Path
from typing import ClassVar, Literal

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from tensorgate.errors import PipelineError
from tensorgate.passes import (
    PASSES, Canonicalize, DeadCodeElimination, Pass, PassManager, Pipeline, describe_passes,
    option, parse_pipeline,
)


@dataclass(frozen=True)
class Toy(Pass):
    """A test-only pass with one option of every supported kind."""

    name: ClassVar[str] = "toy"
    doc: ClassVar[str] = "Do nothing, configurably."

    method: Literal["tt", "bt", "ht"] = option("tt", doc="format")
    max_rank: int = option(8, doc="largest rank", min=1, max=64)
    ranks: tuple[int, ...] | None = option(None, doc="explicit ranks", min=1)
    tolerance: float = option(1e-3, min=0.0)
    scales: tuple[float, ...] = option((1.0, 2.0))
    verbose: bool = option(False)
    shape: str = option("")
    weights: Path | None = option(None)

    def run(self, module) -> bool:
        return False


TOY_PASSES = {**PASSES, Toy.name: Toy}


def parse(text: str) -> Pipeline:
    return parse_pipeline(text, TOY_PASSES)


def error_of(text: str) -> tuple[str, int]:
    """The first line of the PipelineError for ``text`` and the column it names, after
    checking that the message quotes the offending line with a caret at that column."""
    with pytest.raises(PipelineError) as info:
        parse(text)
    header, line, caret = str(info.value).split("\n")
    match = re.match(r"pipeline error at (?:line (\d+), )?column (\d+): ", header)
    line_number, column = int(match.group(1) or 1), int(match.group(2))
    assert line == "  " + text.split("\n")[line_number - 1]
    assert caret == " " * (column + 1) + "^"
    return header, column


# --- valid pipelines -------------------------------------------------------------------


def test_parses_passes_separated_by_commas():
    assert parse("canonicalize, dce").passes == (Canonicalize(), DeadCodeElimination())


def test_empty_pipeline_and_empty_braces():
    assert parse("").passes == ()
    assert parse("  dce{}  ").passes == (DeadCodeElimination(),)


def test_options_of_every_kind():
    text = ('toy{method=bt max-rank=4 ranks=1,4,4,4,1 tolerance=1e-5 scales=0.5,-2 '
            'verbose=true shape=16x8x9x53:4x4x4x6 weights=models/w.npz}')
    (toy,) = parse(text).passes
    assert toy == Toy(method="bt", max_rank=4, ranks=(1, 4, 4, 4, 1), tolerance=1e-5,
                      scales=(0.5, -2.0), verbose=True, shape="16x8x9x53:4x4x4x6",
                      weights=Path("models/w.npz"))


def test_quoted_strings_may_hold_commas_braces_spaces_and_escapes():
    (toy,) = parse(r'toy{shape="a, b{c} d=e \"q\" \\" weights="my dir/w.npz"}').passes
    assert toy.shape == 'a, b{c} d=e "q" \\'
    assert toy.weights == Path("my dir/w.npz")


def test_whitespace_and_newlines_are_insignificant():
    assert parse("canonicalize ,\n  toy { ranks = 1 , 2\n max-rank=2 }") == parse(
        "canonicalize, toy{ranks=1,2 max-rank=2}")


def test_str_prints_only_changed_options_in_canonical_form():
    assert str(Toy()) == "toy"
    assert str(Toy(max_rank=3, verbose=True, shape="a b", scales=[3])) == \
        'toy{max-rank=3 scales=3.0 verbose=true shape="a b"}'
    assert str(parse("canonicalize, dce")) == "canonicalize, dce"


def test_python_construction_validates_and_normalizes():
    assert Toy(ranks=[1, 2]).ranks == (1, 2)
    assert Toy(tolerance=1).tolerance == 1.0
    with pytest.raises(PipelineError, match="option 'max-rank' must be >= 1, got 0"):
        Toy(max_rank=0)
    with pytest.raises(PipelineError, match="option 'method' must be one of tt, bt, ht"):
        Toy(method="cp")
    with pytest.raises(PipelineError, match="option 'verbose' expects true or false"):
        Toy(verbose=1)


def test_pass_manager_builds_the_same_pipeline_from_text_and_python():
    pm = PassManager.parse("toy{max-rank=2}, dce", TOY_PASSES)
    assert pm.pipeline == PassManager([Toy(max_rank=2), DeadCodeElimination()]).pipeline
    assert str(pm) == "toy{max-rank=2}, dce"


# --- round trip ------------------------------------------------------------------------

finite = st.floats(allow_nan=False)
toy_passes = st.builds(
    Toy,
    method=st.sampled_from(["tt", "bt", "ht"]),
    max_rank=st.integers(1, 64),
    ranks=st.none() | st.lists(st.integers(1, 10**12), min_size=1, max_size=5),
    tolerance=st.floats(min_value=0.0, allow_nan=False),
    scales=st.lists(finite, min_size=1, max_size=4),
    verbose=st.booleans(),
    shape=st.text(max_size=12),
    weights=st.none() | st.from_regex(r"[a-z0-9 ,{}\"/._-]{1,12}", fullmatch=True).map(Path),
)
any_pass = toy_passes | st.sampled_from([Canonicalize(), DeadCodeElimination()])


@settings(max_examples=150, deadline=None)
@given(st.lists(any_pass, max_size=4))
def test_printed_pipeline_parses_back_to_an_equal_pipeline(passes):
    pipeline = Pipeline(tuple(passes))
    assert parse(str(pipeline)) == pipeline


# --- errors with carets ----------------------------------------------------------------


def test_unknown_pass_lists_valid_names_and_suggests_the_closest():
    header, column = error_of("canonicalize, canonicalise")
    assert column == 15
    assert "unknown pass 'canonicalise'" in header
    assert "did you mean 'canonicalize'?" in header
    assert "valid: " + ", ".join(sorted(TOY_PASSES)) in header


def test_unknown_option_lists_valid_options():
    header, column = error_of("canonicalize, toy{max-rnk=8}")
    assert column == 19
    assert "unknown option 'max-rnk' for pass 'toy' (did you mean 'max-rank'?" in header
    assert "valid: max-rank, method, ranks, scales, shape, tolerance, verbose, weights)" in header


def test_snake_case_option_suggests_kebab_case():
    header, _ = error_of("toy{max_rank=8}")
    assert "did you mean 'max-rank'?" in header


def test_option_for_pass_without_options():
    header, column = error_of("dce{level=2}")
    assert (column, "pass 'dce' takes no options") == (5, header.split(": ", 1)[1])


@pytest.mark.parametrize("text, column, problem", [
    ("toy{max-rank=eight}", 14, "option 'max-rank' of pass 'toy' expects an integer, got 'eight'"),
    ("toy{max-rank=0}", 14, "option 'max-rank' of pass 'toy' must be >= 1, got 0"),
    ("toy{max-rank=65}", 14, "option 'max-rank' of pass 'toy' must be <= 64, got 65"),
    ("toy{method=cp}", 12, "option 'method' of pass 'toy' must be one of tt, bt, ht; got 'cp'"),
    ("toy{verbose=yes}", 13, "option 'verbose' of pass 'toy' expects true or false, got 'yes'"),
    ("toy{tolerance=small}", 15, "option 'tolerance' of pass 'toy' expects a number, got 'small'"),
    ("toy{tolerance=-1}", 15, "option 'tolerance' of pass 'toy' must be >= 0, got -1"),
    ("toy{ranks=1,4,x,1}", 15, "option 'ranks' of pass 'toy' expects an integer, got 'x'"),
    ("toy{ranks=1,0}", 13, "option 'ranks' of pass 'toy' must be >= 1, got 0"),
    ("toy{shape=a,b}", 13, "option 'shape' of pass 'toy' takes a single value (quote it to include commas)"),
    ("toy{ranks=1 ranks=2}", 13, "option 'ranks' is given twice for pass 'toy'"),
])
def test_bad_option_values_point_at_the_value(text, column, problem):
    header, found_column = error_of(text)
    assert found_column == column
    assert header.endswith(problem)


@pytest.mark.parametrize("text, column, problem", [
    ("canonicalize,", 14, "unexpected end of pipeline; expected a pass name"),
    ("canonicalize dce", 14, "unexpected 'dce'; expected '{' or ','"),
    ("toy{max-rank}", 13, "unexpected '}'; expected '='"),
    ("toy{max-rank=}", 14, "unexpected '}'; expected a value or a quoted string"),
    ("toy{max-rank=1", 15, "unexpected end of pipeline; expected an option name or ',' or '}'"),
    ('toy{shape="abc}', 11, "unterminated quoted string"),
    ("toy{shape=a;b}", 12, "unexpected ';'"),
])
def test_syntax_errors_point_at_the_column(text, column, problem):
    header, found_column = error_of(text)
    assert found_column == column
    assert problem in header


def test_error_in_multiline_text_names_line_and_column():
    header, column = error_of("canonicalize,\n  toy{mathod=tt}")
    assert header.startswith("pipeline error at line 2, column 7: unknown option 'mathod'")
    assert column == 7


def test_print_ir_after_a_pass_not_in_the_pipeline_is_an_error():
    with pytest.raises(PipelineError, match=r"'dce': it is not in the pipeline \(its passes: canonicalize\)"):
        PassManager.parse("canonicalize", print_ir_after=["dce"])


# --- declarations and documentation --------------------------------------------------


def test_every_registered_pass_is_documented_and_its_defaults_print_as_its_name():
    for name, cls in PASSES.items():
        assert cls.name == name and re.fullmatch(r"[a-z][a-z0-9-]*", name)
        assert cls.doc and "\n" not in cls.doc
        cls.options()
        try:
            default = cls()
        except PipelineError as exc:  # a pass with a required option (a target, a data file)
            assert "required" in str(exc)
            continue
        assert str(default) == name


def test_describe_passes_lists_options_with_type_default_and_choices():
    text = describe_passes(TOY_PASSES)
    assert "dce: Remove ops whose results are never used." in text
    assert "  max-rank: int in [1, 64], default 8 — largest rank" in text
    assert "  method: one of tt, bt, ht, default tt — format" in text
    assert "  ranks: list of int >= 1, default unset — explicit ranks" in text
    assert '  shape: str, default ""' in text


@pytest.mark.parametrize("annotation, default, problem", [
    (dict, None, "unsupported type"),
    (int | None, 3, "must default to None"),
    (tuple[str, ...], ("a",), "unsupported type"),
])
def test_option_declarations_the_text_cannot_express_are_rejected(annotation, default, problem):
    cls = dataclass(frozen=True)(type("Bad", (Pass,), {
        "__annotations__": {"value": annotation}, "value": option(default),
        "name": "bad", "doc": "Bad.",
    }))
    with pytest.raises(TypeError, match=problem):
        cls.options()
