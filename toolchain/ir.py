"""The intermediate representation every stage meets at: tensors, ops and a graph.

Shapes are NHWC; weight layouts follow TFLite (conv OHWI, depthwise 1HWO, FC OI) so TFLite
models load without transposes and C kernels read weights in order.
"""
from __future__ import annotations

import math
from dataclasses import dataclass, field

import numpy as np

from .errors import UserError, quoted

DTYPE_BYTES = {"int8": 1, "uint8": 1, "int16": 2, "int32": 4, "int64": 8, "float32": 4}


@dataclass
class QuantParams:
    """Affine quantization: real = scale * (q - zero_point), per tensor or per channel (axis)."""
    scale: np.ndarray
    zero_point: np.ndarray
    axis: int | None = None
    bits: int = 8

    @property
    def per_channel(self) -> bool:
        return self.axis is not None and self.scale.size > 1


@dataclass
class Tensor:
    name: str
    shape: tuple[int, ...]
    dtype: str
    data: np.ndarray | None = None
    quant: QuantParams | None = None

    @property
    def is_const(self) -> bool:
        return self.data is not None

    @property
    def size(self) -> int:
        return math.prod(self.shape)   # exact: a crafted shape cannot wrap around int64

    @property
    def nbytes(self) -> int:
        return self.size * DTYPE_BYTES[self.dtype]

    def scale(self) -> float:
        """Per-tensor scale as TFLite stores it (float32)."""
        return float(np.float32(self.quant.scale.reshape(-1)[0]))

    def zero_point(self) -> int:
        return int(self.quant.zero_point.reshape(-1)[0])


@dataclass
class Op:
    kind: str
    inputs: list[str]
    outputs: list[str]
    attrs: dict = field(default_factory=dict)
    name: str = ""


@dataclass
class Graph:
    tensors: dict[str, Tensor]
    ops: list[Op]
    inputs: list[str]
    outputs: list[str]
    # facts derived from the graph, computed once each (see `derived`)
    _derived: dict = field(default_factory=dict, init=False, repr=False, compare=False)

    def __post_init__(self):
        self.validate()

    def derived(self, kind: str, subject, compute):
        """What `compute()` derives from this graph about `subject`, computed once per graph: an
        object (an op of the graph: its lowering, its in-place kind; a patch stage: its MACs) is
        held by identity with its fact, so another object is never served its fact; a value
        (a tuple such as a stage's (first, last, grid); None: the graph itself) is a key. A graph
        is not changed once built (the passes build new graphs), so the facts cannot go stale."""
        by_identity = not isinstance(subject, (tuple, int, str, type(None)))
        key = (kind, id(subject) if by_identity else subject)
        held = self._derived.get(key)
        if held is None or (by_identity and held[0] is not subject):
            held = self._derived[key] = (subject, compute())
        return held[1]

    def validate(self) -> None:
        """Every op input is a graph input, a constant or produced earlier (so the ops are in
        topological order and there is no cycle); every tensor has at most one producer and
        graph inputs and constants none (kinds: toolchain.ops)."""
        available = set(self.inputs) | {n for n, t in self.tensors.items() if t.is_const}
        for index, op in enumerate(self.ops):
            for name in op.inputs:
                if name not in self.tensors:
                    raise UserError(f"op {index} ({op.kind}): input tensor {quoted(name)} does not exist")
                if name not in available:
                    raise UserError(f"op {index} ({op.kind}): input {quoted(name)} is used before it is produced")
            for name in op.outputs:
                if name not in self.tensors:
                    raise UserError(f"op {index} ({op.kind}): output tensor {quoted(name)} does not exist")
                if name in available:
                    raise UserError(f"op {index} ({op.kind}): output {quoted(name)} is already a graph input, "
                                    f"a constant or another op's output")
                available.add(name)
        for name in self.outputs:
            if name not in available:
                raise UserError(f"graph output {quoted(name)} is never produced")

    def producer(self, name: str) -> int | None:
        for index, op in enumerate(self.ops):
            if name in op.outputs:
                return index
        return None

    def consumers(self, name: str) -> list[int]:
        return [i for i, op in enumerate(self.ops) if name in op.inputs]

    def activations(self) -> list[str]:
        """Non-constant tensors: graph inputs and every op output, in execution order."""
        names = list(self.inputs)
        for op in self.ops:
            names.extend(n for n in op.outputs if n not in names)
        return names
