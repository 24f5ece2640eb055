"""Schedule -> a self-contained C99 project rendered from templates/.

The emitter renders the schedule's steps (patch_inference.steps): a Call becomes one kernel call,
built by its op's C binding (toolchain/ops) with the kernel the schedule chose for it; a PatchLoop
becomes the patch loop of model_invoke, with its streamed-input reader and QuantMCU's region
check when it has them."""
from __future__ import annotations

from dataclasses import dataclass
from importlib import metadata, resources
from pathlib import Path

import jinja2
import numpy as np

from patch_inference.steps import Call, PatchLoop, RegionCheck
from toolchain.errors import one_line
from toolchain.ir import Graph
from toolchain.ops import KERNELS, lower, op_def, prototypes
from toolchain.ops.c import OpCall
from toolchain.packing import pack_weights

from .packaging import write_packaging
from .platform import write_build_files

CTYPES = {"int8": "int8_t", "uint8": "uint8_t", "int16": "int16_t", "int32": "int32_t",
          "float32": "float"}
CTYPE_BYTES = {"int8_t": 1, "uint8_t": 1, "int16_t": 2, "int32_t": 4, "float": 4}


def c_comment(text) -> str:
    """Text from a model file (op names) as the inside of a C block comment: one line, and no
    `*/` to end the comment early or `/*` to make gcc warn."""
    return one_line(str(text)).replace("*/", "* /").replace("/*", "/ *")


def template_env() -> jinja2.Environment:
    """C, Makefile and Python templates verbatim; HTML templates (*.html.j2) autoescaped, so a name
    from a model file or the file system is text in report.html, never markup."""
    root = resources.files("templates")
    env = jinja2.Environment(loader=jinja2.FileSystemLoader(str(root)), undefined=jinja2.StrictUndefined,
                             keep_trailing_newline=True, trim_blocks=True, lstrip_blocks=True,
                             autoescape=jinja2.select_autoescape(enabled_extensions=("html.j2",),
                                                                 default_for_string=False))
    env.filters["c_comment"] = c_comment
    return env


@dataclass
class ConstArray:
    symbol: str
    ctype: str
    values: np.ndarray
    portable: bool = True   # read by the portable kernels (else by the optimized ones only)

    @property
    def nbytes(self) -> int:
        return int(self.values.size * CTYPE_BYTES[self.ctype])


@dataclass
class LowPathBranch:
    """QuantMCU: a patch whose input region passes `check` (no outlier) runs `calls` instead."""
    check: str
    calls: list[OpCall]


@dataclass
class PatchBlock:
    """A patch stage: its calls run once per patch, `patches` times. With a streamed input,
    `read` names the per-patch input regions to fetch through the caller's reader first."""
    patches: int
    label: str
    calls: list[OpCall]
    read: str | None = None
    input_tile: str | None = None
    low: LowPathBranch | None = None

    @property
    def all_calls(self) -> list[OpCall]:
        return self.calls + (self.low.calls if self.low else [])


@dataclass(frozen=True)
class EmittedProject:
    """What the report needs of an emitted project."""
    weights_bytes: int      # constants of the portable build (an optimized build links its own)
    kernels: list[str]      # kernels/<template>.c files, sorted


def full_view(p: dict) -> dict:
    _, oh, ow, _ = p["out_shape"]
    return {"in_y0": 0, "in_x0": 0, "in_w": p["in_shape"][2], "out_y0": 0, "out_x0": 0, "out_w": ow,
            "y0": 0, "y1": oh, "x0": 0, "x1": ow}


def c_init(value) -> str:
    """A C initializer for a scalar, tuple (array field) or pre-rendered string."""
    if isinstance(value, str):
        return value
    if isinstance(value, (tuple, list)):
        return "{" + ", ".join(c_init(v) for v in value) + "}"
    if isinstance(value, float):
        return float(value).hex()
    return str(int(value))


