"""The `tinydeploy` command: a thin click shell over the driver (pipeline, verify, bench).

Every failure a user can cause ends as one line on stderr and exit code 2.
"""
from __future__ import annotations

import functools
import os
import signal
import sys
from pathlib import Path

import click
from rich.console import Console
from rich.markup import escape
from rich.table import Table

from quantize import DEFAULT_METHOD, METHODS
from quantize.quantmcu import DEFAULT_LAMBDA, DEFAULT_SIGMA
from toolchain.errors import UserError, one_line
from toolchain.read_policy import DEFAULT_POLICY, ReadPolicy, parse_size
from toolchain.signals import terminate_like_interrupt

from .options import ConvertOptions
from .output_dir import OutputFolder

console = Console()


def _fail(message: str, code: int = 2):
    click.echo(f"error: {one_line(message)}", err=True)
    sys.exit(code)


class Group(click.Group):
    """Turns UserError (and anything unexpected) into one line and an exit code."""

    def invoke(self, ctx):
        try:
            with terminate_like_interrupt():
                return super().invoke(ctx)
        except UserError as exc:
            _fail(str(exc))
        except (click.exceptions.Exit, click.ClickException, click.exceptions.Abort, SystemExit):
            raise
        except KeyboardInterrupt as exc:   # Ctrl-C, or SIGTERM/SIGHUP (signals.Terminated)
            signum = getattr(exc, "signum", signal.SIGINT)
            _fail("interrupted" + ("" if signum == signal.SIGINT else f" ({signal.Signals(signum).name})"),
                  128 + signum)
        except Exception as exc:  # a bug of ours: still one line, traceback on request
            if os.environ.get("TINYDEPLOY_DEBUG"):
                raise
            _fail(f"internal error: {type(exc).__name__}: {exc} (set TINYDEPLOY_DEBUG=1 for details)", 1)


@click.group(cls=Group)
@click.version_option(package_name="tinydeploy")
def main():
    """tinydeploy: trained model -> C for microcontrollers, verified bit-exact."""


class RichProgress:
    """The Progress protocol (driver/progress.py) on the terminal: a status line, and a bar in
    its place while a counter runs."""

    def __init__(self):
        self.status = console.status("working")
        self.status.start()

    def step(self, message: str) -> None:
        self.status.update(escape(one_line(message)))   # names in it are text, not rich markup

    def stop(self) -> None:
        self.status.stop()

    def counter(self, description: str):
        from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeRemainingColumn
        state = {}

        def update(done: int, total: int, note: str | None = None):
            if "bar" not in state:
                self.status.stop()
                state["bar"] = Progress(TextColumn(description), BarColumn(), MofNCompleteColumn(),
                                        TimeRemainingColumn(), console=console, transient=True)
                state["bar"].start()
                state["task"] = state["bar"].add_task(description, total=total)
            state["bar"].update(state["task"], completed=done,
                                description=f"{description} {note}" if note else description)
            if done >= total:
                state.pop("bar").stop()
                self.status.start()
        return update


def _shape(ctx, param, value):
    if value is None:
        return None
    try:
        shape = tuple(int(d) for d in value.replace("x", ",").split(","))
    except ValueError:
        raise click.BadParameter(f"'{value}' is not a shape like 1,3,32,32") from None
    if not shape or min(shape) <= 0:
        raise click.BadParameter(f"'{value}' is not a shape of positive sizes like 1,3,32,32")
    return shape


class Size(click.ParamType):
    name = "size"

    def convert(self, value, param, ctx):
        try:
            return value if isinstance(value, int) else parse_size(value)
        except UserError as exc:
            self.fail(str(exc), param, ctx)


