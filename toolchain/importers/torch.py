"""PyTorch -> IR through ONNX: TorchScript (torch.jit.save), ExportedProgram (torch.export.save,
.pt2) or a whole pickled module (torch.save(model)) is exported with the TorchScript-based ONNX
exporter (dynamo=False; dynamo=True needs onnxscript) and read by the ONNX importer.

Loading and export run in a child process (isolated.py). A pickled whole module only loads by
running code from the file, so it needs the user's --trust-pickle; without it the file is read
with torch's weights-only unpickler (which is how a state_dict is recognised), and an
ExportedProgram's JSON is checked first (torch_check.py)."""
from __future__ import annotations

import io
import math
import re
import warnings
from pathlib import Path

from ..errors import UserError, quoted
from ..ir import Graph
from ..read_policy import DEFAULT_POLICY, ReadPolicy
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


def import_torch(path: Path, names: list[str], input_shape: tuple[int, ...] | None = None,
                 policy: ReadPolicy = DEFAULT_POLICY) -> Graph:
    from .isolated import convert_in_child
    from .onnx import import_onnx
    kind = _archive_kind(names)
    if kind == "ExportedProgram":
        from .torch_check import check_exported_program
        check_exported_program(path, names, policy)
    onnx_bytes = convert_in_child("torch", path, {"kind": kind, "input_shape": input_shape,
                                                  "max_tensor_bytes": policy.max_tensor_bytes}, policy, "PyTorch")
    return import_onnx(onnx_bytes, str(path), policy)


# ---------------------------------------------------------------- in the reader's child process

def _exported_program(torch, path: Path, trust: bool):
    program = torch.export.load(str(path))
    shapes = []
    user_inputs = set(program.graph_signature.user_inputs)
    for node in program.graph.nodes:
        if node.op == "placeholder" and node.name in user_inputs:
            shape = tuple(node.meta["val"].shape)
            if not all(isinstance(d, int) for d in shape):
                raise UserError(f"{path}: input {quoted(node.name)} has a dynamic shape {list(map(str, shape))} "
                                f"(tinydeploy needs fixed shapes: export without dynamic_shapes)")
            shapes.append(shape)
    return program.module(), shapes


def _torchscript(torch, path: Path, trust: bool):
    module = torch.jit.load(str(path), map_location="cpu", _restore_shapes=True)
    shapes = []
    for value in list(module.graph.inputs())[1:]:  # the first input is the module itself
        sizes = value.type().sizes() if hasattr(value.type(), "sizes") else None
        shapes.append(tuple(sizes) if sizes and all(isinstance(d, int) for d in sizes) else None)
    return module, shapes


def _unpickled(torch, path: Path, trust: bool):
    """torch.load with the weights-only unpickler (which runs nothing from the file), and only on
    --trust-pickle the full one that a whole pickled module needs."""
    try:
        return torch.load(str(path), map_location="cpu", weights_only=True)
    except Exception as exc:
        if not isinstance(exc, torch.serialization.pickle.UnpicklingError) and "weights_only" not in str(exc):
            raise
        if not trust:
            found = re.search(r"GLOBAL ([\w.]+)", str(exc))
            what = f" ({quoted(found.group(1))})" if found else ""
            raise UserError(f"{path}: holds a pickled Python object{what}, which only loads by running code "
                            f"from the file; convert it only if you trust its source, with --trust-pickle "
                            f"(or save TorchScript: torch.jit.save, or an ExportedProgram: torch.export.save)") from None
    try:
        return torch.load(str(path), map_location="cpu", weights_only=False)
    except (AttributeError, ModuleNotFoundError, ImportError) as exc:
        raise UserError(f"{path}: the pickled module's class cannot be imported ({first_line(exc)}); put "
                        f"its Python module on PYTHONPATH or save TorchScript / torch.export instead") from None


def _pickled_module(torch, path: Path, trust: bool):
    obj = _unpickled(torch, path, trust)
    if not isinstance(obj, torch.nn.Module):
        what = "a state_dict (weights without the network)" if isinstance(obj, dict) else type(obj).__name__
        raise UserError(f"{path}: holds {what}; save the whole module, TorchScript (torch.jit.save) "
                        f"or an ExportedProgram (torch.export.save)")
    return obj, [None]


LOADERS = {"ExportedProgram": _exported_program, "TorchScript": _torchscript, "pickle": _pickled_module}


def export_onnx(path: Path, options: dict, trust: bool) -> bytes:
    """The file's module exported to ONNX (options: kind, input_shape, max_tensor_bytes)."""
    try:
        import torch
    except ImportError:
        raise UserError("importing PyTorch models needs torch (see REFERENCE.md for the pinned CPU build)") from None
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # load-time and exporter deprecation and tracer notices
        return _to_onnx(torch, path, options["kind"], options["input_shape"], options["max_tensor_bytes"], trust)


def _example_inputs(torch, path: Path, shapes, max_tensor_bytes: int):
    for shape in shapes:
        if not shape or any(d <= 0 for d in shape):
            raise UserError(f"{path}: input shape {list(shape)} must have positive sizes")
        if math.prod(shape) * 4 > max_tensor_bytes:
            raise UserError(f"{path}: input shape {list(shape)} needs {math.prod(shape) * 4:,} B, more than the "
                            f"limit of {max_tensor_bytes:,} B (raise it with --max-tensor-bytes)")
    return tuple(torch.zeros(s) for s in shapes)


def _to_onnx(torch, path: Path, kind: str, input_shape, max_tensor_bytes: int, trust: bool) -> bytes:
    try:
        module, shapes = LOADERS[kind](torch, path, trust)
    except UserError:
        raise
    except MemoryError:
        raise UserError(f"{path}: loading this {kind} file needs more memory than tinydeploy allows a reader") from None
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
    example = _example_inputs(torch, path, shapes, max_tensor_bytes)
    buffer = io.BytesIO()
    try:
        with torch.no_grad():
            # PRESERVE: an ExportedProgram's module refuses train()/eval(); the others are in eval already.
            torch.onnx.export(module, example, buffer, dynamo=False, opset_version=OPSET,
                              training=torch.onnx.TrainingMode.PRESERVE,
                              input_names=[f"input_{i}" if len(shapes) > 1 else "input" for i in range(len(shapes))])
    except UserError:
        raise
    except Exception as exc:
        raise UserError(f"{path}: PyTorch's ONNX export failed: {first_line(exc)}") from None
    return buffer.getvalue()
