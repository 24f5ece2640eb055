"""Structured pruning on the IR: dependency groups, importance, selection, recovery.

    pruned = prune_model(graph, ratio=0.5, calib=x)       # remove 50% of the MACs
    pruned = prune_model(graph, budget=("macs", 2e6), ...)  # smallest pruning that fits
    pruned.graph, pruned.report
"""
from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from patch_inference.schedule import search_schedule
from quantize import post_training_quantize
from toolchain.analysis import op_params
from toolchain.errors import UserError
from toolchain.float_reference import run_float
from toolchain.ir import Graph
from toolchain.ops import macs, weighted
from toolchain.passes import fold_pad_into_conv

from .groups import channel_groups, require_float
from .select import graph_macs, prune_to_ratio

BUDGET_KINDS = ("macs", "flash", "sram")


def parse_budget(text: str) -> tuple[str, float]:
    """'macs=2e6', 'flash=200000', 'sram=64k' -> (kind, value)."""
    try:
        kind, value = text.split("=")
        value = value.strip().lower()
        scale = 1024 if value.endswith("k") else 1
        number = float(value.rstrip("k")) * scale
    except ValueError:
        raise UserError(f"--prune-to '{text}': expected macs=N, flash=BYTES or sram=BYTES") from None
    if kind not in BUDGET_KINDS or number <= 0:
        raise UserError(f"--prune-to '{text}': expected macs=N, flash=BYTES or sram=BYTES")
    return kind, number


def int8_flash_bytes(graph: Graph) -> int:
    """Weights as int8 and biases as int32: what the pruned model will put in flash."""
    total = 0
    for op in graph.ops:
        for role, name in enumerate(op.inputs[1:3], start=1):
            t = graph.tensors[name]
            if t.is_const and weighted(op):
                total += t.size * (1 if role == 1 else 4)
    return total


def planned_sram_bytes(graph: Graph, samples: np.ndarray) -> int:
    """Arena of the int8 model's searched schedule: the graph quantized on a few calibration
    samples (the layout does not depend on the values), then planned as convert plans it."""
    quantized = post_training_quantize(graph, samples[:4], "minmax")
    return search_schedule(fold_pad_into_conv(quantized)).plan.arena_bytes


MEASURES = {"macs": lambda g, x: graph_macs(g), "flash": lambda g, x: int8_flash_bytes(g),
            "sram": planned_sram_bytes}


@dataclass(frozen=True)
class Pruned:
    graph: Graph
    report: dict     # what was pruned, per layer and in total (report.json "pruning")


def prune_model(graph: Graph, ratio: float | None = None, budget: tuple[str, float] | None = None,
                importance: str = "l1", calib: np.ndarray | None = None, labels=None,
                epochs: int = 60, round_to: int = 4, floor: float = 0.25, progress=None) -> Pruned:
    """Prune `graph` (float) by a MAC ratio or to a budget, then recover by distillation on
    `calib` when given. progress(epoch, epochs, note): recovery's counter."""
    from .importance import channel_importance   # torch loads when pruning runs, not with every command
    from .recover import recover
    require_float(graph)
    groups = channel_groups(graph)
    if importance == "activation" and calib is None:
        raise UserError("--prune-importance activation needs calibration data (--calib)")
    scores = channel_importance(graph, groups, importance, calib)
    if budget is not None:
        kind, limit = budget
        if kind == "sram" and calib is None:
            raise UserError("--prune-to sram=... needs calibration data (--calib) to plan the int8 model")
        measure = lambda g: MEASURES[kind](g, calib)  # noqa: E731
        if measure(graph) <= limit:
            ratio = 0.0
        else:
            lo, hi = 0.0, 0.95
            for _ in range(12):  # the smallest MAC ratio whose pruned model meets the budget
                mid = (lo + hi) / 2
                if measure(prune_to_ratio(graph, groups, scores, mid, round_to, floor)[0]) <= limit:
                    hi = mid
                else:
                    lo = mid
            ratio = hi
            if measure(prune_to_ratio(graph, groups, scores, ratio, round_to, floor)[0]) > limit:
                raise UserError(f"cannot prune to {kind} <= {limit:,.0f}: the most the per-layer floors "
                                f"allow gives {measure(prune_to_ratio(graph, groups, scores, 0.95, round_to, floor)[0]):,.0f}")
    pruned, keep = prune_to_ratio(graph, groups, scores, ratio or 0.0, round_to, floor)
    if keep and calib is not None and epochs > 0:
        pruned = recover(pruned, graph, calib, labels, epochs=epochs, progress=progress)
    return Pruned(pruned, pruning_report(graph, pruned, ratio or 0.0, importance, calib))


def agreement(before: Graph, after: Graph, samples: np.ndarray, labels=None) -> dict:
    """Top-1 agreement of the pruned float model with the unpruned one on the samples, and both
    accuracies when labels are given."""
    top = lambda g: np.array([int(np.argmax(run_float(g, [x[None]])[0])) for x in samples])
    a, b = top(before), top(after)
    result = {"samples": int(len(samples)), "top1_agreement": float(np.mean(a == b))}
    if labels is not None:
        result["accuracy_unpruned"] = float(np.mean(a == labels))
        result["accuracy_pruned"] = float(np.mean(b == labels))
    return result


def pruning_report(before: Graph, after: Graph, ratio: float, importance: str, calib=None) -> dict:
    layers = []
    for index, (a, b) in enumerate(zip(before.ops, after.ops)):
        if weighted(a):
            layers.append({"index": index, "op": a.kind,
                           "out_channels": [before.tensors[a.outputs[0]].shape[-1], after.tensors[b.outputs[0]].shape[-1]],
                           "params": [op_params(before, a), op_params(after, b)],
                           "macs": [macs(before, a), macs(after, b)]})
    return {"ratio_requested": ratio, "importance": importance,
            "macs": [graph_macs(before), graph_macs(after)],
            "sram_planned_bytes": ([planned_sram_bytes(before, calib), planned_sram_bytes(after, calib)]
                                   if calib is not None else None),
            "params": [sum(op_params(before, o) for o in before.ops), sum(op_params(after, o) for o in after.ops)],
            "int8_flash_bytes": [int8_flash_bytes(before), int8_flash_bytes(after)],
            "layers": layers}
