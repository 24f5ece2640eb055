"""The real models and data in ../shared, and how each model expects its real inputs.

Used by the end-to-end tests and the benchmark scripts, so both run the same cases.
"""
from __future__ import annotations

from pathlib import Path

import numpy as np

REPO = Path(__file__).resolve().parents[1]
SHARED = REPO.parent / "shared"
MODELS = SHARED / "models"
PHOTOS = SHARED / "data" / "photos"

# name -> (model file, --io choices to test, real-data loader giving float images in the model's
# float input convention, description of the real data)
INT8_MODELS = {
    "vww_96_int8": MODELS / "mlperf_tiny" / "vww_96_int8.tflite",
    "resnet8_int8": MODELS / "mlperf_tiny" / "resnet8_int8.tflite",
    "mcunet_vww1_int8": MODELS / "tinyengine" / "mcunet_vww1_int8.tflite",
    "hello_world_int8": MODELS / "tflm" / "hello_world_int8.tflite",
}

# TensorFlow Lite Micro's smallest working arena (REFERENCE.md, measured by bisection).
TFLM_ARENA_BYTES = {"vww_96_int8": 103_672, "resnet8_int8": 55_984, "mcunet_vww1_int8": 224_985}

CIFAR10_CLASSES = ["airplane", "automobile", "bird", "cat", "deer", "dog", "frog", "horse", "ship", "truck"]
VWW_CLASSES = ["no person", "person"]


def real_float_inputs(name: str) -> list[tuple[str, np.ndarray]]:
    """(label, float image in the model's real-valued input convention) for each real input."""
    if name == "vww_96_int8":
        photos = np.load(PHOTOS / "vww_like_rgb96_uint8.npy").astype(np.float32) / 255.0
        mlperf = np.clip(np.load(PHOTOS / "mlperf_vww_ref_inputs_float32.npy"), 0.0, 1.0)
        return ([(f"vww_like_rgb96[{i}]", p) for i, p in enumerate(photos)]
                + [(f"mlperf_vww_ref_inputs[{i}]", p) for i, p in enumerate(mlperf)])
    if name == "resnet8_int8":
        cat = np.load(PHOTOS / "chelsea_cat_cifar32_uint8.npy").astype(np.float32)
        return [("chelsea_cat_cifar32", cat[0])]
    if name == "mcunet_vww1_int8":
        photos = (np.load(PHOTOS / "vww_like_rgb80_uint8.npy").astype(np.float32) - 128.0) / 128.0
        return [(f"vww_like_rgb80[{i}]", p) for i, p in enumerate(photos)]
    if name == "hello_world_int8":
        xs = np.linspace(0.0, 2 * np.pi, 8, dtype=np.float32)
        return [(f"x={x:.3f}", np.array([x], np.float32)) for x in xs]
    raise KeyError(name)


def class_names(name: str) -> list[str] | None:
    return {"vww_96_int8": VWW_CLASSES, "mcunet_vww1_int8": VWW_CLASSES,
            "resnet8_int8": CIFAR10_CLASSES}.get(name)


def to_model_input(graph, image: np.ndarray) -> np.ndarray:
    """A real-valued image in the graph's input dtype (quantized with its own scale/zero point)."""
    t = graph.tensors[graph.inputs[0]]
    x = image.reshape(t.shape).astype(np.float32)
    if t.dtype == "float32":
        return x
    q = np.round(x / np.float32(t.scale())) + t.zero_point()
    info = np.iinfo(t.dtype)
    return np.clip(q, info.min, info.max).astype(t.dtype)
