"""The whole job as plain functions: convert (import -> plan -> emit) and verify (build -> run ->
compare). The CLI is a thin shell over these."""
from __future__ import annotations

import hashlib
from pathlib import Path

import numpy as np

from patch_inference.memory_planner import graph_buffers, plan_memory
from quantize import (DEFAULT_METHOD, apply_bits, calibrated_ranges, choose_bits, load_calibration,
                      post_training_quantize, precision_report)
from patch_inference.schedule import build_schedule, parse_patch_option, search_schedule
from quantize.quantmcu import (DEFAULT_LAMBDA, DEFAULT_SIGMA, LowPath, QuantMCUPlan, calibration_feeds, plan_quantmcu,
                               stage_bitops)
from quantize.quantmcu import agreement as quantmcu_agreement
from targets import build as target_build
from targets import fit
from targets.bundle import is_bundle_target, write_bundle
from targets.c_emitter import boundary, emit_c_project, write_test_inputs
from targets.kernel_spec import dsp_layouts
from targets.registry import get_target
from targets.tflite_export import export_tflite

from . import manifest
from . import report as report_mod
from . import tflm
from .analysis import layer_table, op_macs
from .errors import UserError
from .importers import load_model
from .importers.tflite import import_tflite
from .ir import Graph
from .output_dir import OutputFolder
from .passes import fold_pad_into_conv, strip_float_io
from .read_policy import DEFAULT_POLICY, ReadPolicy
from .reference import ops_beyond_tflm, run_reference
from .safe_files import load_array, read_file

SETTINGS_FILE = manifest.SETTINGS_FILE
DEFAULT_TEST_INPUTS = 20
MODEL_FILE = "tflite/model_int8.tflite"


def prepare_graph(model_path: Path, io: str, input_shape: tuple[int, ...] | None = None,
                  policy: ReadPolicy = DEFAULT_POLICY) -> Graph:
    graph = load_model(model_path, input_shape, policy)
    return strip_float_io(graph) if io == "int8" else graph


def is_float_model(graph: Graph) -> bool:
    return all(t.quant is None for t in graph.tensors.values())


def import_int8(model_path: Path, calib: Path | None = None, calib_method: str = DEFAULT_METHOD,
                input_shape: tuple[int, ...] | None = None, calib_progress=None,
                pruning: dict | None = None, mixed: dict | None = None,
                calib_for_int8: bool = False, policy: ReadPolicy = DEFAULT_POLICY) -> tuple[Graph, dict[str, bytes]]:
    """The int8 graph to deploy and the TFLite artifacts (file name -> bytes). An int8 TFLite model
    is taken as it is; a float model is pruned (when `pruning` asks), calibrated on `calib`,
    quantized, and written as model_float32/float16/int8.tflite. The graph is read back from
    model_int8.tflite, so convert and verify see the same file. `pruning` gets its report.
    `mixed` ({"kind", "value"} from quantize.parse_budget, "activations": bool, optional
    "progress") chooses weight bits per layer (and 4-bit activations) under the budget; the
    TFLite file holds the weights' values as int8 (exact: TFLite Micro computes what the C does,
    unless activations are 4-bit: TFLite cannot clamp to them), the graph carries the bits, and
    `mixed` gets "bits" (tensor -> bits below 8) and "report". calib_for_int8: `calib` is
    also for a later step (QuantMCU), so an int8 model may come with it."""
    graph = load_model(model_path, input_shape, policy)
    if not is_float_model(graph):
        if calib is not None and not calib_for_int8:
            raise UserError(f"{model_path}: already quantized; --calib is for float models")
        if pruning:
            raise UserError(f"{model_path}: already quantized; pruning needs the float model")
        if mixed:
            raise UserError(f"{model_path}: already quantized; --quant mixed needs the float model")
        return graph, {"model_int8.tflite": read_file(model_path, policy, "model file")}
    if calib is None:
        raise UserError(f"{model_path}: a float model needs calibration data for int8: pass --calib FILE "
                        f"(.npy, or .npz with key 'x', float32 samples in the model's own input layout)")
    samples = load_calibration(calib, graph, policy)
    if pruning:
        graph = prune_float(graph, samples, pruning, policy)
    bits = ranges = None
    if mixed:
        ranges = calibrated_ranges(graph, samples, calib_method, progress=calib_progress)
        bits, mixed["report"] = choose_bits(graph, samples, mixed["kind"], mixed["value"],
                                            ranges if mixed.get("activations") else None, mixed.get("progress"))
    quantized = post_training_quantize(graph, samples, calib_method, progress=calib_progress, bits=bits,
                                       ranges=ranges)
    artifacts = {"model_float32.tflite": export_tflite(graph),
                 "model_float16.tflite": export_tflite(graph, float16_weights=True),
                 "model_int8.tflite": export_tflite(quantized)}
    imported = import_tflite(artifacts["model_int8.tflite"], str(model_path), policy)
    if mixed:
        mixed["bits"] = {name: t.quant.bits for name, t in quantized.tensors.items()
                         if t.quant is not None and t.quant.bits < 8}
        imported = apply_bits(imported, mixed["bits"])
    return imported, artifacts


