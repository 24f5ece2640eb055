"""The op registry holds each op once and completely: every kernel it names is defined by its
template, every TFLite builtin is read as one op, the kernel a schedule chose is the one its C
calls (and its scratch is what that kernel works in)."""
import re

import pytest

from benchmarks.shared_models import INT8_MODELS, REPO
from patch_inference.schedule import build_schedule, make_stage
from targets.c_emitter import emit_c_project, kernel_templates
from toolchain.driver.pipeline import optimize
from toolchain.importers import load_model
from toolchain.importers.tflite import BUILTINS
from toolchain.ops import DEFINITIONS, KERNELS, REGISTRY, op_def, prototypes
from toolchain.ops.choice import DSP, PORTABLE, choose_kernel
from toolchain.errors import UserError

TEMPLATES = REPO / "templates" / "kernels"


def test_each_kind_is_defined_once_with_its_functions():
    assert len(REGISTRY) == len(DEFINITIONS)
    for d in DEFINITIONS:
        assert callable(d.lower) and callable(d.reference) and callable(d.macs), d.kind
        assert d.window == (d.input_region is not None), d.kind
        assert d.grid in ("own", "input", "shared", "fixed") and (d.grid == "fixed") == (d.fixed_grid is not None)
        assert d.channels in ("create", "follow", "couple", "carry", "reduce", "flatten", "stack", "freeze")
        assert d.tflite.builtins and set(d.tflite.order) >= {
            n for f in d.tflite.fields.values() for n in ((f.names,) if isinstance(f.names, str) else f.names)}


def test_every_kernel_is_defined_by_its_template():
    for kernel in KERNELS.values():
        text = (TEMPLATES / f"{kernel.template}.c.j2").read_text()
        assert re.search(rf"\btdk_{kernel.name}\(", text), f"{kernel.template}.c.j2 lacks tdk_{kernel.name}"
    assert set(prototypes()) == {k.template for k in KERNELS.values()}


def test_each_builtin_reads_as_one_op():
    assert {b for d in DEFINITIONS for b in d.tflite.builtins} == set(BUILTINS)
    assert BUILTINS["PADV2"].kind == "pad" and BUILTINS["SQUEEZE"].kind == "reshape"


def test_unknown_kind_is_one_line():
    with pytest.raises(UserError, match="unknown op kind 'gelu'"):
        op_def("gelu")


@pytest.mark.parametrize("profile", [PORTABLE, DSP], ids=["portable", "dsp"])
def test_the_schedule_plans_the_scratch_of_the_kernel_it_chose(tmp_path, profile):
    """vww's patch stage and its in-place ops: each op's scratch buffer is its KernelChoice's
    work_bytes, and the C calls that choice's entry point (with its working rows when it has them)."""
    graph = optimize(load_model(INT8_MODELS["vww_96_int8"]))
    schedule = build_schedule(graph, make_stage(graph, 0, 4, 4), profile=profile)
    sizes = {b.name: b.size for b in schedule.buffers}
    for i, choice in schedule.kernels.items():
        assert sizes.get(f"scratch{i}", 0) == choice.work_bytes
        inplace = schedule.inplace.get(i, (None,))[0]
        again = choose_kernel(graph, graph.ops[i], inplace, profile)
        assert (again.variant, again.work_bytes, again.spec and again.spec["name"]) == (
            choice.variant, choice.work_bytes, choice.spec and choice.spec["name"])
    emit_c_project(schedule, tmp_path / "c", [])
    model_c = (tmp_path / "c" / "model.c").read_text()
    for i, choice in schedule.kernels.items():
        if choice.spec is not None:
            assert f"tdk_{choice.spec['name']}(" in model_c
    assert kernel_templates(schedule) == sorted({c.template for c in schedule.kernels.values()})
    quad = [c for c in schedule.kernels.values() if c.spec and c.spec.get("quad")]
    assert bool(quad) == (profile == DSP)
