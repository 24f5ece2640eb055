"""Float graph clean-ups for importers whose source format keeps every layer apart (ONNX, PyTorch):
batch norm folded into the convolution before it, activations fused into their producer, and
reshapes that change nothing dropped. Each pass is Graph -> Graph and keeps every float output."""
from __future__ import annotations

from dataclasses import replace

import numpy as np

from ..ir import Graph, Op, Tensor
from ..ops import is_convolution, op_def


def _sole_consumer(graph: Graph, ops: list[Op], name: str) -> Op | None:
    users = [op for op in ops if name in op.inputs]
    return users[0] if len(users) == 1 and name not in graph.outputs else None


def _without(graph: Graph, ops: list[Op], extra: dict[str, Tensor] | None = None) -> Graph:
    tensors = {**graph.tensors, **(extra or {})}
    used = set(graph.inputs) | set(graph.outputs) | {n for op in ops for n in op.inputs + op.outputs}
    return Graph(tensors={n: t for n, t in tensors.items() if n in used}, ops=ops,
                 inputs=list(graph.inputs), outputs=list(graph.outputs))


def is_channel_affine(graph: Graph, op: Op) -> bool:
    """A 1x1, stride-1 depthwise convolution without activation: y = x * scale[c] + shift[c]
    (how importers express a batch norm that follows no convolution)."""
    if op.kind != "depthwise_conv2d" or op.attrs.get("activation") or "folded_pad" in op.attrs:
        return False
    w = graph.tensors[op.inputs[1]]
    x = graph.tensors[op.inputs[0]]
    return (w.is_const and w.shape[1:3] == (1, 1) and op.attrs["stride"] == (1, 1)
            and w.shape[3] == x.shape[3] and len(op.inputs) > 2)


def fold_batch_norm(graph: Graph) -> Graph:
    """conv/depthwise conv (no activation) -> per-channel affine: scale the weights, shift the bias."""
    ops, extra = list(graph.ops), {}
    for affine in [op for op in graph.ops if is_channel_affine(graph, op)]:
        producer = next((op for op in ops if affine.inputs[0] in op.outputs), None)
        if (producer is None or not is_convolution(producer)
                or producer.attrs.get("activation") or _sole_consumer(graph, ops, affine.inputs[0]) is not affine):
            continue
        scale = graph.tensors[affine.inputs[1]].data.reshape(-1).astype(np.float64)
        shift = graph.tensors[affine.inputs[2]].data.astype(np.float64)
        w = {**graph.tensors, **extra}[producer.inputs[1]]
        b = {**graph.tensors, **extra}[producer.inputs[2]]
        axis_shape = [1, 1, 1, 1]
        axis_shape[op_def(producer.kind).weights.out_axis] = -1
        new_w = Tensor(f"{w.name}/bn", w.shape, "float32",
                       (w.data.astype(np.float64) * scale.reshape(axis_shape)).astype(np.float32))
        new_b = Tensor(f"{b.name}/bn", b.shape, "float32",
                       (b.data.astype(np.float64) * scale + shift).astype(np.float32))
        extra.update({new_w.name: new_w, new_b.name: new_b})
        ops[ops.index(producer)] = replace(producer, inputs=[producer.inputs[0], new_w.name, new_b.name],
                                           outputs=list(affine.outputs))
        ops.remove(affine)
    return graph if not extra else _without(graph, ops, extra)


def fuse_activations(graph: Graph) -> Graph:
    """relu/relu6 whose input comes only from an op that can clamp its own output: fuse it there."""
    ops = list(graph.ops)
    for act in [op for op in graph.ops if op.kind in ("relu", "relu6")]:
        producer = next((op for op in ops if act.inputs[0] in op.outputs), None)
        if (producer is None or not op_def(producer.kind).fuses_activation or producer.attrs.get("activation")
                or _sole_consumer(graph, ops, act.inputs[0]) is not act):
            continue
        ops[ops.index(producer)] = replace(producer, outputs=list(act.outputs),
                                           attrs={**producer.attrs, "activation": act.kind})
        ops.remove(act)
    return graph if len(ops) == len(graph.ops) else _without(graph, ops)


def simplify_reshapes(graph: Graph) -> Graph:
    """A reshape reads straight from the start of a reshape chain (element order never changes),
    a reshape to its input's own shape goes, and so does a reshape nobody reads any more: what
    layout changes of 1-sized axes and Flatten leave behind."""
    ops, rename, source = [], {}, {}
    for op in graph.ops:
        op = replace(op, inputs=[rename.get(n, n) for n in op.inputs])
        if op.kind == "reshape":
            op = replace(op, inputs=[source.get(op.inputs[0], op.inputs[0])])
            if graph.tensors[op.inputs[0]].shape == graph.tensors[op.outputs[0]].shape \
                    and op.outputs[0] not in graph.outputs:
                rename[op.outputs[0]] = op.inputs[0]
                continue
            source[op.outputs[0]] = op.inputs[0]
        ops.append(op)
    read = set(graph.outputs) | {n for op in ops for n in op.inputs}
    kept = [op for op in ops if op.kind != "reshape" or op.outputs[0] in read]
    return graph if kept == list(graph.ops) else _without(graph, kept)


def simplify(graph: Graph) -> Graph:
    return fuse_activations(fold_batch_norm(simplify_reshapes(graph)))
