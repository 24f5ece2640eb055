"""`convert` as plain steps: import (prune, quantize) -> plan -> (QuantMCU) -> emit -> write the
output folder, all or nothing. The CLI is a thin shell over it; verify and bench read what it wrote."""
from __future__ import annotations

import hashlib
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from patch_inference.schedule import Schedule, build_schedule, parse_patch_option, search_schedule, stream_input
from prune import agreement as pruning_agreement
from prune import prune_model
from quantize import apply_bits, calibrated_ranges, choose_bits, load_calibration, post_training_quantize
from quantize.quantmcu import agreement as quantmcu_agreement
from quantize.quantmcu import calibration_feeds, plan_quantmcu, with_low_path
from targets import fit
from targets.bundle import is_bundle_target, write_bundle
from targets.c_emitter import boundary, emit_c_project
from targets.registry import Target, get_target
from toolchain.errors import UserError
from toolchain.importers import load_model
from toolchain.importers.tflite import import_tflite
from toolchain.ir import Graph
from toolchain.ops.choice import PORTABLE, KernelProfile
from toolchain.passes import fold_pad_into_conv, strip_float_io
from toolchain.read_policy import DEFAULT_POLICY, ReadPolicy
from toolchain.safe_files import load_array, read_file
from toolchain.tflite_export import export_tflite

from . import plan
from . import report as report_mod
from .manifest import MODEL_FILE, Manifest
from .options import ConvertOptions, PatchOptions
from .output_dir import OutputFolder
from .progress import SILENT, Progress, Stopwatch

DEFAULT_TEST_INPUTS = 20


def prepare_graph(model_path: Path, io: str, input_shape: tuple[int, ...] | None = None,
                  policy: ReadPolicy = DEFAULT_POLICY) -> Graph:
    graph = load_model(model_path, input_shape, policy)
    return strip_float_io(graph) if io == "int8" else graph


def is_float_model(graph: Graph) -> bool:
    return all(t.quant is None for t in graph.tensors.values())


def optimize(graph: Graph) -> Graph:
    """Graph passes that keep every output byte: what actually runs (and what inspect shows)."""
    return fold_pad_into_conv(graph)


@dataclass(frozen=True)
class Imported:
    """The int8 graph to deploy, read back from model_int8.tflite (so convert and verify see the
    same file), with what it took to get there."""
    graph: Graph
    artifacts: dict[str, bytes]            # tflite/ file name -> bytes
    float_graph: Graph | None = None       # the float model as imported (None: an int8 model)
    pruning: dict | None = None            # the pruning report
    mixed_bits: dict[str, int] | None = None   # tensor -> bits below 8 (--quant mixed)
    mixed_search: dict | None = None       # the bit search's record


def import_int8(model_path: Path, options: ConvertOptions, progress: Progress = SILENT) -> Imported:
    """An int8 TFLite model is taken as it is; a float model is pruned (when asked), calibrated,
    quantized (mixed precision: weight bits per layer, and 4-bit activations, under the budget;
    the TFLite file holds the weights' values as int8, exact: TFLite Micro computes what the C
    does, unless activations are 4-bit: TFLite cannot clamp to them), and written as
    model_float32/float16/int8.tflite."""
    graph = load_model(model_path, options.input_shape, options.policy)
    precision = options.precision
    if not is_float_model(graph):
        if options.calib is not None and options.quantmcu is None:
            raise UserError(f"{model_path}: already quantized; --calib is for float models")
        if options.prune:
            raise UserError(f"{model_path}: already quantized; pruning needs the float model")
        if precision.mixed:
            raise UserError(f"{model_path}: already quantized; --quant mixed needs the float model")
        return Imported(graph, {"model_int8.tflite": read_file(model_path, options.policy, "model file")})
    if options.calib is None:
        raise UserError(f"{model_path}: a float model needs calibration data for int8: pass --calib FILE "
                        f"(.npy, or .npz with key 'x', float32 samples in the model's own input layout)")
    samples = load_calibration(options.calib, graph, options.policy)
    float_graph, pruning = graph, None
    if options.prune:
        graph, pruning = prune_float(graph, samples, options, progress)
    bits = ranges = search = None
    calibrating = progress.counter("calibrating")
    if precision.mixed:
        ranges = calibrated_ranges(graph, samples, precision.calib_method, progress=calibrating)
        chosen = choose_bits(graph, samples, *precision.mixed, ranges if precision.mixed_activations else None,
                             progress.counter("layer sensitivity"))
        bits, search = chosen.bits, chosen.report
    quantized = post_training_quantize(graph, samples, precision.calib_method, progress=calibrating, bits=bits,
                                       ranges=ranges)
    artifacts = {"model_float32.tflite": export_tflite(graph),
                 "model_float16.tflite": export_tflite(graph, float16_weights=True),
                 "model_int8.tflite": export_tflite(quantized)}
    imported = import_tflite(artifacts["model_int8.tflite"], str(model_path), options.policy)
    mixed_bits = None
    if precision.mixed:
        mixed_bits = {name: t.quant.bits for name, t in quantized.tensors.items()
                      if t.quant is not None and t.quant.bits < 8}
        imported = apply_bits(imported, mixed_bits)
    return Imported(imported, artifacts, float_graph, pruning, mixed_bits, search)


