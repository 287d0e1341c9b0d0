"""Hypothesis fuzzing of the artifact loader: real artifacts (numpy, onnx, verilog targets)
with manifests, files, IR and weights mutated (``artifact_mutations``); the loader and
``tensorgate run`` may refuse them, but only with tensorgate's own errors, never an
``internal error``.  ``benchmarks/fuzz_artifacts.py`` runs the same mutations for minutes."""

from __future__ import annotations

import tempfile
from pathlib import Path

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from artifact_mutations import build_bases, fresh_copy, mutate, outcome


class DrawChooser:
    """A ``Chooser`` drawing from hypothesis, so failing cases shrink."""

    def __init__(self, data):
        self.data = data

    def pick(self, options):
        return self.data.draw(st.sampled_from(list(options)))

    def coin(self) -> bool:
        return self.data.draw(st.booleans())


@pytest.fixture(scope="module")
def bases(tmp_path_factory):
    return build_bases(tmp_path_factory.mktemp("bases"))


@settings(max_examples=150, deadline=None, derandomize=True,
          suppress_health_check=[HealthCheck.function_scoped_fixture, HealthCheck.too_slow])
@given(data=st.data())
def test_mutated_artifacts_raise_only_tensorgate_errors(bases, data):
    artifacts, inputs = bases
    base = data.draw(st.sampled_from(artifacts), label="base")
    with tempfile.TemporaryDirectory() as scratch:
        artifact = fresh_copy(base, Path(scratch) / "case")
        edits = mutate(artifact, DrawChooser(data))
        result = outcome(artifact, inputs)
    assert not result.startswith("internal error") and "Traceback" not in result, (edits, result)
