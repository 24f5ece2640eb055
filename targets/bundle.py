"""Deployment bundle for application processors (Raspberry Pi boards, Android phones): the
.tflite artifacts, a LiteRT runner with a latency benchmark, a short board README and a copy of
the C project, in OUT/bundle/, ready to copy to the device."""
from __future__ import annotations

import shutil
from pathlib import Path

from toolchain.importers.tflite import import_tflite

from .c_emitter import template_env
from .registry import get_target

BUNDLE_DIR = "bundle"
THREADS = 4  # every supported board has four cores
ARTIFACTS = {"model_float32.tflite": "the float model", "model_float16.tflite": "float16 weights, float32 compute",
             "model_int8.tflite": "int8 weights and activations, the model's own input/output type"}


def is_bundle_target(target: str) -> bool:
    return target.startswith(("rpi", "android"))


def write_bundle(out_dir: Path, target: str, artifacts: dict[str, bytes], source: str, prefix: str = "model") -> Path:
    """Write OUT/bundle/ next to the emitted C project (OUT/c, which is copied in)."""
    t = get_target(target)
    graph = import_tflite(artifacts["model_int8.tflite"], source)  # what LiteRT sees
    bundle = out_dir / BUNDLE_DIR
    bundle.mkdir()
    for name, data in artifacts.items():
        (bundle / name).write_bytes(data)
    shutil.copytree(out_dir / "c", bundle / "c")
    inp, out = graph.tensors[graph.inputs[0]], graph.tensors[graph.outputs[0]]
    env = template_env()
    context = dict(
        target=t.name, isa=t.isa, description=t.description, compiler=t.compiler, prefix=prefix,
        android=target.startswith("android"),
        source=source, threads=THREADS, model="model_int8.tflite", input_shape=tuple(inp.shape), input_dtype=inp.dtype,
        output_shape=tuple(out.shape), output_dtype=out.dtype,
        input_note=(f"int8 with scale {inp.scale():.6g}, zero point {inp.zero_point()}" if inp.quant else ""),
        files=[(name, len(data), ARTIFACTS[name]) for name, data in artifacts.items()],
    )
    (bundle / "run.py").write_text(env.get_template("pi/run.py.j2").render(**context))
    (bundle / "run.py").chmod(0o755)
    (bundle / "README.md").write_text(env.get_template("pi/README.md.j2").render(**context))
    return bundle