def prune_float(graph: Graph, samples: np.ndarray, pruning: dict, policy: ReadPolicy = DEFAULT_POLICY) -> Graph:
    """Prune the float graph as `pruning` asks (ratio or budget, importance, labels, epochs),
    recover by distillation on the calibration samples, and record the report in pruning."""
    from prune import agreement, parse_budget, prune_model
    labels = None
    if pruning.get("labels"):
        labels = load_array(pruning["labels"], policy, "labels").reshape(-1)
        if len(labels) != len(samples):
            raise UserError(f"{pruning['labels']}: {len(labels)} labels for {len(samples)} calibration samples")
    budget = parse_budget(pruning["budget"]) if pruning.get("budget") else None
    pruned, info = prune_model(graph, ratio=pruning.get("ratio"), budget=budget,
                               importance=pruning.get("importance", "l1"), calib=samples, labels=labels,
                               epochs=pruning.get("epochs", 60), progress=pruning.get("progress"))
    info["agreement_with_unpruned"] = agreement(graph, pruned, samples, labels)
    pruning["report"] = info
    return pruned


def random_inputs(graph: Graph, count: int, seed: int = 0) -> list[np.ndarray]:
    """Random inputs covering each input's whole quantized range (float inputs: the range the
    first QUANTIZE maps onto int8)."""
    rng = np.random.default_rng(seed)
    batches = []
    for _ in range(count):
        parts = []
        for name in graph.inputs:
            t = graph.tensors[name]
            if t.dtype == "float32":
                q = next((graph.tensors[op.outputs[0]] for op in graph.ops
                          if op.inputs[:1] == [name] and op.kind == "quantize"), None)
                lo, hi = ((-128 - q.zero_point()) * q.scale(), (127 - q.zero_point()) * q.scale()) if q else (-1, 1)
                parts.append(rng.uniform(lo, hi, size=t.shape).astype(np.float32))
            else:
                info = np.iinfo(t.dtype)
                parts.append(rng.integers(info.min, info.max + 1, size=t.shape, dtype=t.dtype))
        batches.append(np.concatenate([p.reshape(-1) for p in parts]))
    return batches


def split_feeds(graph: Graph, flat: np.ndarray) -> list[np.ndarray]:
    feeds, pos = [], 0
    for name in graph.inputs:
        t = graph.tensors[name]
        feeds.append(flat[pos:pos + t.size].reshape(t.shape).astype(t.dtype))
        pos += t.size
    return feeds


def optimize(graph: Graph) -> Graph:
    """Graph passes that keep every output byte: what actually runs (and what inspect shows)."""
    return fold_pad_into_conv(graph)


