"""Mixed precision (HAQ-style, measured sensitivity, no retraining): per-layer weight bit widths
8, 4 or 2 for conv, depthwise and fully-connected layers (activations stay int8), chosen under a
budget on weight bytes (packed, as in flash) or on BitOPs (MACs x weight bits x activation bits).

Sensitivity of a layer at b bits: the float model's output with only that layer's weights
quantized to b bits (per channel, least-squares clipping, as quantize_weights does), against
the float output on calibration samples, as mean squared error relative to the output's
variance. The search starts from int8 everywhere and lowers, one step at a time (8 -> 4 -> 2),
the layer whose next step adds the least sensitivity per byte (or BitOP) saved, until the
budget holds.
"""
from __future__ import annotations

from dataclasses import dataclass, replace

import numpy as np

from toolchain.analysis import op_macs
from toolchain.errors import UserError
from toolchain.float_reference import run_float
from toolchain.ir import Graph
from toolchain.packing import packed_bytes, weight_range

from .ptq import WEIGHT_AXIS, quantize_weights

ACTIVATION_BITS = 8
SENSITIVITY_SAMPLES = 64
LOWER = {8: 4, 4: 2}


@dataclass
class Layer:
    index: int          # op index
    weights: str        # weight tensor name
    count: int          # weight values
    macs: int


def weight_layers(graph: Graph) -> list[Layer]:
    return [Layer(i, op.inputs[1], graph.tensors[op.inputs[1]].size, op_macs(graph, op))
            for i, op in enumerate(graph.ops) if op.kind in WEIGHT_AXIS]


def weight_bytes(layers: list[Layer], bits: dict[str, int]) -> int:
    return sum(packed_bytes(layer.count, bits.get(layer.weights, 8)) for layer in layers)


def bitops(graph: Graph, bits: dict[str, int]) -> int:
    """MACs x weight bits x activation bits over every op (ops without weights count 8 x 8)."""
    return sum(op_macs(graph, op) * ACTIVATION_BITS *
               (bits.get(op.inputs[1], 8) if op.kind in WEIGHT_AXIS else 8) for op in graph.ops)


def parse_budget(weight_budget: float | None, budget: str | None) -> tuple[str, float]:
    """--weight-budget F (fraction of the int8 weight bytes) or --budget bitops=N: (kind, value)."""
    if (weight_budget is None) == (budget is None):
        raise UserError("--quant mixed needs one budget: --weight-budget F or --budget bitops=N")
    if weight_budget is not None:
        if not 0 < weight_budget <= 1:
            raise UserError(f"--weight-budget {weight_budget}: expected a fraction of the int8 weight bytes in (0, 1]")
        return "weight_fraction", float(weight_budget)
    kind, _, value = budget.partition("=")
    if kind == "sram":
        raise UserError("--budget sram=BYTES: activations are int8 in mixed precision here, so SRAM does not "
                        "depend on the bit widths; use --weight-budget or --budget bitops=N")
    try:
        number = float(value)
    except ValueError:
        number = -1
    if kind != "bitops" or number <= 0:
        raise UserError(f"--budget '{budget}': expected bitops=N with N > 0 (e.g. bitops=40e6)")
    return "bitops", number


def fake_quantized(graph: Graph, bits: dict[str, int]) -> Graph:
    """The float graph with the named layers' weights quantized to their bits and back."""
    tensors = dict(graph.tensors)
    for op in graph.ops:
        name = op.inputs[1] if op.kind in WEIGHT_AXIS else None
        if name in bits:
            w = graph.tensors[name].data
            q, scales = quantize_weights(w, WEIGHT_AXIS[op.kind], None, 1.0, bits[name])
            shape = [1] * w.ndim
            if WEIGHT_AXIS[op.kind] is not None:
                shape[WEIGHT_AXIS[op.kind]] = -1
            tensors[name] = replace(tensors[name], data=(q * scales.reshape(shape)).astype(np.float32))
    return Graph(tensors, graph.ops, graph.inputs, graph.outputs)


def _outputs(graph: Graph, samples: np.ndarray) -> np.ndarray:
    shape = graph.tensors[graph.inputs[0]].shape
    return np.stack([np.concatenate([o.reshape(-1) for o in run_float(graph, [x.reshape(shape)])])
                     for x in samples])


