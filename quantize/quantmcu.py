"""QuantMCU (value-driven mixed precision for patch-based inference) on an int8 graph's patch stage.

VDPC, value-driven patch classification: at run time each patch's input region (the part of the
stage input its receptive field covers) is checked against bounds taken from calibration, the
mean +- `sigma` standard deviations of the stage input's real values. A patch with a value
outside them (an outlier patch) runs the stage as int8. Any other patch runs the low path: its
input region is requantized onto a low-bit grid and the stage's feature maps have the bit widths
VDQS chose, held in int8 storage and clamped to their width (the int8 kernels and the reference
stay exact); the last stage op writes the stage output on its int8 grid, so the layer-by-layer
rest of the network cannot tell the paths apart. Each low-bit grid is the range of least squared
error at its width (quantize.ranges, mse) over the map's values on the non-outlier calibration
patches only: the outliers no longer stretch it.

VDQS, value-driven quantization search: feature map by feature map in dataflow order (the stage
input, then each stage op's output but the last), each candidate width b gets the score
    S(b) = (1 - lambda) * Phi(b) - lambda * Omega(b)
Phi: BitOPs the consumer op saves at b bits, over the largest saving any map can give in this
stage; Omega: the relative entropy drop of the map's values on the non-outlier calibration
patches, (H8 - Hb) / H8, measured on the low path with the widths chosen so far (entropy stands
in for accuracy: no training, no labels). The width with the highest score is kept (8 scores 0).

Patching recomputes and every patch runs one path, so the low path over a patch equals the low
path over the whole tensor cut to that patch: the reference runs both paths over the whole
stage and assembles the stage output patch by patch (run_quantmcu).
"""
from __future__ import annotations

from dataclasses import asdict, dataclass, replace

import numpy as np

from patch_inference.schedule import Schedule, with_region_tile
from patch_inference.steps import Call, PatchLoop, RegionCheck, stage_views
from toolchain.errors import UserError
from toolchain.float_reference import run_float
from toolchain.ir import Graph, Op, QuantParams
from toolchain.ops import lower, macs, op_def, weighted
from toolchain.ops.choice import KernelChoice, choose_kernel
from toolchain.reference import run_ops, run_reference

from .calibrate import stats_of
from .ptq import keeps_grid
from .ranges import affine_params, choose_range

DEFAULT_SIGMA = 3.0
DEFAULT_LAMBDA = 0.5
CANDIDATE_BITS = (8, 4, 2)
SEARCH_SAMPLES = 64
AGREEMENT_SAMPLES = 256
LOW_TILE = "low_tile"   # a low-path patch's input region on its low-bit grid


@dataclass
class QuantMCUPlan:
    """What convert decided (convert.json keeps it; verify rebuilds the low path from it)."""
    stage: str                                # the patch stage's label (NxN@LAST or NxN@FIRST-LAST)
    sigma: float
    lam: float
    bounds: tuple[int, int]                   # int8 values of the stage input a low-path patch stays within
    bits: dict[str, int]                      # feature map -> bits on the low path
    grids: dict[str, tuple[float, int]]       # feature map -> (scale, zero point) on the low path
    search: list[dict]                        # VDQS record per feature map

    def to_json(self) -> dict:
        return asdict(self)

    @classmethod
    def from_json(cls, data: dict) -> "QuantMCUPlan":
        return cls(data["stage"], data["sigma"], data["lam"], tuple(data["bounds"]), dict(data["bits"]),
                   {k: (float(s), int(z)) for k, (s, z) in data["grids"].items()}, data["search"])


@dataclass
class LowPath:
    """A schedule's QuantMCU low path: the plan, the stage it is for, the graph it runs from."""
    plan: QuantMCUPlan
    int8: Graph
    stage: object
    graph: Graph

    @classmethod
    def build(cls, graph: Graph, stage, plan: QuantMCUPlan) -> "LowPath":
        return cls(plan, graph, stage, low_graph(graph, stage, plan))

    @property
    def source(self) -> str:
        return stage_source(self.int8, self.stage)

    def source_requantize(self) -> tuple[Graph, Op] | None:
        return source_requantize(self.int8, self.graph, self.source)

    def run(self, feeds: list[np.ndarray]) -> tuple[list[np.ndarray], list[bool]]:
        return run_quantmcu(self.int8, self.graph, self.stage, self.plan, feeds)


