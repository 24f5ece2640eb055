"""Single-op int8 TFLite models built with TensorFlow's real converter.

Test helper: lets the integer reference executor and the C kernels be checked
against TensorFlow Lite Micro one operator at a time (tests/toolchain/test_ops.py).

    op_model(kind, input_shape, *, seed=0, per_channel=True, float_io=False,
             **params) -> bytes          # .tflite flatbuffer, nothing on disk
    op_names(model_bytes) -> list[str]   # builtin op names, in execution order

Models are built from a ``tf.function`` (exact control over strides, padding
and dilation, no Keras extras) with seeded random constant weights/bias and
converted with ``TFLiteConverter.from_concrete_functions`` using full-integer
post-training quantization (Optimize.DEFAULT, TFLITE_BUILTINS_INT8, a
representative dataset of 30 seeded random inputs whose range depends on
``seed``).  Multi-input models name their inputs ``x0``, ``x1``, ``x2``, in
the model's input-index order.

TensorFlow is imported lazily so importing this module is cheap.
"""

from __future__ import annotations

import os

import numpy as np

from benchmarks.keras_int8 import full_int8_tflite

N_REPR = 30  # representative-dataset size

KINDS = (
    "conv2d", "depthwise_conv2d", "fully_connected", "add", "mul",
    "avg_pool2d", "max_pool2d", "mean", "pad", "reshape", "transpose",
    "concat", "softmax", "relu", "relu6", "leaky_relu", "quantize_dequantize",
)


def _tf():
    os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")
    import tensorflow as tf
    return tf


def _pair(v):
    if isinstance(v, (tuple, list)):
        assert len(v) == 2, v
        return int(v[0]), int(v[1])
    return int(v), int(v)


def _act(tf, x, activation):
    if activation is None or activation == "none":
        return x
    if activation == "relu":
        return tf.nn.relu(x)
    if activation == "relu6":
        return tf.nn.relu6(x)
    raise ValueError(f"unsupported activation {activation!r}")


def _range(rng, scale=1.0):
    """A seed-dependent, usually asymmetric (lo, hi) range straddling zero."""
    lo = -float(rng.uniform(0.25, 4.0)) * scale
    hi = float(rng.uniform(0.25, 4.0)) * scale
    return lo, hi


def _weights(rng, shape, out_axis):
    """Random weights with a different magnitude per output channel, so that
    per-channel quantization actually yields distinct scales."""
    fan_in = int(np.prod(shape)) // shape[out_axis]
    w = rng.normal(0.0, 1.0 / np.sqrt(max(fan_in, 1)), size=shape)
    ch = rng.uniform(0.2, 2.0, size=shape[out_axis])
    bshape = [1] * len(shape)
    bshape[out_axis] = shape[out_axis]
    return (w * ch.reshape(bshape)).astype(np.float32)