def read_options(command):
    """--max-file-bytes, --max-tensor-bytes and --trust-pickle, handed to the command as one
    ReadPolicy (`policy`)."""
    @functools.wraps(command)
    def with_policy(*args, max_file_bytes, max_tensor_bytes, trust_pickle, **kwargs):
        return command(*args, policy=ReadPolicy(max_file_bytes, max_tensor_bytes, trust_pickle), **kwargs)
    options = [
        click.option("--max-file-bytes", type=Size(), default=DEFAULT_POLICY.max_file_bytes, show_default=True,
                     help="Refuse a model file (or an unpacked zip archive) larger than this (e.g. 2G)."),
        click.option("--max-tensor-bytes", type=Size(), default=DEFAULT_POLICY.max_tensor_bytes, show_default=True,
                     help="Refuse a model whose weights and activations together need more than this (e.g. 1G); "
                          "also the limit for calibration data and inputs."),
        click.option("--trust-pickle", is_flag=True,
                     help="Run code the model file carries: a pickled whole PyTorch module (torch.save(model)), "
                          "Keras Lambda layers and custom objects. Loading such a file runs whatever its author "
                          "put in it, with your permissions: only for files from a source you trust."),
    ]
    for option in reversed(options):
        with_policy = option(with_policy)
    return with_policy


input_shape_option = click.option(
    "--input-shape", callback=_shape, default=None,
    help="PyTorch files that record no input shape (scripted or pickled modules): e.g. 1,3,32,32.")


@main.command()
@click.argument("model", type=click.Path(path_type=Path))
@click.option("--target", "-t", default="host", show_default=True, help="Target core or board (see `tinydeploy targets`).")
@click.option("-o", "--output", "out_dir", type=click.Path(path_type=Path), default=None,
              help="Output folder (default: out/<model name>).")
@click.option("--io", "io", type=click.Choice(["model", "int8"]), default="model", show_default=True,
              help="C API boundary type: the model's own, or int8 (strips a float QUANTIZE/DEQUANTIZE boundary).")
@click.option("--prefix", default="model", show_default=True, help="C symbol prefix.")
@click.option("--patch", default="auto", show_default=True,
              help="Patch-based schedule: auto (searched), none (layer by layer), NxN@LAYER (e.g. 4x4@5) or NxN@FIRST-LAST (e.g. 4x4@2-5).")
@click.option("--max-mac-overhead", default=0.10, show_default=True, type=float,
              help="MAC overhead the patch search may spend (0.10 = 10%).")
@click.option("--stream-input", is_flag=True,
              help="The model reads its input patch by patch through a reader callback "
                   "(model_invoke_streamed), so the whole input never sits in the arena.")
@click.option("--optimize", type=click.Choice(["memory", "speed", "balanced"]), default=None,
              help="--patch auto's objective: the smallest arena, the fewest MACs that fit the SRAM budget, or the "
                   "smallest arena x MACs [default: speed on a board or Linux target, memory on a bare core].")
@click.option("--sram-budget", type=click.IntRange(min=1), default=None,
              help="Bytes of SRAM the model may use (arena, output buffer, stack, runtime) [default: a board's SRAM].")
@click.option("--reserve-sram", type=click.IntRange(min=0), default=None,
              help="Bytes of that SRAM kept for the application [default: 10% of a board's SRAM, 0 with "
                   "--sram-budget].")
@click.option("--calib", type=click.Path(path_type=Path), default=None,
              help="Float models: calibration samples for int8, .npy or .npz (key x), float32, "
                   "in the model's own input layout (e.g. N,3,32,32 for PyTorch/ONNX).")
@click.option("--calib-method", type=click.Choice(METHODS), default=DEFAULT_METHOD,
              show_default=True, help="How calibration picks each activation's range.")
@input_shape_option
@click.option("--prune", "prune_ratio", type=click.FloatRange(0.0, 0.95), default=None,
              help="Float models: remove this fraction of the MACs by structured channel pruning, "
                   "then recover by distillation on --calib.")
@click.option("--prune-to", "prune_budget", default=None,
              help="Float models: the smallest pruning that meets macs=N, flash=BYTES or sram=BYTES.")
@click.option("--prune-importance", type=click.Choice(["l1", "l2", "activation"]), default="l1",
              show_default=True, help="Channel importance: weight magnitude or mean activation on --calib.")
@click.option("--prune-epochs", type=click.IntRange(0, 1000), default=60, show_default=True,
              help="Recovery epochs of distillation from the unpruned model on --calib (0: none).")
@click.option("--labels", type=click.Path(path_type=Path), default=None,
              help="Optional labels (.npy, one per --calib sample): recovery adds cross-entropy.")