def stage_source(graph: Graph, stage) -> str:
    return graph.ops[stage.first].inputs[0]


def feature_maps(graph: Graph, stage) -> list[str]:
    """The stage input, then each stage op's output but the last (the stage output stays int8)."""
    return [stage_source(graph, stage)] + [graph.ops[i].outputs[0] for i in range(stage.first, stage.last)]


def _grid_quant(scale: float, zero_point: int, bits: int) -> QuantParams:
    return QuantParams(np.array([scale], np.float32), np.array([zero_point], np.int64), None, bits)


def low_graph(graph: Graph, stage, plan: QuantMCUPlan) -> Graph:
    """The graph whose stage ops are the low path: the feature maps on their low grids, each
    stage op's bias rescaled to its input's low scale (same real bias), under its own name so
    that the C project keeps both. Only the stage ops are meant to run from it."""
    tensors, ops = dict(graph.tensors), list(graph.ops)
    for name, bits in plan.bits.items():
        if bits != 8 or plan.grids[name] != _grid_of(graph, name):
            tensors[name] = replace(tensors[name], quant=_grid_quant(*plan.grids[name], bits))
    for i in stage.ops:
        op = graph.ops[i]
        if not weighted(op) or len(op.inputs) < 3:
            continue
        ratio = graph.tensors[op.inputs[0]].scale() / tensors[op.inputs[0]].scale()
        bias = graph.tensors[op.inputs[2]]
        name = f"{bias.name}@quantmcu"
        data = np.round(bias.data.astype(np.float64) * ratio)
        if np.abs(data).max(initial=0) >= 2 ** 31:
            raise UserError(f"--quantmcu: op {i}'s bias does not fit int32 on its low-bit input grid")
        tensors[name] = replace(bias, name=name, data=data.astype(np.int32))
        ops[i] = replace(op, inputs=[op.inputs[0], op.inputs[1], name, *op.inputs[3:]])
    return Graph(tensors, ops, graph.inputs, graph.outputs)


def _grid_of(graph: Graph, name: str) -> tuple[float, int]:
    t = graph.tensors[name]
    return t.scale(), t.zero_point()


def source_requantize(graph: Graph, low: Graph, source: str) -> tuple[Graph, Op] | None:
    """The QUANTIZE (int8 -> the low grid) that moves a low-path patch's input region onto its
    grid, as a one-op graph to lower; None when the stage input keeps its int8 grid."""
    if low.tensors[source].quant is graph.tensors[source].quant:
        return None
    name = f"{source}@low"
    tensors = {source: graph.tensors[source], name: replace(low.tensors[source], name=name)}
    op = Op("quantize", [source], [name], name=f"{source} onto its low-bit grid")
    return Graph(tensors, [op], [source], [name]), op


def region(values: np.ndarray, r) -> np.ndarray:
    return values[:, r.y0:r.y1, r.x0:r.x1, :]


def low_patches(graph: Graph, stage, plan: QuantMCUPlan, source_values: np.ndarray) -> list[bool]:
    """VDPC: which patches take the low path (every value of their input region within bounds)."""
    lo, hi = plan.bounds
    return [bool(((v := region(source_values, ins[0])) >= lo).all() and (v <= hi).all())
            for ins in stage.in_regions]


def _low_path(graph: Graph, low: Graph, stage, values: dict[str, np.ndarray], upto: int | None = None) -> dict:
    """The low path over the whole stage (or its ops before op `upto`), from the int8 values."""
    source = stage_source(graph, stage)
    requant = source_requantize(graph, low, source)
    x = values[source]
    if requant is not None:
        tiny, op = requant
        x = op_def("quantize").reference(lower(tiny, op), x).reshape(x.shape)
    out = {source: x}
    return run_ops(low, out, range(stage.first, stage.last + 1 if upto is None else upto))


