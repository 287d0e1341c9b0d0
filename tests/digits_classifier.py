"""Trained LSTM and GRU classifiers for the quantization tests and benchmark.

scikit-learn's 8x8 digits (1797 images, bundled with the library), read row by row:
a sequence of 8 steps of 8 features, 10 classes.  ``train_digits_classifier`` trains a
one-layer ``nn.LSTM`` or ``nn.GRU`` with a linear head on the last step (seeded, one
thread, a few seconds) and exports it with PyTorch's TorchScript exporter (input ``x``
of shape ``[seq, batch, 8]``, output ``logits``; a GRU exports with
``linear_before_reset=1``).  ``decomposed`` replaces the recurrent W and R by TT, BT or
HT maps fitted to the trained weights.

Tests use the models trained once and stored as ``data/digits_lstm.onnx`` and
``data/digits_gru.onnx`` (training again on another machine's BLAS gives other weights,
and thresholds measured on one set of weights would not hold for the other);
``python tests/digits_classifier.py`` writes them again.  Likewise
``data/digits_lstm_tt{2,8}_distilled.tgir`` (+ ``.npz``) are the stored LSTM decomposed
to TT max-rank 2 and 8 and fine-tuned without labels to match it (``DISTILL_PIPELINES``
on the first ``TRAIN`` digits' inputs); ``python tests/digits_classifier.py
--distilled`` writes them again from the stored model.
"""

from __future__ import annotations

import contextlib
import io
import warnings
from pathlib import Path

import numpy as np

from tensorgate.frontend import import_onnx
from tensorgate.ir import Module
from tensorgate.ir.ops import recurrent_ops
from tensorgate.passes import PassManager
from tensorgate.passes.decomposition import auto_tensorization, bt_als, ht_svd, tt_svd

