"""Issue 5, figure 1: float imports against their own framework on real inputs.

Each model is imported by tinydeploy (Keras through TensorFlow's converter, TFLite directly,
PyTorch through ONNX) and run by the float reference executor; the framework runs the original
file: Keras itself for .h5, the TFLite interpreter for .tflite, onnxruntime for .onnx, torch for
.pt/.pt2. Relative error = max |ours - theirs| / max |theirs| over each model's outputs; for
TFLite files also over every intermediate tensor (the interpreter keeps them all).

    .venv/bin/python benchmarks/float_import.py
"""
from __future__ import annotations

import os
import sys
from pathlib import Path

import numpy as np

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "3")
REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))

from benchmarks.shared_models import MODELS, real_float_inputs  # noqa: E402
from toolchain.float_reference import run_float  # noqa: E402
from toolchain.importers import load_model  # noqa: E402

TOLERANCE = 1e-4
EXAMPLE = REPO / "examples" / "mnist_torch"

# file -> (data set of benchmarks.shared_models, framework)
CASES = {
    MODELS / "mlperf_tiny" / "resnet8.h5": ("resnet8_int8", "keras"),
    MODELS / "mlperf_tiny" / "resnet8_float.tflite": ("resnet8_int8", "tflite"),
    MODELS / "mlperf_tiny" / "vww_96.h5": ("vww_96_int8", "keras"),
    MODELS / "mlperf_tiny" / "vww_96_float.tflite": ("vww_96_int8", "tflite"),
    MODELS / "tflm" / "hello_world_float.tflite": ("hello_world_int8", "tflite"),
    EXAMPLE / "mnist_mbv2.pt": ("mnist", "torch"),
    EXAMPLE / "mnist_mbv2.pt2": ("mnist", "torch"),
    EXAMPLE / "mnist_mbv2.onnx": ("mnist", "onnxruntime"),
}


def inputs_for(data: str) -> list[np.ndarray]:
    if data == "mnist":
        sys.path.insert(0, str(EXAMPLE))
        from data import load_split
        return list(load_split()[2][:100])
    return [image for _, image in real_float_inputs(data)]


def relative(ours: np.ndarray, theirs: np.ndarray) -> float:
    return float(np.abs(ours.astype(np.float64) - theirs).max() / max(np.abs(theirs).max(), 1e-30))


def framework_runner(path: Path, framework: str):
    """f(x) -> (outputs, {tensor name: value} of intermediates where the framework has them)."""
    if framework == "keras":
        from toolchain.importers.keras import load_keras
        model = load_keras(path)
        return lambda x: (model(x, training=False).numpy(), {})
    if framework == "tflite":
        from ai_edge_litert.interpreter import Interpreter
        interpreter = Interpreter(model_path=str(path), experimental_preserve_all_tensors=True)
        interpreter.allocate_tensors()
        details = interpreter.get_tensor_details()

        def run(x):
            interpreter.set_tensor(interpreter.get_input_details()[0]["index"], x)
            interpreter.invoke()
            kept = {}
            for d in details:
                try:
                    kept[d["name"]] = interpreter.get_tensor(d["index"])
                except ValueError:  # tensors without data
                    pass
            return interpreter.get_tensor(interpreter.get_output_details()[0]["index"]), kept
        return run
    if framework == "onnxruntime":
        import onnxruntime as ort
        session = ort.InferenceSession(str(path))
        return lambda x: (session.run(None, {session.get_inputs()[0].name: x})[0], {})
    import torch
    module = torch.jit.load(str(path)) if path.suffix == ".pt" else torch.export.load(str(path)).module()

    def run(x):
        with torch.no_grad():
            return module(torch.from_numpy(x)).numpy(), {}
    return run


def measure(path: Path, data: str, framework: str) -> dict:
    graph = load_model(path)
    run = framework_runner(path, framework)
    shape = graph.tensors[graph.inputs[0]].shape
    worst_out, worst_inner, agree, images = 0.0, 0.0, 0, inputs_for(data)
    for image in images:
        x = image.reshape(shape).astype(np.float32)
        theirs, inner = run(x)
        values = run_float(graph, [x], keep=True)
        ours = values[graph.outputs[0]]
        worst_out = max(worst_out, relative(ours, theirs))
        for name, value in inner.items():
            if name in values and value.shape == values[name].shape and value.dtype == np.float32:
                worst_inner = max(worst_inner, relative(values[name], value))
        agree += int(ours.size == 1 or ours.argmax() == theirs.argmax())
    return {"model": path.name, "framework": framework, "inputs": len(images), "output_rel": worst_out,
            "intermediate_rel": worst_inner if framework == "tflite" else None,
            "top1_agree": agree, "ops": len(graph.ops)}


def main() -> None:
    rows = [measure(path, data, framework) for path, (data, framework) in CASES.items()]
    print(f"| model | compared with | real inputs | ops | max rel. error (outputs) | max rel. error "
          f"(every tensor) | top-1 agreement | within {TOLERANCE:g} |")
    print("|---|---|---|---|---|---|---|---|")
    for r in rows:
        inner = f"{r['intermediate_rel']:.2e}" if r["intermediate_rel"] is not None else "-"
        ok = r["output_rel"] <= TOLERANCE and (r["intermediate_rel"] or 0) <= TOLERANCE
        print(f"| {r['model']} | {r['framework']} | {r['inputs']} | {r['ops']} | {r['output_rel']:.2e} | {inner} | "
              f"{r['top1_agree']}/{r['inputs']} | {'yes' if ok else 'NO'} |")


if __name__ == "__main__":
    main()
