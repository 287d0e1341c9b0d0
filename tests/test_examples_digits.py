"""The digits example: its data split, and its quick path end to end.

``examples/digits/run.py --quick`` runs every stage of the study on a small budget (two
dense epochs, one TT setting, one fine-tuning epoch per loss, one simulated sequence;
the GRU dense and TT with cross-entropy); the test checks that it finishes, writes the
table with its LSTM and GRU rows, each with its cycles, and that the Verilator outputs
equal the golden model's.  The full study is ``python examples/digits/run.py``.
"""

from __future__ import annotations

import importlib.util
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

EXAMPLE = Path(__file__).resolve().parent.parent / "examples" / "digits"


def load_data_module():
    spec = importlib.util.spec_from_file_location("digits_example_data", EXAMPLE / "data.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def test_split_is_balanced_for_testing_and_imbalanced_for_training():
    data = load_data_module()
    split = data.imbalanced_split(seed=0)
    train_counts, test_counts = split.class_counts()
    assert (test_counts == data.TEST_PER_CLASS).all()
    majority = [c for c in range(data.CLASSES) if c not in data.MINORITY]
    assert train_counts[list(data.MINORITY)].max() * 8 < train_counts[majority].min()
    assert split.train_x.shape[::2] == split.test_x.shape[::2] == (data.STEPS, data.FEATURES)
    train_rows = {row.tobytes() for row in split.train_x.transpose(1, 0, 2)}
    assert not any(row.tobytes() in train_rows for row in split.test_x.transpose(1, 0, 2)), "test digits leaked"
    again = data.imbalanced_split(seed=0)
    np.testing.assert_array_equal(split.train_y, again.train_y)


@pytest.mark.slow
def test_quick_run_writes_the_table(tmp_path):
    run = subprocess.run([sys.executable, str(EXAMPLE / "run.py"), "--quick", "--work", str(tmp_path)],
                         capture_output=True, text=True, timeout=900)
    assert run.returncode == 0, run.stderr[-2000:]
    table = (tmp_path / "results.md").read_text()
    rows = [line for line in table.splitlines() if line.startswith("| ")]
    assert [row.split(" | ")[0:4] for row in rows[1:]] == [
        ["| LSTM", "dense", "-", "ce"], ["| LSTM", "tt", "r≤4", "ce"], ["| LSTM", "tt", "r≤4", "focal"],
        ["| GRU", "dense", "-", "ce"], ["| GRU", "tt", "r≤4", "ce"]]
    cycles = [row.rstrip(" |").rsplit(" | ", 1)[-1] for row in rows[1:]]
    assert all(int(cell.replace(",", "")) > 0 for cell in cycles), cycles
    assert "Verilator outputs equal the golden model's bit for bit: met (every 8-bit LSTM and GRU model)" in table
    assert "- GRU: 8-bit golden model agrees with the float model" in table
