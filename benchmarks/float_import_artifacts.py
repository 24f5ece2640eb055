"""Issue 5, figure 4: the TFLite artifacts that `tinydeploy convert --calib` writes for float models.

For each float model: convert on the host, then
- `verify`: the emitted C program against our reference executor and against TensorFlow Lite
  Micro running our model_int8.tflite, byte for byte, on 20 random inputs plus the real ones;
- LiteRT's reference kernels (BUILTIN_REF) on model_int8.tflite: how many final outputs are
  byte-identical with ours, and, feeding every op LiteRT's own input tensors, which ops differ:
  only FULLY_CONNECTED is expected (LiteRT requantizes it with a single rounding, TFLM and we
  with TFLite's double rounding), by at most one step per value, which later layers carry on;
- model_float32.tflite in LiteRT against the float reference executor (max relative error).

    .venv/bin/python benchmarks/float_import_artifacts.py
"""
from __future__ import annotations

import os
import sys
import tempfile
from pathlib import Path

import numpy as np

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "3")
REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))

from ai_edge_litert.interpreter import Interpreter, OpResolverType  # noqa: E402

from benchmarks.float_import_ptq import augment, shared_photos  # noqa: E402
from benchmarks.shared_models import MODELS  # noqa: E402
from toolchain.driver import pipeline  # noqa: E402
from toolchain.driver.options import ConvertOptions  # noqa: E402
from toolchain.driver.manifest import MODEL_FILE  # noqa: E402
from toolchain.driver.verify import verify  # noqa: E402
from toolchain.float_reference import run_float  # noqa: E402
from toolchain.importers.tflite import import_tflite  # noqa: E402
from toolchain.ops import lower, op_def  # noqa: E402
from toolchain.reference import run_reference  # noqa: E402

EXAMPLE = REPO / "examples" / "mnist_torch"


def cases(work: Path) -> dict[str, tuple[Path, Path, np.ndarray]]:
    """name -> (model file, calibration file, real inputs in the model's own layout)."""
    sys.path.insert(0, str(EXAMPLE))
    from data import load_split
    out = {"mnist_mbv2.onnx": (EXAMPLE / "mnist_mbv2.onnx", EXAMPLE / "calib.npz", load_split()[2][:20])}
    for model in ("resnet8", "vww_96"):
        photos, top = shared_photos(model)
        np.save(work / f"{model}_calib.npy", np.concatenate([photos, augment(photos, top, 200 - len(photos), 1)]))
        out[f"{model}.h5"] = (MODELS / "mlperf_tiny" / f"{model}.h5", work / f"{model}_calib.npy", photos)
    x = np.linspace(0, 2 * np.pi, 64, dtype=np.float32).reshape(-1, 1)
    np.save(work / "hello_calib.npy", x)
    out["hello_world_float.tflite"] = (MODELS / "tflm" / "hello_world_float.tflite", work / "hello_calib.npy", x[::8])
    return out


def litert(data: bytes, resolver, preserve: bool = False) -> Interpreter:
    interpreter = Interpreter(model_content=data, experimental_op_resolver_type=resolver,
                              experimental_preserve_all_tensors=preserve)
    interpreter.allocate_tensors()
    return interpreter


def op_differences(graph, interpreter, feeds) -> dict[str, list]:
    """Per op kind: [values compared, values differing, largest difference in steps], each op fed
    LiteRT's own inputs so that a difference is that op's alone."""
    index = {d["name"]: d["index"] for d in interpreter.get_tensor_details()}
    found: dict[str, list] = {}
    for x in feeds:
        interpreter.set_tensor(index[graph.inputs[0]], x)
        interpreter.invoke()
        for op in graph.ops:
            if op.kind in ("quantize", "dequantize"):
                continue
            args = [interpreter.get_tensor(index[n]) if not graph.tensors[n].is_const else graph.tensors[n].data
                    for n in op.inputs]
            ours = np.asarray(op_def(op.kind).reference(lower(graph, op), *args)).reshape(-1).astype(np.int64)
            theirs = interpreter.get_tensor(index[op.outputs[0]]).reshape(-1).astype(np.int64)
            entry = found.setdefault(op.kind, [0, 0, 0])
            entry[0] += ours.size
            entry[1] += int((ours != theirs).sum())
            entry[2] = max(entry[2], int(np.abs(ours - theirs).max()))
    return found


def measure(name: str, model: Path, calib: Path, real: np.ndarray, work: Path) -> dict:
    out = work / name
    pipeline.convert(model, out, ConvertOptions(calib=calib))
    graph = pipeline.prepare_graph(out / MODEL_FILE, "model")
    shape = graph.tensors[graph.inputs[0]].shape
    inputs = pipeline.random_inputs(graph, 20, seed=5) + [r.reshape(-1).astype(np.float32) for r in real]
    np.save(work / "inputs.npy", np.stack(inputs))
    v = verify(out, "host", work / "inputs.npy")["verification"]
    int8 = (out / MODEL_FILE).read_bytes()
    feeds = [x.reshape(shape) for x in inputs]
    ref = litert(int8, OpResolverType.BUILTIN_REF)
    same = 0
    for x in feeds:
        ref.set_tensor(ref.get_input_details()[0]["index"], x)
        ref.invoke()
        same += int(ref.get_tensor(ref.get_output_details()[0]["index"]).tobytes()
                    == run_reference(graph, [x])[0].tobytes())
    diffs = op_differences(graph, litert(int8, OpResolverType.BUILTIN_REF, preserve=True), feeds)
    float_file = (out / "tflite" / "model_float32.tflite").read_bytes()
    float_graph = import_tflite(float_file)
    fl = litert(float_file, OpResolverType.AUTO)
    worst = 0.0
    for x in feeds:
        fl.set_tensor(fl.get_input_details()[0]["index"], x)
        fl.invoke()
        theirs = fl.get_tensor(fl.get_output_details()[0]["index"])
        worst = max(worst, float(np.abs(run_float(float_graph, [x])[0] - theirs).max() / np.abs(theirs).max()))
    return {"name": name, "inputs": len(inputs), "c_ref": v["bit_exact"], "c_tflm": v["tflm_bit_exact"],
            "litert_same": same, "diffs": diffs, "float_rel": worst}


def main() -> None:
    with tempfile.TemporaryDirectory(prefix="float-import-artifacts-") as tmp:
        work = Path(tmp)
        rows = [measure(name, *case, work) for name, case in cases(work).items()]
    print("| model | inputs | C == reference | C == TFLM on model_int8.tflite | LiteRT BUILTIN_REF outputs identical "
          "| ops that differ in LiteRT, fed identical inputs | model_float32.tflite vs float reference |")
    print("|---|---|---|---|---|---|---|")
    for r in rows:
        differing = ", ".join(f"{kind}: {d[1]}/{d[0]} values, max {d[2]} step" for kind, d in r["diffs"].items() if d[1])
        print(f"| {r['name']} | {r['inputs']} | {'yes' if r['c_ref'] else 'NO'} | {'yes' if r['c_tflm'] else 'NO'} | "
              f"{r['litert_same']}/{r['inputs']} | {differing or 'none'} | {r['float_rel']:.1e} |")


if __name__ == "__main__":
    main()
