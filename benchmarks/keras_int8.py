"""A Keras model through the TFLite converter's full-integer quantization (int8 kernels, int8 input
and output), calibrated on random uniform inputs: the models tests and benchmarks make themselves."""
from __future__ import annotations

import numpy as np


def full_int8_tflite(model, low: float = -1.0, high: float = 1.0, samples: int = 16, seed: int = 0) -> bytes:
    import tensorflow as tf
    rng = np.random.default_rng(seed)
    shape = (1, *model.inputs[0].shape[1:])
    converter = tf.lite.TFLiteConverter.from_keras_model(model)
    converter.optimizations = [tf.lite.Optimize.DEFAULT]
    converter.representative_dataset = lambda: ([rng.uniform(low, high, shape).astype(np.float32)]
                                                for _ in range(samples))
    converter.target_spec.supported_ops = [tf.lite.OpsSet.TFLITE_BUILTINS_INT8]
    converter.inference_input_type = tf.int8
    converter.inference_output_type = tf.int8
    return bytes(converter.convert())
