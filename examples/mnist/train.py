#!/usr/bin/env python3
"""Train the tinydeploy MNIST example model and export a fully-int8 TFLite file.

Usage (from the repo root):
    .venv/bin/python examples/mnist/train.py [--data-dir DIR] [--out-dir DIR]

Outputs (in --out-dir, default: this folder):
    mnist_cnn_int8.tflite  int8-in / int8-out TFLite model
    digits_int8.npy        first 20 test images, quantized with the model's input params
    digits_labels.npy      their labels
    metrics.json           float / int8 accuracy, param count, op list
"""

from __future__ import annotations

import argparse
import json
import os
import tempfile
import time
from pathlib import Path

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")

import numpy as np  # noqa: E402
import tensorflow as tf  # noqa: E402

SEED = 1234
N_TRAIN_PER_CLASS = 400  # 4000 train / 1000 test, stratified
N_REPR = 200
N_DIGITS = 20
EPOCHS = 15
BATCH = 32

ALLOWED_OPS = {
    "CONV_2D", "DEPTHWISE_CONV_2D", "ADD", "MAX_POOL_2D", "AVERAGE_POOL_2D",
    "MEAN", "RESHAPE", "FULLY_CONNECTED", "SOFTMAX", "QUANTIZE", "DEQUANTIZE",
}

HERE = Path(__file__).resolve().parent
DEFAULT_DATA = Path(__file__).resolve().parents[2].parent / "shared/data/mnist5k"


def load_split(data_dir: Path):
    x = np.load(data_dir / "mnist5k_28x28_uint8.npy")
    y = np.load(data_dir / "mnist5k_labels.npy").astype(np.int64)
    assert x.shape == (5000, 28, 28) and x.dtype == np.uint8, (x.shape, x.dtype)
    assert y.shape == (5000,), y.shape
    rng = np.random.default_rng(SEED)
    tr_idx, te_idx = [], []
    for c in range(10):
        idx = rng.permutation(np.flatnonzero(y == c))
        tr_idx.append(idx[:N_TRAIN_PER_CLASS])
        te_idx.append(idx[N_TRAIN_PER_CLASS:])
    order = np.concatenate([rng.permutation(np.concatenate(tr_idx)),
                            rng.permutation(np.concatenate(te_idx))])
    x = (x[order].astype(np.float32) / 255.0)[..., None]
    y = y[order]
    return x[:4000], y[:4000], x[4000:], y[4000:]


def build_model() -> tf.keras.Model:
    L = tf.keras.layers
    inp = tf.keras.Input(shape=(28, 28, 1), name="image")
    x = L.Conv2D(16, 3, padding="same", activation="relu", name="conv1")(inp)     # 28x28x16
    x = L.MaxPooling2D(2, name="pool1")(x)                                         # 14x14x16
    # residual block: x + f(x), f = depthwise 3x3 (relu) -> pointwise 1x1 (relu)
    f = L.DepthwiseConv2D(3, padding="same", activation="relu", name="res_dw")(x)
    f = L.Conv2D(16, 1, activation="relu", name="res_pw")(f)
    x = L.Add(name="res_add")([x, f])                                              # 14x14x16
    x = L.MaxPooling2D(2, name="pool2")(x)                                         # 7x7x16
    x = L.Conv2D(48, 3, padding="same", activation="relu", name="conv2")(x)       # 7x7x48
    x = L.DepthwiseConv2D(3, padding="same", activation="relu", name="dw3")(x)
    x = L.Conv2D(96, 1, activation="relu", name="pw3")(x)                          # 7x7x96
    x = L.GlobalAveragePooling2D(name="gap")(x)                                    # 96
    out = L.Dense(10, activation="softmax", name="fc")(x)
    return tf.keras.Model(inp, out, name="mnist_cnn")


def tflite_ops(model_bytes: bytes) -> list[str]:
    interp = tf.lite.Interpreter(model_content=model_bytes)
    return sorted({op["op_name"] for op in interp._get_ops_details()})


def int8_accuracy(model_bytes: bytes, x: np.ndarray, y: np.ndarray) -> float:
    interp = tf.lite.Interpreter(
        model_content=model_bytes,
        experimental_op_resolver_type=tf.lite.experimental.OpResolverType.BUILTIN_REF)
    interp.allocate_tensors()
    ind = interp.get_input_details()[0]
    outd = interp.get_output_details()[0]
    xq = quantize(x, ind)
    correct = 0
    for i in range(len(x)):
        interp.set_tensor(ind["index"], xq[i:i + 1])
        interp.invoke()
        correct += int(np.argmax(interp.get_tensor(outd["index"])[0]) == y[i])
    return correct / len(x)


