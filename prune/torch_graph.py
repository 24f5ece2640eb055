"""A torch executor of a float IR graph, so pruned graphs from every front end can be fine-tuned.

Tensors stay NHWC between ops, as in the IR; convolutions permute to NCHW around torch's conv.
Padding follows the IR's lowering (TFLite SAME/VALID and folded pads)."""
from __future__ import annotations

import numpy as np
import torch
import torch.nn.functional as F
from torch import nn

from toolchain.errors import UserError
from toolchain.ir import Graph
from toolchain.lowering import spatial_geometry

ACT = {None: lambda x: x, "relu": F.relu, "relu6": lambda x: torch.clamp(x, 0.0, 6.0),
       "relu_n1_to_1": lambda x: torch.clamp(x, -1.0, 1.0)}


def _pads(p):
    (kh, kw), (sh, sw), (dh, dw), (pt, pl) = p["filter"], p["stride"], p["dilation"], p["pad"]
    _, ih, iw, _ = p["in_shape"]
    _, oh, ow, _ = p["out_shape"]
    pb = max((oh - 1) * sh + (kh - 1) * dh + 1 - ih - pt, 0)
    pr = max((ow - 1) * sw + (kw - 1) * dw + 1 - iw - pl, 0)
    return (pl, pr, pt, pb)


class GraphModule(nn.Module):
    """forward(x NHWC float batch) -> the graph's outputs (or any tensors named in `taps`)."""

    def __init__(self, graph: Graph):
        super().__init__()
        self.graph = graph
        self.params = nn.ParameterDict()
        self.spatial = {}
        for index, op in enumerate(graph.ops):
            if op.kind in ("conv2d", "depthwise_conv2d", "fully_connected"):
                for role, name in zip(("w", "b"), op.inputs[1:3]):
                    self.params[f"{role}{index}"] = nn.Parameter(torch.tensor(graph.tensors[name].data,
                                                                              dtype=torch.float32))
            if op.kind in ("conv2d", "depthwise_conv2d"):
                shape = graph.tensors[op.inputs[1]].shape
                self.spatial[index] = spatial_geometry(graph, op, shape[1], shape[2])
            elif op.kind in ("avg_pool2d", "max_pool2d"):
                self.spatial[index] = spatial_geometry(graph, op, *op.attrs["filter"])

    def forward(self, x: torch.Tensor, taps: list[str] | None = None):
        g = self.graph
        values = {g.inputs[0]: x}
        for index, op in enumerate(g.ops):
            args = [values[n] for n in op.inputs if not g.tensors[n].is_const]
            values[op.outputs[0]] = self._run(index, op, args)
        names = taps or g.outputs
        return [values[n] for n in names]

    def _run(self, index, op, args):
        act = ACT[op.attrs.get("activation")]
        x = args[0] if args else None
        if op.kind in ("conv2d", "depthwise_conv2d"):
            p = self.spatial[index]
            w = self.params[f"w{index}"]
            b = self.params[f"b{index}"] if f"b{index}" in self.params else None
            xc = F.pad(x.permute(0, 3, 1, 2), _pads(p))
            if op.kind == "conv2d":
                y = F.conv2d(xc, w.permute(0, 3, 1, 2), b, p["stride"], 0, p["dilation"])
            else:
                y = F.conv2d(xc, w.permute(3, 0, 1, 2), b, p["stride"], 0, p["dilation"], groups=xc.shape[1])
            return act(y.permute(0, 2, 3, 1))
        if op.kind == "fully_connected":
            w = self.params[f"w{index}"]
            b = self.params[f"b{index}"] if f"b{index}" in self.params else None
            return act(F.linear(x.reshape(x.shape[0], -1), w, b))
        if op.kind == "add":
            return act(args[0] + args[1])
        if op.kind == "mul":
            return act(args[0] * args[1])
        if op.kind in ("avg_pool2d", "max_pool2d"):
            p = self.spatial[index]
            pads = _pads(p)
            xc = x.permute(0, 3, 1, 2)
            if op.kind == "max_pool2d":
                y = F.max_pool2d(F.pad(xc, pads, value=-np.inf), p["filter"], p["stride"])
            else:
                ones = torch.ones_like(xc[:, :1])
                total = F.avg_pool2d(F.pad(xc, pads), p["filter"], p["stride"], divisor_override=1)
                count = F.avg_pool2d(F.pad(ones, pads), p["filter"], p["stride"], divisor_override=1)
                y = total / count
            return act(y.permute(0, 2, 3, 1))
        if op.kind == "mean":
            return x.mean(dim=[a % x.dim() for a in op.attrs["axes"]], keepdim=op.attrs.get("keep_dims", False))
        if op.kind == "pad":
            widths = [w for pair in reversed(op.attrs["paddings"]) for w in pair]
            return F.pad(x, widths)
        if op.kind == "reshape":
            return x.reshape((x.shape[0],) + tuple(self.graph.tensors[op.outputs[0]].shape[1:]))
        if op.kind == "transpose":
            return x.permute(*op.attrs["perm"])
        if op.kind == "concat":
            return torch.cat(args, dim=op.attrs["axis"])
        if op.kind == "softmax":
            return torch.softmax(x * op.attrs.get("beta", 1.0), dim=-1)
        if op.kind == "relu":
            return F.relu(x)
        if op.kind == "relu6":
            return torch.clamp(x, 0.0, 6.0)
        raise UserError(f"op {op.name or op.kind}: the torch executor has no float '{op.kind}'")

    def write_back(self) -> Graph:
        """The graph with this module's (fine-tuned) weights."""
        from dataclasses import replace
        tensors = dict(self.graph.tensors)
        for index, op in enumerate(self.graph.ops):
            for role, name in zip(("w", "b"), op.inputs[1:3]):
                key = f"{role}{index}"
                if key in self.params:
                    tensors[name] = replace(tensors[name], data=self.params[key].detach().numpy().astype(np.float32))
        return replace(self.graph, tensors=tensors, ops=list(self.graph.ops))
