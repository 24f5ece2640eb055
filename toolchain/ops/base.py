"""What an op definition holds (toolchain/ops/<op>.py): its traits, the functions every executor
and writer calls, and its C binding as data. A stage asks the definition (`op_def(op.kind)`)
instead of listing kinds."""
from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any, Callable

from .checks import same_shape

REQUIRED = object()   # a TFLite option field without a default: read from the options table


@dataclass(frozen=True)
class Weights:
    """Constant weights at input 1 (and an int32 bias at input 2). `quant_axis`: the axis of
    per-channel scales (None: one scale, as TFLite quantizes fully connected layers);
    `out_axis`, `in_axis`: where the output and input channels lie (pruning; None: one filter per
    channel, depthwise)."""
    quant_axis: int | None
    out_axis: int
    in_axis: int | None

    @property
    def gemm(self) -> bool:
        """Every filter reads every input channel (conv, fully connected): the kernels run a GEMM."""
        return self.in_axis is not None


@dataclass(frozen=True)
class Field:
    """An IR attribute held by TFLite option fields (a pair: `(H, W)` fields for an `(h, w)`
    attribute). kind: int, float, bool, padding or activation (the schema's enums)."""
    names: str | tuple[str, ...]
    kind: str = "int"
    default: Any = REQUIRED


@dataclass(frozen=True)
class TFLite:
    """How the op is stored in a .tflite file. `builtins`: the builtin operators read as this op
    (the first is written); `versions`: the op versions TensorFlow's converter writes for float
    and for int8; `fields`: attribute -> option fields; `order`: the options' fields in the order
    they are written (the bytes of the file depend on it); `data_inputs`: leading inputs kept as
    op inputs (None: all); `read_params(builtin, inputs, constant, where)`: attributes from
    constant parameter inputs (axes, paddings, perm; constant(position, what) reads one); `write_params(op, out)`: [(what, int values)] appended
    as parameter inputs; `write_extra(op, shape_of)`: option fields computed from shapes."""
    builtins: tuple[str, ...]
    options: str | None = None
    versions: tuple[int, int] = (1, 2)
    fields: dict[str, Field] = field(default_factory=dict)
    order: tuple[str, ...] = ()
    data_inputs: int | None = 1
    read_params: Callable | None = None
    write_params: Callable | None = None
    write_extra: Callable | None = None


@dataclass(frozen=True)
class Kernel:
    """One C kernel, `tdk_<name>`, defined in templates/kernels/<template>.c.j2. `view`: it takes a
    tdk_view_t (where a spatial op reads and writes inside patch schedules) before its tensors;
    `declares`: C declarations its prototype needs (its own parameter block), put into
    tdk_kernels.h with the prototype when a project uses the kernel."""
    name: str
    template: str
    params: str
    view: bool = False
    returns: str = "void"
    declares: str = ""

    def prototype(self, name: str | None = None, work: bool = False) -> str:
        """The prototype of this kernel, or of a specialized entry point `name` with its parameters
        (plus the working rows last, when it has them)."""
        return f"{self.returns} tdk_{name or self.name}({self.params}{', int8_t *work' if work else ''});"


@dataclass(frozen=True)
class CBinding:
    """How the C project runs the op. `kernels`: the C functions its templates define (their
    prototypes go into tdk_kernels.h, grouped by template, in this order); `variant(graph, op, inplace)`:
    the kernel an op calls, run in place (`inplace`: its in-place mode) or not (default: the first kernel); `call(c, op,
    params, variant)`: the call's parameter block and arguments (c: the emitter's references to
    tensors, constants and the arena); `spec(graph, op, params, variant, profile)`: the constants
    of its specialized entry point (toolchain/ops/kernel_spec.py), None when only the portable kernel
    runs; `work_bytes(graph, op, variant, profile)`: the arena the optimized kernel works in;
    `temp_bytes(graph, op, inplace)`: the portable in-place kernel's temporary."""
    kernels: tuple[Kernel, ...]
    call: Callable
    variant: Callable | None = None
    spec: Callable | None = None
    work_bytes: Callable | None = None
    temp_bytes: Callable | None = None


@dataclass(frozen=True)
class OpDef:
    """One op kind. Traits: `weights` (see Weights), `window` (a sliding-window op: conv,
    depthwise, pools; it can run patch by patch, reading `input_region(params, region)`),
    `grid` (its int8 output's quantization: "own", "input" for ops that move values without
    computing new ones, "shared" for concatenation, "fixed" with `fixed_grid`), `narrow_input`
    (it reads a feature map held in fewer than 8 bits correctly), `fuses_activation` (a following
    relu/relu6 can become its clamp), `channels` (how channel pruning passes it, prune/groups.py:
    "create", "follow", "couple", "carry", "reduce", "flatten", "stack" or "freeze"),
    `inplace(graph, op, dies)` -> (in-place mode, input tensor) when it can overwrite an input that dies.
    Functions: `lower(graph, op)` -> the int8 constants TFLM's Prepare computes; `reference(params,
    *inputs)` -> the int8 output; `float_reference(graph, op, *inputs)`; `macs(graph, op)`;
    `torch(torch, call, *inputs)` -> the float output in torch (prune's fine-tuning; call: a
    TorchCall); then the TFLite and C bindings; `beyond_tflm(params, input)`: whether TensorFlow
    Lite Micro's kernel asserts on this input (where the reference and the C still compute);
    `arity` (fewest, most inputs; one output) and `check(graph, op, where)`: what an imported op
    must satisfy, shapes and attributes (toolchain/validate.py runs it before any stage)."""
    kind: str
    lower: Callable
    reference: Callable
    float_reference: Callable
    torch: Callable
    tflite: TFLite
    c: CBinding
    macs: Callable = lambda graph, op: 0
    weights: Weights | None = None
    window: bool = False
    input_region: Callable | None = None
    grid: str = "own"
    fixed_grid: tuple[float, int] | None = None
    narrow_input: bool = False
    fuses_activation: bool = False
    channels: str = "freeze"
    inplace: Callable | None = None
    beyond_tflm: Callable | None = None
    arity: tuple[int, int] = (1, 1)
    check: Callable = same_shape


@dataclass(frozen=True)
class TorchCall:
    """What an op's torch executor gets besides its inputs: the op, its output shape, its window
    geometry (window ops) and its trainable weight and bias (weighted ops)."""
    op: Any
    out_shape: tuple[int, ...]
    geometry: dict | None = None
    weight: Any = None
    bias: Any = None
