"""The layering of ARCHITECTURE.md is the import contract CI checks, and it holds."""

from __future__ import annotations

import itertools
import re
import tomllib
from pathlib import Path

import grimp
import pytest

ROOT = Path(__file__).resolve().parents[1]
CONFIG = tomllib.loads((ROOT / "pyproject.toml").read_text())["tool"]["importlinter"]
LAYERS = next(c for c in CONFIG["contracts"] if c["type"] == "layers")["layers"]
DOC = (ROOT / "ARCHITECTURE.md").read_text()

FORBIDDEN = {  # the dependencies the architecture issue measured, none of which may exist
    "ir": ["frontend", "passes", "backend", "runtime", "fixedpoint"],
    "fixedpoint": ["passes", "backend", "runtime", "frontend"],
    "frontend": ["backend", "runtime"],
    "passes": ["backend"],
    "backend": ["passes", "runtime"],
}


@pytest.fixture(scope="module")
def graph() -> grimp.ImportGraph:
    return grimp.build_graph("tensorgate")


def documented_layers() -> list[list[str]]:
    """The first column of the layer table, top layer first (the table lists bottom first)."""
    table = DOC.split("## Layers, bottom to top", 1)[1].split("\n## ", 1)[0]
    rows = [line for line in table.splitlines() if line.startswith("| `")]
    return [re.findall(r"`([a-z_]+)`", row.split("|")[1]) for row in reversed(rows)]


def test_the_documented_layers_are_the_contract():
    """Top to bottom, the table's rows name the contract's layers in order (siblings of one
    layer may have rows of their own, the application's four layers share one row)."""
    contract = [re.split(r"\s*[|:]\s*", layer) for layer in LAYERS]
    application, *rows = documented_layers()
    assert sorted(application) == sorted(name for layer in contract[:4] for name in layer)
    names = [name for row in rows for name in row]
    for layer in contract[4:]:
        assert sorted(names[:len(layer)]) == sorted(layer)
        names = names[len(layer):]
    assert not names


def test_every_ignored_import_is_listed_with_its_reason():
    ignored = [i for c in CONFIG["contracts"] for i in c.get("ignore_imports", [])]
    exceptions = DOC.split("## Exceptions to the contract", 1)[1]
    for entry in ignored:
        assert f"`{entry.removeprefix('tensorgate.')}`" in exceptions


@pytest.mark.parametrize("importer,imported", [(a, b) for a, bs in FORBIDDEN.items() for b in bs])
def test_no_upward_dependency(graph, importer, imported):
    chains = graph.find_shortest_chains(importer=f"tensorgate.{importer}", imported=f"tensorgate.{imported}",
                                        as_packages=True)
    assert not chains


def test_no_cycles_between_packages(graph):
    packages = sorted(m.split(".")[1] for m in graph.find_children("tensorgate")
                      if graph.find_children(m))
    for a, b in itertools.combinations(packages, 2):
        both = [graph.direct_import_exists(importer=f"tensorgate.{x}", imported=f"tensorgate.{y}", as_packages=True)
                for x, y in ((a, b), (b, a))]
        assert not all(both), f"{a} and {b} import each other"