def make_schedule(graph: Graph, patch: str = "auto", max_mac_overhead: float = 0.10,
                  stream_input: bool = False):
    """The schedule: searched (auto), layer by layer (none) or the stage the user names
    (NxN@LAYER, LAYER as numbered by `tinydeploy inspect`)."""
    graph = optimize(graph)
    try:
        if patch == "auto":
            return search_schedule(graph, max_mac_overhead, stream_input=stream_input)
        return build_schedule(graph, parse_patch_option(graph, patch), stream_input=stream_input)
    except ValueError as exc:
        raise UserError(str(exc)) from None


def schedule_for(graph: Graph, board, patch: str = "auto", max_mac_overhead: float = 0.10,
                 stream_input: bool = False):
    """(schedule, DSP working buffers or not) for the board. A DSP target's kernels have larger
    working buffers (kernel_spec.dsp_layouts); a patch schedule (the memory-first choice) leaves
    them out when they would raise the arena, layer by layer keeps them (the fast choice)."""
    with dsp_layouts(board.dsp_kernels):
        schedule = make_schedule(graph, patch, max_mac_overhead, stream_input)
    if board.dsp_kernels and patch != "none":
        with dsp_layouts(False):
            plain = make_schedule(graph, patch, max_mac_overhead, stream_input)
        if plain.plan.arena_bytes < schedule.plan.arena_bytes:
            return plain, False
    return schedule, board.dsp_kernels


def with_quantmcu(schedule, dsp: bool, calib: Path, options: dict, float_graph: Graph | None = None,
                  policy: ReadPolicy = DEFAULT_POLICY):
    """The schedule with QuantMCU's low path on its patch stage (options: "sigma", "lambda",
    optional "progress"), planned on the calibration inputs; its report (calibration BitOPs,
    agreement with int8 and, given the float model, with it); and the calibration inputs."""
    if schedule.stage is None:
        raise UserError("--quantmcu works on a patch-based schedule, and this one runs layer by layer "
                        "(--patch none, or no stage within --max-mac-overhead): name one with --patch NxN@LAYER")
    graph, stage = schedule.graph, schedule.stage
    samples = load_calibration(calib, graph, policy)
    feeds = calibration_feeds(graph, samples)
    plan, calibration = plan_quantmcu(graph, stage, feeds, options.get("sigma", DEFAULT_SIGMA),
                                      options.get("lambda", DEFAULT_LAMBDA), options.get("progress"))
    low = LowPath.build(graph, stage, plan)
    with dsp_layouts(dsp):
        rebuilt = build_schedule(graph, stage, True, schedule.stream_input,
                                 low_tile=low.source_requantize() is not None)
    rebuilt.quantmcu = low
    compare_float = float_graph if samples.dtype == np.float32 else None   # int8 samples: no float inputs
    return rebuilt, {"stage": plan.stage, "outlier_sigma": plan.sigma, "vdqs_lambda": plan.lam,
                     "input_bounds": list(plan.bounds), "bits": plan.bits,
                     "patch_stage_bitops": {"calibration": calibration},
                     "agreement_on_calibration": quantmcu_agreement(low, feeds, compare_float, samples),
                     "search": plan.search}, feeds