@click.option("--quant", type=click.Choice(["int8", "mixed"]), default="int8", show_default=True,
              help="Float models: int8 everywhere, or per-layer weight bits 8/4/2 searched under a budget "
                   "with measured sensitivity on --calib (activations int8).")
@click.option("--weight-budget", type=float, default=None,
              help="--quant mixed: weight bytes (packed) at most this fraction of the int8 weight bytes.")
@click.option("--budget", "quant_budget", default=None,
              help="--quant mixed: bitops=N, the model's BitOPs (MACs x weight bits x activation bits) at most N.")
@click.option("--mixed-activations", is_flag=True,
              help="--quant mixed: the search may also hold conv/depthwise/FC outputs in 4 bits (int8 storage "
                   "clamped to [-8, 7]: fewer BitOPs, same SRAM; verify then compares with the reference only).")
@click.option("--labels-file", type=click.Path(path_type=Path), default=None,
              help="Text file with one class label per line (one per output value): model.h gets them.")
@click.option("--quantmcu", is_flag=True,
              help="QuantMCU on the patch stage: patches without outliers in their input (VDPC, bounds from --calib) "
                   "run the stage's feature maps at the bit widths VDQS picks; the others stay int8.")
@click.option("--outlier-sigma", type=float, default=None,
              help=f"--quantmcu: an outlier lies beyond the stage input's mean +- this many standard deviations "
                   f"[default: {DEFAULT_SIGMA:g}].")
@click.option("--vdqs-lambda", type=float, default=None,
              help=f"--quantmcu: weight of the entropy change against the BitOPs saved in VDQS's score (0..1) "
                   f"[default: {DEFAULT_LAMBDA:g}].")
@click.option("--force", is_flag=True,
              help="-o names a folder that holds other files: move it aside to DIR.old-N (kept, never deleted) "
                   "and write the output in its place.")
@read_options
def convert(model, out_dir, **flags):
    """Convert MODEL into a C project (and TFLite artifacts) in an output folder."""
    from .pipeline import convert as run_convert
    from .plan import one_line as plan_line
    options = ConvertOptions.from_flags(**flags)
    options.check()
    folder = OutputFolder.prepare(out_dir or Path("out") / model.stem,
                                  [model, options.calib, options.prune and options.prune.labels], options.force)
    progress = RichProgress()
    try:
        progress.step(f"converting {model}")
        report = run_convert(model, folder, options, progress)
    finally:
        progress.stop()
    if folder.moved_aside:
        click.echo(f"moved the folder that was at {one_line(folder.path)} aside to {one_line(folder.moved_aside)}")
    if "pruning" in report:
        p = report["pruning"]
        click.echo(f"pruned: MACs {p['macs'][0]:,} -> {p['macs'][1]:,}, params {p['params'][0]:,} -> "
                   f"{p['params'][1]:,}, top-1 agreement with the unpruned model "
                   f"{p['agreement_with_unpruned']['top1_agreement']:.1%} on {p['agreement_with_unpruned']['samples']} samples")
    if options.precision.mixed:
        p = report["precision"]
        bits = "/".join(str(r["weight_bits"]) + ("" if r["activation_bits"] == 8 else f"(a{r['activation_bits']})")
                        for r in p["layers"])
        click.echo(f"mixed precision: weight bits per layer {bits}; weights {p['weight_bytes']:,} B packed = "
                   f"{p['weight_fraction']:.1%} of int8 ({p['int8_weight_bytes']:,} B); "
                   f"{report['compute']['bitops']:,} BitOPs")
    if options.quantmcu:
        q = report["quantmcu"]
        b = q["patch_stage_bitops"]["calibration"]
        click.echo(f"QuantMCU on {q['stage']}: low-path bits " + "/".join(str(v) for v in q["bits"].values())
                   + f" (stage input first); input bounds {q['input_bounds']}; on the calibration inputs "
                   f"{b['outlier_patch_fraction']:.1%} of patches are outlier patches (int8), patch stage BitOPs "
                   f"{b['mean']:,} vs {b['int8']:,} int8 ({b['reduction']:.2f}x fewer)")
    if report["plan"].get("objective"):
        click.echo(plan_line(report["plan"]["objective"]))
    mem, compute = report["memory"], report["compute"]
    click.echo(f"wrote {one_line(folder.path)}: {len(report['layers'])} ops, {compute['macs']:,} MACs, "
               f"patch {report['plan']['patch']} (+{compute['mac_overhead']:.1%} MACs), "
               f"arena {mem['arena_bytes']:,} B (lower bound {mem['lower_bound_bytes']:,} B, "
               f"layer by layer {mem['layer_by_layer_arena_bytes']:,} B), weights {mem['weights_bytes']:,} B")


