"""Importers turn model files into the IR. Each fails with one UserError line, never a traceback."""
import zipfile
from pathlib import Path

from ..errors import UserError
from ..ir import Graph

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


def _zip_names(path: Path) -> list[str]:
    try:
        with zipfile.ZipFile(path) as archive:
            return archive.namelist()
    except (zipfile.BadZipFile, OSError):
        return []


def load_model(path: str | Path, input_shape: tuple[int, ...] | None = None) -> Graph:
    """Import a model file, recognised by its contents (extension only for ONNX), or say why not.

    `input_shape` is for PyTorch files that record none (scripted or pickled modules)."""
    path = Path(path)
    if not path.exists():
        raise UserError(f"{path}: no such file")
    if path.is_dir():
        if (path / "saved_model.pb").exists():
            return _framework("keras", "a SavedModel").import_saved_model(path)
        raise UserError(f"{path}: is a directory but not a TensorFlow SavedModel (no saved_model.pb)")
    data = path.read_bytes()
    if len(data) == 0:
        raise UserError(f"{path}: empty file")
    torch_names = None
    if data[:4] == b"PK\x03\x04":
        from .torch import is_torch_archive
        names = _zip_names(path)
        if is_torch_archive(names):
            torch_names = names
        elif "config.json" in names and "model.weights.h5" in names:
            return _framework("keras", "a .keras model").import_keras(path)
    if input_shape is not None and torch_names is None:
        raise UserError(f"{path}: --input-shape is only for PyTorch files that record no input shape")
    if torch_names is not None:
        return _framework("torch", "PyTorch models").import_torch(path, torch_names, input_shape)
    if len(data) >= 8 and data[4:8] == b"TFL3":
        from .tflite import import_tflite
        return import_tflite(data, str(path))
    if data[:8] == HDF5_MAGIC:
        return _framework("keras", "a Keras .h5 model").import_keras(path)
    if path.suffix.lower() == ".onnx":
        return _framework("onnx", "ONNX models").import_onnx(data, str(path))
    raise UserError(f"{path}: not a model tinydeploy can read (expected {FORMATS})")
