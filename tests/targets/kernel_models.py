"""Random int8 graphs for the kernel tests: many small independent ops in one graph (one C build
per target and kernel flavour), with per-channel quantization, odd channel counts, strides 1
and 2, 'same', 'valid' and folded explicit padding, and activations that do and do not clamp
at the output zero point. Each case is one op from its own graph input to its own output."""
from __future__ import annotations

import math
from pathlib import Path

import numpy as np

from patch_inference.schedule import build_schedule, inplace_kind, make_stage
from targets import build as target_build
from targets.c_emitter import emit_c_project
from toolchain.ir import Graph, Op, QuantParams, Tensor
from toolchain.ops.choice import PORTABLE as PORTABLE_KERNELS
from toolchain.reference import run_reference

PORTABLE = "-DTDK_PORTABLE_KERNELS"


def _q(scale, zero_point, axis=None) -> QuantParams:
    scale = np.atleast_1d(np.asarray(scale, np.float32))
    return QuantParams(scale, np.zeros(scale.shape, np.int64) + zero_point, axis)


def _out_size(size, k, stride, dilation, padding):
    effective = (k - 1) * dilation + 1
    if padding == "same":
        return -(-size // stride)
    return -(-(size - effective + 1) // stride)


class Builder:
    """Collects cases (ops with their tensors) into one graph."""

    def __init__(self, seed: int):
        self.rng = np.random.default_rng(seed)
        self.tensors: dict[str, Tensor] = {}
        self.ops: list[Op] = []
        self.inputs: list[str] = []
        self.outputs: list[str] = []

    def _input(self, shape, x=None) -> str:
        if x is not None:
            return x
        name = f"x{len(self.inputs)}"
        zp = int(self.rng.integers(-128, 128))
        self.tensors[name] = Tensor(name, tuple(shape), "int8", quant=_q(self.rng.uniform(0.02, 0.08), zp))
        self.inputs.append(name)
        return name

    def _const(self, data, dtype, quant=None) -> str:
        name = f"c{len(self.tensors)}"
        self.tensors[name] = Tensor(name, data.shape, dtype, data=data, quant=quant)
        return name

    def _output(self, shape, real_std: float, activation, output: bool) -> str:
        """An output quantized so that values spread over the int8 range (relu outputs start at
        the zero point, as converters make them); a graph output, or an intermediate."""
        name = f"y{len(self.ops)}"
        scale = real_std / 40.0
        zp = -128 if activation in ("relu", "relu6") and self.rng.random() < 0.5 else int(self.rng.integers(-40, 40))
        self.tensors[name] = Tensor(name, tuple(shape), "int8", quant=_q(scale, zp))
        if output:
            self.outputs.append(name)
        return name

    def conv(self, n_h_w_c, out_c, k, stride=1, padding="same", dilation=1, activation=None,
             depthwise=False, per_channel=True, fold=None, gain=1.0, x=None, output=True) -> str:
        """conv2d (or depthwise with multiplier out_c / in_c) reading a new graph input, or
        tensor x; fold: explicit ((t, b), (l, r)) padding folded into a 'valid' conv, as
        fold_pad_into_conv leaves it. Returns the output tensor's name."""
        n, h, w, c = n_h_w_c
        kh, kw = (k, k) if isinstance(k, int) else k
        sh, sw = (stride, stride) if isinstance(stride, int) else stride
        dh, dw = (dilation, dilation) if isinstance(dilation, int) else dilation
        x = self._input((n, h, w, c), x)
        ph, pw = (h, w) if fold is None else (h + sum(fold[0]), w + sum(fold[1]))
        pad_mode = padding if fold is None else "valid"
        oh, ow = _out_size(ph, kh, sh, dh, pad_mode), _out_size(pw, kw, sw, dw, pad_mode)
        channels = out_c
        w_shape = (1, kh, kw, out_c) if depthwise else (out_c, kh, kw, c)
        wq = self.rng.integers(-127, 128, size=w_shape).astype(np.int8)
        w_scale = self.rng.uniform(0.005, 0.02, size=channels if per_channel else 1)
        weights = self._const(wq, "int8", _q(w_scale, 0, 3 if depthwise else 0))
        in_scale = self.tensors[x].scale()
        b_scale = (in_scale * w_scale).astype(np.float32)
        bias = self._const(self.rng.integers(-3000, 3000, size=channels).astype(np.int32), "int32",
                           _q(np.broadcast_to(b_scale, (channels,)), 0, 0))
        taps = kh * kw * (1 if depthwise else c)
        std = in_scale * float(np.mean(w_scale)) * 73 * 73 * math.sqrt(taps) * gain
        y = self._output((n, oh, ow, out_c), std, activation, output)
        attrs = {"stride": (sh, sw), "dilation": (dh, dw), "padding": pad_mode,
                 "activation": activation}
        if fold is not None:
            attrs["folded_pad"] = fold
        self.ops.append(Op("depthwise_conv2d" if depthwise else "conv2d", [x, weights, bias], [y], attrs,
                           name=f"case{len(self.ops)}"))
        return y

    def fully_connected(self, batches, depth, units, activation=None, per_channel=False):
        x = self._input((batches, depth))
        wq = self.rng.integers(-127, 128, size=(units, depth)).astype(np.int8)
        w_scale = self.rng.uniform(0.005, 0.02, size=units if per_channel else 1)
        weights = self._const(wq, "int8", _q(w_scale, 0, 0 if per_channel else None))
        in_scale = self.tensors[x].scale()
        bias = self._const(self.rng.integers(-3000, 3000, size=units).astype(np.int32), "int32",
                           _q(np.broadcast_to((in_scale * w_scale).astype(np.float32), (units,)), 0, 0))
        y = self._output((batches, units), in_scale * float(np.mean(w_scale)) * 73 * 73 * math.sqrt(depth),
                         activation, True)
        self.ops.append(Op("fully_connected", [x, weights, bias], [y], {"activation": activation},
                           name=f"case{len(self.ops)}"))

    def graph(self) -> Graph:
        return Graph(dict(self.tensors), list(self.ops), list(self.inputs), list(self.outputs))


def random_feeds(graph: Graph, count: int, seed: int) -> list[np.ndarray]:
    rng = np.random.default_rng(seed)
    return [np.concatenate([rng.integers(-128, 128, size=graph.tensors[n].size).astype(np.int8)
                            for n in graph.inputs]) for _ in range(count)]


def expected_outputs(graph: Graph, flat: np.ndarray) -> bytes:
    feeds, pos = [], 0
    for name in graph.inputs:
        t = graph.tensors[name]
        feeds.append(flat[pos:pos + t.size].reshape(t.shape))
        pos += t.size
    return b"".join(np.ascontiguousarray(o).tobytes() for o in run_reference(graph, feeds))


def schedules(graph: Graph, inplace: bool, profile=PORTABLE_KERNELS):
    """Layer by layer: every op out of place, or every op that can run in place in place; with
    the working buffers of a target's kernels (profile)."""
    if not inplace:
        return build_schedule(graph, None, inplace=False, profile=profile)
    modes = {i: found for i in range(len(graph.ops)) if (found := inplace_kind(graph, i))}
    return build_schedule(graph, None, inplace=modes, profile=profile)


def patched_schedule(graph: Graph, first: int, last: int, grid: int, profile=PORTABLE_KERNELS):
    return build_schedule(graph, make_stage(graph, first, last, grid), inplace=False, profile=profile)


def run_c(schedule, out_dir: Path, target: str, feeds: list[np.ndarray], cflags: str = "") -> list[bytes]:
    """Emit, build and run; the outputs of every input, as bytes."""
    emit_c_project(schedule, out_dir / "c", feeds)
    elf = target_build.build(out_dir / "c", target, out_dir / "build", cflags)
    result = target_build.run(target, elf)
    return [result.outputs.get(i) for i in range(len(feeds))]
