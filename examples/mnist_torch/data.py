"""The seeded MNIST split of this example: 400 training and 100 test images per digit class from
../shared/data/mnist5k, as float32 NCHW images in [0, 1] (PyTorch's own layout)."""
from __future__ import annotations

from pathlib import Path

import numpy as np

SEED = 1234
TRAIN_PER_CLASS = 400
DATA_DIR = Path(__file__).resolve().parents[2].parent / "shared" / "data" / "mnist5k"


def load_split(data_dir: Path = DATA_DIR) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
    """(x_train, y_train, x_test, y_test): 4,000 / 1,000 images, classes balanced, order seeded."""
    images = np.load(data_dir / "mnist5k_28x28_uint8.npy")
    labels = np.load(data_dir / "mnist5k_labels.npy").astype(np.int64)
    rng = np.random.default_rng(SEED)
    # Shuffle once, then take each class's first TRAIN_PER_CLASS images (in shuffled order).
    order = rng.permutation(len(labels))
    rank_in_class = np.empty(len(labels), np.int64)
    for digit in range(10):
        members = order[labels[order] == digit]
        rank_in_class[members] = np.arange(len(members))
    train = order[rank_in_class[order] < TRAIN_PER_CLASS]
    test = order[rank_in_class[order] >= TRAIN_PER_CLASS]
    x = (images.astype(np.float32) / 255.0)[:, None, :, :]
    return x[train], labels[train], x[test], labels[test]