def prune_float(graph: Graph, samples: np.ndarray, options: ConvertOptions, progress: Progress):
    """(pruned float graph, pruning report): pruned as options.prune asks, recovered by
    distillation on the calibration samples."""
    prune = options.prune
    labels = None
    if prune.labels:
        labels = load_array(prune.labels, options.policy, "labels").reshape(-1)
        if len(labels) != len(samples):
            raise UserError(f"{prune.labels}: {len(labels)} labels for {len(samples)} calibration samples")
    pruned = prune_model(graph, ratio=prune.ratio, budget=prune.limit, importance=prune.importance, calib=samples,
                         labels=labels, epochs=prune.epochs, progress=progress.counter("fine-tuning"))
    report = {**pruned.report, "agreement_with_unpruned": pruning_agreement(graph, pruned.graph, samples, labels)}
    return pruned.graph, report


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


def make_schedule(graph: Graph, patch: PatchOptions = PatchOptions(), profile: KernelProfile = PORTABLE,
                  objective: str = "memory", arena_budget: int | None = None) -> Schedule | None:
    """The schedule: searched (auto: what the objective prefers within arena_budget, None when
    nothing fits it), layer by layer (none) or the stage the user names (NxN@LAYER, LAYER as
    numbered by `tinydeploy inspect`), for a target's kernel profile."""
    graph = optimize(graph)
    try:
        if patch.schedule == "auto":
            return search_schedule(graph, patch.max_mac_overhead, profile=profile, streamed=patch.stream_input,
                                   objective=objective, arena_budget=arena_budget)
        schedule = build_schedule(graph, parse_patch_option(graph, patch.schedule), profile=profile)
        return stream_input(schedule) if patch.stream_input else schedule
    except ValueError as exc:
        raise UserError(str(exc)) from None


def schedule_for(graph: Graph, board: Target, patch: PatchOptions = PatchOptions()) -> Schedule:
    """The schedule for the board's kernels (see choose_schedule)."""
    return choose_schedule(graph, board, patch)[0]


def choose_schedule(graph: Graph, board: Target, patch: PatchOptions = PatchOptions()) -> tuple[Schedule, dict | None]:
    """The schedule and, for --patch auto, the record of how it was chosen (toolchain/driver/plan.py:
    the objective within the SRAM budget). A DSP target's kernels have larger working buffers
    (KernelProfile); the memory-first choice leaves them out when they would raise the arena, a
    named schedule keeps them (the fast choice)."""
    if patch.schedule == "auto":
        return plan.choose(graph, board, patch, make_schedule)
    return make_schedule(graph, patch, board.kernel_profile), None


@dataclass(frozen=True)
class QuantMCU:
    schedule: Schedule                      # with the low path on its patch loop
    report: dict
    feeds: list[list[np.ndarray]]           # the calibration inputs, in the graph's input type


def quantmcu_schedule(schedule: Schedule, imported: Imported, options: ConvertOptions,
                      progress: Progress = SILENT) -> QuantMCU:
    """QuantMCU's low path on the schedule's patch stage, planned on the calibration inputs; its
    report (calibration BitOPs, agreement with int8 and, given the float model, with it)."""
    if schedule.stage is None:
        raise UserError("--quantmcu works on a patch-based schedule, and this one runs layer by layer "
                        "(--patch none, or no stage within --max-mac-overhead): name one with --patch NxN@LAYER")
    graph, stage, q = schedule.graph, schedule.stage, options.quantmcu
    samples = load_calibration(options.calib, graph, options.policy)
    feeds = calibration_feeds(graph, samples)
    plan, calibration = plan_quantmcu(graph, stage, feeds, q.sigma, q.vdqs_lambda,
                                      progress.counter("VDQS feature maps"))
    low = with_low_path(schedule, plan)
    # the unpruned float model is another model; int8 samples have no float inputs to run it on
    float_graph = imported.float_graph if options.prune is None and samples.dtype == np.float32 else None
    report = {"stage": plan.stage, "outlier_sigma": plan.sigma, "vdqs_lambda": plan.lam,
              "input_bounds": list(plan.bounds), "bits": plan.bits,
              "patch_stage_bitops": {"calibration": calibration},
              "agreement_on_calibration": quantmcu_agreement(low.quantmcu, feeds, float_graph, samples),
              "search": plan.search}
    return QuantMCU(low, report, feeds)


