"""Recovery after pruning: fine-tune the pruned float graph by distillation from the unpruned
model on the calibration inputs (no labels needed), or with labels when given.

Imported models have batch norm folded into their weights and usually come with a few hundred
calibration samples, which shapes three choices:
- Adam steps are relative: each tensor's learning rate is `lr` times its RMS. Folding leaves
  weight scales orders of magnitude apart (resnet8.h5: 0.0045 in the first conv, which reads
  0..255 pixels, 1.2 in the classifier), and one absolute rate wrecks the small ones. The rate
  warms up over the first tenth of the steps, so that Adam's normalisation has gradient
  statistics before it takes full steps, then follows a cosine.
- The loss is knowledge distillation (Hinton et al.): KL divergence of the temperature-softened
  student outputs from the teacher's, times T^2, plus the MSE of the logits over the teacher
  logits' variance, which carries single-output models (regressors), where the KL is zero.
- A tenth of the samples is held out, and the state kept is the one with the lowest held-out
  loss, the pruned starting point included: recovery stops where it stops generalising, and never
  ends worse than pruning left the model on samples it did not train on (channels pruned exactly
  can only lose by training).
Fresh augmentation every epoch (flips, shifts, zoom, noise, mixup) was measured and left out: on
the MLPerf Tiny models it gained nothing or lost up to 10 points of agreement (the student spends
its capacity matching the teacher off the calibration distribution), at the cost of a teacher pass
per batch.
"""
from __future__ import annotations

import math

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


def relative_rates(model: GraphModule, lr: float) -> list[dict]:
    """Adam parameter groups with lr scaled by each tensor's RMS (an all-zero bias takes its
    layer's weights' RMS)."""
    rms = {key: float(p.detach().pow(2).mean().sqrt()) for key, p in model.params.items()}
    return [{"params": [p], "lr": lr * (rms[key] or rms["w" + key[1:]])} for key, p in model.params.items()]


def distillation_loss(out: torch.Tensor, target: torch.Tensor, logit_var: float, temperature: float,
                      labels: torch.Tensor | None = None) -> torch.Tensor:
    soft = F.kl_div(F.log_softmax(out / temperature, -1), F.log_softmax(target / temperature, -1),
                    log_target=True, reduction="batchmean") * temperature ** 2
    loss = soft + F.mse_loss(out, target) / logit_var
    return loss if labels is None else loss + F.cross_entropy(out, labels)


def recover(student: Graph, teacher: Graph, calib: np.ndarray, labels: np.ndarray | None = None,
            epochs: int = 60, batch: int = 64, lr: float = 2e-2, temperature: float = 4.0, seed: int = 0,
            progress=None) -> Graph:
    """Distil teacher logits into the student (plus cross-entropy when labels are given); returns
    the student at its best held-out loss."""
    torch.manual_seed(seed)
    x = torch.tensor(calib, dtype=torch.float32)
    with torch.no_grad():
        target = GraphModule(teacher).eval()(x, [logits_tensor(teacher)])[0].reshape(len(x), -1)
    logit_var = max(float(target.var()), 1e-12)
    y = torch.tensor(labels, dtype=torch.long) if labels is not None else None
    model, tap = GraphModule(student), logits_tensor(student)
    order = torch.randperm(len(x))
    held, train = order[:len(x) // 10], order[len(x) // 10:]
    held = held if len(held) else train   # too few samples to spare: judge on the training ones

    def loss_on(idx):
        out = model(x[idx], [tap])[0].reshape(len(idx), -1)
        return distillation_loss(out, target[idx], logit_var, temperature, None if y is None else y[idx])

    def held_loss():
        with torch.no_grad():
            return sum(float(loss_on(idx)) * len(idx) for idx in held.split(batch)) / len(held)

    optimizer = torch.optim.Adam(relative_rates(model, lr))
    steps = epochs * math.ceil(len(train) / batch)
    warmup = max(1, steps // 10)
    schedule = torch.optim.lr_scheduler.LambdaLR(
        optimizer, lambda step: min(1.0, (step + 1) / warmup) * 0.5 * (1 + math.cos(math.pi * step / steps)))
    best_loss, best_state = held_loss(), {k: v.clone() for k, v in model.state_dict().items()}
    for epoch in range(epochs):
        for idx in train[torch.randperm(len(train))].split(batch):
            loss = loss_on(idx)
            optimizer.zero_grad()
            loss.backward()
            optimizer.step()
            schedule.step()
        current = held_loss()
        if current < best_loss:
            best_loss, best_state = current, {k: v.clone() for k, v in model.state_dict().items()}
        if progress:
            progress(epoch + 1, epochs, f"(loss {current:.4g})")
    model.load_state_dict(best_state)
    return model.write_back()
