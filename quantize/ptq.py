"""Post-training quantization: a float32 graph and per-tensor real ranges -> an int8 graph in
TensorFlow Lite's int8 scheme, which the int8 lowering, reference executor and C emitter run as is.

- weights: symmetric int8 in [-127, 127], per output channel for conv (axis 0, OHWI) and
  depthwise conv (axis 3, 1HWO), per tensor for fully connected; a layer given 4 or 2 bits
  (`weight_bits`) gets symmetric [-7, 7] or [-1, 1] with the clipping of least squared error,
  stored as int8 values with QuantParams.bits (packed only in the C project);
- bias: int32 with scale input_scale * weight_scale (per channel), zero point 0;
- activations: asymmetric int8 over their calibrated range (widened to hold 0);
- ops that move values without computing new ones (pools, reshape, pad, transpose, relu6) keep
  their input's quantization, as TFLite does; softmax outputs 1/256 with zero point -128 (TFLM
  requires it); concatenation inputs share the output's quantization (a free producer adopts it,
  anything else is requantized);
- the float boundary stays: QUANTIZE after each float input, DEQUANTIZE before each output.
"""
from __future__ import annotations

from dataclasses import replace

import numpy as np

from toolchain.errors import UserError
from toolchain.ir import Graph, Op, QuantParams, Tensor
from toolchain.ops import op_def
from toolchain.packing import weight_range

from .ranges import affine_params

INT32_MAX = (1 << 31) - 1
CLIP_RATIOS = np.linspace(0.3, 1.0, 36)   # sub-8-bit: fractions of the peak tried as the clip point


def _interval(params: tuple[float, int]) -> tuple[float, float]:
    scale, zp = params
    return (-128 - zp) * scale, (127 - zp) * scale


def keeps_grid(op) -> bool:
    """The op moves values without computing new ones (pools, pad, reshape, transpose, relu6):
    its int8 output keeps its input's grid, as TFLite does."""
    return op_def(op.kind).grid == "input"


def four_bit_candidates(graph: Graph) -> list[str]:
    """Activations that may be held in 4 bits: outputs of conv, depthwise and fully connected
    layers that are no graph output and reach only ops that take any input grid (not concat's
    shared grid, not softmax) through ops that keep it (pad, reshape, pools, relu6)."""
    def ok(name):
        if name in graph.outputs:
            return False
        for i in graph.consumers(name):
            op = graph.ops[i]
            if not op_def(op.kind).narrow_input or (keeps_grid(op) and not ok(op.outputs[0])):
                return False
        return True
    return [op.outputs[0] for op in graph.ops if op_def(op.kind).weights and ok(op.outputs[0])]


def propagate_bits(graph: Graph, bits: dict[str, int]) -> dict[str, int]:
    """Bit widths per tensor with ops that move values (pad, pools, reshape, ...) passing their
    input's width on to their output."""
    bits = dict(bits)
    for op in graph.ops:
        if keeps_grid(op) and op.inputs[0] in bits:
            bits[op.outputs[0]] = bits[op.inputs[0]]
    return bits


def activation_params(graph: Graph, ranges: dict[str, tuple[float, float]],
                      activation_bits: dict[str, int] | None = None) -> dict[str, tuple[float, int]]:
    """(scale, zero point) of every activation: calibrated (at its bit width, default 8), then
    TFLite's constraints in op order."""
    activation_bits = activation_bits or {}
    params = {name: affine_params(*ranges[name], activation_bits.get(name, 8)) for name in graph.activations()}
    for op in graph.ops:
        out, grid = op.outputs[0], op_def(op.kind).grid
        if grid == "fixed":
            params[out] = op_def(op.kind).fixed_grid
        elif grid == "input":
            params[out] = params[op.inputs[0]]
        elif grid == "shared":
            spans = [_interval(params[n]) for n in op.inputs if not graph.tensors[n].is_const]
            params[out] = affine_params(min(s[0] for s in spans), max(s[1] for s in spans))
            for name in op.inputs:   # a producer free to choose its grid adopts the shared one
                producer = graph.producer(name)
                if (producer is not None and op_def(graph.ops[producer].kind).grid == "own"
                        and graph.consumers(name) == [graph.ops.index(op)] and name not in graph.outputs):
                    params[name] = params[out]
    return params


