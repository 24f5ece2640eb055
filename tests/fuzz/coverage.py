"""Coverage-guided fuzzing of the in-process readers with atheris (libFuzzer), seeded from the
shared models: any exception but UserError from the TFLite or ONNX reader, or from the IR checks
on what they return, is a finding (libFuzzer stops and writes the input as crash-*).

    .venv/bin/python -m tests.fuzz.coverage tflite -atheris_runs=200000
    .venv/bin/python -m tests.fuzz.coverage onnx -max_total_time=600
"""
from __future__ import annotations

import sys
import tempfile
from pathlib import Path

import atheris

with atheris.instrument_imports(include=["toolchain"]):
    from toolchain.errors import UserError
    from toolchain.importers.onnx import import_onnx
    from toolchain.importers.tflite import import_tflite
    from toolchain.validate import check_graph

from .seeds import EXAMPLE, MODELS, REPO

READERS = {"tflite": import_tflite, "onnx": import_onnx}
SEEDS = {"tflite": [MODELS / "tflm" / "hello_world_int8.tflite", MODELS / "tflm" / "hello_world_float.tflite",
                    REPO / "examples" / "mnist" / "mnist_cnn_int8.tflite"],
         "onnx": [EXAMPLE / "mnist_mbv2.onnx"]}


def main() -> None:
    fmt = sys.argv.pop(1) if len(sys.argv) > 1 and sys.argv[1] in READERS else "tflite"
    reader = READERS[fmt]

    def one_input(data: bytes) -> None:
        try:
            check_graph(reader(data, "fuzzed"), "fuzzed")
        except UserError:
            pass

    corpus = Path(tempfile.mkdtemp(prefix=f"tinydeploy-atheris-{fmt}-"))
    for seed in SEEDS[fmt]:
        (corpus / seed.name).write_bytes(seed.read_bytes())
    atheris.Setup(sys.argv + [str(corpus)], one_input)
    atheris.Fuzz()


if __name__ == "__main__":
    main()
