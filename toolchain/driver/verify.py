"""`verify`: build an output folder's C project for a target, run it (natively or in QEMU),
compare every output byte with the integer reference executor (and TensorFlow Lite Micro where it
can run the model), and add what was measured to the reports. What convert decided comes from
its manifest (convert.json)."""
from __future__ import annotations

from pathlib import Path

import numpy as np

from patch_inference.schedule import parse_patch_option
from quantize import apply_bits
from quantize.quantmcu import LowPath, QuantMCUPlan, stage_bitops
from targets import build as target_build
from targets import fit
from targets.c_emitter import boundary, write_test_inputs
from targets.registry import get_target
from toolchain import tflm
from toolchain.errors import UserError
from toolchain.importers import load_model
from toolchain.ir import Graph
from toolchain.read_policy import DEFAULT_POLICY, ReadPolicy
from toolchain.reference import ops_beyond_tflm, run_reference
from toolchain.safe_files import load_array, read_file

from . import report as report_mod
from .manifest import MODEL_FILE, SETTINGS_FILE, TEST_INPUTS_NPY, Manifest, read_report
from .pipeline import optimize, prepare_graph, split_feeds
from .progress import SILENT, Progress


def load_inputs(path: Path, graph: Graph, io_ctype: str, policy: ReadPolicy = DEFAULT_POLICY) -> list[np.ndarray]:
    data = load_array(path, policy, "inputs")
    want_dtype = {"int8_t": np.int8, "float": np.float32, "uint8_t": np.uint8}[io_ctype]
    if data.dtype != want_dtype:
        raise UserError(f"{path}: inputs have dtype {data.dtype}, the model takes {np.dtype(want_dtype)}")
    per_input = sum(graph.tensors[n].size for n in graph.inputs)
    shape = graph.tensors[graph.inputs[0]].shape
    if data.size % per_input != 0 or data.size == 0:
        raise UserError(f"{path}: shape {list(data.shape)} does not hold whole inputs of "
                        f"{per_input} values (model input shape {list(shape)})")
    return list(data.reshape(-1, per_input))


def quantmcu_low_path(graph: Graph, plan_json: dict, out_dir: Path) -> LowPath:
    """QuantMCU's low path as convert.json records it; a plan that does not fit the model is a
    tampered or foreign convert.json."""
    try:
        plan = QuantMCUPlan.from_json(plan_json)
        optimized = optimize(graph)
        return LowPath.build(optimized, parse_patch_option(optimized, plan.stage), plan)
    except (KeyError, TypeError, ValueError, IndexError) as exc:
        raise UserError(f"{out_dir / SETTINGS_FILE}: tampered or not from tinydeploy (its QuantMCU plan does not "
                        f"fit the model: {type(exc).__name__})") from None


def verify(out_dir: str | Path, target: str | None = None, inputs_path: str | Path | None = None,
           extra_cflags: str = "", progress: Progress = SILENT) -> dict:
    out_dir = Path(out_dir)
    manifest = Manifest.read(out_dir)
    policy = manifest.policy
    target = target or manifest.target
    board = get_target(target)
    graph = apply_bits(prepare_graph(out_dir / MODEL_FILE, manifest.io, policy=policy), manifest.bits)
    # TFLite holds sub-8-bit weights exactly but cannot clamp an activation to 4 bits
    four_bit_activations = any(not t.is_const and t.quant is not None and t.quant.bits < 8
                               for t in graph.tensors.values())
    low = None
    if manifest.quantmcu:   # the reference runs QuantMCU's two paths patch by patch
        low = quantmcu_low_path(graph, manifest.quantmcu, out_dir)
    io_in = boundary(graph, graph.inputs)
    c_dir = out_dir / "c"
    report = read_report(out_dir)
    if inputs_path is not None:
        inputs = load_inputs(Path(inputs_path), graph, io_in["ctype"], policy)
        np.save(c_dir / "harness" / "test_inputs.npy", np.stack(inputs))
    else:
        inputs = load_inputs(out_dir / TEST_INPUTS_NPY, graph, io_in["ctype"], policy)
    write_test_inputs(c_dir, inputs, io_in["ctype"], manifest.prefix)   # the harness builds what is checked
    elf, result = target_build.build_and_run(c_dir, target, out_dir / "build" / target, inputs, io_in["ctype"],
                                             manifest.prefix, extra_cflags, progress.step)
    progress.step("comparing with the reference executor")
    if low is None:
        expected = [_output_bytes(run_reference(graph, split_feeds(graph, x))) for x in inputs]
    else:
        runs = [low.run(split_feeds(graph, x)) for x in inputs]
        expected = [_output_bytes(outputs) for outputs, _ in runs]
    mismatches = [i for i, e in enumerate(expected) if result.outputs.get(i) != e]
    verification = {"inputs": len(inputs), "bit_exact": not mismatches and len(result.outputs) == len(inputs),
                    "mismatched_inputs": mismatches, "reference": "tinydeploy integer reference (numpy)",
                    "instructions_per_inference": result.counts and result.counts.per_inference,
                    "instructions_total": result.counts and result.counts.total}
    tflm_failure = None
    if tflm.available() and not four_bit_activations and low is None:
        tflm_failure = compare_with_tflm(out_dir / MODEL_FILE, graph, inputs, result.outputs, verification, progress,
                                         policy)
    else:
        verification["tflm_bit_exact"] = None
        verification["tflm_note"] = ("not available" if not tflm.available() else
                                     "not comparable (TFLite cannot hold 4-bit activations or QuantMCU's per-patch grids)")
    mem = report["memory"]
    mem.update(fit.measured_memory(board, elf, result.stack_bytes, mem))
    report["target"] = target
    report["verification"] = verification
    if low is not None:   # TFLite cannot switch grids per patch: compared with the reference only
        report["quantmcu"]["patch_stage_bitops"]["verified_inputs"] = stage_bitops(
            low.int8, low.stage, low.plan, [flags for _, flags in runs])
    report["predictions"] = [_prediction(result.outputs.get(i), graph) for i in range(len(inputs))]
    report_mod.write(out_dir, report)
    if tflm_failure:   # the figures are in the report; the run still failed to compare
        raise UserError(tflm_failure)
    if board.is_board:
        fit.check_fits(board, manifest.source, {"sram_bytes": mem["peak_sram_bytes"],
                                                "flash_bytes": mem["flash_bytes"]}, "measured")
    return report