TRAIN = 1200
CALIBRATION = 256
STORED = Path(__file__).parent / "data" / "digits_lstm.onnx"
STORED_GRU = Path(__file__).parent / "data" / "digits_gru.onnx"
DISTILLED = {rank: Path(__file__).parent / "data" / f"digits_lstm_tt{rank}_distilled.tgir" for rank in (2, 8)}
DECOMPOSE_PIPELINE = "decompose{method=tt max-rank=%d}"
DISTILL_PIPELINE = "finetune{data=%s epochs=30 lr=0.02 schedule=cosine distill=kl seed=%d}"
AUGMENTED_DISTILL_PIPELINE = "finetune{data=%s epochs=30 lr=0.05 batch=128 augment=6 schedule=cosine distill=kl seed=%d}"
DISTILL_PIPELINES = {2: AUGMENTED_DISTILL_PIPELINE, 8: DISTILL_PIPELINE}
"""How each stored distilled model was fine-tuned: max-rank 2 learns from six mixups or
noisy copies per digit besides the digits (92.8% agreement on the held-out digits, 87.8%
without); max-rank 8 from the digits alone (lr 0.05 diverges there).

Max-rank 2's held-out agreement levels off at 91-94% whatever else was tried (seed 0,
one torch thread): the digits' eight one-pixel shifts as more unlabeled inputs (with
mixups 92.5-94%), d=2 or 3, explicit shapes with the gates as a mode, gates=separate,
MSE on the logits, temperature 3, weight decay, inputs made adversarial to the student
(sign-gradient steps up the KL divergence), rank 8 then 4 then 2 (each step
fine-tuned), and even max-rank 8 at d=2 (94.6%).  Not the ranks but the
inputs limit it.  One set of max-rank 2 cores can agree with the teacher on all 1,797
digits at once: distilled on all of them (200 epochs, batch 64, no augmentation), 100% on
the 1,200 and 98.8% / 99.0% on the 597 (seeds 0 / 1); on the 597 alone (300 epochs), 100%
on them.  But from the 1,200's inputs, higher ranks and even a dense LSTM(8, 32) student
(random start, the same 30 epochs with ``augment=6``) generalize no better: max-rank 3
92.1%, max-rank 4 93.0%, dense 92.8% / 93.0%.  The held-out digits are other hands'
writing, on which the teacher itself is right only 92.3% of the time, and the student
misses it where it is unsure or wrong (30 of its 43 held-out disagreements are digits the
teacher gets wrong; the student gets 20 of the 43 right).  Drawn from the same pool as
the digits measured (a random 1,200 of the 1,797 to learn from, the other 597 measured),
the same pipeline reaches 96.7% / 95.1% (100 epochs: 96.8% / 96.5%).

Inputs that reach off the 1,200 (seeds 0 / 1 where two numbers are given), six affine
warps per digit (each image turned by up to 10 degrees, scaled and sheared by up to 10%,
shifted by up to a pixel, its edge continued), teach a dense student the teacher's
function on other hands' digits better (95.5% / 93.6%; twelve warps 94.8% / 95.0%, so no
student tried reaches 97% from the 1,200), but are more than max-rank 2 can follow: it
agrees on 98% of the 1,200 and 90.6% / 91.6% of the 597 (max-rank 4: 94.0% / 92.3%, twelve
warps 93.6%, max-rank 8 at lr 0.02: 93.3%; 100 epochs with new warps every epoch, max-rank
2: 91.8%; with the mixups and noisy copies too, 91.1%). Besides the six mixups or noisy
copies: two warps 91.3%, six warps half as far 92.5%, two one-pixel shifts 93.0%, three
elastic warps 92.0%. Mixups chosen where the teacher's top two logits are closest
(boundary samples, from 4-8 times as many) 90.1-91.5%, temperature 4 on the KL 91.1%,
averaging the weights over the second half of training 92.3%, lr 0.02 for 60 epochs with
new mixups every epoch 91.6% (seed 0; this pipeline over seeds 0-3: 92.8%, 92.3%, 92.1%,
92.5%).

Nor do these lift it (held-out agreement, the same 30 epochs with ``augment=6``, seeds 0
and 1; from TT-SVD 92.8% and 92.3%): a data-aware start (the cores and the bias fitted by
L-BFGS so that ``W x + R h + b`` matches the teacher's gate pre-activations on its own
``x`` and states, which lowers their mean squared error from 3.60 to 2.46 but leaves the
start at 9% agreement) 91.0% and 90.1%; matching the teacher's hidden states at every
step besides the logits (mean squared error over their variance, weight 1 / 0.1) 90.8%
/ 91.5% (seed 0), its gate pre-activations 89.4%, both a data-aware start and gate
matching 89.6%; matching the input-gradients of the logits (along random projections of
the classes, weight 1) 91.8%; 100 epochs instead of 30 (cosine decay) 93.5% and 92.0%.
Likely, with 176 parameters in its W and R (80 and 96) the student cannot follow the teacher's
states at every step, and what it gives to that it takes from the logits.  Measured by
hand loops equal to ``finetune`` (plain TT-SVD start: 92.80%, the stored model's)."""


def digits() -> tuple[np.ndarray, np.ndarray]:
    """All 1797 digits as standardized sequences ``[8 steps, 1797, 8]`` and their labels."""
    from sklearn.datasets import load_digits

    data = load_digits()
    images = data.images.astype(np.float32) / 16.0
    images = (images - images.mean()) / images.std()
    return np.ascontiguousarray(images.transpose(1, 0, 2)), data.target.astype(np.int64)


