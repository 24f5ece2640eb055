"""IR + memory plan -> a self-contained C99 project rendered from templates/."""
from __future__ import annotations

from dataclasses import dataclass, field
from importlib import metadata, resources
from pathlib import Path

import jinja2
import numpy as np

from patch_inference.receptive_field import SPATIAL_KINDS
from toolchain.errors import one_line
from toolchain.ir import Graph, Op
from toolchain.lowering import lower
from toolchain.packing import pack_weights

from .kernel_spec import kernel_spec
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
class OpCall:
    kind: str
    struct: str | None = None
    params: dict = field(default_factory=dict)
    args: list[str] = field(default_factory=list)
    comment: str = ""
    number: int = -1
    template: str = ""            # kernels/<template>.c.j2 (default: from the kind)
    spec: dict | None = None      # constants of a specialized entry point (kernel_spec)
    unpack: str = ""              # a statement run before the call (sub-8-bit weights)


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


def full_view(p: dict) -> dict:
    _, oh, ow, _ = p["out_shape"]
    return {"in_y0": 0, "in_x0": 0, "in_w": p["in_shape"][2], "out_y0": 0, "out_x0": 0, "out_w": ow,
            "y0": 0, "y1": oh, "x0": 0, "x1": ow}


def stage_views(graph: Graph, stage, k: int, stream_input: bool = False) -> list[dict]:
    """Views of stage op `first + k` for every patch: tiles in, tiles out, the first op reading
    the full stage input (or, streamed, its input tile) and the last writing into the full
    stage output."""
    index = stage.first + k
    p = lower(graph, graph.ops[index])
    views = []
    for outs, ins in zip(stage.out_regions, stage.in_regions):
        region = outs[k]
        src = outs[k - 1] if k > 0 else (ins[0] if stream_input else None)
        dst = None if index == stage.last else region
        views.append({
            "in_y0": src.y0 if src else 0, "in_x0": src.x0 if src else 0,
            "in_w": (src.x1 - src.x0) if src else p["in_shape"][2],
            "out_y0": dst.y0 if dst else 0, "out_x0": dst.x0 if dst else 0,
            "out_w": (dst.x1 - dst.x0) if dst else p["out_shape"][2],
            "y0": region.y0, "y1": region.y1, "x0": region.x0, "x1": region.x1})
    return views


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
    def __init__(self, schedule, prefix: str):
        self.schedule, self.graph, self.prefix = schedule, schedule.graph, prefix
        self.consts: list[ConstArray] = []
        self.const_symbols: dict[str, str] = {}
        self.arrays: dict[tuple, str] = {}   # (ctype, portable, dtype, bytes) -> symbol
        self.views: list[str] = []
        self.refs: dict[str, str] = {}  # tensor -> C expression overrides (patch tiles)
        self.unpack_ref = ""   # where the op being emitted finds its unpacked sub-8-bit weights

    def arena_ref(self, buffer_name: str, ctype: str) -> str:
        return f"({ctype} *)(arena + {self.schedule.offset(buffer_name)})"

    def tensor_ref(self, name: str) -> str:
        t = self.graph.tensors[name]
        if t.is_const:
            return self.const(name)
        if name in self.refs:
            return self.refs[name]
        return self.arena_ref(name, CTYPES[t.dtype])

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

    def bias_ref(self, op: Op) -> str:
        return self.const(op.inputs[2]) if len(op.inputs) > 2 else "NULL"

    def emit(self, index: int, views: list[dict] | None = None) -> OpCall:
        """The call for op `index`; spatial ops get their view(s) (default: the whole tensor)."""
        op = self.graph.ops[index]
        p = lower(self.graph, op)
        how = self.schedule.inplace.get(index)
        weights = self.graph.tensors[op.inputs[1]] if op.kind in WEIGHTED_KINDS else None
        packed = weights is not None and weights.quant is not None and weights.quant.bits < 8
        self.unpack_ref = self.arena_ref(f"unpack{index}", "int8_t") if packed else ""
        if how in ("depthwise", "pointwise"):
            call = self._inplace_conv(index, op, p, how)
        else:
            call = getattr(self, f"emit_{op.kind}")(op, p)
            if op.kind in SPATIAL_KINDS:
                views = views or [full_view(p)]
                symbol = self.view(views)
                call.args.insert(0, f"&{symbol}[patch]" if len(views) > 1 else f"&{symbol}[0]")
        call.comment = f"{op.name or op.kind}" + (f" (in place: {how})" if how else "")
        if packed:
            call.comment += f", {weights.quant.bits}-bit weights"
            call.unpack = (f"tdk_unpack_weights({self.const_symbols[weights.name]}, {weights.size}, "
                           f"{weights.quant.bits}, {self.unpack_ref}, 0);")
        self._specialize(call, index, op, p)
        return call

    def _specialize(self, call: OpCall, index: int, op: Op, p: dict) -> None:
        """Call the op's specialized entry point (see kernel_spec) when it has one. Its
        optimized kernels read requantization records (folded bias, multiplier, shift, rounding)
        or lookup tables from the parameter block; bias, multiplier and shift arrays stay for
        the portable kernels only, and GEMM weights come in the DSP layout on Cortex-M DSP, so
        each build links one set."""
        spec = kernel_spec(self.graph, op, p, call.kind)
        if spec is None:
            return
        for field, key in (("opt_q", "records"), ("opt_lut", "lut")):
            if key in spec:   # the DSP kernels may have their own (weights and bias doubled: dsp_*)
                call.params[field] = self._optimized_only(spec.pop(key), spec.pop(f"dsp_{key}", None))
        if op.kind in ("conv2d", "depthwise_conv2d", "fully_connected"):
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
            planned = {b.name: b.size for b in self.schedule.buffers}.get(f"scratch{index}", 0)
            assert planned >= spec["work_bytes"], f"op {index}: scratch {planned} B planned, {spec['work_bytes']} B needed"
            call.args.append(self.arena_ref(f"scratch{index}", "int8_t"))
        call.template = TEMPLATE_OF_KERNEL.get(call.kind, call.kind)
        call.spec = spec
        call.kind = spec["name"]

    def _optimized_only(self, values: np.ndarray, dsp_values: np.ndarray | None) -> str:
        """An int32 table only the optimized kernels read, the DSP build's own when it has one."""
        symbol = self.array("int32_t", values, portable=False)
        if dsp_values is not None:
            symbol = f"TDK_DSP_PICK({symbol}, {self.array('int32_t', dsp_values, portable=False)})"
        return f"TDK_OPT_ONLY({symbol})"

    def _inplace_conv(self, index, op, p, how):
        depthwise = how == "depthwise"
        params = self._spatial_params(p, op, p.get("depth_multiplier", 1))
        args = [self.tensor_ref(op.inputs[0]), self.arena_ref(f"scratch{index}", "int8_t"),
                self.const(op.inputs[1]), self.bias_ref(op), self.array("int32_t", p["multiplier"]),
                self.array("int32_t", p["shift"])]
        kind = "depthwise_conv2d_inplace" if depthwise else "conv2d_pointwise_inplace"
        return OpCall(kind, "tdk_spatial_params_t", params, args)

    def _io(self, op):
        return [self.tensor_ref(n) for n in op.inputs[:1]], self.tensor_ref(op.outputs[0])

    def _spatial_params(self, p, op, depth_multiplier=1):
        n, ih, iw, ic = p["in_shape"]
        _, oh, ow, oc = p["out_shape"]
        return {"batches": n, "in_h": ih, "in_w": iw, "in_c": ic, "out_h": oh, "out_w": ow,
                "out_c": oc, "k_h": p["filter"][0], "k_w": p["filter"][1],
                "stride_h": p["stride"][0], "stride_w": p["stride"][1],
                "dil_h": p["dilation"][0], "dil_w": p["dilation"][1],
                "pad_t": p["pad"][0], "pad_l": p["pad"][1], "depth_multiplier": depth_multiplier,
                "in_offset": p.get("input_offset", 0), "out_offset": p.get("output_offset", 0),
                "act_min": p["act"][0], "act_max": p["act"][1]}

    def _conv_like(self, op, p, depth_multiplier):
        (x,), y = self._io(op)
        args = [x, self.const(op.inputs[1]), self.bias_ref(op), self.array("int32_t", p["multiplier"]),
                self.array("int32_t", p["shift"]), y]
        return OpCall(op.kind, "tdk_spatial_params_t", self._spatial_params(p, op, depth_multiplier), args)

    def emit_conv2d(self, op, p):
        return self._conv_like(op, p, 1)

    def emit_depthwise_conv2d(self, op, p):
        return self._conv_like(op, p, p["depth_multiplier"])

    def emit_fully_connected(self, op, p):
        (x,), y = self._io(op)
        params = {k: p[k] for k in ("batches", "depth", "units")}
        params.update(per_channel=int(len(p["multiplier"]) > 1), in_offset=p["input_offset"],
                      filter_offset=p["filter_offset"], out_offset=p["output_offset"],
                      act_min=p["act"][0], act_max=p["act"][1])
        args = [x, self.const(op.inputs[1]), self.bias_ref(op), self.array("int32_t", p["multiplier"]),
                self.array("int32_t", p["shift"]), y]
        return OpCall(op.kind, "tdk_fc_params_t", params, args)

    def _binary(self, op, p):
        params = {"out_shape": p["out_shape"], "a_strides": p["a_strides"], "b_strides": p["b_strides"],
                  "a_offset": p["a_offset"], "b_offset": p["b_offset"], "out_offset": p["output_offset"],
                  "left_shift": p.get("left_shift", 0), "a_multiplier": p.get("a_multiplier", 0),
                  "a_shift": p.get("a_shift", 0), "b_multiplier": p.get("b_multiplier", 0),
                  "b_shift": p.get("b_shift", 0), "multiplier": p["multiplier"], "shift": p["shift"],
                  "act_min": p["act"][0], "act_max": p["act"][1]}
        args = [self.tensor_ref(op.inputs[0]), self.tensor_ref(op.inputs[1]), self.tensor_ref(op.outputs[0])]
        return OpCall(op.kind, "tdk_binary_params_t", params, args)

    emit_add = _binary
    emit_mul = _binary

    def _pool(self, op, p):
        (x,), y = self._io(op)
        is_max = "1" if op.kind == "max_pool2d" else "0"
        return OpCall("pool2d", "tdk_spatial_params_t", self._spatial_params(p, op), [is_max, x, y])

    emit_avg_pool2d = _pool
    emit_max_pool2d = _pool

    def emit_mean(self, op, p):
        (x,), y = self._io(op)
        params = {"in_shape": p["in_shape"], "reduce": p["reduce"], "count": p["count"],
                  "in_zero_point": p["input_zero_point"], "out_offset": p["output_offset"],
                  "multiplier": p["multiplier"], "shift": p["shift"]}
        return OpCall(op.kind, "tdk_mean_params_t", params, [x, y])

    def emit_pad(self, op, p):
        (x,), y = self._io(op)
        return OpCall(op.kind, "tdk_pad_params_t", dict(p), [x, y])

    def emit_reshape(self, op, p):
        (x,), y = self._io(op)
        return OpCall(op.kind, None, {}, [x, y, str(p["bytes"])])

    def emit_transpose(self, op, p):
        (x,), y = self._io(op)
        return OpCall(op.kind, "tdk_transpose_params_t", dict(p), [x, y])

    def emit_concat(self, op, p):
        chunks = self.array("int32_t", p["chunk_bytes"])
        params = {"outer": p["outer"], "n_inputs": len(op.inputs), "chunk_bytes": chunks}
        ins = "(const void *const[]){" + ", ".join(self.tensor_ref(n) for n in op.inputs) + "}"
        return OpCall(op.kind, "tdk_concat_params_t", params, [ins, self.tensor_ref(op.outputs[0])])

    def emit_softmax(self, op, p):
        (x,), y = self._io(op)
        return OpCall(op.kind, "tdk_softmax_params_t", dict(p), [x, y])

    def _elementwise(self, op, p, kernel=None):
        (x,), y = self._io(op)
        return OpCall(kernel or op.kind, "tdk_elementwise_params_t", elementwise_params(p), [x, y])

    def emit_quantize(self, op, p):
        source = self.graph.tensors[op.inputs[0]].dtype
        return self._elementwise(op, p, "quantize" if source == "float32" else "requantize")

    emit_dequantize = _elementwise
    emit_relu = _elementwise
    emit_relu6 = _elementwise