def _int8_tensor(name: str, shape, params: tuple[float, int], data=None) -> Tensor:
    scale, zp = params
    return Tensor(name, tuple(shape), "int8", data,
                  QuantParams(np.array([scale], np.float32), np.array([zp], np.int64)))


def quantize_weights(w: np.ndarray, axis: int | None, bias: np.ndarray | None, input_scale: float,
                     bits: int = 8):
    """Symmetric weights of `bits` bits (int8 values) and their scales (per channel along `axis`,
    else per tensor). Below 8 bits each channel's clip point is the fraction of its peak with
    the least squared error. A scale grows where the bias would not fit int32 at
    input_scale * weight_scale."""
    w = w.astype(np.float64)
    rows = w.reshape(1, -1) if axis is None else np.moveaxis(w, axis, 0).reshape(w.shape[axis], -1)
    peak = np.abs(rows).max(axis=1)
    qmax = weight_range(bits)[1]   # symmetric: [-127, 127], [-7, 7], [-1, 1]
    scales = np.where(peak > 0, peak / qmax, 1.0)
    if bits < 8:
        trials = np.maximum(scales[:, None] * CLIP_RATIOS[None, :], np.finfo(np.float32).tiny)   # rows x ratios
        q = np.clip(np.round(rows[:, None, :] / trials[..., None]), -qmax, qmax)
        errors = ((q * trials[..., None] - rows[:, None, :]) ** 2).sum(axis=2)
        scales = trials[np.arange(len(rows)), errors.argmin(axis=1)]
    if bias is not None:
        need = np.abs(bias.astype(np.float64)) / (input_scale * INT32_MAX)
        scales = np.maximum(scales, need.max() if axis is None else need)
    scales = scales.astype(np.float32)
    shape = [1] * w.ndim
    if axis is not None:
        shape[axis] = -1
    q = np.clip(np.round(w / scales.astype(np.float64).reshape(shape)), -qmax, qmax).astype(np.int8)
    return q, scales


def quantize_bias(bias: np.ndarray, input_scale: float, weight_scales: np.ndarray, units: int) -> tuple:
    scales = (np.float64(np.float32(input_scale)) * weight_scales.astype(np.float64)).astype(np.float32)
    full = np.broadcast_to(scales, (units,)).astype(np.float64)
    q = np.clip(np.round(bias.astype(np.float64) / full), -INT32_MAX - 1, INT32_MAX).astype(np.int32)
    return q, scales


def check_float(graph: Graph) -> None:
    for name in graph.activations():
        t = graph.tensors[name]
        if t.dtype != "float32" or t.quant is not None:
            raise UserError(f"tensor '{name}' is {t.dtype}{' (quantized)' if t.quant else ''}: "
                            f"post-training quantization starts from a float32 model")
    for op in graph.ops:
        if op.kind in ("quantize", "dequantize"):
            raise UserError(f"op {op.name or op.kind}: the float model already has {op.kind.upper()} ops")
        if op.kind == "pad" and op.attrs.get("pad_value", 0) != 0:
            raise UserError(f"op {op.name or op.kind}: padding with {op.attrs['pad_value']} instead of 0 "
                            f"is not supported for int8")