def run_quantmcu(graph: Graph, low: Graph, stage, plan: QuantMCUPlan,
                 feeds: list[np.ndarray]) -> tuple[list[np.ndarray], list[bool]]:
    """The reference of a QuantMCU schedule: graph outputs and which patches took the low path."""
    values = {}
    for name, feed in zip(graph.inputs, feeds, strict=True):
        t = graph.tensors[name]
        values[name] = np.asarray(feed, dtype=t.dtype).reshape(t.shape)
    run_ops(graph, values, range(stage.first))
    flags = low_patches(graph, stage, plan, values[stage_source(graph, stage)])
    run_ops(graph, values, stage.ops)
    if any(flags):
        output = graph.ops[stage.last].outputs[0]
        assembled = values[output].copy()
        low_out = _low_path(graph, low, stage, values)[output]
        for flag, outs in zip(flags, stage.out_regions):
            r = outs[-1]
            if flag:
                assembled[:, r.y0:r.y1, r.x0:r.x1, :] = low_out[:, r.y0:r.y1, r.x0:r.x1, :]
        values[output] = assembled
    run_ops(graph, values, range(stage.last + 1, len(graph.ops)))
    return [values[n] for n in graph.outputs], flags


# ---- BitOPs --------------------------------------------------------------------------------------

def _weight_bits(graph: Graph, op: Op) -> int:
    if not weighted(op):
        return 8
    q = graph.tensors[op.inputs[1]].quant
    return q.bits if q is not None else 8


def patch_bitops(graph: Graph, stage, bits: dict[str, int] | None = None) -> list[int]:
    """BitOPs of each patch through the stage (MACs of its regions x weight bits x input bits);
    `bits`: the low path's widths (None: int8)."""
    bits = bits or {}
    result = []
    for outs in stage.out_regions:
        total = 0
        for k, i in enumerate(stage.ops):
            op = graph.ops[i]
            out = graph.tensors[op.outputs[0]]
            per_pixel = macs(graph, op) // (out.shape[1] * out.shape[2])
            total += per_pixel * outs[k].area * _weight_bits(graph, op) * bits.get(op.inputs[0], 8)
        result.append(total)
    return result


def stage_bitops(graph: Graph, stage, plan: QuantMCUPlan, flags: list[list[bool]]) -> dict:
    """Patch-stage BitOPs per inference, int8 against QuantMCU with the patches of `flags`
    ([inference][patch]: low path or not) on the low path."""
    int8, low = patch_bitops(graph, stage), patch_bitops(graph, stage, plan.bits)
    runs = [sum(l if f else e for e, l, f in zip(int8, low, row)) for row in flags]
    mean = float(np.mean(runs)) if runs else float(sum(int8))
    taken = sum(map(sum, flags))
    patches = len(flags) * len(stage.out_regions)
    return {"int8": sum(int8), "all_patches_low": sum(low), "mean": round(mean),
            "reduction": round(sum(int8) / mean, 4) if mean else None,
            "low_path_patches": taken, "patches": patches,
            "outlier_patch_fraction": round(1 - taken / patches, 4) if patches else None}


def calibration_feeds(graph: Graph, samples: np.ndarray) -> list[list[np.ndarray]]:
    """One feed list per calibration sample in the graph's input type: float samples for an int8
    input are quantized onto its grid as TFLite's QUANTIZE does."""
    t = graph.tensors[graph.inputs[0]]
    if t.dtype != "float32" and samples.dtype == np.float32:
        samples = op_def("quantize").reference({"scale": t.scale(), "out_zero_point": t.zero_point()}, samples)
    return [[x.reshape(t.shape).astype(t.dtype)] for x in samples]


def agreement(low: LowPath, feeds: list[list[np.ndarray]], float_graph: Graph | None = None,
              float_samples: np.ndarray | None = None) -> dict | None:
    """Top-1 agreement of the QuantMCU program with the int8 one, and with the float model when
    given, on calibration inputs (None for a model with a single output value)."""
    if low.int8.tensors[low.int8.outputs[0]].size < 2:
        return None
    feeds = feeds[:AGREEMENT_SAMPLES]
    ours = np.array([int(np.argmax(low.run(f)[0][0])) for f in feeds])
    int8 = np.array([int(np.argmax(run_reference(low.int8, f)[0])) for f in feeds])
    result = {"samples": len(feeds), "top1_agreement_with_int8": float(np.mean(ours == int8))}
    if float_graph is not None:
        top = np.array([int(np.argmax(run_float(float_graph, [x[None]])[0])) for x in float_samples[:len(feeds)]])
        result["top1_agreement_with_float"] = float(np.mean(ours == top))
        result["int8_top1_agreement_with_float"] = float(np.mean(int8 == top))
    return result