def elementwise_params(p: dict) -> dict:
    """tdk_elementwise_params_t of a quantize, dequantize, relu or relu6."""
    act = p.get("act", (-128, 127))
    return {"count": p["count"], "in_zero_point": p.get("input_zero_point", 0),
            "zero_point": p.get("zero_point", p.get("output_offset", 0)),
            "multiplier": p.get("multiplier", 0), "shift": p.get("shift", 0),
            "act_min": act[0], "act_max": act[1],
            "scale": float(np.float32(p.get("scale", 0.0))), "dscale": float(p.get("scale", 0.0))}


WEIGHTED_KINDS = ("conv2d", "depthwise_conv2d", "fully_connected")
SPATIAL_ARGS = ("const tdk_spatial_params_t *p, const tdk_view_t *v, const int8_t *in, const int8_t *w, "
                "const int32_t *bias, const int32_t *mult, const int32_t *shift, int8_t *out")
INPLACE_ARGS = ("const tdk_spatial_params_t *p, int8_t *buf, int8_t *temp, const int8_t *w, const int32_t *bias, "
                "const int32_t *mult, const int32_t *shift")
# Parameter lists of the kernels that have specialized entry points (same parameters, own name).
SIGNATURES = {
    "conv2d": SPATIAL_ARGS, "conv2d_pointwise_inplace": INPLACE_ARGS,
    "depthwise_conv2d": SPATIAL_ARGS, "depthwise_conv2d_inplace": INPLACE_ARGS,
    "fully_connected": "const tdk_fc_params_t *p, const int8_t *in, const int8_t *w, const int32_t *bias, "
                       "const int32_t *mult, const int32_t *shift, int8_t *out",
    "add": "const tdk_binary_params_t *p, const int8_t *a, const int8_t *b, int8_t *out",
    "pool2d": "const tdk_spatial_params_t *p, const tdk_view_t *v, int is_max, const int8_t *in, int8_t *out",
    "mean": "const tdk_mean_params_t *p, const int8_t *in, int8_t *out",
    "transpose": "const tdk_transpose_params_t *p, const void *in, void *out",
}