def quantize(x: np.ndarray, detail) -> np.ndarray:
    scale, zp = detail["quantization"]
    q = np.round(x / scale) + zp
    return np.clip(q, -128, 127).astype(np.int8)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--data-dir", type=Path, default=DEFAULT_DATA)
    ap.add_argument("--out-dir", type=Path, default=HERE)
    ap.add_argument("--epochs", type=int, default=EPOCHS)
    args = ap.parse_args()
    args.out_dir.mkdir(parents=True, exist_ok=True)

    tf.keras.utils.set_random_seed(SEED)
    tf.config.experimental.enable_op_determinism()

    x_tr, y_tr, x_te, y_te = load_split(args.data_dir)
    model = build_model()
    model.summary()
    n_params = int(model.count_params())
    steps = args.epochs * int(np.ceil(len(x_tr) / BATCH))
    lr = tf.keras.optimizers.schedules.CosineDecay(3e-3, decay_steps=steps, alpha=0.05)
    model.compile(optimizer=tf.keras.optimizers.Adam(lr),
                  loss="sparse_categorical_crossentropy", metrics=["accuracy"])

    t0 = time.time()
    model.fit(x_tr, y_tr, epochs=args.epochs, batch_size=BATCH, shuffle=True,
              validation_data=(x_te, y_te), verbose=2)
    train_s = time.time() - t0
    _, float_acc = model.evaluate(x_te, y_te, verbose=0)
    print(f"float test accuracy: {float_acc:.4f}  (training {train_s:.1f}s)")

    # Export as a plain SavedModel, then convert (avoids SHAPE/PACK ops that
    # from_keras_model can introduce).
    repr_x = x_tr[:N_REPR]

    def representative_dataset():
        for i in range(N_REPR):
            yield [repr_x[i:i + 1]]

    with tempfile.TemporaryDirectory() as tmp:
        sm_dir = os.path.join(tmp, "saved_model")
        model.export(sm_dir, format="tf_saved_model", verbose=False)
        conv = tf.lite.TFLiteConverter.from_saved_model(sm_dir)
        conv.optimizations = [tf.lite.Optimize.DEFAULT]
        conv.representative_dataset = representative_dataset
        conv.target_spec.supported_ops = [tf.lite.OpsSet.TFLITE_BUILTINS_INT8]
        conv.inference_input_type = tf.int8
        conv.inference_output_type = tf.int8
        tfl = conv.convert()

    ops = tflite_ops(tfl)
    bad = sorted(set(ops) - ALLOWED_OPS)
    if bad:
        raise SystemExit(f"converted model contains unsupported ops: {bad}")

    interp = tf.lite.Interpreter(model_content=tfl)
    ind = interp.get_input_details()[0]
    outd = interp.get_output_details()[0]
    assert ind["dtype"] == np.int8 and outd["dtype"] == np.int8, (ind["dtype"], outd["dtype"])

    int8_acc = int8_accuracy(tfl, x_te, y_te)
    print(f"int8 TFLite test accuracy: {int8_acc:.4f}")

    model_path = args.out_dir / "mnist_cnn_int8.tflite"
    model_path.write_bytes(tfl)
    digits = quantize(x_te[:N_DIGITS], ind)
    assert digits.shape == (N_DIGITS, 28, 28, 1) and digits.dtype == np.int8
    np.save(args.out_dir / "digits_int8.npy", digits)
    np.save(args.out_dir / "digits_labels.npy", y_te[:N_DIGITS].astype(np.int64))

    in_scale, in_zp = ind["quantization"]
    out_scale, out_zp = outd["quantization"]
    metrics = {
        "float_test_accuracy": round(float(float_acc), 4),
        "int8_tflite_test_accuracy": round(float(int8_acc), 4),
        "n_test": int(len(x_te)),
        "n_train": int(len(x_tr)),
        "param_count": n_params,
        "epochs": args.epochs,
        "train_seconds": round(train_s, 1),
        "tflite_ops": ops,
        "tflite_bytes": len(tfl),
        "input_quantization": {"scale": float(in_scale), "zero_point": int(in_zp)},
        "output_quantization": {"scale": float(out_scale), "zero_point": int(out_zp)},
        "seed": SEED,
        "tensorflow_version": tf.__version__,
    }
    (args.out_dir / "metrics.json").write_text(json.dumps(metrics, indent=2) + "\n")
    print(json.dumps(metrics, indent=2))


if __name__ == "__main__":
    main()
