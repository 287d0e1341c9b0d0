"""Train the dense LSTM or GRU classifier in PyTorch and export it to ONNX.

One ``nn.LSTM`` or ``nn.GRU`` layer (256 inputs, 128 hidden) reads the frame sequence; a
linear head on its last hidden state gives the 10 logits (no softmax: the quantizer
refuses it, and the argmax is the same).  Training is seeded and runs on CPU with cross-entropy and Adam.
The ONNX export (TorchScript exporter, opset 17) has input ``x`` ``[steps, batch, 256]``
with a dynamic batch and output ``logits`` ``[batch, 10]``.
"""

from __future__ import annotations

import contextlib
import io
import warnings
from pathlib import Path

import numpy as np

from data import CLASSES, FEATURES

HIDDEN = 128


def train_dense(train_x: np.ndarray, train_y: np.ndarray, path: Path, epochs: int, seed: int = 0,
                lr: float = 3e-3, batch: int = 32, cell: str = "lstm") -> Path:
    """Train the classifier (``cell``: ``lstm`` or ``gru``) on the sequences ``train_x``
    and export it to ``path``."""
    import torch

    torch.manual_seed(seed)
    model = _classifier(torch, cell)
    optimizer = torch.optim.Adam(model.parameters(), lr=lr)
    x, y = torch.from_numpy(train_x), torch.from_numpy(train_y)
    order = np.random.default_rng(seed)
    for _ in range(epochs):
        for rows in np.array_split(order.permutation(len(train_y)), max(1, len(train_y) // batch)):
            optimizer.zero_grad()
            torch.nn.functional.cross_entropy(model(x[:, rows]), y[rows]).backward()
            optimizer.step()
    model.eval()
    with warnings.catch_warnings(), contextlib.redirect_stdout(io.StringIO()):
        warnings.simplefilter("ignore")
        torch.onnx.export(model, (x[:, :2],), path, input_names=["x"], output_names=["logits"],
                          dynamic_axes={"x": {1: "batch"}, "logits": {0: "batch"}}, opset_version=17,
                          dynamo=False)
    return path


def _classifier(torch, cell: str):
    layer = {"lstm": torch.nn.LSTM, "gru": torch.nn.GRU}[cell]

    class Classifier(torch.nn.Module):
        def __init__(self):
            super().__init__()
            self.recurrent = layer(FEATURES, HIDDEN)
            self.head = torch.nn.Linear(HIDDEN, CLASSES)

        def forward(self, x):
            y, _ = self.recurrent(x)
            return self.head(y[-1])

    return Classifier()