class Emitter:
    """The C side of the op bindings' calls (toolchain/ops/c.py): where each tensor lives, the
    const arrays, the views; one call at a time."""

    def __init__(self, schedule, prefix: str):
        self.schedule, self.graph, self.prefix = schedule, schedule.graph, prefix
        self.consts: list[ConstArray] = []
        self.const_symbols: dict[str, str] = {}
        self.arrays: dict[tuple, str] = {}   # (ctype, portable, dtype, bytes) -> symbol
        self.views: list[str] = []
        self.loop_buffers: dict[str, str] = {}   # tensor -> tile, inside a patch loop
        self.call_buffers: dict[str, str] = {}   # tensor -> tile, for the call being emitted
        self.index = -1                          # the op being emitted
        self.unpack_ref = ""   # where the op being emitted finds its unpacked sub-8-bit weights

    def arena_ref(self, buffer_name: str, ctype: str) -> str:
        return f"({ctype} *)(arena + {self.schedule.offset(buffer_name)})"

    def tensor_ref(self, name: str) -> str:
        t = self.graph.tensors[name]
        if t.is_const:
            return self.const(name)
        buffer = self.call_buffers.get(name, self.loop_buffers.get(name, name))
        return self.arena_ref(buffer, CTYPES[t.dtype])

    def scratch_ref(self) -> str:
        return self.arena_ref(f"scratch{self.index}", "int8_t")

    def view(self, views: list[dict]) -> str:
        """Declare the view(s) of a spatial op; one per patch inside a stage."""
        symbol = f"{self.prefix}_view{len(self.views)}"
        body = ", ".join(c_init(tuple(v.values())) for v in views)
        self.views.append(f"static const tdk_view_t {symbol}[{len(views)}] = {{{body}}};")
        return symbol

    def const(self, name: str) -> str:
        t = self.graph.tensors[name]
        if t.quant is not None and t.quant.bits < 8:
            return self.packed_const(name)
        if name not in self.const_symbols:
            symbol = f"{self.prefix}_const{len(self.consts)}"
            self.consts.append(ConstArray(symbol, CTYPES[t.dtype], t.data.reshape(-1)))
            self.const_symbols[name] = symbol
        return self.const_symbols[name]

    def packed_const(self, name: str) -> str:
        """Sub-8-bit weights: packed in flash; the op reads them unpacked from its arena scratch
        (unpack<i>, planned like any buffer), filled just before it runs (OpCall.unpack), so its
        kernel is the int8 one and byte-exact with the reference by construction."""
        if name not in self.const_symbols:
            t = self.graph.tensors[name]
            self.const_symbols[name] = self.array("uint8_t", pack_weights(t.data, t.quant.bits))
        return self.unpack_ref

    def array(self, ctype: str, values, portable: bool = True) -> str:
        """A const array; calls that need the same values share one (e.g. the DSP weights of a
        stage op on both of QuantMCU's paths)."""
        values = np.asarray(values).reshape(-1)
        key = (ctype, portable, values.dtype.str, values.tobytes())
        if key not in self.arrays:
            self.arrays[key] = f"{self.prefix}_const{len(self.consts)}"
            self.consts.append(ConstArray(self.arrays[key], ctype, values, portable))
        return self.arrays[key]

    def bias_ref(self, op) -> str:
        return self.const(op.inputs[2]) if len(op.inputs) > 2 else "NULL"

    # ---- steps ----

    def emit(self, step: Call, view: str | None = None) -> OpCall:
        """The kernel call of a Call step; a kernel that takes a view gets the step's (one per
        patch in a stage; default: the whole tensor), or the view symbol given."""
        self.graph = step.graph or self.schedule.graph
        self.index, self.call_buffers = step.op, dict(step.buffers)
        op = self.graph.ops[step.op]
        definition = op_def(op.kind)
        p = lower(self.graph, op)
        weights = self.graph.tensors[op.inputs[1]] if definition.weights else None
        packed = weights is not None and weights.quant is not None and weights.quant.bits < 8
        self.unpack_ref = self.arena_ref(f"unpack{step.op}", "int8_t") if packed else ""
        kernel = KERNELS[step.kernel.variant]
        call = definition.c.call(self, op, p, kernel.name)
        if kernel.view:
            if view is None:
                views = step.views or [full_view(p)]
                symbol = self.view(views)
                view = f"&{symbol}[patch]" if len(views) > 1 else f"&{symbol}[0]"
            call.args.insert(0, view)
        call.template = kernel.template
        call.comment = (step.comment or op.name or op.kind) + (f" (in place: {step.inplace})" if step.inplace else "")
        if packed:
            call.comment += f", {weights.quant.bits}-bit weights"
            call.unpack = (f"tdk_unpack_weights({self.const_symbols[weights.name]}, {weights.size}, "
                           f"{weights.quant.bits}, {self.unpack_ref}, 0);")
        self._specialize(call, step, op)
        call.comment += step.note
        self.graph, self.call_buffers = self.schedule.graph, {}
        return call

    def _specialize(self, call: OpCall, step: Call, op) -> None:
        """Call the op's specialized entry point (see kernel_spec) when its kernel choice has one.
        Its optimized kernels read requantization records (folded bias, multiplier, shift,
        rounding) or lookup tables from the parameter block; bias, multiplier and shift arrays
        stay for the portable kernels only, and GEMM weights come in the DSP layout on Cortex-M
        DSP, so each build links one set."""
        if step.kernel.spec is None:
            return
        spec = dict(step.kernel.spec)
        for field, key in (("opt_q", "records"), ("opt_lut", "lut")):
            if key in spec:   # the DSP kernels may have their own (weights and bias doubled: dsp_*)
                call.params[field] = self._optimized_only(spec.pop(key), spec.pop(f"dsp_{key}", None))
        if op_def(op.kind).weights:
            at = call.args.index(self.const(op.inputs[1]))   # bias, multiplier, shift follow the weights
            call.args[at + 1:at + 4] = [a if a == "NULL" else f"TDK_PORTABLE_ONLY({a})" for a in call.args[at + 1:at + 4]]
            if "dsp_weights" in spec and call.unpack:   # packed in the DSP order too, unpacked to int16
                dsp = spec.pop("dsp_weights")
                t = self.graph.tensors[op.inputs[1]]
                packed = self.array("uint8_t", pack_weights(dsp, t.quant.bits), portable=False)
                plain = self.const_symbols[t.name]
                call.unpack = (f"tdk_unpack_weights(TDK_DSP_PICK({plain}, {packed}), TDK_DSP_PICK({t.size}, {dsp.size}), "
                               f"{t.quant.bits}, {self.unpack_ref}, TDK_DSP_PICK(0, 1));")
            elif "dsp_weights" in spec:
                dsp = self.array("int16_t", spec.pop("dsp_weights"), portable=False)
                call.args[at] = f"TDK_DSP_SELECT({call.args[at]}, {dsp})"
        spec.setdefault("work_bytes", 0)
        if spec["work_bytes"]:   # the kernel's working rows: the op's scratch in the arena
            call.args.append(self.scratch_ref())
        call.spec = spec
        call.kind = spec["name"]

    def _optimized_only(self, values: np.ndarray, dsp_values: np.ndarray | None) -> str:
        """An int32 table only the optimized kernels read, the DSP build's own when it has one."""
        symbol = self.array("int32_t", values, portable=False)
        if dsp_values is not None:
            symbol = f"TDK_DSP_PICK({symbol}, {self.array('int32_t', dsp_values, portable=False)})"
        return f"TDK_OPT_ONLY({symbol})"

    def patch_block(self, loop: PatchLoop) -> PatchBlock:
        """A patch loop: the reader's regions (streamed input), the body's calls, and QuantMCU's
        region check with its low-path calls."""
        self.loop_buffers = dict(loop.buffers)
        block = PatchBlock(loop.patches, loop.label, [])
        if loop.reader is not None:
            reader = loop.reader
            block.input_tile = self.arena_ref(reader.tile, CTYPES[self.graph.tensors[reader.tensor].dtype])
            block.read = self.array("int32_t", [[r.y0, r.y1, r.x0, r.x1] for r in reader.regions])
        block.calls = [self.emit(step) for step in loop.body]
        if loop.guard is not None:
            block.low = self.low_branch(loop.guard, loop.alt_body)
        self.loop_buffers = {}
        return block

    def low_branch(self, guard: RegionCheck, alt_body) -> LowPathBranch:
        """QuantMCU's branch of the patch loop: the check of the patch's input region, its
        requantization onto the low-bit grid (when the stage input is lowered), then the stage
        ops as the low graph has them."""
        view = self.view(list(guard.views))
        channels = self.graph.tensors[guard.tensor].shape[-1]
        lo, hi = guard.bounds
        check = f"tdk_region_within(&{view}[patch], {channels}, {self.tensor_ref(guard.tensor)}, {lo}, {hi})"
        calls = [self.emit(guard.requantize, f"&{view}[patch]")] if guard.requantize else []
        return LowPathBranch(check, calls + [self.emit(step) for step in alt_body])


