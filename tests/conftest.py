"""Shared fixtures; the model builders themselves live in ``models.py``."""

from __future__ import annotations

from pathlib import Path

import pytest

from models import TorchRecurrent, export_torch_recurrent


@pytest.fixture(scope="session")
def torch_export(tmp_path_factory):
    """``torch_export(TorchRecurrent(...)) -> Path``: each configuration is exported once
    per test session (exports take seconds), into a session temp dir."""
    directory = tmp_path_factory.mktemp("torch_exports")
    cache: dict[TorchRecurrent, Path] = {}

    def export(config: TorchRecurrent) -> Path:
        if config not in cache:
            cache[config] = export_torch_recurrent(config, directory)
        return cache[config]

    return export
