"""ONNX's own checkers on a model before the importer reads it, then the sizes they infer.

onnx.checker validates the graph against the operator schemas (arity, attribute types,
topological order, so no cycle); shape inference in strict mode fails on any op whose inputs
contradict it, and gives every intermediate value a shape, which is checked against the read
policy before the importer allocates anything from it. Tensors kept in external files are
refused: their "location" is a path the model file chooses.
"""
from __future__ import annotations

import math

import onnx
from onnx import checker, shape_inference

from ..errors import UserError, quoted
from ..read_policy import ReadPolicy


def _external_tensors(model):
    for init in model.graph.initializer:
        yield init
    for node in model.graph.node:
        for attr in node.attribute:
            if attr.type == onnx.AttributeProto.TENSOR:
                yield attr.t
            yield from attr.tensors


def _first_line(exc: Exception) -> str:
    text = str(exc).strip()
    return text.splitlines()[0][:240] if text else type(exc).__name__


def _check_value_shapes(model, source: str, policy: ReadPolicy) -> None:
    graph = model.graph
    for vi in list(graph.input) + list(graph.value_info) + list(graph.output):
        if not vi.type.HasField("tensor_type") or not vi.type.tensor_type.HasField("shape"):
            continue
        dims = vi.type.tensor_type.shape.dim
        if any(d.HasField("dim_value") and d.dim_value <= 0 for d in dims):
            raise UserError(f"{source}: value {quoted(vi.name)} has an empty or negative dimension "
                            f"{[d.dim_value if d.HasField('dim_value') else d.dim_param for d in dims]}")
        if all(d.HasField("dim_value") for d in dims):
            itemsize = _itemsize(vi.type.tensor_type.elem_type)
            policy.check_tensor_bytes(math.prod(d.dim_value for d in dims) * itemsize,
                                      f"{source}: value {quoted(vi.name)} of shape {[d.dim_value for d in dims]}")
    for init in graph.initializer:
        if any(d < 0 for d in init.dims):
            raise UserError(f"{source}: initializer {quoted(init.name)} has a negative dimension {list(init.dims)}")
        policy.check_tensor_bytes(math.prod(init.dims) * _itemsize(init.data_type),
                                  f"{source}: initializer {quoted(init.name)} of shape {list(init.dims)}")


def _itemsize(elem_type: int) -> int:
    try:
        return onnx.helper.tensor_dtype_to_np_dtype(elem_type).itemsize
    except Exception:   # strings and unknown codes: the importer refuses them by name later
        return 1


def check_onnx(model, source: str, policy: ReadPolicy) -> None:
    """A UserError saying what is wrong with the model, if anything is."""
    for tensor in _external_tensors(model):
        if tensor.data_location == onnx.TensorProto.EXTERNAL:
            raise UserError(f"{source}: tensor {quoted(tensor.name)} keeps its data in an external file "
                            f"(tinydeploy reads self-contained .onnx files)")
    try:
        checker.check_model(model)
    except Exception as exc:   # ValidationError, or a C++ error about an unreadable field
        raise UserError(f"{source}: not a valid ONNX model ({_first_line(exc)})") from None
    try:
        inferred = shape_inference.infer_shapes(model, check_type=True, strict_mode=True, data_prop=True)
    except Exception as exc:   # InferenceError: an op's inputs contradict its schema
        raise UserError(f"{source}: ONNX shape inference fails ({_first_line(exc)})") from None
    _check_value_shapes(inferred, source, policy)