def boundary(graph: Graph, names: list[str]) -> dict:
    """Type, element count, byte size and (when quantized) scale/zero point of the I/O buffer."""
    tensors = [graph.tensors[n] for n in names]
    dtypes = {t.dtype for t in tensors}
    if len(dtypes) != 1:
        raise ValueError("all graph inputs (outputs) must share one dtype")
    first = tensors[0]
    return {"ctype": CTYPES[first.dtype], "elems": sum(t.size for t in tensors),
            "bytes": sum(t.nbytes for t in tensors),
            "scale": first.scale() if first.quant is not None else None,
            "zero_point": first.zero_point() if first.quant is not None else None,
            "parts": [(graph.tensors[n].nbytes) for n in names]}


def c_float(value) -> str:
    """A float32 as a C constant: exact (hexadecimal), or math.h's INFINITY / NAN."""
    v = float(np.float32(value))
    if np.isnan(v):
        return "NAN"
    if np.isinf(v):
        return "INFINITY" if v > 0 else "-INFINITY"
    return v.hex() + "f"


def c_float_decimal(value) -> str:
    """A finite float32 as a decimal C constant that reads back as the same float32 (9 significant
    digits), for headers that C++ compilers read too (hexadecimal floats are C99 and C++17 only)."""
    text = f"{float(np.float32(value)):.9g}"
    return text + ("" if any(c in text for c in ".e") else ".0") + "f"


