"""Small Graph -> Graph passes."""
from __future__ import annotations

from dataclasses import replace

from .ir import Graph


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