def convert(model_path: str | Path, target: str, out_dir: str | Path | OutputFolder, io: str = "model",
            prefix: str = "model", patch: str = "auto", max_mac_overhead: float = 0.10,
            stream_input: bool = False, progress=None, calib: str | Path | None = None,
            calib_method: str = DEFAULT_METHOD, input_shape: tuple[int, ...] | None = None, calib_progress=None,
            pruning: dict | None = None, mixed: dict | None = None, quantmcu: dict | None = None,
            labels_file: str | Path | None = None, policy: ReadPolicy = DEFAULT_POLICY, force: bool = False) -> dict:
    """pruning: None, or {"ratio": R | "budget": "macs=N", "importance", "labels", "epochs"}.
    mixed: None (int8), or {"kind": "weight_fraction" | "bitops", "value": budget} (import_int8).
    quantmcu: None, or {"sigma", "lambda"} (with_quantmcu). labels_file: one class label per line.
    out_dir: a path (checked here, before any work; `force` as --force) or an OutputFolder the
    caller prepared."""
    model_path = Path(model_path)
    folder = out_dir if isinstance(out_dir, OutputFolder) else OutputFolder.prepare(
        out_dir, [model_path, calib, (pruning or {}).get("labels"), labels_file], force)
    labels = read_labels(Path(labels_file)) if labels_file is not None else None
    board = get_target(target)
    if mixed and mixed.get("activations") and is_bundle_target(target):
        raise UserError(f"--mixed-activations: the {target} bundle runs the TFLite model, and TFLite cannot "
                        f"express 4-bit activations; use --quant mixed without it")
    if quantmcu and is_bundle_target(target):
        raise UserError(f"--quantmcu: the {target} bundle runs the TFLite model, and TFLite cannot switch "
                        f"grids per patch; convert for a core (e.g. --target host) and verify with --target {target}")
    if quantmcu and calib is None:
        raise UserError("--quantmcu needs calibration inputs to set the outlier bounds and bit widths: "
                        "--calib FILE (.npy or .npz with key 'x', in the model's input layout)")
    graph, artifacts = import_int8(model_path, calib and Path(calib), calib_method, input_shape, calib_progress,
                                   pruning, mixed, calib_for_int8=bool(quantmcu), policy=policy)
    graph = strip_float_io(graph) if io == "int8" else graph
    schedule, dsp = schedule_for(graph, board, patch, max_mac_overhead, stream_input)
    if quantmcu:
        source = load_model(model_path, input_shape, policy)
        schedule, quantmcu_info, calib_feeds = with_quantmcu(schedule, dsp, Path(calib), quantmcu,
                                                             source if is_float_model(source) and not pruning else None,
                                                             policy)
    if labels is not None:
        check_labels(labels, graph, Path(labels_file))
    inputs = random_inputs(graph, DEFAULT_TEST_INPUTS)
    if quantmcu:   # random inputs are all outliers: real ones take the low path too
        half = DEFAULT_TEST_INPUTS // 2
        inputs = inputs[:half] + [np.concatenate([f.reshape(-1) for f in feeds]) for feeds in calib_feeds[:half]]
    with folder.staging() as tmp:
        with dsp_layouts(dsp):   # as the schedule was planned
            facts = emit_c_project(schedule, tmp / "c", inputs, prefix,
                                   model_sha256=_source_sha256(model_path, policy), labels=labels)
        need = fit.estimate(schedule.plan.arena_bytes, boundary(schedule.graph, schedule.graph.outputs)["bytes"],
                            facts["weights_bytes"], len(facts["kernels"]))
        fit.check_fits(board, model_path.name, need, "estimated")
        np.save(tmp / "c" / "harness" / "test_inputs.npy", np.stack(inputs))
        (tmp / "tflite").mkdir()
        for name, data in artifacts.items():
            (tmp / "tflite" / name).write_bytes(data)
        if is_bundle_target(target):
            write_bundle(tmp, target, artifacts, model_path.name, prefix)
        settings = {"source": model_path.name, "io": io, "prefix": prefix, "target": target,
                    "patch": patch, "max_mac_overhead": max_mac_overhead, "stream_input": stream_input,
                    "calib": calib and str(calib), "calib_method": calib_method if calib else None,
                    "quant": "mixed" if mixed else "int8",
                    "mixed": {"budget": {mixed["kind"]: mixed["value"]}, "activations": bool(mixed.get("activations")),
                              "bits": mixed["bits"]} if mixed else None,
                    "quantmcu": schedule.quantmcu.plan.to_json() if quantmcu else None,
                    "limits": {"max_file_bytes": policy.max_file_bytes, "max_tensor_bytes": policy.max_tensor_bytes}}
        report = build_report(schedule, facts, target, settings)
        if mixed:
            report["precision"]["search"] = mixed["report"]
        if quantmcu:
            report["quantmcu"] = quantmcu_info
        if pruning:
            report["pruning"] = pruning["report"]
            settings["pruning"] = {k: v for k, v in pruning.items() if k in ("ratio", "budget", "importance", "epochs")}
        report_mod.write(tmp, report)
        manifest.write(tmp, settings)   # last: the manifest of everything above
    return report


