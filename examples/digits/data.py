"""The digits data set as sequences, with an imbalanced training split.

scikit-learn's 1,797 handwritten digits (8x8, bundled with the library) are upscaled to
32x32 (bilinear) and read as a window of 8 rows sliding down the image 4 rows at a
time: 7 frames of 8x32 = 256 pixels, the sequence ``x[step, sample, 256]``.

The split follows the FL-TT-LSTM paper's setting of a few rare classes: a balanced test
set (``TEST_PER_CLASS`` of every digit), and a training set with every remaining image
of the majority digits 0-6 but only ``MINORITY_FRACTION`` of those of the minority digits
7, 8 and 9 (an imbalance ratio of about 10).
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

SIZE = 32
WINDOW = 8
STRIDE = 4
STEPS = (SIZE - WINDOW) // STRIDE + 1
FEATURES = WINDOW * SIZE
CLASSES = 10
MINORITY = (7, 8, 9)
MINORITY_FRACTION = 0.1
TEST_PER_CLASS = 60


@dataclass(frozen=True)
class Split:
    """Sequences ``[steps, samples, features]`` (float32) and labels (int64) of each part."""

    train_x: np.ndarray
    train_y: np.ndarray
    test_x: np.ndarray
    test_y: np.ndarray

    def class_counts(self) -> tuple[np.ndarray, np.ndarray]:
        return np.bincount(self.train_y, minlength=CLASSES), np.bincount(self.test_y, minlength=CLASSES)


def digit_sequences() -> tuple[np.ndarray, np.ndarray]:
    """All digits as standardized frame sequences ``[STEPS, 1797, FEATURES]`` and their labels."""
    from scipy.ndimage import zoom
    from sklearn.datasets import load_digits

    digits = load_digits()
    images = zoom(digits.images.astype(np.float32) / 16.0, (1, SIZE / 8, SIZE / 8), order=1)
    images = (images - images.mean()) / images.std()
    frames = [images[:, top:top + WINDOW, :].reshape(len(images), FEATURES)
              for top in range(0, SIZE - WINDOW + 1, STRIDE)]
    return np.ascontiguousarray(np.stack(frames), dtype=np.float32), digits.target.astype(np.int64)


def imbalanced_split(seed: int = 0) -> Split:
    """The balanced test set and the imbalanced training set (see the module docstring)."""
    sequences, labels = digit_sequences()
    rng = np.random.default_rng(seed)
    train, test = [], []
    for digit in range(CLASSES):
        members = rng.permutation(np.flatnonzero(labels == digit))
        test.append(members[:TEST_PER_CLASS])
        rest = members[TEST_PER_CLASS:]
        keep = round(MINORITY_FRACTION * len(rest)) if digit in MINORITY else len(rest)
        train.append(rest[:keep])
    train_rows, test_rows = rng.permutation(np.concatenate(train)), np.sort(np.concatenate(test))
    return Split(sequences[:, train_rows], labels[train_rows], sequences[:, test_rows], labels[test_rows])
