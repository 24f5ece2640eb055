"""Mixed precision (HAQ-style, measured sensitivity, no retraining): per-layer weight bit widths
8, 4 or 2 for conv, depthwise and fully-connected layers and, when asked, 4-bit activations
(outputs of those layers, held in int8 and clamped to [-8, 7]), chosen under a budget on weight
bytes (packed, as in flash) or on BitOPs (MACs x weight bits x input activation bits).

Sensitivity of a layer's weights (or of an activation) at b bits: the float model's output with
only those weights quantized to b bits (per channel, least-squares clipping, as quantize_weights
does), or only that activation fake-quantized to b bits over its calibrated range, against the
float output on calibration samples, as mean squared error relative to the output's variance.
The search starts from int8 everywhere and takes, one step at a time (weights 8 -> 4 -> 2,
activations 8 -> 4), the step that adds the least sensitivity per byte (or BitOP) saved, until
the budget holds.
"""
from __future__ import annotations

from dataclasses import dataclass, replace

import numpy as np

from toolchain.errors import UserError
from toolchain.float_reference import run_float
from toolchain.ir import Graph
from toolchain.ops import macs, op_def, weighted
from toolchain.packing import packed_bytes, weight_range

from .ptq import four_bit_candidates, propagate_bits, quantize_weights
from .ranges import affine_params

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
    return [Layer(i, op.inputs[1], graph.tensors[op.inputs[1]].size, macs(graph, op))
            for i, op in enumerate(graph.ops) if weighted(op)]


def weight_bytes(layers: list[Layer], bits: dict[str, int]) -> int:
    return sum(packed_bytes(layer.count, bits.get(layer.weights, 8)) for layer in layers)


def bitops(graph: Graph, bits: dict[str, int], ops=None) -> int:
    """MACs x weight bits x input activation bits over every op (or the op indices `ops`), each
    once (8 bits unless `bits` says otherwise; ops without weights count 8 bits for them)."""
    bits = propagate_bits(graph, bits)
    return sum(macs(graph, op) * bits.get(op.inputs[0], ACTIVATION_BITS) *
               (bits.get(op.inputs[1], 8) if weighted(op) else 8)
               for i, op in enumerate(graph.ops) if ops is None or i in ops)


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
        name = op.inputs[1] if weighted(op) else None
        if name in bits:
            w = graph.tensors[name].data
            axis = op_def(op.kind).weights.quant_axis
            q, scales = quantize_weights(w, axis, None, 1.0, bits[name])
            shape = [1] * w.ndim
            if axis is not None:
                shape[axis] = -1
            tensors[name] = replace(tensors[name], data=(q * scales.reshape(shape)).astype(np.float32))
    return Graph(tensors, graph.ops, graph.inputs, graph.outputs)


def fake_quantized_activation(name: str, value_range: tuple[float, float], bits: int):
    """A run_float hook: activation `name` on the grid of `bits` bits over its range."""
    scale, zp = affine_params(*value_range, bits)
    lo, hi = -(1 << (bits - 1)), (1 << (bits - 1)) - 1

    def after(tensor, value):
        if tensor != name:
            return value
        return ((np.clip(np.round(value / scale) + zp, lo, hi) - zp) * scale).astype(np.float32)
    return after


def _outputs(graph: Graph, samples: np.ndarray, after=None) -> np.ndarray:
    shape = graph.tensors[graph.inputs[0]].shape
    return np.stack([np.concatenate([o.reshape(-1) for o in run_float(graph, [x.reshape(shape)], after=after)])
                     for x in samples])


def layer_sensitivity(graph: Graph, samples: np.ndarray, ranges: dict | None = None,
                      progress=None) -> dict[str, dict[int, float]]:
    """weight tensor (or activation) -> {bits: relative output MSE with only it at those bits};
    activations (four_bit_candidates) only when their calibrated `ranges` are given."""
    samples = samples[:SENSITIVITY_SAMPLES]
    reference = _outputs(graph, samples)
    variance = max(float(reference.var()), 1e-12)
    trials = [(layer.weights, b) for layer in weight_layers(graph) for b in (4, 2)]
    if ranges is not None:
        trials += [(name, 4) for name in four_bit_candidates(graph)]
    result = {}
    for done, (name, b) in enumerate(trials, 1):
        if graph.tensors[name].is_const:
            out = _outputs(fake_quantized(graph, {name: b}), samples)
        else:
            out = _outputs(graph, samples, fake_quantized_activation(name, ranges[name], b))
        result.setdefault(name, {8: 0.0})[b] = float(((out - reference) ** 2).mean()) / variance
        if progress:
            progress(done, len(trials))
    return result


