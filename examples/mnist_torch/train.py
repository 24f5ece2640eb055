#!/usr/bin/env python3
"""Train the MobileNetV2-style MNIST example in PyTorch and save it in three formats.

Usage (from the repo root, about a minute on two CPU cores):
    .venv/bin/python examples/mnist_torch/train.py [--epochs N] [--out-dir DIR]

Writes (in --out-dir, default: this folder):
    mnist_mbv2.pt     TorchScript (torch.jit.trace, so the input shape is stored in the file)
    mnist_mbv2.pt2    ExportedProgram (torch.export.save)
    mnist_mbv2.onnx   ONNX, opset 17 (torch.onnx.export, TorchScript-based exporter)
    calib.npz         key x: 256 training images, float32 (256, 1, 28, 28) in [0, 1], for --calib
    train_metrics.json  float test accuracy, parameters, epochs, seconds
"""
from __future__ import annotations

import argparse
import json
import sys
import time
from pathlib import Path

import numpy as np
import torch
from torch import nn

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE))
from data import SEED, load_split  # noqa: E402
from model import MnistMobileNetV2  # noqa: E402

EPOCHS = 12
BATCH = 64
CALIB_IMAGES = 256
INPUT_SHAPE = (1, 1, 28, 28)


def shift_augment(x: torch.Tensor, generator: torch.Generator, max_shift: int = 2) -> torch.Tensor:
    """Random translation by up to max_shift pixels (zero fill), one shift per batch."""
    dy, dx = (int(v) for v in torch.randint(-max_shift, max_shift + 1, (2,), generator=generator))
    padded = nn.functional.pad(x, (max_shift,) * 4)
    h, w = x.shape[-2:]
    return padded[..., max_shift + dy:max_shift + dy + h, max_shift + dx:max_shift + dx + w]


def accuracy(model: nn.Module, x: np.ndarray, y: np.ndarray) -> float:
    model.eval()
    with torch.no_grad():
        logits = model(torch.from_numpy(x))
    return float((logits.argmax(1).numpy() == y).mean())


def train(model: nn.Module, x: np.ndarray, y: np.ndarray, epochs: int) -> None:
    generator = torch.Generator().manual_seed(SEED)
    xt, yt = torch.from_numpy(x), torch.from_numpy(y)
    steps = epochs * ((len(x) + BATCH - 1) // BATCH)
    opt = torch.optim.AdamW(model.parameters(), lr=4e-3, weight_decay=1e-4)
    sched = torch.optim.lr_scheduler.OneCycleLR(opt, max_lr=4e-3, total_steps=steps)
    loss_fn = nn.CrossEntropyLoss()
    for epoch in range(epochs):
        model.train()
        order = torch.randperm(len(x), generator=generator)
        total = 0.0
        for start in range(0, len(x), BATCH):
            idx = order[start:start + BATCH]
            loss = loss_fn(model(shift_augment(xt[idx], generator)), yt[idx])
            opt.zero_grad()
            loss.backward()
            opt.step()
            sched.step()
            total += float(loss.detach()) * len(idx)
        print(f"epoch {epoch + 1}/{epochs}: loss {total / len(x):.4f}", flush=True)


def export(model: nn.Module, out_dir: Path) -> None:
    model.eval()
    example = torch.zeros(INPUT_SHAPE)
    torch.jit.save(torch.jit.trace(model, example), out_dir / "mnist_mbv2.pt")
    torch.export.save(torch.export.export(model, (example,)), out_dir / "mnist_mbv2.pt2")
    torch.onnx.export(model, (example,), out_dir / "mnist_mbv2.onnx", dynamo=False, opset_version=17,
                      input_names=["image"], output_names=["logits"])


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--epochs", type=int, default=EPOCHS)
    ap.add_argument("--out-dir", type=Path, default=HERE)
    args = ap.parse_args()
    args.out_dir.mkdir(parents=True, exist_ok=True)
    torch.manual_seed(SEED)
    torch.set_num_threads(2)
    torch.use_deterministic_algorithms(True)

    x_train, y_train, x_test, y_test = load_split()
    model = MnistMobileNetV2()
    start = time.time()
    train(model, x_train, y_train, args.epochs)
    seconds = time.time() - start
    float_acc = accuracy(model, x_test, y_test)
    print(f"float test accuracy: {float_acc:.4f} ({seconds:.0f} s)")

    export(model, args.out_dir)
    np.savez_compressed(args.out_dir / "calib.npz", x=x_train[:CALIB_IMAGES])
    metrics = {"float_test_accuracy": round(float_acc, 4), "n_train": len(x_train), "n_test": len(x_test),
               "parameters": sum(p.numel() for p in model.parameters()), "epochs": args.epochs,
               "train_seconds": round(seconds, 1), "seed": SEED, "torch_version": torch.__version__}
    (args.out_dir / "train_metrics.json").write_text(json.dumps(metrics, indent=2) + "\n")
    print(json.dumps(metrics, indent=2))


if __name__ == "__main__":
    main()
