"""Importers turn model files into the IR. Each fails with one UserError line, never a traceback."""
from pathlib import Path

from ..errors import UserError
from ..ir import Graph


def load_model(path: str | Path) -> Graph:
    """Import a model file by its contents (TFLite flatbuffer) or say why it can't be read."""
    path = Path(path)
    if not path.exists():
        raise UserError(f"{path}: no such file")
    if path.is_dir():
        raise UserError(f"{path}: is a directory, expected a .tflite model file")
    data = path.read_bytes()
    if len(data) == 0:
        raise UserError(f"{path}: empty file")
    if len(data) >= 8 and data[4:8] == b"TFL3":
        from .tflite import import_tflite
        return import_tflite(data, str(path))
    raise UserError(f"{path}: not a model tinydeploy can read (expected a TFLite flatbuffer, "
                    f"file identifier 'TFL3')")