def prototype(name: str, base: str | None = None, work: bool = False) -> str:
    """A kernel's prototype; a specialized entry point with working rows takes them last."""
    return f"void tdk_{name}({SIGNATURES[base or name]}{', int8_t *work' if work else ''});"


PROTOTYPES = {
    "conv2d": prototype("conv2d") + "\n" + prototype("conv2d_pointwise_inplace"),
    "depthwise_conv2d": prototype("depthwise_conv2d") + "\n" + prototype("depthwise_conv2d_inplace"),
    "fully_connected": prototype("fully_connected"),
    "add": prototype("add"),
    "mul": "void tdk_mul(const tdk_binary_params_t *p, const int8_t *a, const int8_t *b, int8_t *out);",
    "pool2d": prototype("pool2d"),
    "mean": prototype("mean"),
    "pad": "void tdk_pad(const tdk_pad_params_t *p, const int8_t *in, int8_t *out);",
    "reshape": "void tdk_reshape(const void *in, void *out, size_t bytes);",
    "transpose": prototype("transpose"),
    "concat": "void tdk_concat(const tdk_concat_params_t *p, const void *const *ins, void *out);",
    "softmax": "void tdk_softmax(const tdk_softmax_params_t *p, const int8_t *in, int8_t *out);",
    "quantize": "void tdk_quantize(const tdk_elementwise_params_t *p, const float *in, int8_t *out);\nvoid tdk_requantize(const tdk_elementwise_params_t *p, const int8_t *in, int8_t *out);",
    "dequantize": "void tdk_dequantize(const tdk_elementwise_params_t *p, const int8_t *in, float *out);",
    "relu": "void tdk_relu(const tdk_elementwise_params_t *p, const int8_t *in, int8_t *out);",
    "relu6": "void tdk_relu6(const tdk_elementwise_params_t *p, const int8_t *in, int8_t *out);",
    "quantmcu": "int tdk_region_within(const tdk_view_t *v, int32_t channels, const int8_t *in, int32_t lo, int32_t hi);\n"
                "void tdk_requantize_region(const tdk_elementwise_params_t *p, const tdk_view_t *v, const int8_t *in, "
                "int8_t *out);",
}
TEMPLATE_OF_KERNEL = {"requantize": "quantize", "conv2d_pointwise_inplace": "conv2d",
                      "depthwise_conv2d_inplace": "depthwise_conv2d"}


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


