"""A torch executor of a float IR graph, so pruned graphs from every front end can be fine-tuned.

Tensors stay NHWC between ops, as in the IR; each op runs its definition's torch executor
(toolchain/ops/<op>.py), convolutions permuting to NCHW around torch's conv. Padding follows the
IR's lowering (TFLite SAME/VALID and folded pads)."""
from __future__ import annotations

from dataclasses import replace

import numpy as np
import torch
from torch import nn

from toolchain.errors import UserError
from toolchain.ir import Graph
from toolchain.ops import op_def
from toolchain.ops.base import TorchCall
from toolchain.ops.window import geometry


class GraphModule(nn.Module):
    """forward(x NHWC float batch) -> the graph's outputs (or any tensors named in `taps`)."""

    def __init__(self, graph: Graph):
        super().__init__()
        self.graph = graph
        self.params = nn.ParameterDict()
        self.geometry = {}
        for index, op in enumerate(graph.ops):
            definition = op_def(op.kind)
            if definition.torch is None:
                raise UserError(f"op {op.name or op.kind}: the torch executor has no float '{op.kind}'")
            if definition.weights is not None:
                for role, name in zip(("w", "b"), op.inputs[1:3]):
                    self.params[f"{role}{index}"] = nn.Parameter(torch.tensor(graph.tensors[name].data,
                                                                              dtype=torch.float32))
            if definition.window:
                self.geometry[index] = geometry(graph, op)

    def forward(self, x: torch.Tensor, taps: list[str] | None = None):
        g = self.graph
        values = {g.inputs[0]: x}
        for index, op in enumerate(g.ops):
            args = [values[n] for n in op.inputs if not g.tensors[n].is_const]
            call = TorchCall(op, g.tensors[op.outputs[0]].shape, self.geometry.get(index),
                             self.params[f"w{index}"] if f"w{index}" in self.params else None,
                             self.params[f"b{index}"] if f"b{index}" in self.params else None)
            values[op.outputs[0]] = op_def(op.kind).torch(torch, call, *args)
        names = taps or g.outputs
        return [values[n] for n in names]

    def write_back(self) -> Graph:
        """The graph with this module's (fine-tuned) weights."""
        tensors = dict(self.graph.tensors)
        for index, op in enumerate(self.graph.ops):
            for role, name in zip(("w", "b"), op.inputs[1:3]):
                key = f"{role}{index}"
                if key in self.params:
                    tensors[name] = replace(tensors[name], data=self.params[key].detach().numpy().astype(np.float32))
        return replace(self.graph, tensors=tensors, ops=list(self.graph.ops))
