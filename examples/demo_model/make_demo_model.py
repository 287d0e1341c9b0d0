"""Train the small LSTM digit classifier bundled as `tensorgate demo`'s example.

scikit-learn's 8x8 digits are read row by row (8 steps of 8 pixels); an LSTM with
16 hidden units and a linear+softmax head classifies them.  Writes
src/tensorgate/data/demo_lstm.onnx, demo_inputs.npz (8 held-out images + labels) and
demo_digits.npz (the 1,500 training images without labels, for label-free fine-tuning,
and the 297 held-out images with labels; pixels as the integers 0..16 they are).
Needs torch and scikit-learn; seeded, so rerunning gives the same weights.
"""

from pathlib import Path

import numpy as np
import torch
from sklearn.datasets import load_digits

DATA = Path(__file__).resolve().parents[2] / "src" / "tensorgate" / "data"


class DigitLSTM(torch.nn.Module):
    def __init__(self, hidden: int = 16):
        super().__init__()
        self.lstm = torch.nn.LSTM(8, hidden, batch_first=True)
        self.head = torch.nn.Linear(hidden, 10)

    def forward(self, x):
        _, (h, _) = self.lstm(x)
        return torch.softmax(self.head(h[-1]), dim=-1)


def main() -> None:
    torch.manual_seed(0)
    digits = load_digits()
    images = (digits.images / 16.0).astype(np.float32)
    labels = digits.target.astype(np.int64)
    order = np.random.default_rng(0).permutation(len(images))
    train, test = order[:1500], order[1500:]
    model = DigitLSTM()
    optimizer = torch.optim.Adam(model.parameters(), lr=0.01)
    x, y = torch.from_numpy(images[train]), torch.from_numpy(labels[train])
    for epoch in range(250):
        optimizer.zero_grad()
        loss = torch.nn.functional.nll_loss(torch.log(model(x) + 1e-9), y)
        loss.backward()
        optimizer.step()
    with torch.no_grad():
        accuracy = (model(torch.from_numpy(images[test])).argmax(-1).numpy() == labels[test]).mean()
    print(f"held-out accuracy {accuracy:.3f}")
    torch.onnx.export(model, (x[:1],), DATA / "demo_lstm.onnx", input_names=["image_rows"],
                      output_names=["probabilities"], dynamic_axes={"image_rows": {0: "batch"}},
                      opset_version=17, dynamo=False)
    pick = test[:8]
    np.savez(DATA / "demo_inputs.npz", image_rows=images[pick], labels=labels[pick])
    pixels = digits.images.astype(np.uint8)
    np.savez_compressed(DATA / "demo_digits.npz", train=pixels[train], test=pixels[test], test_labels=labels[test])


if __name__ == "__main__":
    main()