def quantize_graph(graph: Graph, ranges: dict[str, tuple[float, float]],
                   weight_bits: dict[str, int] | None = None, activation_bits: dict[str, int] | None = None) -> Graph:
    """weight_bits: float weight tensor name -> 8, 4 or 2 (default 8); activation_bits: activation
    (one of four_bit_candidates) -> 8 or 4, held in int8 and clamped to [-8, 7] by its producer."""
    check_float(graph)
    weight_bits = weight_bits or {}
    activation_bits = propagate_bits(graph, activation_bits or {})
    bad = [n for n, b in activation_bits.items() if b < 8 and n not in propagate_bits(
        graph, dict.fromkeys(four_bit_candidates(graph), 4))]
    if bad:
        raise UserError(f"activation(s) {', '.join(bad)}: 4 bits only for conv/depthwise/FC outputs that "
                        f"feed no concat, softmax or graph output")
    params = activation_params(graph, ranges, activation_bits)
    tensors: dict[str, Tensor] = {}
    ops: list[Op] = []
    int8_name: dict[str, str] = {}

    def unique(name: str) -> str:
        base, k = name, 1
        while name in tensors:
            name, k = f"{base}#{k}", k + 1
        return name

    def constant(name: str, data: np.ndarray, dtype: str, scales, zero_points, axis) -> str:
        name = unique(name)
        tensors[name] = Tensor(name, data.shape, dtype, data,
                               QuantParams(np.asarray(scales, np.float32).reshape(-1),
                                           np.asarray(zero_points, np.int64).reshape(-1), axis))
        return name

    for name in graph.inputs:
        t = graph.tensors[name]
        tensors[name] = Tensor(name, t.shape, "float32")
        int8_name[name] = unique(f"{name}_int8")
        tensors[int8_name[name]] = _int8_tensor(int8_name[name], t.shape, params[name])
        ops.append(Op("quantize", [name], [int8_name[name]], {}, name=f"quantize {name}"))

    for op in graph.ops:
        inputs = []
        out = op.outputs[0]
        shared, weights = op_def(op.kind).grid == "shared", op_def(op.kind).weights
        for position, name in enumerate(op.inputs):
            t = graph.tensors[name]
            if not t.is_const:
                inputs.append(_requantized(int8_name[name], params[out], tensors, ops, unique)
                              if shared else int8_name[name])
            elif weights and position == 1:
                in_scale = params[op.inputs[0]][0]
                bias = graph.tensors[op.inputs[2]].data if len(op.inputs) > 2 else None
                bits = weight_bits.get(name, 8)
                q, w_scales = quantize_weights(t.data, weights.quant_axis, bias, in_scale, bits)
                inputs.append(constant(name, q, "int8", w_scales, np.zeros(w_scales.size), weights.quant_axis))
                tensors[inputs[-1]].quant.bits = bits
            elif weights and position == 2:
                w_q = tensors[inputs[1]]
                q, b_scales = quantize_bias(t.data, params[op.inputs[0]][0], w_q.quant.scale, t.shape[0])
                inputs.append(constant(name, q, "int32", b_scales, np.zeros(b_scales.size),
                                       0 if b_scales.size > 1 else None))
            else:  # an operand of add/mul/concat: per-tensor, the concat's own grid
                p = params[out] if shared else affine_params(float(t.data.min()), float(t.data.max()))
                q = np.clip(np.round(t.data / p[0]) + p[1], -128, 127).astype(np.int8)
                inputs.append(constant(name, q, "int8", [p[0]], [p[1]], None))
        int8_name[out] = unique(f"{out}_int8") if out in graph.outputs else out
        tensors[int8_name[out]] = _int8_tensor(int8_name[out], graph.tensors[out].shape, params[out])
        tensors[int8_name[out]].quant.bits = activation_bits.get(out, 8)
        # PAD's value is 0.0 in float and the zero point (the default) in int8
        attrs = {k: v for k, v in op.attrs.items() if not (op.kind == "pad" and k == "pad_value")}
        ops.append(replace(op, inputs=inputs, outputs=[int8_name[out]], attrs=attrs))

    for name in graph.outputs:
        tensors[name] = Tensor(name, graph.tensors[name].shape, "float32")
        ops.append(Op("dequantize", [int8_name[name]], [name], {}, name=f"dequantize {name}"))
    return Graph(tensors=tensors, ops=ops, inputs=list(graph.inputs), outputs=list(graph.outputs))


def _requantized(name: str, want: tuple[float, int], tensors, ops, unique) -> str:
    t = tensors[name]
    if (t.scale(), t.zero_point()) == (float(np.float32(want[0])), want[1]):
        return name
    new = unique(f"{name}/requantized")
    tensors[new] = _int8_tensor(new, t.shape, want)
    ops.append(Op("quantize", [name], [new], {}, name=f"requantize {name}"))
    return new
