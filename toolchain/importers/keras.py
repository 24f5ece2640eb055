"""Keras .h5/.keras and TensorFlow SavedModel -> IR, through TensorFlow's own converter to a float
TFLite flatbuffer (then the TFLite importer). Keras models go through a SavedModel
(`model.export`); `from_keras_model` would add SHAPE/PACK ops."""
from __future__ import annotations

import os
import tempfile
from pathlib import Path

from ..errors import UserError
from ..ir import Graph
from . import first_line
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


def load_keras(path: Path):
    keras = _tensorflow().keras
    try:
        return keras.models.load_model(str(path), compile=False, custom_objects={
            "DepthwiseConv2D": _depthwise_without_groups(keras)})
    except Exception as exc:
        raise UserError(f"{path}: Keras cannot load this model: {first_line(exc)}") from None


def keras_to_tflite(path: Path, configure=None) -> bytes:
    model = load_keras(path)
    with tempfile.TemporaryDirectory(prefix="tinydeploy-savedmodel-") as tmp:
        model.export(tmp, format="tf_saved_model", verbose=False)
        return saved_model_to_tflite(Path(tmp), str(path), configure)


def import_keras(path: Path) -> Graph:
    return import_tflite(keras_to_tflite(path), str(path))


def import_saved_model(path: Path) -> Graph:
    return import_tflite(saved_model_to_tflite(path, str(path)), str(path))