LABELS_MAX_BYTES = 1 << 20


def read_labels(path: Path) -> list[str]:
    """Class labels, one per line, from a UTF-8 text file (a trailing empty line ignored)."""
    try:
        text = read_file(path, ReadPolicy(max_file_bytes=LABELS_MAX_BYTES), "--labels-file").decode("utf-8")
    except UnicodeDecodeError:
        raise UserError(f"{path}: --labels-file is not UTF-8 text") from None
    return text.splitlines()


def check_labels(labels: list[str], graph: Graph, path: Path) -> None:
    classes = graph.tensors[graph.outputs[0]].shape[-1]
    if len(labels) != classes:
        raise UserError(f"{path}: {len(labels)} labels for {classes} output values (one label per line)")


def _source_sha256(model_path: Path, policy: ReadPolicy) -> str:
    """SHA-256 of the model file (of a SavedModel folder: its graph file), for model.h."""
    source = model_path / "saved_model.pb" if model_path.is_dir() else model_path
    return hashlib.sha256(read_file(source, policy, "model file")).hexdigest()


def build_report(schedule, facts, target, settings) -> dict:
    graph, plan, stage = schedule.graph, schedule.plan, schedule.stage
    io_in, io_out = boundary(graph, graph.inputs), boundary(graph, graph.outputs)
    steps = len(graph.ops) + 2
    live = [sum(b.size for b in schedule.buffers if b.first <= s <= b.last) for s in range(steps)]
    layer_by_layer = graph_buffers(graph)
    precision = precision_report(graph, stage and stage.ops)
    precision["unpack_scratch_bytes"] = max((b.size for b in schedule.buffers if b.name.startswith("unpack")), default=0)
    return {
        "target": target,
        "model": settings["source"],
        "io": {"input": {k: io_in[k] for k in ("ctype", "elems", "bytes", "scale", "zero_point")},
               "output": {k: io_out[k] for k in ("ctype", "elems", "bytes", "scale", "zero_point")}},
        "memory": {
            "arena_bytes": plan.arena_bytes, "lower_bound_bytes": plan.lower_bound_bytes,
            "layer_by_layer_arena_bytes": plan_memory(layer_by_layer).arena_bytes,
            "weights_bytes": facts["weights_bytes"], "output_buffer_bytes": io_out["bytes"],
            "stack_bytes": None, "flash_bytes": None,
            "peak_sram_bytes": None,
            "input_in_sram": not schedule.stream_input,
            "peak_sram_note": ("arena (input streamed patch by patch through the caller's reader: only "
                               "input patches are in the arena) " if schedule.stream_input else
                               "arena (whole input and output tensors included) ")
                              + "+ caller's output buffer + stack high-water mark; filled in by verify",
        },
        "compute": {"macs": schedule.macs, "executed_macs": schedule.executed_macs,
                    "mac_overhead": round(schedule.mac_overhead, 6),
                    # BitOPs of each op once, plus the patch stage's recomputed MACs at 8 x 8 bits
                    "bitops": precision["bitops"] + (schedule.executed_macs - schedule.macs) * 64},
        "precision": precision,
        "plan": {
            "patch": stage.label if stage else "none",
            "patch_option": settings.get("patch", "auto"),
            "stage": ({"first_op": stage.first, "last_op": stage.last, "grid": stage.grid,
                       "patches": [[r.y0, r.y1, r.x0, r.x1] for r in (outs[-1] for outs in stage.out_regions)],
                       "input_regions": [[r.y0, r.y1, r.x0, r.x1] for r in (ins[0] for ins in stage.in_regions)]}
                      if stage else None),
            "inplace_ops": {str(i): how for i, how in sorted(schedule.inplace.items())},
            "memory_strategy": plan.strategy,
            "live_bytes_per_step": live,
            "layer_by_layer_live_bytes_per_step": [sum(b.size for b in layer_by_layer if b.first <= s <= b.last)
                                                   for s in range(steps)],
            "offsets": {n: plan.offsets[n] for n in sorted(plan.offsets)},
        },
        "layers": layer_table(graph, layer_by_layer),
        "kernels": facts["kernels"],
        "verification": None,
    }


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


