"""The plan a convert takes: the fastest that fits a board (layer by layer on a big one, patches on
a small one), the smallest arena on a bare core, what --optimize, --sram-budget and --reserve-sram
ask; the choice recorded in report.json and on the CLI line."""
import json
import subprocess
import sys

import pytest

from benchmarks.shared_models import INT8_MODELS
from patch_inference.schedule import build_schedule, candidate_stages, make_stage, objective_key
from targets import fit
from targets.registry import get_target
from toolchain.driver import pipeline, plan
from toolchain.driver.options import ConvertOptions, PatchOptions, TargetOptions
from toolchain.errors import UserError
from toolchain.ops.choice import PORTABLE

VWW = INT8_MODELS["vww_96_int8"]


def chosen(name, target, **patch):
    graph = pipeline.prepare_graph(INT8_MODELS[name], "model")
    return pipeline.choose_schedule(graph, get_target(target), PatchOptions(**patch))


def fits(board, schedule, record):
    need = fit.estimate(schedule.plan.arena_bytes, 0, 0, 0)["sram_bytes"] + record["budget"]["reserve_bytes"]
    return need <= board.sram_bytes


def test_a_big_board_runs_layer_by_layer_and_a_small_one_patches_as_little_as_it_must():
    big, record = chosen("vww_96_int8", "stm32l4r5")
    layer_by_layer = pipeline.schedule_for(pipeline.prepare_graph(VWW, "model"), get_target("stm32l4r5"),
                                           PatchOptions("none"))
    assert big.stage is None and record["optimize"] == "speed"
    assert big.executed_macs == layer_by_layer.executed_macs and big.plan.arena_bytes == layer_by_layer.plan.arena_bytes
    assert record["alternative"]["patch"] != "none"   # the smallest arena it was weighed against
    small, record = chosen("vww_96_int8", "nrf52832")
    smallest, _ = chosen("vww_96_int8", "cortex-m4")
    assert small.stage is not None and fits(get_target("nrf52832"), small, record)
    assert small.executed_macs < smallest.executed_macs   # fewer MACs than the memory-first plan
    assert small.plan.arena_bytes <= record["budget"]["arena_bytes"]


def test_speed_within_a_budget_is_the_fewest_macs_of_every_candidate_that_fits():
    graph = pipeline.optimize(pipeline.prepare_graph(INT8_MODELS["resnet8_int8"], "model"))
    every = [build_schedule(graph, None)] + [build_schedule(graph, make_stage(graph, *c))
                                             for c in candidate_stages(graph)]
    total = every[0].macs
    every = [s for s in every if s.executed_macs - total <= 0.10 * total]
    budget = (min(s.plan.arena_bytes for s in every) + every[0].plan.arena_bytes) // 2   # patches must save some
    schedule = pipeline.make_schedule(graph, PatchOptions(), PORTABLE, objective="speed", arena_budget=budget)
    fitting = [s for s in every if s.plan.arena_bytes <= budget]
    assert fitting and schedule.stage is not None and schedule.plan.arena_bytes <= budget
    best = min(objective_key("speed", s.plan.arena_bytes, s.executed_macs) for s in fitting)
    assert objective_key("speed", schedule.plan.arena_bytes, schedule.executed_macs) == best
    assert pipeline.make_schedule(graph, PatchOptions(), PORTABLE, objective="speed", arena_budget=1000) is None


def test_a_bare_core_keeps_the_smallest_arena_unless_asked():
    default, record = chosen("vww_96_int8", "cortex-m4")
    assert record["optimize"] == "memory" and record["alternative"]["patch"] == "none"
    memory, _ = chosen("vww_96_int8", "cortex-m4", optimize="memory")
    assert (default.stage.label, default.plan.arena_bytes) == (memory.stage.label, memory.plan.arena_bytes)
    fast, record = chosen("vww_96_int8", "cortex-m4", optimize="speed")
    assert fast.stage is None and record["budget"] is None
    budgeted, record = chosen("vww_96_int8", "cortex-m4", optimize="speed", sram_budget=50_000)
    assert record["budget"]["reserve_bytes"] == 0
    assert fit.estimate(budgeted.plan.arena_bytes, 0, 0, 0)["sram_bytes"] <= 50_000
    assert budgeted.executed_macs < default.executed_macs
    balanced, _ = chosen("vww_96_int8", "cortex-m4", optimize="balanced")   # on the core's own kernels
    same_kernels = pipeline.make_schedule(pipeline.prepare_graph(VWW, "model"), PatchOptions(), balanced.profile)
    key = objective_key("balanced", balanced.plan.arena_bytes, balanced.executed_macs)
    assert balanced.profile == get_target("cortex-m4").kernel_profile
    assert key <= objective_key("balanced", same_kernels.plan.arena_bytes, same_kernels.executed_macs)
    assert key <= objective_key("balanced", fast.plan.arena_bytes, fast.executed_macs)


def test_when_nothing_fits_the_smallest_is_taken_and_convert_refuses_with_the_numbers(tmp_path):
    schedule, record = chosen("vww_96_int8", "stm32f103c8")
    assert record["why"].startswith("no plan fits")
    with pytest.raises(UserError, match=r"does not fit stm32f103c8: needs [\d,]+ B of SRAM"):
        pipeline.convert(VWW, tmp_path / "out", ConvertOptions(TargetOptions("stm32f103c8")))
    assert not (tmp_path / "out").exists()


def test_the_choice_is_in_report_json_and_on_the_cli_line(tmp_path):
    out = tmp_path / "out"
    proc = subprocess.run([sys.executable, "-m", "toolchain.driver.cli", "convert", str(VWW), "--target", "nrf52832",
                           "-o", str(out)], capture_output=True, text=True)
    assert proc.returncode == 0, proc.stderr
    objective = json.loads((out / "report.json").read_text())["plan"]["objective"]
    assert objective["optimize"] == "speed" and objective["budget"]["sram_bytes"] == 64 * 1024
    line = next(line for line in proc.stdout.splitlines() if line.startswith("plan: "))
    assert f"patch {objective['chosen']['patch']}" in line and "smallest arena: patch" in line
    assert plan.one_line(objective) == line


def test_a_reserve_that_leaves_nothing_is_one_line(tmp_path):
    proc = subprocess.run([sys.executable, "-m", "toolchain.driver.cli", "convert", str(VWW), "--target", "nrf52832",
                           "--reserve-sram", "70000", "-o", str(tmp_path / "out")], capture_output=True, text=True)
    assert proc.returncode == 2 and proc.stderr.count("\n") == 1
    assert "--reserve-sram 70,000 B leaves nothing of the 65,536 B" in proc.stderr
