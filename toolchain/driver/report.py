"""report.json (the machine-readable contract) and report.html (the same facts, for people)."""
from __future__ import annotations

import base64
import io
import json
import os
from pathlib import Path

from patch_inference.memory_planner import graph_buffers, live_bytes, plan_memory
from quantize import precision_report
from targets.c_emitter import boundary, template_env
from toolchain.analysis import layer_table

IO_KEYS = ("ctype", "elems", "bytes", "scale", "zero_point")


def build(schedule, emitted, target: str, manifest) -> dict:
    """report.json of a converted model; verify fills in what it measures."""
    graph, plan, stage = schedule.graph, schedule.plan, schedule.stage
    io_in, io_out = boundary(graph, graph.inputs), boundary(graph, graph.outputs)
    steps = len(graph.ops) + 2
    layer_by_layer = graph_buffers(graph)
    layer_by_layer_live = live_bytes(layer_by_layer, steps)
    precision = precision_report(graph, stage and stage.ops)
    precision["unpack_scratch_bytes"] = max((b.size for b in schedule.buffers if b.name.startswith("unpack")), default=0)
    return {
        "target": target,
        "model": manifest.source,
        "io": {"input": {k: io_in[k] for k in IO_KEYS}, "output": {k: io_out[k] for k in IO_KEYS}},
        "memory": {
            "arena_bytes": plan.arena_bytes, "lower_bound_bytes": plan.lower_bound_bytes,
            "layer_by_layer_arena_bytes": plan_memory(layer_by_layer).arena_bytes,
            "weights_bytes": emitted.weights_bytes, "output_buffer_bytes": io_out["bytes"],
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
            "patch_option": manifest.patch,
            "stage": ({"first_op": stage.first, "last_op": stage.last, "grid": stage.grid,
                       "patches": [[r.y0, r.y1, r.x0, r.x1] for r in (outs[-1] for outs in stage.out_regions)],
                       "input_regions": [[r.y0, r.y1, r.x0, r.x1] for r in (ins[0] for ins in stage.in_regions)]}
                      if stage else None),
            "inplace_ops": {str(i): mode for i, (mode, _) in sorted(schedule.inplace.items())},
            "memory_strategy": plan.strategy,
            "live_bytes_per_step": schedule.live_bytes(),
            "layer_by_layer_live_bytes_per_step": layer_by_layer_live,
            "offsets": {n: plan.offsets[n] for n in sorted(plan.offsets)},
        },
        "layers": layer_table(graph, layer_by_layer_live),
        "kernels": emitted.kernels,
        "verification": None,
    }


def read(out_dir: Path) -> dict:
    return json.loads((Path(out_dir) / "report.json").read_text())


def write(out_dir: Path, report: dict) -> None:
    """Each file replaced whole (verify rewrites them in place: an interrupt leaves the old one)."""
    out_dir = Path(out_dir)
    _replace(out_dir / "report.json", json.dumps(report, indent=2, default=_plain))
    _replace(out_dir / "report.html", render_html(report))


def _replace(path: Path, text: str) -> None:
    tmp = path.with_name(f".{path.name}.tmp")
    try:
        tmp.write_text(text, errors="backslashreplace")   # a file name may not be valid UTF-8
        os.replace(tmp, path)
    finally:
        tmp.unlink(missing_ok=True)


def _plain(value):
    if hasattr(value, "tolist"):
        return value.tolist()
    raise TypeError(f"not JSON serializable: {type(value).__name__}")


def _png(fig) -> str:
    import matplotlib.pyplot as plt
    buf = io.BytesIO()
    fig.savefig(buf, format="png")
    plt.close(fig)
    return base64.b64encode(buf.getvalue()).decode()


def memory_profile_png(report: dict) -> str:
    """Live activation bytes per schedule step: layer by layer vs the planned schedule."""
    import matplotlib
    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    plan = report["plan"]
    fig, ax = plt.subplots(figsize=(9, 3.2), dpi=100)
    steps = range(len(plan["live_bytes_per_step"]))
    ax.step(steps, plan["layer_by_layer_live_bytes_per_step"], where="mid", color="#9e9e9e",
            label=f"layer by layer (arena {report['memory']['layer_by_layer_arena_bytes']:,} B)")
    ax.step(steps, plan["live_bytes_per_step"], where="mid", color="#4c78a8",
            label=f"planned: patch {plan['patch']} (arena {report['memory']['arena_bytes']:,} B)")
    if plan.get("stage"):
        ax.axvspan(plan["stage"]["first_op"] + 0.5, plan["stage"]["last_op"] + 1.5, color="#f58518",
                   alpha=0.15, label="patch stage")
    ax.set_xlabel("schedule step (op index + 1)")
    ax.set_ylabel("live bytes")
    ax.legend(fontsize=8)
    fig.tight_layout()
    return _png(fig)


def patch_grid_png(report: dict) -> str | None:
    """The stage output split into patches, and the input region the first patch reads."""
    stage = report["plan"].get("stage")
    if not stage:
        return None
    import matplotlib
    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    from matplotlib.patches import Rectangle
    fig, axes = plt.subplots(1, 2, figsize=(7, 3.4), dpi=100)
    for ax, key, title in ((axes[0], "input_regions", "stage input: regions read per patch"),
                           (axes[1], "patches", "stage output: patches")):
        regions = stage[key]
        for k, (y0, y1, x0, x1) in enumerate(regions):
            ax.add_patch(Rectangle((x0, y0), x1 - x0, y1 - y0, fill=False,
                                   edgecolor=plt.cm.tab10(k % 10), linewidth=1.2))
        ax.set_xlim(0, max(r[3] for r in regions))
        ax.set_ylim(max(r[1] for r in regions), 0)
        ax.set_aspect("equal")
        ax.set_title(title, fontsize=9)
    fig.tight_layout()
    return _png(fig)


def render_html(report: dict) -> str:
    return template_env().get_template("report.html.j2").render(
        r=report, profile_png=memory_profile_png(report) if report.get("plan") else None,
        grid_png=patch_grid_png(report) if report.get("plan") else None)
