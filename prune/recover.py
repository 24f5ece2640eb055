"""Recovery after pruning: fine-tune the pruned float graph by distillation from the unpruned
model on the calibration inputs (no labels needed), or with labels when given."""
from __future__ import annotations

import numpy as np
import torch
import torch.nn.functional as F

from toolchain.ir import Graph

from .torch_graph import GraphModule


def logits_tensor(graph: Graph) -> str:
    """The tensor to distil on: the softmax's input when the model ends in a softmax."""
    out = graph.outputs[0]
    producer = next((op for op in graph.ops if out in op.outputs), None)
    return producer.inputs[0] if producer is not None and producer.kind == "softmax" else out


def recover(student: Graph, teacher: Graph, calib: np.ndarray, labels: np.ndarray | None = None,
            epochs: int = 60, batch: int = 64, lr: float = 2e-3, seed: int = 0, progress=None) -> Graph:
    """Distil teacher logits into the student (MSE), plus cross-entropy when labels are given."""
    torch.manual_seed(seed)
    x = torch.tensor(calib, dtype=torch.float32)
    with torch.no_grad():
        target = GraphModule(teacher).eval()(x, [logits_tensor(teacher)])[0]
    model = GraphModule(student)
    optimizer = torch.optim.Adam(model.parameters(), lr=lr)
    schedule = torch.optim.lr_scheduler.CosineAnnealingLR(optimizer, epochs)
    y = torch.tensor(labels, dtype=torch.long) if labels is not None else None
    tap = logits_tensor(student)
    rng = np.random.default_rng(seed)
    for epoch in range(epochs):
        order = rng.permutation(len(x))
        total = 0.0
        for start in range(0, len(x), batch):
            idx = torch.tensor(order[start:start + batch])
            out = model(x[idx], [tap])[0]
            loss = F.mse_loss(out, target[idx])
            if y is not None:
                loss = loss + F.cross_entropy(out.reshape(len(idx), -1), y[idx])
            optimizer.zero_grad()
            loss.backward()
            optimizer.step()
            total += loss.item() * len(idx)
        schedule.step()
        if progress:
            progress(epoch + 1, epochs, total / len(x))
    return model.write_back()