def train_digits_classifier(path: Path, hidden: int = 32, epochs: int = 30, seed: int = 0, cell: str = "lstm") -> Path:
    """Train the classifier (``cell``: ``lstm`` or ``gru``) on the first ``TRAIN`` digits
    and export it to ``path``."""
    import torch

    torch.manual_seed(seed)
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    try:
        sequences, labels = digits()

        class Classifier(torch.nn.Module):
            def __init__(self):
                super().__init__()
                self.recurrent = (torch.nn.GRU if cell == "gru" else torch.nn.LSTM)(8, hidden)
                self.head = torch.nn.Linear(hidden, 10)

            def forward(self, x):
                y, _ = self.recurrent(x)
                return self.head(y[-1])

        model = Classifier()
        optimizer = torch.optim.Adam(model.parameters(), lr=0.02)
        x, y = torch.from_numpy(sequences[:, :TRAIN]), torch.from_numpy(labels[:TRAIN])
        order = np.random.default_rng(seed)
        for _ in range(epochs):
            for batch in np.array_split(order.permutation(TRAIN), TRAIN // 64):
                optimizer.zero_grad()
                loss = torch.nn.functional.cross_entropy(model(x[:, batch]), y[batch])
                loss.backward()
                optimizer.step()
        model.eval()
        with warnings.catch_warnings(), contextlib.redirect_stdout(io.StringIO()):
            warnings.simplefilter("ignore")
            torch.onnx.export(model, (x[:, :2],), path, input_names=["x"], output_names=["logits"],
                              dynamic_axes={"x": {0: "seq", 1: "batch"}}, opset_version=17, dynamo=False)
    finally:
        torch.set_num_threads(threads)
    return path


def float_module(path: Path) -> Module:
    """The exported classifier imported and canonicalized."""
    return PassManager.parse("canonicalize, dce").run(import_onnx(path))


def decomposed(module: Module, method: str) -> Module:
    """A copy whose recurrent maps are ``tt`` / ``bt`` / ``ht`` decompositions (3 modes) of
    the trained ones, truncated where the LSTM classifier stays accurate (95-96% against
    97% dense, BT 92%; the trained matrices are small and nearly full rank, so lower ranks
    break it, and BT, which stops adding blocks before it would store more than the
    matrix, reaches its eps only on R)."""
    result = module.copy()
    for op in recurrent_ops(result.ops):
        for key in ("w", "r"):
            op.attrs[key] = [_decompose(m.to_dense(), method) for m in op.attrs[key]]
    return result


def _decompose(matrix: np.ndarray, method: str):
    shape = auto_tensorization(matrix.shape[0], matrix.shape[1], 3)
    if method == "tt":
        return tt_svd(matrix, shape, eps=0.3).map
    if method == "bt":
        return bt_als(matrix, shape, blocks=16, tucker_rank=4, eps=0.2).map
    return ht_svd(matrix, shape, eps=0.3).map


def accuracy(logits: np.ndarray, labels: np.ndarray) -> float:
    return float(np.mean(logits.argmax(axis=-1) == labels))


def distill_digits_lstm(path: Path | None, rank: int, seed: int = 0) -> Module:
    """The stored LSTM decomposed (``DECOMPOSE_PIPELINE`` at ``rank``) and fine-tuned to
    match it on the unlabeled first ``TRAIN`` digits (``DISTILL_PIPELINES[rank]``); saved to
    ``path`` unless it is ``None``."""
    import tempfile

    from tensorgate.ir.serialize import save_module

    sequences, _ = digits()
    teacher = float_module(STORED)
    with tempfile.TemporaryDirectory() as tmp:
        unlabeled = Path(tmp) / "unlabeled.npz"
        np.savez(unlabeled, x=sequences[:, :TRAIN])
        pipeline = f"{DECOMPOSE_PIPELINE % rank}, {DISTILL_PIPELINES[rank] % (unlabeled, seed)}"
        student = PassManager.parse(pipeline).run(teacher)
    if path is not None:
        save_module(student, path)
    return student


if __name__ == "__main__":
    import sys

    if "--distilled" in sys.argv:
        for rank, path in DISTILLED.items():
            distill_digits_lstm(path, rank)
            print(f"wrote {path}")
    else:
        print(f"wrote {train_digits_classifier(STORED)}")
        print(f"wrote {train_digits_classifier(STORED_GRU, cell='gru')}")