def c_array_body(values: np.ndarray, ctype: str) -> str:
    if ctype == "float":
        items = [c_float(v) for v in values]
    else:
        items = [str(int(v)) for v in values]
    lines = [", ".join(items[i:i + 16]) for i in range(0, len(items), 16)]
    return ",\n  ".join(lines)


def render_steps(schedule, emitter: Emitter) -> list:
    """The body of model_invoke: an OpCall per Call step, a PatchBlock per PatchLoop."""
    return [emitter.patch_block(step) if isinstance(step, PatchLoop) else emitter.emit(step)
            for step in schedule.steps]


def kernel_templates(schedule) -> list[str]:
    """The kernels/<template>.c files the project needs (sorted): the template of every kernel
    the schedule chose, and QuantMCU's when a patch loop checks regions."""
    templates = {choice.template for choice in schedule.kernels.values()}
    loop = schedule.patch_loop
    if loop is not None and loop.guard is not None:
        templates.add(KERNELS["region_within"].template)
    return sorted(templates)


LAYOUTS = {4: ("NHWC", ("BATCH", "HEIGHT", "WIDTH", "CHANNELS")), 2: ("NC", ("BATCH", "FEATURES")),
           1: ("C", ("FEATURES",))}


def shape_macros(graph: Graph, names: list[str]) -> dict:
    """model.h's shape macros of the first graph input (output): dims, layout, named dims."""
    dims = graph.tensors[names[0]].shape
    layout, named = LAYOUTS.get(len(dims), ("N" + "D" * (len(dims) - 1), ()))
    return {"dims": list(dims), "layout": layout, "named": list(zip(named, dims)), "count": len(names)}


def c_string(text: str) -> str:
    """A C string literal of any text: printable ASCII as it is (quotes, backslashes and '?', which
    could start a trigraph, escaped), everything else as octal escapes of its UTF-8 bytes."""
    out = []
    for byte in text.encode("utf-8"):
        ch = chr(byte)
        if ch in '"\\?':
            out.append("\\" + ch)
        elif 0x20 <= byte < 0x7F:
            out.append(ch)
        else:
            out.append(f"\\{byte:03o}")
    return '"' + "".join(out) + '"'


