"""The fuzzer's seed files (the shared models and the project's examples, in every format it reads)
and the crafted attacks (files that try to run code, read devices or exhaust memory)."""
from __future__ import annotations

import os
import subprocess
import sys
import zipfile
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

REPO = Path(__file__).resolve().parents[2]
MODELS = REPO.parent / "shared" / "models"
PHOTOS = REPO.parent / "shared" / "data" / "photos"
EXAMPLE = REPO / "examples" / "mnist_torch"


@dataclass
class Seed:
    name: str
    fmt: str            # tflite, onnx, torchscript, pt2, keras, h5
    path: Path
    suffix: str
    calib: Path | None = None
    patch: str = "auto"  # "none" where the patch search alone takes tens of seconds
    args: list[str] = field(default_factory=list)


def _calib(work: Path) -> dict[str, Path]:
    """Small calibration sets (a few samples: the fuzzer tests readers, not quantization)."""
    files = {"vww": np.load(PHOTOS / "vww_like_rgb96_uint8.npy")[:2].astype(np.float32) / 255,
             "cifar": np.load(PHOTOS / "chelsea_cat_cifar32_uint8.npy").astype(np.float32),
             "hw": np.linspace(0, 6.28, 4, dtype=np.float32).reshape(4, 1),
             "mnist": np.load(EXAMPLE / "calib.npz")["x"][:2],
             "tiny": np.random.default_rng(0).uniform(-1, 1, (2, 8, 8, 3)).astype(np.float32),
             "tiny_nchw": np.random.default_rng(0).uniform(-1, 1, (2, 3, 8, 8)).astype(np.float32)}
    out = {}
    for name, array in files.items():
        out[name] = work / f"calib_{name}.npy"
        np.save(out[name], array)
    return out


def _tiny_keras(work: Path) -> Path | None:
    """A small .keras file (Keras v3 format), made once with TensorFlow in a child process."""
    path = work / "tiny.keras"
    if not path.exists():
        code = ("import tensorflow as tf\ntf.keras.utils.set_random_seed(0)\nL = tf.keras.layers\n"
                "i = tf.keras.Input((8, 8, 3))\nx = L.Conv2D(4, 3, padding='same', activation='relu')(i)\n"
                "x = L.DepthwiseConv2D(3, strides=2, padding='same')(x)\nx = L.Flatten()(x)\n"
                f"tf.keras.Model(i, L.Dense(3)(x)).save({str(path)!r})\n")
        subprocess.run([sys.executable, "-c", code], env={**os.environ, "TF_CPP_MIN_LOG_LEVEL": "3"},
                       capture_output=True, timeout=300)
    return path if path.exists() else None


def _tiny_onnx(work: Path) -> Path:
    """Conv, Relu, GlobalAveragePool, Flatten, Gemm: a small ONNX graph that converts in a second."""
    import onnx
    from onnx import TensorProto, helper, numpy_helper
    rng = np.random.default_rng(0)
    inits = [numpy_helper.from_array(rng.normal(size=shape).astype(np.float32), name)
             for name, shape in (("w", (4, 3, 3, 3)), ("b", (4,)), ("fc", (3, 4)), ("fcb", (3,)))]
    nodes = [helper.make_node("Conv", ["x", "w", "b"], ["c"], kernel_shape=[3, 3], pads=[1, 1, 1, 1], strides=[2, 2]),
             helper.make_node("Relu", ["c"], ["r"]), helper.make_node("GlobalAveragePool", ["r"], ["p"]),
             helper.make_node("Flatten", ["p"], ["f"]), helper.make_node("Gemm", ["f", "fc", "fcb"], ["y"], transB=1)]
    graph = helper.make_graph(nodes, "tiny", [helper.make_tensor_value_info("x", TensorProto.FLOAT, [1, 3, 8, 8])],
                              [helper.make_tensor_value_info("y", TensorProto.FLOAT, [1, 3])], inits)
    path = work / "tiny.onnx"
    onnx.save(helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)]), path)
    return path