@main.command()
@click.argument("out_dir", type=click.Path(path_type=Path))
@click.option("--target", "-t", default=None, help="Target to build and run for (default: the convert target).")
@click.option("--inputs", "inputs", type=click.Path(path_type=Path), default=None,
              help=".npy of N inputs in the model's input dtype and shape (default: the compiled-in ones).")
@click.option("--extra-cflags", default="", help="Extra C compiler flags for this build.")
def verify(out_dir, target, inputs, extra_cflags):
    """Build OUT_DIR's C project, run it, and compare every output byte with the reference."""
    from .verify import verify as run_verify
    progress = RichProgress()
    try:
        report = run_verify(out_dir, target, inputs, extra_cflags, progress)
    finally:
        progress.stop()
    v, mem = report["verification"], report["memory"]
    tflm = {True: "yes", False: "NO", None: v.get("tflm_note", "not available")}[v["tflm_bit_exact"]]
    if v.get("tflm_skipped_inputs") and v["tflm_bit_exact"] is not None:
        tflm += f" ({v['tflm_note']})"
    click.echo(f"{report['target']}: {v['inputs']} inputs, bit-exact with reference: "
               f"{'yes' if v['bit_exact'] else 'NO'}, with TFLM: {tflm}; arena {mem['arena_bytes']:,} B, "
               f"stack {mem['stack_bytes']:,} B, peak SRAM {mem['peak_sram_bytes']:,} B"
               + (f", flash {mem['flash_bytes']:,} B" if mem.get("flash_bytes") else ""))
    if v["instructions_per_inference"]:
        click.echo(f"instructions per inference: {v['instructions_per_inference']:,} "
                   f"(whole run: {v['instructions_total']:,})")
    if not v["bit_exact"] or v["tflm_bit_exact"] is False:
        _fail(f"outputs differ on inputs {v['mismatched_inputs'] or v.get('tflm_mismatched_inputs')}", 1)


@main.command()
@click.argument("model", type=click.Path(path_type=Path))
@click.option("--io", "io", type=click.Choice(["model", "int8"]), default="model", show_default=True)
@input_shape_option
@read_options
def inspect(model, io, input_shape, policy):
    """Per-layer table: op, shapes, params, MACs, live bytes."""
    from patch_inference.memory_planner import graph_buffers, live_bytes, plan_memory
    from toolchain.analysis import layer_table

    from .pipeline import optimize, prepare_graph
    graph = optimize(prepare_graph(model, io, input_shape, policy))
    buffers = graph_buffers(graph)
    rows = layer_table(graph, live_bytes(buffers, len(graph.ops) + 2))
    table = Table(title=escape(f"{one_line(model.name)}: {len(rows)} ops"))
    for col in ("#", "op", "inputs", "output", "params", "MACs", "live bytes"):
        table.add_column(col, justify="right" if col in ("#", "params", "MACs", "live bytes") else "left")
    for r in rows:
        table.add_row(str(r["index"]), r["op"], " ".join("x".join(map(str, s)) for s in r["inputs"]),
                      "x".join(map(str, r["output"])), f"{r['params']:,}", f"{r['macs']:,}", f"{r['live_bytes']:,}")
    console.print(table)
    plan = plan_memory(buffers)
    console.print(f"total: {sum(r['macs'] for r in rows):,} MACs, {sum(r['params'] for r in rows):,} params; "
                  f"arena {plan.arena_bytes:,} B (lower bound {plan.lower_bound_bytes:,} B)")


