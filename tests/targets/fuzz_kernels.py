"""A random-shape sweep of the C kernels, beyond the fixed sweeps of the tests: per seed one graph
of random depthwise (channels, kernel, stride, dilation, padding, activation), conv and
fully-connected ops, out of place and in place, byte for byte against the integer reference on a
target (with the DSP working buffers where the target has them); with --op-models, per seed
single-op TFLite models (pool, add and mul with broadcasting, depthwise, conv, fully connected,
mean, transpose of random shapes) converted for the target and verified against the reference and
TensorFlow Lite Micro. A few seeds run in `make test` (test_fuzz_kernels.py); after kernel work:

    .venv/bin/python -m tests.targets.fuzz_kernels --target cortex-m4 --seeds 1-16
    .venv/bin/python -m tests.targets.fuzz_kernels --target cortex-m4 --seeds 1-8 --op-models
"""
from __future__ import annotations

import argparse
import sys
import tempfile
from pathlib import Path

import numpy as np

from targets.registry import get_target
from tests.targets.kernel_models import Builder, expected_outputs, random_feeds, run_c, schedules


def random_graph(seed: int):
    rng = np.random.default_rng(seed)
    b = Builder(seed)

    def pick(lo, hi):
        return int(rng.integers(lo, hi))
    for _ in range(14):
        c = int(rng.choice([3, 4, 5, 8, 12, 16, 20]))
        k, s = (pick(1, 8), pick(1, 8)), (pick(1, 4), pick(1, 4))
        d = (pick(1, 3), pick(1, 3)) if rng.random() < 0.3 else (1, 1)
        h, w = pick(max(k[0] * d[0], 3), 40), pick(max(k[1] * d[1], 3), 60)
        b.conv((1, h, w, c), c, k, s, str(rng.choice(["same", "valid"])), dilation=d, depthwise=True,
               activation=[None, "relu", "relu6"][pick(0, 3)])
    for _ in range(6):
        k, s, d = (pick(1, 6), pick(1, 6)), (pick(1, 4), pick(1, 4)), (pick(1, 3), pick(1, 3))
        h, w = pick(max(k[0] * d[0], 2), 20), pick(max(k[1] * d[1], 2), 20)
        b.conv((int(rng.choice([1, 1, 2])), h, w, pick(1, 24)), pick(1, 33), k, s, str(rng.choice(["same", "valid"])),
               dilation=d, activation="relu", per_channel=bool(rng.random() < 0.8))
    b.fully_connected(1, pick(1, 70), pick(1, 20))
    b.fully_connected(3, pick(1, 70), pick(1, 20))
    return b.graph()


def check_seed(seed: int, target: str, work: Path) -> list[str]:
    """The cases of seed whose C outputs differ from the reference (empty: all byte-exact)."""
    graph = random_graph(seed)
    feeds = random_feeds(graph, 2, seed=seed)
    failures = []
    for inplace in (False, True):
        got = run_c(schedules(graph, inplace, get_target(target).kernel_profile), work / f"{seed}-{int(inplace)}",
                    target, feeds)
        for i, x in enumerate(feeds):
            expected, pos = np.frombuffer(expected_outputs(graph, x), np.int8), 0
            mine = np.frombuffer(got[i], np.int8)
            for op in graph.ops:
                n = graph.tensors[op.outputs[0]].size
                if not np.array_equal(mine[pos:pos + n], expected[pos:pos + n]):
                    failures.append(f"seed {seed}{' in place' if inplace else ''}, input {i}: {op.kind} "
                                    f"{graph.tensors[op.inputs[0]].shape} -> {graph.tensors[op.outputs[0]].shape} {op.attrs}")
                pos += n
    return failures


PERMS = [(1, 3, 2), (2, 1, 3), (2, 3, 1), (3, 1, 2), (3, 2, 1)]   # not the identity (nothing to convert)