def _build(kind, input_shape, rng, params):
    """Return (tf.function, [input shapes], [(lo, hi) per input])."""
    tf = _tf()
    p = dict(params)
    shape = tuple(int(d) for d in input_shape)
    shapes = [shape]
    ranges = [_range(rng)]

    def take(name, default):
        return p.pop(name, default)

    if kind == "conv2d":
        filters = int(take("filters", 4))
        kh, kw = _pair(take("kernel", 3))
        sh, sw = _pair(take("strides", 1))
        dh, dw = _pair(take("dilation", 1))
        padding = take("padding", "SAME")
        activation = take("activation", None)
        use_bias = take("bias", True)
        w = tf.constant(_weights(rng, (kh, kw, shape[-1], filters), 3))
        b = tf.constant(rng.normal(0, 0.5, filters).astype(np.float32))

        def body(x):
            y = tf.raw_ops.Conv2D(input=x, filter=w, strides=[1, sh, sw, 1],
                                  padding=padding, dilations=[1, dh, dw, 1])
            if use_bias:
                y = tf.nn.bias_add(y, b)
            return _act(tf, y, activation)

    elif kind == "depthwise_conv2d":
        kh, kw = _pair(take("kernel", 3))
        sh, sw = _pair(take("strides", 1))
        dh, dw = _pair(take("dilation", 1))
        padding = take("padding", "SAME")
        mult = int(take("depth_multiplier", 1))
        activation = take("activation", None)
        use_bias = take("bias", True)
        cin = shape[-1]
        w = _weights(rng, (kh, kw, cin * mult), 2).reshape(kh, kw, cin, mult)
        w = tf.constant(w)
        b = tf.constant(rng.normal(0, 0.5, cin * mult).astype(np.float32))

        def body(x):
            # raw op: tf.nn.depthwise_conv2d lowers dilation to
            # SPACE_TO_BATCH_ND/BATCH_TO_SPACE_ND.
            y = tf.raw_ops.DepthwiseConv2dNative(
                input=x, filter=w, strides=[1, sh, sw, 1], padding=padding,
                dilations=[1, dh, dw, 1])
            if use_bias:
                y = tf.nn.bias_add(y, b)
            return _act(tf, y, activation)

    elif kind == "fully_connected":
        units = int(take("units", 8))
        activation = take("activation", None)
        use_bias = take("bias", True)
        n = int(np.prod(shape[1:]))
        w = tf.constant(_weights(rng, (n, units), 1))
        b = tf.constant(rng.normal(0, 0.5, units).astype(np.float32))

        def body(x):
            if len(shape) != 2:
                x = tf.reshape(x, (shape[0], n))
            y = tf.matmul(x, w)
            if use_bias:
                y = y + b
            return _act(tf, y, activation)

    elif kind in ("add", "mul"):
        other = tuple(int(d) for d in take("other_shape", shape))
        activation = take("activation", None)
        shapes = [shape, other]
        lo, hi = _range(rng, 3.0)  # clearly different range -> different scale
        ranges.append((lo, hi))
        op = tf.add if kind == "add" else tf.multiply

        def body(a, c):
            return _act(tf, op(a, c), activation)

    elif kind in ("avg_pool2d", "max_pool2d"):
        ph, pw = _pair(take("pool", 2))
        strides = take("strides", None)
        sh, sw = _pair(strides if strides is not None else (ph, pw))
        padding = take("padding", "VALID")
        fn = tf.nn.avg_pool2d if kind == "avg_pool2d" else tf.nn.max_pool2d

        def body(x):
            return fn(x, ksize=[1, ph, pw, 1], strides=[1, sh, sw, 1],
                      padding=padding)

    elif kind == "mean":
        axis = tuple(take("axis", (1, 2)))
        keepdims = bool(take("keepdims", True))

        def body(x):
            return tf.reduce_mean(x, axis=list(axis), keepdims=keepdims)

    elif kind == "pad":
        paddings = [list(map(int, q)) for q in
                    take("paddings", [[0, 0], [1, 1], [1, 1], [0, 0]])]

        def body(x):
            return tf.pad(x, paddings)

    elif kind == "reshape":
        new_shape = [int(d) for d in take("new_shape", (shape[0], -1))]

        def body(x):
            return tf.reshape(x, new_shape)

    elif kind == "transpose":
        perm = [int(d) for d in take("perm", tuple(reversed(range(len(shape)))))]

        def body(x):
            return tf.transpose(x, perm)

    elif kind == "concat":
        axis = int(take("axis", -1))
        n_inputs = int(take("n_inputs", 2))
        assert n_inputs in (2, 3), n_inputs
        others = take("other_shapes", None)
        if others is None:
            others = [shape] * (n_inputs - 1)
        shapes = [shape] + [tuple(int(d) for d in s) for s in others]
        ranges = [ranges[0]] + [_range(rng, 1.0 + i) for i in range(1, len(shapes))]
        if len(shapes) == 2:
            def body(a, c):
                return tf.concat([a, c], axis=axis)
        else:
            def body(a, c, d):
                return tf.concat([a, c, d], axis=axis)

    elif kind == "softmax":
        # beta is NOT expressed in the graph (TF has no softmax beta; x*beta
        # would give MUL + SOFTMAX).  op_model patches SoftmaxOptions.beta
        # in the flatbuffer afterwards, so the model is a single SOFTMAX.
        take("beta", 1.0)

        def body(x):
            return tf.nn.softmax(x, axis=-1)

    elif kind in ("relu", "relu6"):
        fn = tf.nn.relu if kind == "relu" else tf.nn.relu6
        lo, hi = ranges[0]
        if kind == "relu6":
            ranges = [(lo * 2, hi * 2 + 4.0)]  # make the 6-clamp bite

        def body(x):
            return fn(x)

    elif kind == "leaky_relu":
        alpha = float(take("alpha", 0.2))

        def body(x):
            return tf.nn.leaky_relu(x, alpha=alpha)

    elif kind == "quantize_dequantize":
        c = tf.constant(rng.normal(0, 0.5, shape[-1]).astype(np.float32))

        def body(x):
            return x + c

    else:
        raise ValueError(f"unknown kind {kind!r}; known: {KINDS}")

    if p:
        raise TypeError(f"{kind}: unexpected params {sorted(p)}")

    specs = [tf.TensorSpec(s, tf.float32, name=f"x{i}") for i, s in enumerate(shapes)]
    f = tf.function(body, input_signature=specs, autograph=False)
    return f, shapes, ranges


