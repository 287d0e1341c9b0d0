"""Shared fixtures; the model builders themselves live in ``models.py``."""

from __future__ import annotations

from pathlib import Path

import pytest

from models import TorchLSTM, export_torch_lstm


@pytest.fixture(scope="session")
def torch_export(tmp_path_factory):
    """``torch_export(TorchLSTM(...)) -> Path``: each configuration is exported once
    per test session (exports take seconds), into a session temp dir."""
    directory = tmp_path_factory.mktemp("torch_exports")
    cache: dict[TorchLSTM, Path] = {}

    def export(config: TorchLSTM) -> Path:
        if config not in cache:
            cache[config] = export_torch_lstm(config, directory)
        return cache[config]

    return export