@main.command()
@click.argument("model", type=click.Path(path_type=Path))
@click.option("--target", "-t", required=True, help="An emulated target (see `tinydeploy targets`).")
@click.option("-o", "--output", "out_dir", type=click.Path(path_type=Path), default=None,
              help="Output folder (default: out/bench/<model>-<target>); bench.json goes there.")
@click.option("--patch", default="none", show_default=True,
              help="Schedule, as for convert: none (layer by layer, no extra MACs), auto or NxN@LAYER.")
@click.option("--inputs", "n_inputs", type=click.IntRange(1, 100), default=1, show_default=True,
              help="Random inputs to verify and count over.")
@click.option("--per-op/--no-per-op", default=True, show_default=True,
              help="Count each op's kernel call (one emulator run per op and build).")
@read_options
def bench(model, target, out_dir, patch, n_inputs, per_op, policy):
    """Instructions per inference of MODEL on TARGET with the optimized and the portable kernels,
    instructions per MAC, flash, peak SRAM, and a per-op table; both builds verified byte-exact."""
    from .bench import bench as run_bench
    out_dir = out_dir or Path("out") / "bench" / f"{model.stem}-{target}"
    progress = RichProgress()
    try:
        result = run_bench(model, target, out_dir, patch=patch, inputs=n_inputs, ops=per_op, progress=progress,
                           policy=policy)
    finally:
        progress.stop()
    builds = result["builds"]
    table = Table(title=f"{result['model']} on {target}: {result['macs']:,} MACs, patch {result['patch']}")
    for col in ("kernels", "instructions / inference", "instructions / MAC", "flash B", "peak SRAM B"):
        table.add_column(col, justify="left" if col == "kernels" else "right", no_wrap=True)
    for flavour, b in builds.items():
        table.add_row(flavour, f"{b['instructions_per_inference']:,}", f"{b['instructions_per_mac']:.2f}",
                      f"{b['flash_bytes']:,}", f"{b['peak_sram_bytes']:,}")
    console.print(table)
    if per_op:
        ops = Table(title="per op: instructions per inference")
        for col in ("#", "op", "MACs", "optimized", "/ MAC", "portable", "/ MAC", "speed-up"):
            ops.add_column(col, justify="left" if col == "op" else "right", no_wrap=col != "op")
        for row in result["ops"]:
            per_mac = [f"{row[f] / row['macs']:.2f}" if row["macs"] else "" for f in ("optimized", "portable")]
            ops.add_row(str(row["index"]), row["op"], f"{row['macs']:,}", f"{row['optimized']:,}", per_mac[0],
                        f"{row['portable']:,}", per_mac[1], f"{row['portable'] / max(row['optimized'], 1):.1f}x")
        ops.add_row("", "glue", "", f"{builds['optimized']['glue_instructions']:,}", "",
                    f"{builds['portable']['glue_instructions']:,}", "", "")
        console.print(ops)
    click.echo(f"wrote {out_dir / 'bench.json'}")


@main.command()
def targets():
    """The target registry: ISA, SRAM, flash, emulator."""
    from targets.registry import TARGETS
    table = Table(title="targets: a board builds with its core's compiler, linked against its own memory map")
    for col in ("name", "core", "isa", "sram", "flash", "flash / ram at", "emulator", "compiler", "description"):
        table.add_column(col, overflow="fold", justify="right" if col in ("sram", "flash") else "left")
    for t in TARGETS.values():
        m = t.memory
        where = t.machine
        if t.emulated_memory is not None:
            where += f" (no QEMU machine has its map: run on the core's, flash at {t.emulated_memory.flash.origin:#x})"
        elif t.is_board and t.bare_metal:
            where += " (the board's own memory map)"
        table.add_row(t.name, t.core if t.is_board else "", t.isa, f"{t.sram_bytes:,}" if t.sram_bytes else "-",
                      f"{t.flash_bytes:,}" if t.flash_bytes else "-",
                      f"{m.flash.origin:#x} / {m.ram.origin:#x}" if m else "-", where, t.compiler, t.description)
    Console(width=max(console.width, 200)).print(table)


if __name__ == "__main__":
    main()
