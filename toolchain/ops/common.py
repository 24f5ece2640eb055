"""Numerics several op definitions share: the int8 requantization at an op's output, fused
activations in float and in torch, and the TFLite attributes every fused activation has."""
from __future__ import annotations

import numpy as np

from .. import fixedpoint as fp
from ..errors import UserError
from .base import Field

ACTIVATION = {"activation": Field("FusedActivationFunction", "activation", None)}
FLOAT_ACTIVATIONS = {
    None: lambda x: x,
    "relu": lambda x: np.maximum(x, 0.0),
    "relu6": lambda x: np.clip(x, 0.0, 6.0),
    "relu_n1_to_1": lambda x: np.clip(x, -1.0, 1.0),
}


def clamp(x, act, dtype="int8"):
    return np.clip(x, act[0], act[1]).astype(dtype)


def requantize(acc, p):
    """An accumulator onto the output grid: multiplier and shift (per channel), output offset,
    activation clamp."""
    y = fp.multiply_by_quantized_multiplier(acc, p["multiplier"], p["shift"])
    return clamp(y + p["out_zero_point"], p["act"])


def activate(op, x: np.ndarray) -> np.ndarray:
    """The op's fused activation in float."""
    activation = op.attrs.get("activation")
    if activation not in FLOAT_ACTIVATIONS:
        raise UserError(f"op {op.name or op.kind}: unsupported fused activation {activation}")
    return FLOAT_ACTIVATIONS[activation](x)


def float_bias(b, channels: int) -> np.ndarray:
    return np.zeros(channels) if b is None else b.astype(np.float64)


def torch_activate(torch, op, x):
    """The op's fused activation in torch."""
    activation = op.attrs.get("activation")
    if activation is None:
        return x
    if activation == "relu":
        return torch.nn.functional.relu(x)
    bounds = {"relu6": (0.0, 6.0), "relu_n1_to_1": (-1.0, 1.0)}[activation]
    return torch.clamp(x, *bounds)
