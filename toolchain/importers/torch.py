"""PyTorch -> IR through ONNX: TorchScript (torch.jit.save), ExportedProgram (torch.export.save,
.pt2) or a whole pickled module (torch.save(model)) is exported with the TorchScript-based ONNX
exporter (dynamo=False; dynamo=True needs onnxscript) and read by the ONNX importer.

A pickled module is unpickled with weights_only=False, which runs code from the file: convert only
files you trust (a state_dict is recognised first without running anything)."""
from __future__ import annotations

import io
import warnings
from pathlib import Path

from ..errors import UserError
from ..ir import Graph
from . import first_line

OPSET = 17


def is_torch_archive(names: list[str]) -> bool:
    return any(n.endswith(("/data.pkl", "/archive_format", "/constants.pkl")) for n in names)


def _archive_kind(names: list[str]) -> str:
    if any(n.endswith("/archive_format") for n in names):
        return "ExportedProgram"
    if any(n.endswith("/constants.pkl") for n in names):
        return "TorchScript"
    return "pickle"


def _exported_program(torch, path: Path):
    program = torch.export.load(str(path))
    shapes = []
    user_inputs = set(program.graph_signature.user_inputs)
    for node in program.graph.nodes:
        if node.op == "placeholder" and node.name in user_inputs:
            shape = tuple(node.meta["val"].shape)
            if not all(isinstance(d, int) for d in shape):
                raise UserError(f"{path}: input '{node.name}' has a dynamic shape {list(map(str, shape))} "
                                f"(tinydeploy needs fixed shapes: export without dynamic_shapes)")
            shapes.append(shape)
    return program.module(), shapes


def _torchscript(torch, path: Path):
    module = torch.jit.load(str(path), map_location="cpu", _restore_shapes=True)
    shapes = []
    for value in list(module.graph.inputs())[1:]:  # the first input is the module itself
        sizes = value.type().sizes() if hasattr(value.type(), "sizes") else None
        shapes.append(tuple(sizes) if sizes and all(isinstance(d, int) for d in sizes) else None)
    return module, shapes


def _pickled_module(torch, path: Path):
    try:  # a state_dict loads without running pickled code; say what is missing
        obj = torch.load(str(path), map_location="cpu", weights_only=True)
    except Exception:
        try:
            obj = torch.load(str(path), map_location="cpu", weights_only=False)
        except (AttributeError, ModuleNotFoundError, ImportError) as exc:
            raise UserError(f"{path}: the pickled module's class cannot be imported ({first_line(exc)}); put "
                            f"its Python module on PYTHONPATH or save TorchScript / torch.export instead") from None
    if not isinstance(obj, torch.nn.Module):
        what = "a state_dict (weights without the network)" if isinstance(obj, dict) else type(obj).__name__
        raise UserError(f"{path}: holds {what}; save the whole module, TorchScript (torch.jit.save) "
                        f"or an ExportedProgram (torch.export.save)")
    return obj, [None]


def import_torch(path: Path, names: list[str], input_shape: tuple[int, ...] | None = None) -> Graph:
    try:
        import torch
    except ImportError:
        raise UserError("importing PyTorch models needs torch (see REFERENCE.md for the pinned CPU build)") from None
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # load-time and exporter deprecation and tracer notices
        onnx_bytes = _to_onnx(torch, path, _archive_kind(names), input_shape)
    from .onnx import import_onnx
    return import_onnx(onnx_bytes, str(path))


def _to_onnx(torch, path: Path, kind: str, input_shape) -> bytes:
    try:
        loader = {"ExportedProgram": _exported_program, "TorchScript": _torchscript, "pickle": _pickled_module}[kind]
        module, shapes = loader(torch, path)
    except UserError:
        raise
    except Exception as exc:
        raise UserError(f"{path}: cannot load this {kind} file: {first_line(exc)}") from None
    if input_shape is not None:
        if len(shapes) != 1:
            raise UserError(f"{path}: --input-shape gives one input, the model has {len(shapes)}")
        if shapes[0] is not None and tuple(shapes[0]) != tuple(input_shape):
            raise UserError(f"{path}: the file records input shape {list(shapes[0])}, "
                            f"--input-shape says {list(input_shape)}")
        shapes = [tuple(input_shape)]
    if any(s is None for s in shapes):
        raise UserError(f"{path}: this {kind} file does not record its input shape; pass --input-shape, "
                        f"e.g. --input-shape 1,3,32,32")
    if kind != "ExportedProgram":  # an ExportedProgram keeps the mode it was exported in
        module.eval()
    example = tuple(torch.zeros(s) for s in shapes)
    buffer = io.BytesIO()
    try:
        with torch.no_grad():
            # PRESERVE: an ExportedProgram's module refuses train()/eval(); the others are in eval already.
            torch.onnx.export(module, example, buffer, dynamo=False, opset_version=OPSET,
                              training=torch.onnx.TrainingMode.PRESERVE,
                              input_names=[f"input_{i}" if len(shapes) > 1 else "input" for i in range(len(shapes))])
    except Exception as exc:
        raise UserError(f"{path}: PyTorch's ONNX export failed: {first_line(exc)}") from None
    return buffer.getvalue()