def op_model(kind: str, input_shape: tuple, *, seed: int = 0,
             per_channel: bool = True, float_io: bool = False,
             **params) -> bytes:
    """Build and convert a single-op fully-int8 TFLite model; return bytes."""
    tf = _tf()
    rng = np.random.default_rng(seed)
    f, shapes, ranges = _build(kind, input_shape, rng, params)

    data_rng = np.random.default_rng([seed, 0x5EED])
    data = [[rng_u.astype(np.float32) for rng_u in
             (data_rng.uniform(lo, hi, size=s) for s, (lo, hi) in zip(shapes, ranges))]
            for _ in range(N_REPR)]

    def representative_dataset():
        for sample in data:
            yield sample

    conv = tf.lite.TFLiteConverter.from_concrete_functions(
        [f.get_concrete_function()], f)
    conv.optimizations = [tf.lite.Optimize.DEFAULT]
    conv.representative_dataset = representative_dataset
    conv.target_spec.supported_ops = [tf.lite.OpsSet.TFLITE_BUILTINS_INT8]
    if not float_io:
        conv.inference_input_type = tf.int8
        conv.inference_output_type = tf.int8
    if not per_channel:
        conv._experimental_disable_per_channel = True
    model = bytes(conv.convert())
    if kind == "softmax" and float(params.get("beta", 1.0)) != 1.0:
        model = _set_softmax_beta(model, float(params["beta"]))
    return model


def _set_softmax_beta(model_bytes: bytes, beta: float) -> bytes:
    """Overwrite SoftmaxOptions.beta of every SOFTMAX op in place.

    The converter always writes beta explicitly (1.0 != schema default 0.0),
    so the float field exists and can be patched without re-serialising.
    """
    import struct
    import tflite
    buf = bytearray(model_bytes)
    m = tflite.Model.GetRootAsModel(buf, 0)
    g = m.Subgraphs(0)
    n = 0
    for i in range(g.OperatorsLength()):
        op = g.Operators(i)
        oc = m.OperatorCodes(op.OpcodeIndex())
        if max(oc.BuiltinCode(), oc.DeprecatedBuiltinCode()) != tflite.BuiltinOperator.SOFTMAX:
            continue
        tab = op.BuiltinOptions()
        opts = tflite.SoftmaxOptions()
        opts.Init(buf, tab.Pos)
        off = opts._tab.Offset(4)
        if off == 0:
            raise RuntimeError("SoftmaxOptions.beta not stored; cannot patch")
        struct.pack_into("<f", buf, opts._tab.Pos + off, beta)
        assert abs(opts.Beta() - beta) < 1e-6 * max(1.0, abs(beta))
        n += 1
    if n == 0:
        raise RuntimeError("no SOFTMAX op to patch")
    return bytes(buf)


# --------------------------------------------------------------------------
# inspection

def op_names(model_bytes: bytes) -> list[str]:
    """Builtin operator names of subgraph 0, in execution order."""
    import tflite
    m = tflite.Model.GetRootAsModel(model_bytes, 0)
    g = m.Subgraphs(0)
    names = []
    for i in range(g.OperatorsLength()):
        oc = m.OperatorCodes(g.Operators(i).OpcodeIndex())
        code = max(oc.BuiltinCode(), oc.DeprecatedBuiltinCode())
        names.append(tflite.opcode2name(code))
    return names


def audio_depthwise_model(seed: int = 0) -> bytes:
    """A small keyword-spotting-style model: a 10x8 depthwise conv with depth multiplier 8,
    stride 2, on a 49x40x1 spectrogram, then a 12-way fully connected layer; int8 through the
    TFLite converter (its large flattened FC input is what a fast kernel's working buffer widens)."""
    tf = _tf()
    tf.keras.utils.set_random_seed(seed)
    inp = tf.keras.Input((49, 40, 1), batch_size=1)
    x = tf.keras.layers.DepthwiseConv2D((10, 8), strides=2, padding="same", depth_multiplier=8,
                                        activation="relu")(inp)
    out = tf.keras.layers.Dense(12)(tf.keras.layers.Flatten()(x))
    return full_int8_tflite(tf.keras.Model(inp, out), seed=seed)
