"""Issue 4, item 5: every patch-based schedule the search considers for a shared model (each stage
F..L and n x n grid within the MAC-overhead budget), converted with `--patch NxN@F-L`, built for a
target and run (in QEMU for an emulated target) on 2 random inputs, byte for byte against the
integer reference. Prints one line per configuration and a summary; exit status 1 if any differs.

    .venv/bin/python benchmarks/patch_sweep.py --target cortex-m4 [--models resnet8_int8,...] [--every K]
"""
from __future__ import annotations

import argparse
import shutil
import sys
import tempfile
import time
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from benchmarks.shared_models import INT8_MODELS  # noqa: E402
from patch_inference.schedule import candidate_stages, make_stage, stage_executed_macs  # noqa: E402
from toolchain.driver import pipeline  # noqa: E402
from toolchain.driver.options import ConvertOptions, PatchOptions, TargetOptions  # noqa: E402
from toolchain.driver.manifest import MODEL_FILE  # noqa: E402
from toolchain.driver.verify import verify  # noqa: E402
from toolchain.ops import macs as op_macs  # noqa: E402
from toolchain.importers import load_model  # noqa: E402
from toolchain.passes import strip_float_io  # noqa: E402

IO = {"mcunet_vww1_int8": "int8"}   # the io each model is planned with in benchmarks/patch_memory.py


def searched_configs(name: str, io: str, max_mac_overhead: float = 0.10) -> list[str]:
    """The --patch labels of every stage the search considers within the MAC budget."""
    graph = load_model(INT8_MODELS[name])
    graph = pipeline.optimize(strip_float_io(graph) if io == "int8" else graph)
    macs = sum(op_macs(graph, op) for op in graph.ops)
    labels = []
    for first, last, grid in candidate_stages(graph):
        stage = make_stage(graph, first, last, grid)
        extra = stage_executed_macs(graph, stage) - sum(op_macs(graph, graph.ops[i]) for i in stage.ops)
        if extra <= max_mac_overhead * macs:
            labels.append(stage.label)
    return labels


def check(name: str, io: str, patch: str, target: str, work: Path) -> bool:
    out = work / f"{name}-{patch}"
    pipeline.convert(INT8_MODELS[name], out, ConvertOptions(TargetOptions(target, io=io), PatchOptions(patch)))
    graph = pipeline.prepare_graph(out / MODEL_FILE, io)
    np.save(work / "x.npy", np.stack(pipeline.random_inputs(graph, 2, seed=3)))
    return verify(out, target, work / "x.npy")["verification"]["bit_exact"]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--target", default="cortex-m4")
    parser.add_argument("--models", default="resnet8_int8,vww_96_int8,mcunet_vww1_int8")
    parser.add_argument("--every", type=int, default=1, help="check every K-th configuration only")
    args = parser.parse_args()
    started, failed, checked = time.time(), [], 0
    with tempfile.TemporaryDirectory() as tmp:
        for name in args.models.split(","):
            io = IO.get(name, "model")
            configs = searched_configs(name, io)[::args.every]
            for patch in configs:
                exact = check(name, io, patch, args.target, Path(tmp))
                checked += 1
                print(f"{name} --patch {patch} on {args.target}: {'byte-exact' if exact else 'DIFFERS'}", flush=True)
                if not exact:
                    failed.append(f"{name} {patch}")
                shutil.rmtree(Path(tmp) / f"{name}-{patch}")
    print(f"{checked} configurations on {args.target}, {checked - len(failed)} byte-exact "
          f"({time.time() - started:.0f} s){': differ: ' + ', '.join(failed) if failed else ''}")
    sys.exit(1 if failed else 0)


if __name__ == "__main__":
    main()