def random_op_cases(seed: int) -> list[tuple[str, tuple, dict]]:
    rng = np.random.default_rng(seed)

    def pick(lo, hi):
        return int(rng.integers(lo, hi))

    def padding():
        return str(rng.choice(["SAME", "VALID"]))
    h, w, c = pick(3, 12), pick(3, 12), pick(1, 9)
    axes = tuple(sorted(int(a) for a in rng.choice([1, 2, 3], size=pick(1, 4), replace=False)))
    return [("avg_pool2d", (1, h, w, c), dict(pool=(pick(1, 4), pick(1, 4)), strides=(pick(1, 3), pick(1, 3)), padding=padding())),
            ("max_pool2d", (1, h, w, c), dict(pool=(pick(1, 4), pick(1, 4)), strides=(pick(1, 3), pick(1, 3)), padding=padding())),
            ("add", (1, h, w, c), dict(other_shape=[(1, h, w, c), (1, 1, 1, c), (1, h, 1, c)][pick(0, 3)],
                                       activation=[None, "relu", "relu6"][pick(0, 3)])),
            ("mul", (1, h, w, c), dict(other_shape=[(1, h, w, c), (c,)][pick(0, 2)])),
            ("depthwise_conv2d", (1, pick(5, 14), pick(5, 14), 4 * pick(1, 4)),
             dict(kernel=(pick(1, 6), pick(1, 6)), strides=(pick(1, 4), pick(1, 4)), padding=padding())),
            ("conv2d", (1, pick(3, 12), pick(3, 12), pick(1, 9)),
             dict(filters=pick(1, 20), kernel=(pick(1, 4), pick(1, 4)), strides=(pick(1, 3), pick(1, 3)), padding=padding())),
            ("fully_connected", (pick(1, 4), pick(1, 50)), dict(units=pick(1, 20))),
            ("mean", (1, h, w, c), dict(axis=axes, keepdims=bool(rng.random() < 0.5))),
            ("transpose", (1, h, w, c), dict(perm=(0,) + tuple(int(v) for v in rng.choice(PERMS))))]


def check_op_models(seed: int, target: str, work: Path) -> list[str]:
    """The single-op models of seed that are not byte-exact (reference or TFLM) on target."""
    from tests.opmodels import op_model
    from toolchain.driver import pipeline
    from toolchain.driver.options import ConvertOptions, PatchOptions, TargetOptions
    from toolchain.driver.manifest import MODEL_FILE
    from toolchain.driver.verify import verify
    failures = []
    for k, (kind, shape, params) in enumerate(random_op_cases(seed)):
        path = work / f"{seed}-{k}.tflite"
        path.write_bytes(op_model(kind, shape, seed=seed * 16 + k, **params))
        out = work / f"{seed}-{k}-{target}"
        pipeline.convert(path, out, ConvertOptions(TargetOptions(target), PatchOptions("none")))
        graph = pipeline.prepare_graph(out / MODEL_FILE, "model")
        np.save(work / f"{seed}-{k}.npy", np.stack(pipeline.random_inputs(graph, 4, seed=k)))
        v = verify(out, target, work / f"{seed}-{k}.npy")["verification"]
        if not v["bit_exact"] or v["tflm_bit_exact"] is False:
            failures.append(f"seed {seed}: {kind} {shape} {params}: reference {v['bit_exact']}, TFLM {v['tflm_bit_exact']}")
    return failures


def seed_range(text: str) -> range:
    first, _, last = text.partition("-")
    return range(int(first), int(last or first) + 1)


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--target", default="host")
    parser.add_argument("--seeds", type=seed_range, default=seed_range("1-8"))
    parser.add_argument("--op-models", action="store_true", help="single-op TFLite models, also against TFLM")
    args = parser.parse_args(argv)
    check = check_op_models if args.op_models else check_seed
    failures = []
    with tempfile.TemporaryDirectory() as tmp:
        for seed in args.seeds:
            found = check(seed, args.target, Path(tmp))
            print(f"seed {seed} on {args.target}: {'byte-exact' if not found else f'{len(found)} differ'}")
            failures += found
    print("\n".join(failures) or f"all {len(args.seeds)} seeds byte-exact on {args.target}")
    return 1 if failures else 0


if __name__ == "__main__":
    sys.exit(main())
