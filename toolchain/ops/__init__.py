"""The op registry: every op kind tinydeploy runs, one definition each, in one file per op (or per
family: binary, pool2d, quantize, relu). A stage asks `op_def(op.kind)` for what it needs (traits,
lowering, references, MACs, input region, TFLite and torch executors, the C binding) instead of
listing kinds; adding an op is a file here, its template in templates/kernels/ and its test (see
the README, "Adding an op")."""
from __future__ import annotations

from collections.abc import Mapping

from ..errors import UserError
from ..lowering import lowered
from . import (binary, concat, conv2d, depthwise_conv2d, fully_connected, leaky_relu, mean, pad, pool2d,
               quantize, relu, reshape, softmax, transpose)
from .base import Kernel, OpDef

DEFINITIONS: tuple[OpDef, ...] = (
    conv2d.DEFINITION, depthwise_conv2d.DEFINITION, fully_connected.DEFINITION, *binary.DEFINITIONS,
    *pool2d.DEFINITIONS, mean.DEFINITION, pad.DEFINITION, reshape.DEFINITION, transpose.DEFINITION,
    concat.DEFINITION, softmax.DEFINITION, *quantize.DEFINITIONS, *relu.DEFINITIONS, leaky_relu.DEFINITION,
)
REGISTRY: dict[str, OpDef] = {d.kind: d for d in DEFINITIONS}
KERNELS: dict[str, Kernel] = {k.name: k for d in DEFINITIONS for k in d.c.kernels}


def op_def(kind: str) -> OpDef:
    if kind not in REGISTRY:
        raise UserError(f"unknown op kind '{kind}' (known: {', '.join(REGISTRY)})")
    return REGISTRY[kind]


def lower(graph, op) -> Mapping:
    """The op's int8 constants, as TFLM's Prepare computes them (the reference executor and the C
    emitter read the same mapping, so the C code and its oracle cannot disagree about a constant).
    Computed once per graph and op (lowering.lowered)."""
    return lowered(graph, op, op_def(op.kind).lower)


def macs(graph, op) -> int:
    return op_def(op.kind).macs(graph, op)


def weighted(op) -> bool:
    """The op has constant weights at input 1 (conv, depthwise conv, fully connected)."""
    return op_def(op.kind).weights is not None


def is_convolution(op) -> bool:
    """A window op with weights (conv, depthwise conv): it can take over a batch norm after it and
    a zero-point padding before it."""
    definition = op_def(op.kind)
    return definition.window and definition.weights is not None


def prototypes() -> dict[str, str]:
    """templates/kernels/<template>.c.j2 -> the prototypes of the kernels it defines."""
    grouped: dict[str, list[str]] = {}
    for kernel in KERNELS.values():
        grouped.setdefault(kernel.template, []).extend(([kernel.declares] if kernel.declares else [])
                                                       + [kernel.prototype()])
    return {template: "\n".join(lines) for template, lines in grouped.items()}
