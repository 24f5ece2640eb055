"""Keras .h5/.keras and TensorFlow SavedModel -> IR, through TensorFlow's own converter to a float
TFLite flatbuffer (then the TFLite importer). Keras models go through a SavedModel
(`model.export`); `from_keras_model` would add SHAPE/PACK ops.

Loading and conversion run in a child process (isolated.py); Keras loads in safe mode, and a
model config with Lambda layers or custom objects is refused unless the user trusts the file
(keras_check.py)."""
from __future__ import annotations

import os
import tempfile
from pathlib import Path

from ..errors import UserError
from ..ir import Graph
from ..read_policy import DEFAULT_POLICY, ReadPolicy
from . import first_line
from .keras_check import check_keras_config
from .tflite import import_tflite


def _tensorflow():
    os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "3")
    try:
        import tensorflow as tf
    except ImportError:
        raise UserError("importing Keras/SavedModel models needs TensorFlow "
                        "(pip install 'tinydeploy[frameworks]')") from None
    return tf


def _depthwise_without_groups(keras):
    """Keras 3 refuses the legacy `groups` argument older .h5 files store for DepthwiseConv2D."""
    class DepthwiseConv2D(keras.layers.DepthwiseConv2D):
        def __init__(self, *args, groups=None, **kwargs):
            super().__init__(*args, **kwargs)
    return DepthwiseConv2D


def saved_model_to_tflite(saved_model_dir: Path, source: str, configure=None) -> bytes:
    """Convert the serving signature with its batch dimension fixed to 1: with an open batch
    dimension, Flatten becomes SHAPE/STRIDED_SLICE/PACK in TFLite. `configure(converter)` may set
    converter options first (the benchmarks ask TensorFlow for its own int8 model this way)."""
    tf = _tensorflow()
    try:
        loaded = tf.saved_model.load(str(saved_model_dir))
    except Exception as exc:
        raise UserError(f"{source}: TensorFlow cannot load this SavedModel: {first_line(exc)}") from None
    if not loaded.signatures:
        raise UserError(f"{source}: the SavedModel has no serving signature")
    signature = loaded.signatures.get("serving_default") or next(iter(loaded.signatures.values()))
    specs = signature.structured_input_signature[1]
    names = sorted(specs)
    fixed = []
    for name in names:
        shape = tuple(specs[name].shape)
        if not shape or any(d is None for d in shape[1:]):
            raise UserError(f"{source}: input '{name}' has a dynamic shape {list(shape)} "
                            f"(only the batch dimension may be open; it becomes 1)")
        fixed.append(tf.TensorSpec((1,) + shape[1:], specs[name].dtype, name=name))
    serve = tf.function(lambda *xs: signature(**dict(zip(names, xs))), input_signature=fixed)
    converter = tf.lite.TFLiteConverter.from_concrete_functions([serve.get_concrete_function()], loaded)
    if configure is not None:
        configure(converter)
    try:
        return converter.convert()
    except Exception as exc:
        raise UserError(f"{source}: TensorFlow could not convert the model to TFLite: {first_line(exc)}") from None


def load_keras(path: Path, safe_mode: bool = True):
    keras = _tensorflow().keras
    try:
        return keras.models.load_model(str(path), compile=False, safe_mode=safe_mode, custom_objects={
            "DepthwiseConv2D": _depthwise_without_groups(keras)})
    except Exception as exc:
        raise UserError(f"{path}: Keras cannot load this model: {first_line(exc)}") from None


def keras_to_tflite(path: Path, configure=None, safe_mode: bool = True) -> bytes:
    model = load_keras(path, safe_mode)
    with tempfile.TemporaryDirectory(prefix="tinydeploy-savedmodel-") as tmp:
        try:
            model.export(tmp, format="tf_saved_model", verbose=False)
        except Exception as exc:
            raise UserError(f"{path}: Keras cannot export this model: {first_line(exc)}") from None
        return saved_model_to_tflite(Path(tmp), str(path), configure)


def _h5_config(path: Path) -> str | None:
    import h5py
    try:
        with h5py.File(path, "r") as f:
            config = f.attrs.get("model_config")
    except Exception as exc:
        raise UserError(f"{path}: not a readable HDF5 file ({first_line(exc)})") from None
    return config.decode("utf-8", "replace") if isinstance(config, bytes) else config


def keras_file_to_tflite(path: Path, options: dict, trust: bool) -> bytes:
    """In the reader's child process: a .h5 or .keras file to a float TFLite flatbuffer."""
    if not trust and not _is_zip(path):   # a .keras config was checked in the parent
        config = _h5_config(path)
        if config is not None:
            check_keras_config(config, path)
    return keras_to_tflite(path, safe_mode=not trust)


def saved_model_file_to_tflite(path: Path, options: dict, trust: bool) -> bytes:
    return saved_model_to_tflite(path, str(path))


def _is_zip(path: Path) -> bool:
    with open(path, "rb") as f:
        return f.read(4) == b"PK\x03\x04"


def import_keras(path: Path, policy: ReadPolicy = DEFAULT_POLICY) -> Graph:
    from .isolated import convert_in_child
    if _is_zip(path) and not policy.trust_pickle:   # .keras: its config.json, read without Keras
        import zipfile
        with zipfile.ZipFile(path) as archive:
            check_keras_config(archive.read("config.json").decode("utf-8", "replace"), path)
    return import_tflite(convert_in_child("keras", path, {}, policy, "Keras"), str(path), policy)


def import_saved_model(path: Path, policy: ReadPolicy = DEFAULT_POLICY) -> Graph:
    from .isolated import convert_in_child
    return import_tflite(convert_in_child("saved_model", path, {}, policy, "TensorFlow"), str(path), policy)