def emit_c_project(schedule, out_dir: Path, test_inputs: list[np.ndarray], prefix: str = "model",
                   model_sha256: str = "", labels: list[str] | None = None) -> EmittedProject:
    """Write the C project into out_dir. model_sha256 (of the source model file) and labels (one
    per output value) go into model.h."""
    graph = schedule.graph
    emitter = Emitter(schedule, prefix)
    items = render_steps(schedule, emitter)
    calls = [c for item in items for c in (item.all_calls if isinstance(item, PatchBlock) else [item])]
    for number, call in enumerate(calls):
        call.number = number
    kernels = kernel_templates(schedule)
    specs = {}   # template -> its specialized entry points, one per name
    for c in calls:
        if c.spec:
            specs.setdefault(c.template, {})[c.spec["name"]] = c.spec
    env = template_env()
    io = {"input": boundary(graph, graph.inputs), "output": boundary(graph, graph.outputs)}
    shape = graph.tensors[graph.inputs[0]].shape

    def prototype(name: str, base: str, work: bool = False) -> str:
        return KERNELS[base].prototype(name, work)
    ctx = dict(prefix=prefix, PREFIX=prefix.upper(), items=items, calls=calls, consts=emitter.consts,
               version=tinydeploy_version(), model_sha256=model_sha256, labels=labels or [], c_string=c_string,
               c_float_decimal=c_float_decimal, shapes={"input": shape_macros(graph, graph.inputs),
                                                        "output": shape_macros(graph, graph.outputs)},
               stream_input=schedule.stream_input, input_shape=shape,
               views=emitter.views, io=io, arena_bytes=schedule.plan.arena_bytes, kinds=kernels,
               prototypes=prototypes(), prototype=prototype, c_init=c_init,
               specs={t: list(named.values()) for t, named in specs.items()}, c_array_body=c_array_body,
               inputs_at=[] if schedule.stream_input else [schedule.offset(n) for n in graph.inputs],
               outputs_at=[schedule.offset(n) for n in graph.outputs],
               test_inputs=[c_array_body(np.asarray(x).reshape(-1), io["input"]["ctype"]) for x in test_inputs])
    files = {"model.h": "model.h.j2", "model.c": "model.c.j2", "model_weights.c": "model_weights.c.j2",
             "kernels/tdk_kernels.h": "kernels/tdk_kernels.h.j2", "kernels/tdk_opt.h": "kernels/tdk_opt.h.j2",
             "harness/main.c": "harness/main.c.j2",
             "harness/test_inputs.c": "harness/test_inputs.c.j2"}
    files.update({f"kernels/{k}.c": f"kernels/{k}.c.j2" for k in kernels})
    for rel, template in files.items():
        path = out_dir / rel
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(env.get_template(template).render(**ctx))
    write_build_files(out_dir, env, prefix)
    write_packaging(out_dir, env, prefix, ctx["version"], manifest_description(graph, model_sha256))
    return EmittedProject(sum(c.nbytes for c in emitter.consts if c.portable), kernels)


def manifest_description(graph: Graph, model_sha256: str) -> str:
    """One line for the library manifests, from nothing a model file could inject into them."""
    shape = "x".join(map(str, graph.tensors[graph.inputs[0]].shape))
    return (f"a {len(graph.ops)}-op neural network ({shape} input) converted by tinydeploy"
            + (f", model sha256 {model_sha256[:12]}" if model_sha256 else ""))


def tinydeploy_version() -> str:
    try:
        return metadata.version("tinydeploy")
    except metadata.PackageNotFoundError:   # run from a source tree that was never installed
        return "unknown"


def write_test_inputs(c_dir: Path, test_inputs: list[np.ndarray], ctype: str, prefix: str = "model") -> None:
    """Replace the compiled-in test vectors of an emitted project (used by verify --inputs)."""
    env = template_env()
    body = [c_array_body(np.asarray(x).reshape(-1), ctype) for x in test_inputs]
    (c_dir / "harness" / "test_inputs.c").write_text(
        env.get_template("harness/test_inputs.c.j2").render(prefix=prefix, PREFIX=prefix.upper(),
                                                           test_inputs=body))