def _quantmcu_low_path(graph: Graph, plan_json: dict, out_dir: Path):
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
           extra_cflags: str = "", progress=None) -> dict:
    out_dir = Path(out_dir)
    settings = manifest.read(out_dir)
    manifest.check_files(out_dir, settings)
    policy = ReadPolicy(**settings.get("limits", {}))
    target = target or settings["target"]
    board = get_target(target)
    graph = apply_bits(prepare_graph(out_dir / MODEL_FILE, settings["io"], policy=policy),
                       (settings.get("mixed") or {}).get("bits", {}))
    # TFLite holds sub-8-bit weights exactly but cannot clamp an activation to 4 bits
    four_bit_activations = any(not t.is_const and t.quant is not None and t.quant.bits < 8
                               for t in graph.tensors.values())
    low = None
    if settings.get("quantmcu"):   # the reference runs QuantMCU's two paths patch by patch
        low = _quantmcu_low_path(graph, settings["quantmcu"], out_dir)
    io_in = boundary(graph, graph.inputs)
    c_dir = out_dir / "c"
    report = manifest.read_report(out_dir)
    if inputs_path is not None:
        inputs = load_inputs(Path(inputs_path), graph, io_in["ctype"], policy)
        np.save(c_dir / "harness" / "test_inputs.npy", np.stack(inputs))
    else:
        inputs = load_inputs(out_dir / manifest.TEST_INPUTS_NPY, graph, io_in["ctype"], policy)
    write_test_inputs(c_dir, inputs, io_in["ctype"], settings["prefix"])   # the harness builds what is checked
    step = progress or (lambda message: None)
    elf, result = target_build.build_and_run(c_dir, target, out_dir / "build" / target, inputs, io_in["ctype"],
                                             settings["prefix"], extra_cflags, step)
    step("comparing with the reference executor")
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
        step("comparing with TensorFlow Lite Micro")
        beyond = {i: ops for i, x in enumerate(inputs) if (ops := ops_beyond_tflm(graph, split_feeds(graph, x)))}
        runnable = [i for i in range(len(inputs)) if i not in beyond]
        try:
            tflm_bytes = _tflm_outputs(out_dir / MODEL_FILE, graph, settings["io"], [inputs[i] for i in runnable],
                                       policy)
        except tflm.TflmFailure as failure:
            tflm_failure = _tflm_failure_line(failure, runnable, verification)
            verification.update(tflm_bit_exact=None, tflm_note=tflm_failure)
        else:
            tflm_bad = [i for i, e in zip(runnable, tflm_bytes) if result.outputs.get(i) != e]
            verification["tflm_bit_exact"] = not tflm_bad if runnable else None
            verification["tflm_mismatched_inputs"] = tflm_bad
            verification["reference"] += " + TensorFlow Lite Micro"
        if beyond:
            ops = sorted({op for found in beyond.values() for op in found})
            verification["tflm_skipped_inputs"] = sorted(beyond)
            verification["tflm_note"] = (f"TensorFlow Lite Micro asserts in {', '.join(ops)} on {len(beyond)} of "
                                         f"{len(inputs)} inputs (beyond its fixed-point range): compared with it on "
                                         f"the other {len(runnable)}")
            step(verification["tflm_note"])
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
        fit.check_fits(board, settings["source"], {"sram_bytes": mem["peak_sram_bytes"],
                                                   "flash_bytes": mem["flash_bytes"]}, "measured")
    return report


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


def _tflm_outputs(model_file: Path, graph: Graph, io: str, inputs, policy: ReadPolicy = DEFAULT_POLICY) -> list[bytes]:
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