def layer_sensitivity(graph: Graph, samples: np.ndarray, progress=None) -> dict[str, dict[int, float]]:
    """weight tensor -> {bits: relative output MSE with only that layer at those bits}."""
    samples = samples[:SENSITIVITY_SAMPLES]
    reference = _outputs(graph, samples)
    variance = max(float(reference.var()), 1e-12)
    layers = weight_layers(graph)
    result, done = {}, 0
    for layer in layers:
        result[layer.weights] = {8: 0.0}
        for bits in (4, 2):
            out = _outputs(fake_quantized(graph, {layer.weights: bits}), samples)
            result[layer.weights][bits] = float(((out - reference) ** 2).mean()) / variance
            done += 1
            if progress:
                progress(done, 2 * len(layers))
    return result


def search_bits(graph: Graph, sensitivity: dict[str, dict[int, float]], kind: str, value: float) -> dict[str, int]:
    """Greedy: lower the layer whose next step costs the least sensitivity per unit saved until the
    budget holds. Returns weight tensor -> bits (every weighted layer)."""
    layers = weight_layers(graph)
    bits = {layer.weights: 8 for layer in layers}
    int8_bytes = weight_bytes(layers, bits)

    def cost(b):
        return weight_bytes(layers, b) if kind == "weight_fraction" else bitops(graph, b)
    limit = value * int8_bytes if kind == "weight_fraction" else value
    while cost(bits) > limit:
        best = None
        for layer in layers:
            now = bits[layer.weights]
            if now not in LOWER:
                continue
            trial = {**bits, layer.weights: LOWER[now]}
            saved = cost(bits) - cost(trial)
            if saved <= 0:
                continue
            extra = max(sensitivity[layer.weights][LOWER[now]] - sensitivity[layer.weights][now], 0.0)
            key = (extra / saved, layer.index)
            if best is None or key < best[0]:
                best = (key, trial)
        if best is None:
            floor = cost(bits)
            what = (f"{floor / int8_bytes:.3f} of the int8 weight bytes ({floor} of {int8_bytes} B)"
                    if kind == "weight_fraction" else f"{floor:,} BitOPs")
            raise UserError(f"mixed precision: the budget cannot be met; with every layer at 2 bits the model "
                            f"needs {what}")
        bits = best[1]
    return bits


def choose_weight_bits(graph: Graph, samples: np.ndarray, kind: str, value: float,
                       progress=None) -> tuple[dict[str, int], dict]:
    """The bits per weight tensor under the budget, and the search's record for the report."""
    sensitivity = layer_sensitivity(graph, samples, progress)
    bits = search_bits(graph, sensitivity, kind, value)
    return bits, {"budget": {kind: value}, "sensitivity_samples": min(len(samples), SENSITIVITY_SAMPLES),
                  "sensitivity": {name: {str(b): s for b, s in v.items()} for name, v in sensitivity.items()}}


def apply_weight_bits(graph: Graph, bits: dict[str, int]) -> Graph:
    """Mark the weight tensors of an int8 graph (e.g. read back from its TFLite file) with their
    bit widths; each must hold values in its range."""
    tensors = dict(graph.tensors)
    for name, b in bits.items():
        if b == 8:
            continue
        if name not in tensors or not tensors[name].is_const:
            raise UserError(f"mixed precision: no weight tensor '{name}' in the quantized model")
        t = tensors[name]
        lo, hi = weight_range(b)
        if t.data.min() < lo or t.data.max() > hi:
            raise UserError(f"mixed precision: '{name}' has values outside the {b}-bit range [{lo}, {hi}]")
        tensors[name] = replace(t, quant=replace(t.quant, bits=b))
    return Graph(tensors, graph.ops, graph.inputs, graph.outputs)


def precision_report(graph: Graph) -> dict:
    """Per weighted layer of an int8 graph: bits, weight bytes (packed) against int8, MACs, BitOPs."""
    rows = []
    for i, op in enumerate(graph.ops):
        if op.kind not in WEIGHT_AXIS:
            continue
        t = graph.tensors[op.inputs[1]]
        b = t.quant.bits if t.quant is not None else 8
        macs = op_macs(graph, op)
        rows.append({"index": i, "op": op.kind, "name": op.name, "weight_bits": b,
                     "activation_bits": ACTIVATION_BITS, "weight_bytes": packed_bytes(t.size, b),
                     "int8_weight_bytes": t.size, "macs": macs, "bitops": macs * b * ACTIVATION_BITS})
    packed = sum(r["weight_bytes"] for r in rows)
    int8 = sum(r["int8_weight_bytes"] for r in rows)
    return {"layers": rows, "weight_bytes": packed, "int8_weight_bytes": int8,
            "weight_fraction": round(packed / int8, 4) if int8 else 1.0,
            "bitops": bitops(graph, {op.inputs[1]: graph.tensors[op.inputs[1]].quant.bits
                                     for op in graph.ops if op.kind in WEIGHT_AXIS and graph.tensors[op.inputs[1]].quant})}
