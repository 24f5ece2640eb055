"""Issue 5, figure 3: our int8 post-training quantization of resnet8.h5 and vww_96.h5 next to
TensorFlow's own int8 converter, both calibrated on the same data.

No CIFAR-10 or COCO images exist offline, so the calibration set is the shared photos plus a
seeded synthetic augmentation of them (`augment`): random horizontal flip, random resized crop
(50-100 % of the area, aspect 3/4-4/3, bilinear back to full size), brightness and contrast
x U(0.7, 1.3), per-channel gain x U(0.9, 1.1), Gaussian noise of 2 % of the value range. ResNet-8's
photos are the CIFAR-sized cat plus the five 96x96 photos averaged down 3x3 to 32x32 (raw 0..255
input); VWW's are the five 96x96 photos, MLPerf's two reference inputs and the cat upscaled 3x
(RGB in [0, 1]).

Both int8 models run on the integer reference executor (byte-exact with TFLite Micro), so only the
quantization differs. Reported against the float model: top-1 agreement and the SQNR of the
logits (the softmax input, dequantized), 10 log10(sum f^2 / sum (f - q)^2), on the shared photos
themselves and on 200 held-out augmentations (another seed).

    .venv/bin/python benchmarks/float_import_ptq.py [--calib-count 200]
"""
from __future__ import annotations

import argparse
import os
import sys
from pathlib import Path

import numpy as np

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "3")
REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))

from benchmarks.shared_models import MODELS, PHOTOS  # noqa: E402
from quantize import METHODS, post_training_quantize  # noqa: E402
from toolchain.float_reference import run_float  # noqa: E402
from toolchain.importers import load_model  # noqa: E402
from toolchain.importers.keras import keras_to_tflite  # noqa: E402
from toolchain.importers.tflite import import_tflite  # noqa: E402
from toolchain.reference import run_reference  # noqa: E402

CALIB_SEED, HELD_OUT_SEED = 1, 2


def shared_photos(model: str) -> tuple[np.ndarray, float]:
    """The shared photos in the model's input convention, and the top of its value range."""
    rgb96 = np.load(PHOTOS / "vww_like_rgb96_uint8.npy").astype(np.float32)
    cat = np.load(PHOTOS / "chelsea_cat_cifar32_uint8.npy").astype(np.float32)
    if model == "resnet8":
        small = rgb96.reshape(-1, 32, 3, 32, 3, 3).mean(axis=(2, 4))
        return np.concatenate([cat, small]), 255.0
    mlperf = np.clip(np.load(PHOTOS / "mlperf_vww_ref_inputs_float32.npy"), 0, 1)
    big_cat = cat.repeat(3, axis=1).repeat(3, axis=2) / 255.0
    return np.concatenate([rgb96 / 255.0, mlperf, big_cat]), 1.0


def _resize(image: np.ndarray, h: int, w: int) -> np.ndarray:
    """Bilinear resize (align_corners=False)."""
    ys = np.clip((np.arange(h) + 0.5) * image.shape[0] / h - 0.5, 0, image.shape[0] - 1)
    xs = np.clip((np.arange(w) + 0.5) * image.shape[1] / w - 0.5, 0, image.shape[1] - 1)
    y0, x0 = np.floor(ys).astype(int), np.floor(xs).astype(int)
    y1, x1 = np.minimum(y0 + 1, image.shape[0] - 1), np.minimum(x0 + 1, image.shape[1] - 1)
    wy, wx = (ys - y0)[:, None, None], (xs - x0)[None, :, None]
    top = image[y0][:, x0] * (1 - wx) + image[y0][:, x1] * wx
    bottom = image[y1][:, x0] * (1 - wx) + image[y1][:, x1] * wx
    return top * (1 - wy) + bottom * wy


def augment(photos: np.ndarray, top: float, count: int, seed: int) -> np.ndarray:
    rng = np.random.default_rng(seed)
    h, w = photos.shape[1:3]
    out = []
    for _ in range(count):
        image = photos[rng.integers(len(photos))]
        if rng.random() < 0.5:
            image = image[:, ::-1]
        area, aspect = rng.uniform(0.5, 1.0), np.exp(rng.uniform(np.log(3 / 4), np.log(4 / 3)))
        ch = int(round(min(h, np.sqrt(area * h * w / aspect))))
        cw = int(round(min(w, np.sqrt(area * h * w * aspect))))
        y, x = rng.integers(h - ch + 1), rng.integers(w - cw + 1)
        image = _resize(image[y:y + ch, x:x + cw], h, w)
        mean = image.mean()
        image = (image - mean) * rng.uniform(0.7, 1.3) + mean * rng.uniform(0.7, 1.3)
        image = image * rng.uniform(0.9, 1.1, size=3) + rng.normal(0, 0.02 * top, size=image.shape)
        out.append(np.clip(image, 0, top))
    return np.stack(out).astype(np.float32)


def logits_of(graph, values) -> np.ndarray:
    """The softmax input, dequantized if int8."""
    softmax = next(op for op in graph.ops if op.kind == "softmax")
    t = graph.tensors[softmax.inputs[0]]
    v = values[softmax.inputs[0]].astype(np.float64)
    return v if t.quant is None else (v - t.zero_point()) * t.scale()


def evaluate(float_graph, int8_graph, images) -> tuple[int, float]:
    agree, signal, noise = 0, 0.0, 0.0
    for image in images:
        x = image[None]
        f = logits_of(float_graph, run_float(float_graph, [x], keep=True))
        q = logits_of(int8_graph, run_reference(int8_graph, [x], keep=True))
        agree += int(f.argmax() == q.argmax())
        signal, noise = signal + float((f ** 2).sum()), noise + float(((f - q) ** 2).sum())
    return agree, 10 * np.log10(signal / noise)


def tensorflow_int8(path: Path, calib: np.ndarray):
    import tensorflow as tf

    def configure(converter):
        converter.optimizations = [tf.lite.Optimize.DEFAULT]
        converter.representative_dataset = lambda: ([x[None]] for x in calib)
        converter.target_spec.supported_ops = [tf.lite.OpsSet.TFLITE_BUILTINS_INT8]
    return import_tflite(keras_to_tflite(path, configure), str(path))


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--calib-count", type=int, default=200)
    ap.add_argument("--held-out", type=int, default=200)
    args = ap.parse_args()
    print(f"| model | quantizer | top-1 agreement, shared photos | logits SQNR, shared photos | "
          f"top-1 agreement, {args.held_out} held-out augmentations | logits SQNR, held-out |")
    print("|---|---|---|---|---|---|")
    for model in ("resnet8", "vww_96"):
        path = MODELS / "mlperf_tiny" / f"{model}.h5"
        photos, top = shared_photos(model)
        calib = np.concatenate([photos, augment(photos, top, args.calib_count - len(photos), CALIB_SEED)])
        held_out = augment(photos, top, args.held_out, HELD_OUT_SEED)
        float_graph = load_model(path)
        quantizers = {f"tinydeploy {m}": post_training_quantize(float_graph, calib, m) for m in METHODS}
        quantizers["TensorFlow converter"] = tensorflow_int8(path, calib)
        for name, int8_graph in quantizers.items():
            a1, s1 = evaluate(float_graph, int8_graph, photos)
            a2, s2 = evaluate(float_graph, int8_graph, held_out)
            print(f"| {path.name} | {name} | {a1}/{len(photos)} | {s1:.1f} dB | {a2}/{len(held_out)} | {s2:.1f} dB |",
                  flush=True)


if __name__ == "__main__":
    main()