def seed_corpus(work: Path, keras: bool = True) -> list[Seed]:
    c = _calib(work)
    tfl = MODELS
    seeds = [
        Seed("hello_world_int8", "tflite", tfl / "tflm" / "hello_world_int8.tflite", ".tflite"),
        Seed("hello_world_float", "tflite", tfl / "tflm" / "hello_world_float.tflite", ".tflite", c["hw"]),
        Seed("mnist_cnn_int8", "tflite", REPO / "examples" / "mnist" / "mnist_cnn_int8.tflite", ".tflite"),
        Seed("resnet8_int8", "tflite", tfl / "mlperf_tiny" / "resnet8_int8.tflite", ".tflite"),
        Seed("vww_96_int8", "tflite", tfl / "mlperf_tiny" / "vww_96_int8.tflite", ".tflite", patch="none"),
        Seed("mcunet_vww1_int8", "tflite", tfl / "tinyengine" / "mcunet_vww1_int8.tflite", ".tflite", patch="none"),
        Seed("resnet8_float", "tflite", tfl / "mlperf_tiny" / "resnet8_float.tflite", ".tflite", c["cifar"], "none"),
        Seed("mnist_mbv2_onnx", "onnx", EXAMPLE / "mnist_mbv2.onnx", ".onnx", c["mnist"], "none"),
        Seed("tiny_onnx", "onnx", _tiny_onnx(work), ".onnx", c["tiny_nchw"]),
        Seed("mnist_mbv2_torchscript", "torchscript", EXAMPLE / "mnist_mbv2.pt", ".pt", c["mnist"], "none"),
        Seed("mnist_mbv2_pt2", "pt2", EXAMPLE / "mnist_mbv2.pt2", ".pt2", c["mnist"], "none"),
        Seed("resnet8_h5", "h5", tfl / "mlperf_tiny" / "resnet8.h5", ".h5", c["cifar"], "none"),
    ]
    tiny = _tiny_keras(work) if keras else None
    if tiny is not None:
        seeds.append(Seed("tiny_keras", "keras", tiny, ".keras", c["tiny"], "none"))
    return seeds


# ---------------------------------------------------------------- crafted attacks

@dataclass
class Attack:
    name: str
    fmt: str
    path: Path           # the model argument (may be a FIFO or a device)
    marker: Path | None  # a file the attack would create if its code ran
    args: list[str] = field(default_factory=list)


def _evil_pickle(marker: Path) -> bytes:
    """A pickle whose loading runs os.system (protocol 2, by hand: no class needed)."""
    import pickle
    command = f"touch {marker}"

    class Evil:
        def __reduce__(self):
            return (os.system, (command,))
    return pickle.dumps({"model": Evil()}, protocol=2)


def _torch_zip(path: Path, pickle_bytes: bytes) -> None:
    """A torch.save-style zip archive (archive/data.pkl, archive/version) holding `pickle_bytes`."""
    with zipfile.ZipFile(path, "w") as z:
        z.writestr("archive/data.pkl", pickle_bytes)
        z.writestr("archive/byteorder", "little")
        z.writestr("archive/version", "3\n")


def patched_pt2(path: Path, edit) -> None:
    """The example ExportedProgram with its model.json edited by `edit(program)`."""
    import json
    with zipfile.ZipFile(EXAMPLE / "mnist_mbv2.pt2") as src, zipfile.ZipFile(path, "w") as dst:
        for info in src.infolist():
            body = src.read(info)
            if info.filename.endswith("/models/model.json"):
                program = json.loads(body)
                edit(program)
                body = json.dumps(program).encode()
            dst.writestr(info, body)