def compare_with_tflm(model_file: Path, graph: Graph, inputs, outputs: dict[int, bytes], verification: dict,
                      progress: Progress, policy: ReadPolicy = DEFAULT_POLICY) -> str | None:
    """TensorFlow Lite Micro's outputs against the program's (verification gets tflm_* keys), on the
    inputs its kernels do not assert on; a failed TFLM run is a line to raise once the figures are
    written (returned)."""
    progress.step("comparing with TensorFlow Lite Micro")
    beyond = {i: ops for i, x in enumerate(inputs) if (ops := ops_beyond_tflm(graph, split_feeds(graph, x)))}
    runnable = [i for i in range(len(inputs)) if i not in beyond]
    failure_line = None
    try:
        tflm_bytes = _tflm_outputs(model_file, graph, [inputs[i] for i in runnable], policy)
    except tflm.TflmFailure as failure:
        failure_line = _tflm_failure_line(failure, runnable, verification)
        verification.update(tflm_bit_exact=None, tflm_note=failure_line)
    else:
        tflm_bad = [i for i, e in zip(runnable, tflm_bytes) if outputs.get(i) != e]
        verification["tflm_bit_exact"] = not tflm_bad if runnable else None
        verification["tflm_mismatched_inputs"] = tflm_bad
        verification["reference"] += " + TensorFlow Lite Micro"
    if beyond:
        ops = sorted({op for found in beyond.values() for op in found})
        verification["tflm_skipped_inputs"] = sorted(beyond)
        verification["tflm_note"] = (f"TensorFlow Lite Micro asserts in {', '.join(ops)} on {len(beyond)} of "
                                     f"{len(inputs)} inputs (beyond its fixed-point range): compared with it on "
                                     f"the other {len(runnable)}")
        progress.step(verification["tflm_note"])
    return failure_line


def _tflm_failure_line(failure, runnable: list[int], verification: dict) -> str:
    """One line for a TFLM run that died or raised: on which input, why, and what the C did."""
    where = "" if failure.index is None else f" on input {runnable[failure.index]}"
    ours = "matches" if verification["bit_exact"] else "does not match"
    return (f"TensorFlow Lite Micro could not run the model{where} ({failure.reason}); the C program {ours} "
            f"the tinydeploy reference (figures in report.json)")


def _output_bytes(outputs: list[np.ndarray]) -> bytes:
    return b"".join(np.ascontiguousarray(o).tobytes() for o in outputs)


def _prediction(raw: bytes | None, graph: Graph):
    if raw is None:
        return None
    t = graph.tensors[graph.outputs[0]]
    values = np.frombuffer(raw[:t.nbytes], dtype=t.dtype)
    return int(np.argmax(values)) if values.size > 1 else float(values[0])


def _tflm_outputs(model_file: Path, graph: Graph, inputs, policy: ReadPolicy = DEFAULT_POLICY) -> list[bytes]:
    """Run the original model in TFLM; with --io int8 map our int8 boundary onto its float one
    (dequantize in, quantize out: exact for int8 values)."""
    original = load_model(model_file, policy=policy)
    model_bytes = read_file(model_file, policy, "model file")
    feeds = []
    for x in inputs:
        parts = split_feeds(graph, x)
        converted = []
        for name, orig_name, part in zip(graph.inputs, original.inputs, parts):
            if original.tensors[orig_name].dtype == "float32" and graph.tensors[name].dtype == "int8":
                t = graph.tensors[name]
                part = (np.float32(t.scale()) * (part.astype(np.float32) - np.float32(t.zero_point()))).astype(np.float32)
            converted.append(part)
        feeds.append(converted)
    results = tflm.run_tflm(model_bytes, feeds, len(original.outputs))
    out = []
    for outs in results:
        mapped = []
        for name, orig_name, o in zip(graph.outputs, original.outputs, outs):
            t = graph.tensors[name]
            if original.tensors[orig_name].dtype == "float32" and t.dtype == "int8":
                q = np.round(o.astype(np.float64) / np.float64(t.scale())) + t.zero_point()
                o = np.clip(q, -128, 127).astype(np.int8)
            mapped.append(o.reshape(t.shape).astype(t.dtype))
        out.append(_output_bytes(mapped))
    return out
