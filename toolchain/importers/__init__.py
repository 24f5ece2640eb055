"""Importers turn model files into the IR. Each fails with one UserError line, never a traceback.

load_model is the door every model file comes through: the file is checked before it is read
(safe_files: regular file, size limit, zip central directory), the importer checks what it
reads (flatbuffer bounds, ONNX's checkers, PyTorch/Keras in a child process), and the graph it
builds passes the IR checks (validate.check_graph) before any stage sees it."""
import os
import stat
from pathlib import Path

from ..errors import UserError, quoted
from ..ir import Graph
from ..read_policy import DEFAULT_POLICY, ReadPolicy
from ..safe_files import check_regular_file, check_size, check_zip, read_file, read_header
from ..validate import check_graph

HDF5_MAGIC = b"\x89HDF\r\n\x1a\n"
FORMATS = ("TFLite (.tflite), ONNX (.onnx), PyTorch (TorchScript .pt, ExportedProgram .pt2, pickled module), "
           "Keras (.h5, .keras) or a TensorFlow SavedModel folder")


def first_line(exc: Exception) -> str:
    """A framework's exception as one short line for a UserError."""
    text = str(exc).strip()
    return text.splitlines()[0][:200] if text else type(exc).__name__


def _framework(module: str, what: str):
    """Import an importer module whose framework may be missing: say so in one line."""
    import importlib
    try:
        return importlib.import_module(f".{module}", __name__)
    except ImportError as exc:
        raise UserError(f"reading {what} needs the '{exc.name}' package "
                        f"(pip install 'tinydeploy[frameworks]')") from None


def load_model(path: str | Path, input_shape: tuple[int, ...] | None = None,
               policy: ReadPolicy = DEFAULT_POLICY) -> Graph:
    """Import a model file, recognised by its contents (extension only for ONNX), or say why not.

    `input_shape` is for PyTorch files that record none (scripted or pickled modules)."""
    path = Path(path)
    return check_graph(_import(path, input_shape, policy), str(path), policy)


def _import(path: Path, input_shape, policy: ReadPolicy) -> Graph:
    try:
        is_dir = stat.S_ISDIR(os.stat(path).st_mode)
    except OSError:
        is_dir = False
    if is_dir:
        marker = path / "saved_model.pb"
        if not marker.exists():
            raise UserError(f"{path}: is a directory but not a TensorFlow SavedModel (no saved_model.pb)")
        check_size(marker, check_regular_file(marker, "SavedModel graph").st_size, policy.max_file_bytes)
        if input_shape is not None:
            raise UserError(f"{path}: --input-shape is only for PyTorch files that record no input shape")
        return _framework("keras", "a SavedModel").import_saved_model(path, policy)
    st = check_regular_file(path, "model file")
    check_size(path, st.st_size, policy.max_file_bytes, "model file")
    if st.st_size == 0:
        raise UserError(f"{quoted(path)}: empty file")
    header = read_header(path, 8)
    torch_names = None
    if header[:4] == b"PK\x03\x04":
        from .torch import is_torch_archive
        names = check_zip(path, policy)
        if is_torch_archive(names):
            torch_names = names
        elif "config.json" in names and "model.weights.h5" in names:
            if input_shape is not None:
                raise UserError(f"{path}: --input-shape is only for PyTorch files that record no input shape")
            return _framework("keras", "a .keras model").import_keras(path, policy)
    if input_shape is not None and torch_names is None:
        raise UserError(f"{path}: --input-shape is only for PyTorch files that record no input shape")
    if torch_names is not None:
        return _framework("torch", "PyTorch models").import_torch(path, torch_names, input_shape, policy)
    if header[4:8] == b"TFL3":
        from .tflite import import_tflite
        return import_tflite(read_file(path, policy, "model file"), str(path), policy)
    if header[:8] == HDF5_MAGIC:
        return _framework("keras", "a Keras .h5 model").import_keras(path, policy)
    if path.suffix.lower() == ".onnx":
        return _framework("onnx", "ONNX models").import_onnx(read_file(path, policy, "model file"), str(path), policy)
    raise UserError(f"{path}: not a model tinydeploy can read (expected {FORMATS})")