def _keras_lambda(path: Path, marker: Path) -> bool:
    code = ("import tensorflow as tf\nL = tf.keras.layers\ni = tf.keras.Input((4, 4, 1))\n"
            f"x = L.Lambda(lambda t: (open({str(marker)!r}, 'w').close(), t)[1])(i)\n"
            f"tf.keras.Model(i, L.Dense(2)(L.Flatten()(x))).save({str(path)!r})\n")
    subprocess.run([sys.executable, "-c", code], env={**os.environ, "TF_CPP_MIN_LOG_LEVEL": "3"},
                   capture_output=True, timeout=300)
    if marker.exists():
        marker.unlink()   # building the model called the lambda once
    return path.exists()


def _zip_bomb(path: Path) -> None:
    """A TorchScript-looking archive whose data member inflates to 1.5 GiB of zeros."""
    with zipfile.ZipFile(path, "w", compression=zipfile.ZIP_DEFLATED) as z:
        z.writestr("archive/constants.pkl", b"\x80\x02).")
        with z.open("archive/data.pkl", "w", force_zip64=True) as f:
            block = bytes(64 << 20)
            for _ in range(24):
                f.write(block)


def attacks(work: Path, keras: bool = True) -> list[Attack]:
    import onnx
    work.mkdir(parents=True, exist_ok=True)
    found = []
    m = work / "marker_pickle"
    _torch_zip(work / "reduce.pt", _evil_pickle(m))
    found.append(Attack("pickle __reduce__ runs os.system", "torchscript", work / "reduce.pt", m,
                        ["--input-shape", "1,4"]))
    m = work / "marker_guard"
    patched_pt2(work / "guard.pt2", lambda p: p.__setitem__("guards_code", [f"__import__('os').system('touch {m}')"]))
    found.append(Attack(".pt2 guard code", "pt2", work / "guard.pt2", m))
    m = work / "marker_target"

    def target(program):
        program["graph_module"]["graph"]["nodes"][0]["target"] = "torch.os.system"
    patched_pt2(work / "target.pt2", target)
    found.append(Attack(".pt2 node target torch.os.system", "pt2", work / "target.pt2", None))
    m = work / "marker_sympy"

    def symbolic(program):
        values = program["graph_module"]["graph"]["tensor_values"]
        first = next(iter(values.values()))
        first["sizes"][0] = {"as_expr": {"expr_str": f"__import__('os').system('touch {m}')", "hint": 1}}
    patched_pt2(work / "sympy.pt2", symbolic)
    found.append(Attack(".pt2 symbolic size evaluated by sympy", "pt2", work / "sympy.pt2", m))
    if keras:
        m = work / "marker_lambda"
        if _keras_lambda(work / "lambda.keras", m):
            found.append(Attack("Keras Lambda layer", "keras", work / "lambda.keras", m))
    for location in ("/dev/zero", "/etc/passwd"):
        model = onnx.load(EXAMPLE / "mnist_mbv2.onnx")
        init = model.graph.initializer[0]
        init.ClearField("raw_data")
        init.data_location = onnx.TensorProto.EXTERNAL
        entry = init.external_data.add()
        entry.key, entry.value = "location", location
        path = work / f"external_{Path(location).name}.onnx"
        onnx.save(model, path)
        found.append(Attack(f"ONNX external data at {location}", "onnx", path, None))
    _zip_bomb(work / "bomb.pt")
    found.append(Attack("zip bomb (1.5 GiB member)", "torchscript", work / "bomb.pt", None))
    fifo = work / "fifo.tflite"
    if not fifo.exists():
        os.mkfifo(fifo)
    found.append(Attack("FIFO as the model", "tflite", fifo, None))
    found.append(Attack("/dev/zero as the model", "tflite", Path("/dev/zero"), None))
    found.append(Attack("/proc/self/environ as the model", "tflite", Path("/proc/self/environ"), None))
    found.append(Attack("/dev/zero as calibration data", "onnx", EXAMPLE / "mnist_mbv2.onnx", None,
                        ["--calib", "/dev/zero"]))
    return found
