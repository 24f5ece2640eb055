"""Small Graph -> Graph passes."""
from __future__ import annotations

from dataclasses import replace

from .ir import Graph
from .ops import is_convolution


def strip_float_io(graph: Graph) -> Graph:
    """--io int8: drop a float32 QUANTIZE at each input and DEQUANTIZE at each output, so the
    C API takes and returns int8 (the scale and zero point go into model.h)."""
    ops = list(graph.ops)
    inputs, outputs = list(graph.inputs), list(graph.outputs)
    for i, name in enumerate(inputs):
        users = [op for op in ops if name in op.inputs]
        if (len(users) == 1 and users[0].kind == "quantize"
                and graph.tensors[name].dtype == "float32" and name not in outputs):
            ops.remove(users[0])
            inputs[i] = users[0].outputs[0]
    for i, name in enumerate(outputs):
        producer = next((op for op in ops if name in op.outputs), None)
        if (producer is not None and producer.kind == "dequantize"
                and sum(name in op.inputs for op in ops) == 0):
            ops.remove(producer)
            outputs[i] = producer.inputs[0]
    used = set(inputs) | set(outputs) | {n for op in ops for n in op.inputs + op.outputs}
    tensors = {n: t for n, t in graph.tensors.items() if n in used}
    return replace(graph, tensors=tensors, ops=ops, inputs=inputs, outputs=outputs)


def fold_pad_into_conv(graph: Graph) -> Graph:
    """PAD (with the input's zero point) feeding a single conv/depthwise conv becomes that conv's
    own padding. Exact: a padded value contributes (zp - zp) * w = 0, as skipped padding does.
    Saves the padded tensor (MCUNet pads explicitly before its stride-2 depthwise convs)."""
    ops = list(graph.ops)
    for pad in [op for op in graph.ops if op.kind == "pad"]:
        src, padded = graph.tensors[pad.inputs[0]], graph.tensors[pad.outputs[0]]
        users = [op for op in ops if pad.outputs[0] in op.inputs]
        paddings = pad.attrs["paddings"]
        if (len(users) != 1 or not is_convolution(users[0])
                or users[0].inputs[0] != pad.outputs[0] or pad.outputs[0] in graph.outputs
                or len(paddings) != 4 or paddings[0] != (0, 0) or paddings[3] != (0, 0)
                or src.quant is None or padded.quant is None
                or src.scale() != padded.scale() or src.zero_point() != padded.zero_point()
                or pad.attrs.get("pad_value", padded.zero_point()) != padded.zero_point()
                or "folded_pad" in users[0].attrs):
            continue
        conv = users[0]
        folded = replace(conv, inputs=[pad.inputs[0]] + conv.inputs[1:],
                         attrs={**conv.attrs, "folded_pad": (tuple(paddings[1]), tuple(paddings[2]))})
        ops[ops.index(conv)] = folded
        ops.remove(pad)
    if len(ops) == len(graph.ops):
        return graph
    used = set(graph.inputs) | set(graph.outputs) | {n for op in ops for n in op.inputs + op.outputs}
    return replace(graph, tensors={n: t for n, t in graph.tensors.items() if n in used}, ops=ops)