def convert(model_path: str | Path, out_dir: str | Path | OutputFolder, options: ConvertOptions = ConvertOptions(),
            progress: Progress = SILENT) -> dict:
    """Convert the model into out_dir (written whole or not at all: a path, checked before any
    work, or an OutputFolder the caller prepared); returns report.json's dict."""
    options.check()
    model_path = Path(model_path)
    folder = out_dir if isinstance(out_dir, OutputFolder) else OutputFolder.prepare(
        out_dir, [model_path, options.calib, options.prune and options.prune.labels, options.target.labels_file],
        options.force)
    labels = read_labels(options.target.labels_file) if options.target.labels_file is not None else None
    board = get_target(options.target.name)
    clock = Stopwatch()
    with clock.phase("import"):
        imported = import_int8(model_path, options, progress)
    graph = strip_float_io(imported.graph) if options.target.io == "int8" else imported.graph
    with clock.phase("schedule"):
        schedule, plan_choice = choose_schedule(graph, board, options.patch)
    quantmcu = None
    if options.quantmcu:
        with clock.phase("quantmcu"):
            quantmcu = quantmcu_schedule(schedule, imported, options, progress)
        schedule = quantmcu.schedule
    if labels is not None:
        check_labels(labels, graph, options.target.labels_file)
    inputs = random_inputs(graph, DEFAULT_TEST_INPUTS)
    if quantmcu:   # random inputs are all outliers: real ones take the low path too
        half = DEFAULT_TEST_INPUTS // 2
        inputs = inputs[:half] + [np.concatenate([f.reshape(-1) for f in feeds]) for feeds in quantmcu.feeds[:half]]
    manifest = make_manifest(model_path, options, imported, schedule)
    with folder.staging() as tmp:
        with clock.phase("emit"):
            emitted = emit_c_project(schedule, tmp / "c", inputs, options.target.prefix,
                                     model_sha256=source_sha256(model_path, options.policy), labels=labels)
        need = fit.estimate(schedule.plan.arena_bytes, boundary(schedule.graph, schedule.graph.outputs)["bytes"],
                            emitted.weights_bytes, len(emitted.kernels))
        fit.check_fits(board, model_path.name, need, "estimated")
        np.save(tmp / "c" / "harness" / "test_inputs.npy", np.stack(inputs))
        (tmp / "tflite").mkdir()
        for name, data in imported.artifacts.items():
            (tmp / "tflite" / name).write_bytes(data)
        if is_bundle_target(board.name):
            write_bundle(tmp, board.name, imported.artifacts, model_path.name, options.target.prefix)
        report = report_mod.build(schedule, emitted, board.name, manifest)
        if imported.mixed_search is not None:
            report["precision"]["search"] = imported.mixed_search
        if quantmcu:
            report["quantmcu"] = quantmcu.report
        if imported.pruning is not None:
            report["pruning"] = imported.pruning
        if plan_choice is not None:
            report["plan"]["objective"] = plan_choice
        report["convert_seconds"] = clock.summary()   # up to the report's own writing
        report_mod.write(tmp, report)
        manifest.write(tmp)   # last: the manifest of everything above
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


def source_sha256(model_path: Path, policy: ReadPolicy) -> str:
    """SHA-256 of the model file (of a SavedModel folder: its graph file), for model.h."""
    source = model_path / "saved_model.pb" if model_path.is_dir() else model_path
    return hashlib.sha256(read_file(source, policy, "model file")).hexdigest()


def make_manifest(model_path: Path, options: ConvertOptions, imported: Imported, schedule: Schedule) -> Manifest:
    precision, prune, patch = options.precision, options.prune, options.patch
    mixed = None
    if precision.mixed:
        kind, value = precision.mixed
        mixed = {"budget": {kind: value}, "activations": precision.mixed_activations, "bits": imported.mixed_bits}
    pruning = None if prune is None else {"ratio": prune.ratio, "budget": prune.budget,
                                          "importance": prune.importance, "epochs": prune.epochs}
    calib = options.calib and str(options.calib)
    return Manifest(model_path.name, options.target.io, options.target.prefix, options.target.name, patch.schedule,
                    patch.max_mac_overhead, patch.stream_input, calib, precision.calib_method if calib else None,
                    "mixed" if mixed else "int8", mixed,
                    schedule.quantmcu.plan.to_json() if schedule.quantmcu is not None else None,
                    {"max_file_bytes": options.policy.max_file_bytes, "max_tensor_bytes": options.policy.max_tensor_bytes},
                    pruning)