def search_bits(graph: Graph, sensitivity: dict[str, dict[int, float]], kind: str, value: float) -> dict[str, int]:
    """Greedy: lower the layer whose next step costs the least sensitivity per unit saved until the
    budget holds. Returns weight tensor -> bits (every weighted layer)."""
    layers = weight_layers(graph)
    bits = dict.fromkeys(sensitivity, 8)
    int8_bytes = weight_bytes(layers, {})

    def cost(b):
        return weight_bytes(layers, b) if kind == "weight_fraction" else bitops(graph, b)
    limit = value * int8_bytes if kind == "weight_fraction" else value
    while cost(bits) > limit:
        best = None
        for order, name in enumerate(sensitivity):
            now = bits[name]
            if LOWER.get(now) not in sensitivity[name]:
                continue
            trial = {**bits, name: LOWER[now]}
            saved = cost(bits) - cost(trial)
            if saved <= 0:
                continue
            extra = max(sensitivity[name][LOWER[now]] - sensitivity[name][now], 0.0)
            key = (extra / saved, order)
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


@dataclass(frozen=True)
class BitChoice:
    bits: dict[str, int]     # weight tensor (or activation) -> 8, 4 or 2
    report: dict             # the search's record (report.json precision.search)


def choose_bits(graph: Graph, samples: np.ndarray, kind: str, value: float, ranges: dict | None = None,
                progress=None) -> BitChoice:
    """The bits per weight tensor (and, given the calibrated `ranges`, per 4-bit-capable
    activation) under the budget, and the search's record for the report."""
    sensitivity = layer_sensitivity(graph, samples, ranges, progress)
    bits = search_bits(graph, sensitivity, kind, value)
    return BitChoice(bits, {"budget": {kind: value}, "sensitivity_samples": min(len(samples), SENSITIVITY_SAMPLES),
                            "sensitivity": {name: {str(b): s for b, s in v.items()}
                                            for name, v in sensitivity.items()}})


def apply_bits(graph: Graph, bits: dict[str, int]) -> Graph:
    """Mark the tensors of an int8 graph (e.g. read back from its TFLite file) with their bit
    widths (weights: their values must lie in the range; activations: int8 held values)."""
    tensors = dict(graph.tensors)
    for name, b in bits.items():
        if b == 8:
            continue
        if name not in tensors or tensors[name].quant is None or tensors[name].dtype != "int8":
            raise UserError(f"mixed precision: no int8 tensor '{name}' in the quantized model")
        t = tensors[name]
        if t.is_const:
            lo, hi = weight_range(b)
            if t.data.min() < lo or t.data.max() > hi:
                raise UserError(f"mixed precision: '{name}' has values outside the {b}-bit range [{lo}, {hi}]")
        tensors[name] = replace(t, quant=replace(t.quant, bits=b))
    return Graph(tensors, graph.ops, graph.inputs, graph.outputs)


def precision_report(graph: Graph, stage_ops=None) -> dict:
    """Per weighted layer of an int8 graph: bits, weight bytes (packed) against int8, MACs, BitOPs;
    with `stage_ops` (a patch stage's op indices), its BitOPs against int8, each op once."""
    rows = []
    for i, op in enumerate(graph.ops):
        if not weighted(op):
            continue
        t = graph.tensors[op.inputs[1]]
        b = t.quant.bits if t.quant is not None else 8
        x = graph.tensors[op.inputs[0]]
        a = x.quant.bits if x.quant is not None else ACTIVATION_BITS
        count = macs(graph, op)
        rows.append({"index": i, "op": op.kind, "name": op.name, "weight_bits": b,
                     "activation_bits": a, "weight_bytes": packed_bytes(t.size, b),
                     "int8_weight_bytes": t.size, "macs": count, "bitops": count * b * a})
    packed = sum(r["weight_bytes"] for r in rows)
    int8 = sum(r["int8_weight_bytes"] for r in rows)
    bits = {name: t.quant.bits for name, t in graph.tensors.items() if t.quant is not None and t.quant.bits < 8}
    return {"layers": rows, "weight_bytes": packed, "int8_weight_bytes": int8,
            "weight_fraction": round(packed / int8, 4) if int8 else 1.0,
            "four_bit_activations": sorted(n for n in bits if not graph.tensors[n].is_const),
            "bitops": bitops(graph, bits),
            "patch_stage": None if stage_ops is None else {"bitops": bitops(graph, bits, stage_ops),
                                                           "int8_bitops": bitops(graph, {}, stage_ops)}}