# ---- the search ----------------------------------------------------------------------------------

def entropy_bits(values: np.ndarray) -> float:
    """Shannon entropy of integer values, in bits."""
    _, counts = np.unique(values, return_counts=True)
    p = counts / counts.sum()
    return float(-(p * np.log2(p)).sum())


def _regions_of(stage, k: int) -> list:
    """[patch] -> the region of feature map k (0: the stage input) a patch reads or writes."""
    return [ins[0] if k == 0 else outs[k - 1] for ins, outs in zip(stage.in_regions, stage.out_regions)]


def _pooled(arrays: list[np.ndarray], regions: list, flags: list[list[bool]]) -> np.ndarray:
    """The values of the low-path patches' regions of one feature map, over every sample."""
    parts = [region(a, r).reshape(-1) for a, row in zip(arrays, flags) for r, f in zip(regions, row) if f]
    return np.concatenate(parts) if parts else np.zeros(0, np.int8)


def _bounds(graph: Graph, source: str, runs: list[dict], sigma: float) -> tuple[int, int]:
    t = graph.tensors[source]
    real = np.concatenate([(r[source].astype(np.float64).reshape(-1) - t.zero_point()) * t.scale() for r in runs])
    mu, sd = real.mean(), real.std()
    lo = int(np.clip(np.ceil((mu - sigma * sd) / t.scale() + t.zero_point()), -128, 127))
    hi = int(np.clip(np.floor((mu + sigma * sd) / t.scale() + t.zero_point()), -128, 127))
    return lo, max(lo, hi)


def _tied(graph: Graph, stage) -> tuple[dict[str, str], set[str]]:
    """Feature maps whose grid is not theirs to choose, as TFLite's pools keep their input's grid:
    (pool output -> its input, whose grid it follows; the maps a pool chain carries into the stage
    output, which keep their int8 grid)."""
    follows, int8 = {}, set()
    for i in reversed(stage.ops):
        op = graph.ops[i]
        if keeps_grid(op):
            if i == stage.last or op.outputs[0] in int8:
                int8.add(op.inputs[0])
            else:
                follows[op.outputs[0]] = op.inputs[0]
    return follows, int8


def plan_quantmcu(graph: Graph, stage, samples: list[list[np.ndarray]], sigma: float = DEFAULT_SIGMA,
                  lam: float = DEFAULT_LAMBDA, progress=None) -> tuple[QuantMCUPlan, dict]:
    """VDPC bounds and VDQS widths for the stage from calibration feeds (one list of arrays per
    sample, in the graph's input dtype; sigma > 0, 0 <= lam <= 1). Returns the plan and the
    calibration's BitOPs record."""
    samples = samples[:SEARCH_SAMPLES]
    runs = [run_ops(graph, {n: np.asarray(f, graph.tensors[n].dtype).reshape(graph.tensors[n].shape)
                            for n, f in zip(graph.inputs, feeds)}, range(stage.last + 1)) for feeds in samples]
    source, maps = stage_source(graph, stage), feature_maps(graph, stage)
    bounds = _bounds(graph, source, runs, sigma)
    draft = QuantMCUPlan(stage.label, float(sigma), float(lam), bounds, {}, {}, [])
    flags = [low_patches(graph, stage, draft, r[source]) for r in runs]
    if not any(map(any, flags)):
        raise UserError(f"--quantmcu: every calibration patch of stage {stage.label} has a stage-input value "
                        f"beyond mean +- {sigma:g} sigma; raise --outlier-sigma")
    consumer = {graph.ops[i].inputs[0]: i for i in stage.ops}
    int8_bitops = sum(patch_bitops(graph, stage))
    per_bit = {m: int8_bitops - sum(patch_bitops(graph, stage, {m: 7})) for m in maps}   # saved by one bit less
    largest = max(per_bit.values()) * (8 - min(CANDIDATE_BITS))
    follows, keeps_int8 = _tied(graph, stage)
    for k, name in enumerate(maps):
        record = {"map": name, "consumer_op": consumer[name]}
        if name in follows or name in keeps_int8:
            leader = follows.get(name)
            draft.bits[name] = draft.bits[leader] if leader else 8
            draft.grids[name] = draft.grids[leader] if leader else _grid_of(graph, name)
            record["grid_of"] = leader or "the stage output (int8)"
            draft.search.append(record)
            continue
        t = graph.tensors[name]
        stats = stats_of((_pooled([r[name] for r in runs], _regions_of(stage, k), flags).astype(np.float64)
                          - t.zero_point()) * t.scale())
        h8 = None
        scores = {}
        for bits in CANDIDATE_BITS:
            trial = replace(draft, bits={**draft.bits, name: bits},
                            grids={**draft.grids, name: _grid_of(graph, name) if bits == 8 else
                                   affine_params(*choose_range(stats, "mse", bits=bits), bits)})
            low = low_graph(graph, stage, _completed(graph, stage, trial))
            values = [_low_path(graph, low, stage, r, upto=stage.first + k)[name] for r in runs]
            h = entropy_bits(_pooled(values, _regions_of(stage, k), flags))
            h8 = h if bits == 8 else h8
            phi = per_bit[name] * (8 - bits) / largest if largest else 0.0
            omega = (h8 - h) / h8 if h8 else 0.0
            scores[bits] = {"grid": list(trial.grids[name]), "entropy": round(h, 4), "phi": round(phi, 4),
                            "omega": round(omega, 4), "score": round((1 - lam) * phi - lam * omega, 4)}
        best = max(CANDIDATE_BITS, key=lambda b: (scores[b]["score"], b))
        draft.bits[name], draft.grids[name] = best, tuple(scores[best]["grid"])
        record.update(candidates={str(b): s for b, s in scores.items()}, bits=best)
        draft.search.append(record)
        if progress:
            progress(k + 1, len(maps))
    plan = replace(draft, grids={n: (float(s), int(z)) for n, (s, z) in draft.grids.items()})
    return plan, stage_bitops(graph, stage, plan, flags)