def emit_calls(schedule, emitter: Emitter) -> list:
    """The body of model_invoke: op calls in order, a patch stage as one PatchBlock."""
    graph, stage, items, index = schedule.graph, schedule.stage, [], 0
    while index < len(graph.ops):
        if stage is not None and index == stage.first:
            for i in range(stage.first, stage.last):
                emitter.refs[graph.ops[i].outputs[0]] = emitter.arena_ref(schedule.tiles[i], "int8_t")
            block = PatchBlock(len(stage.out_regions), stage.label, [])
            if schedule.stream_input:
                source = graph.inputs[0]
                block.input_tile = emitter.arena_ref("input_tile", CTYPES[graph.tensors[source].dtype])
                emitter.refs[source] = block.input_tile
                block.read = emitter.array("int32_t", [[r.y0, r.y1, r.x0, r.x1] for r in
                                                       (ins[0] for ins in stage.in_regions)])
            block.calls = [emitter.emit(i, stage_views(graph, stage, k, schedule.stream_input))
                           for k, i in enumerate(stage.ops)]
            if schedule.quantmcu is not None:
                block.low = emit_low_path(schedule, emitter)
            items.append(block)
            index = stage.last + 1
        else:
            items.append(emitter.emit(index))
            index += 1
    return items


def emit_low_path(schedule, emitter: Emitter) -> LowPathBranch:
    """QuantMCU's branch of the patch loop: the VDPC check of the patch's input region, its
    requantization onto the low-bit grid into the low tile (when the stage input is lowered),
    then the stage ops as the low graph has them, reading that tile."""
    graph, stage, low = schedule.graph, schedule.stage, schedule.quantmcu
    source = low.source
    source_ref, channels = emitter.tensor_ref(source), graph.tensors[source].shape[-1]
    views = []
    for ins in stage.in_regions:
        r = ins[0]
        held = r if schedule.stream_input else None   # the streamed tile holds just the region
        views.append({"in_y0": held.y0 if held else 0, "in_x0": held.x0 if held else 0,
                      "in_w": (r.x1 - r.x0) if held else graph.tensors[source].shape[2],
                      "out_y0": r.y0, "out_x0": r.x0, "out_w": r.x1 - r.x0,
                      "y0": r.y0, "y1": r.y1, "x0": r.x0, "x1": r.x1})
    view = emitter.view(views)
    lo, hi = low.plan.bounds
    check = f"tdk_region_within(&{view}[patch], {channels}, {source_ref}, {lo}, {hi})"
    calls, requant = [], low.source_requantize()
    saved_graph, saved_ref = emitter.graph, emitter.refs.get(source)
    if requant is not None:
        tile = emitter.arena_ref("low_tile", "int8_t")
        tiny, op = requant
        params = {**elementwise_params(lower(tiny, op)), "count": channels}   # count: channels per pixel
        calls.append(OpCall("requantize_region", "tdk_elementwise_params_t", params,
                            [f"&{view}[patch]", source_ref, tile], template="quantmcu",
                            comment=f"the patch's input onto its {low.plan.bits[source]}-bit grid"))
        emitter.refs[source] = tile
    emitter.graph = low.graph
    try:
        reads_tile = schedule.stream_input or requant is not None
        calls += [emitter.emit(i, stage_views(graph, stage, k, reads_tile)) for k, i in enumerate(stage.ops)]
    finally:
        emitter.graph = saved_graph
        if saved_ref is None:
            emitter.refs.pop(source, None)
        else:
            emitter.refs[source] = saved_ref
    for call in calls[1 if requant else 0:]:
        call.comment += ", QuantMCU low path"
    return LowPathBranch(check, calls)


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
                   model_sha256: str = "", labels: list[str] | None = None) -> dict:
    """Write the C project into out_dir; returns facts for the report (weights bytes, kinds).
    model_sha256 (of the source model file) and labels (one per output value) go into model.h."""
    graph = schedule.graph
    emitter = Emitter(schedule, prefix)
    items = emit_calls(schedule, emitter)
    calls = [c for item in items for c in (item.all_calls if isinstance(item, PatchBlock) else [item])]
    for number, call in enumerate(calls):
        call.number = number
    kernels = {c.template or TEMPLATE_OF_KERNEL.get(c.kind, c.kind) for c in calls}
    if schedule.quantmcu is not None:
        kernels.add("quantmcu")   # the VDPC check
    kernels = sorted(kernels)
    specs = {}   # template -> its specialized entry points, one per name
    for c in calls:
        if c.spec:
            specs.setdefault(c.template, {})[c.spec["name"]] = c.spec
    env = template_env()
    io = {"input": boundary(graph, graph.inputs), "output": boundary(graph, graph.outputs)}
    shape = graph.tensors[graph.inputs[0]].shape
    ctx = dict(prefix=prefix, PREFIX=prefix.upper(), items=items, calls=calls, consts=emitter.consts,
               version=tinydeploy_version(), model_sha256=model_sha256, labels=labels or [], c_string=c_string,
               c_float_decimal=c_float_decimal, shapes={"input": shape_macros(graph, graph.inputs),
                                        "output": shape_macros(graph, graph.outputs)},
               stream_input=schedule.stream_input, input_shape=shape,
               views=emitter.views, io=io, arena_bytes=schedule.plan.arena_bytes, kinds=kernels,
               prototypes=PROTOTYPES, prototype=prototype, c_init=c_init,
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
    # constants of the portable build (an optimized build links the optimized kernels' own)
    return {"weights_bytes": sum(c.nbytes for c in emitter.consts if c.portable), "kernels": kernels}


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
