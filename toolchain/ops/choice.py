"""Which kernel runs an op, decided once per op and read by the planner (its scratch), the emitter
(the call and its specialized entry point) and the report: a KernelChoice, made for a target's
KernelProfile (what its optimized kernels lay out differently in the arena)."""
from __future__ import annotations

from dataclasses import dataclass

from . import KERNELS, lower, op_def


@dataclass(frozen=True)
class KernelProfile:
    """The arena layouts a target's optimized kernels need. quad_depthwise: the Cortex-M DSP
    depthwise kernel that works on four channels at once, in a plane of their int16 input rows
    (larger working buffers; a project converted without it builds and runs anywhere)."""
    name: str
    quad_depthwise: bool = False


PORTABLE = KernelProfile("portable")
DSP = KernelProfile("dsp", quad_depthwise=True)


@dataclass(frozen=True, eq=False)   # spec holds arrays: compared by what it names, not ==
class KernelChoice:
    """variant: the C kernel the op calls (tdk_<variant>); spec: the constants of its specialized
    entry point (kernel_spec), None when the portable kernel is all there is; work_bytes: the
    arena bytes the op needs at its own step besides its tensors (its scratch buffer): the
    portable in-place kernel's temporary or the optimized kernel's working rows, whichever is
    larger (a build runs one of the two)."""
    variant: str
    spec: dict | None
    work_bytes: int

    @property
    def template(self) -> str:
        return KERNELS[self.variant].template


def choose_kernel(graph, op, inplace: str | None, profile: KernelProfile) -> KernelChoice:
    """The kernel of op, run in place (`inplace`: its in-place mode) (None: out of place), for a target of `profile`."""
    c = op_def(op.kind).c
    variant = c.variant(graph, op, inplace) if c.variant else c.kernels[0].name
    spec = c.spec(graph, op, lower(graph, op), variant, profile) if c.spec else None
    work = c.work_bytes(graph, op, variant, profile) if c.work_bytes else 0
    temp = c.temp_bytes(graph, op, inplace) if c.temp_bytes else 0
    return KernelChoice(variant, spec, max(temp, work))