def _completed(graph: Graph, stage, plan: QuantMCUPlan) -> QuantMCUPlan:
    """A plan with every map not yet decided on its int8 grid."""
    maps = feature_maps(graph, stage)
    return replace(plan, bits={m: plan.bits.get(m, 8) for m in maps},
                   grids={m: plan.grids.get(m, _grid_of(graph, m)) for m in maps})


# ---- the schedule --------------------------------------------------------------------------------

def with_low_path(schedule: Schedule, plan: QuantMCUPlan) -> Schedule:
    """The schedule with QuantMCU's low path on its patch loop: each patch checks its input region
    against the plan's bounds (VDPC) and, without outliers, runs the stage ops of the low graph,
    first moving the region onto the low-bit grid of the stage input into LOW_TILE when that grid
    is not int8's."""
    graph, stage = schedule.graph, schedule.stage
    low = LowPath.build(graph, stage, plan)
    source, requant = low.source, low.source_requantize()
    if requant is not None:
        schedule = with_region_tile(schedule, LOW_TILE)
    width = graph.tensors[source].shape[2]
    views = []
    for ins in stage.in_regions:
        r = ins[0]
        held = r if schedule.stream_input else None   # the streamed tile holds just the region
        views.append({"in_y0": held.y0 if held else 0, "in_x0": held.x0 if held else 0,
                      "in_w": (r.x1 - r.x0) if held else width,
                      "out_y0": r.y0, "out_x0": r.x0, "out_w": r.x1 - r.x0,
                      "y0": r.y0, "y1": r.y1, "x0": r.x0, "x1": r.x1})
    requantize = None
    if requant is not None:
        tiny, op = requant
        requantize = Call(0, KernelChoice("requantize_region", None, 0), buffers=((op.outputs[0], LOW_TILE),),
                          graph=tiny, comment=f"the patch's input onto its {plan.bits[source]}-bit grid")
    reads_tile = schedule.stream_input or requant is not None
    alt_body = tuple(
        Call(i, choose_kernel(low.graph, low.graph.ops[i], None, schedule.profile),
             views=stage_views(graph, stage, k, reads_tile),
             buffers=((source, LOW_TILE),) if k == 0 and requant is not None else (),
             graph=low.graph, note=", QuantMCU low path")
        for k, i in enumerate(stage.ops))
    guard = RegionCheck(source, tuple(views), plan.bounds, requantize)
    steps = tuple(replace(step, guard=guard, alt_body=alt_body) if isinstance(step, PatchLoop) else step
                  for step in schedule.steps)
    return replace(schedule, steps=steps, quantmcu=low)
