"""Which schedule a convert takes: the objective (`--optimize`, or the target's default) within the
SRAM the model may use (a board's, less `--reserve-sram`; or `--sram-budget`).

- memory: the smallest arena (patches wherever they save SRAM): a bare core's default.
- speed: the fewest executed MACs whose estimated peak SRAM fits (layer by layer when it fits,
  the patch plan with the least recomputation otherwise): the default on a board (its SRAM is
  the budget) and on a Linux target (Raspberry Pi, phones: SRAM is not the constraint).
- balanced: the smallest arena x MACs that fits.

The peak SRAM of a plan is estimated as convert's board check does (targets/fit.py: arena, output
buffer, stack, runtime statics); a board's default reserve for the application is 10% of its SRAM.
"""
from __future__ import annotations

from dataclasses import dataclass

from patch_inference.schedule import OBJECTIVES, Schedule, with_lean_kernels
from targets import fit
from targets.c_emitter import boundary
from targets.registry import Target
from toolchain.errors import UserError
from toolchain.ir import Graph
from toolchain.ops.choice import PORTABLE

from .options import PatchOptions

DEFAULT_RESERVE_FRACTION = 0.10


def default_objective(board: Target) -> str:
    return "speed" if board.is_board or board.platform == "linux" else "memory"


@dataclass(frozen=True)
class Budget:
    sram_bytes: int       # what the model may use: the board's SRAM or --sram-budget
    reserve_bytes: int    # kept for the application
    arena_bytes: int      # what is left for the arena (less output buffer, stack, runtime statics)

    def to_json(self) -> dict:
        return {"sram_bytes": self.sram_bytes, "reserve_bytes": self.reserve_bytes, "arena_bytes": self.arena_bytes}


def sram_budget(board: Target, patch: PatchOptions, graph: Graph) -> Budget | None:
    """The budget a plan must fit: --sram-budget (reserve 0 unless given), else a board's SRAM
    (reserve 10% unless given); None for a bare core without --sram-budget."""
    total = patch.sram_budget if patch.sram_budget is not None else board.sram_bytes
    if total is None:
        return None
    reserve = patch.reserve_sram
    if reserve is None:
        reserve = 0 if patch.sram_budget is not None else int(total * DEFAULT_RESERVE_FRACTION)
    if reserve >= total:
        raise UserError(f"--reserve-sram {reserve:,} B leaves nothing of the {total:,} B of SRAM")
    overhead = fit.estimate(0, boundary(graph, graph.outputs)["bytes"], 0, 0)["sram_bytes"]
    return Budget(total, reserve, total - reserve - overhead)


def describe(schedule: Schedule) -> dict:
    kernels = "portable" if schedule.profile == PORTABLE else "optimized"
    return {"patch": schedule.stage.label if schedule.stage else "none", "arena_bytes": schedule.plan.arena_bytes,
            "executed_macs": schedule.executed_macs, "mac_overhead": round(schedule.mac_overhead, 6),
            "kernel_arena": kernels}


def choose(graph: Graph, board: Target, patch: PatchOptions, make_schedule) -> tuple[Schedule, dict]:
    """The schedule for `--patch auto` and the record of the choice (report.json plan.objective):
    the objective, the budget, the plan chosen and the alternative it was weighed against (the
    fastest plan when memory won, the smallest when speed or balance did)."""
    objective = patch.optimize or default_objective(board)
    if objective not in OBJECTIVES:
        raise UserError(f"--optimize '{objective}': expected one of {', '.join(OBJECTIVES)}")
    budget = sram_budget(board, patch, graph)
    smallest = make_schedule(graph, patch, board.kernel_profile)
    if board.kernel_profile != PORTABLE:   # the optimized kernels' buffers may cost more than they save
        plain = make_schedule(graph, patch, PORTABLE)
        if plain.plan.arena_bytes < smallest.plan.arena_bytes:
            smallest = plain
    smallest = with_lean_kernels(smallest)   # and per op: a working buffer that sets the peak goes
    if objective == "memory":
        chosen, why = smallest, "the smallest arena"
        alternative = None if patch.stream_input else make_schedule(graph, PatchOptions("none"), board.kernel_profile)
    else:
        chosen, why = None, None
        for profile in dict.fromkeys((board.kernel_profile, PORTABLE)):   # the target's own kernels first
            chosen = make_schedule(graph, patch, profile, objective=objective,
                                   arena_budget=budget.arena_bytes if budget else None)
            if chosen is not None:
                break
        if chosen is None:
            chosen, why = smallest, "no plan fits the budget: the smallest arena"
        else:
            why = {"speed": "the fewest MACs", "balanced": "the smallest arena x MACs"}[objective] + \
                  (" that fits the budget" if budget else "")
        alternative = smallest
    record = {"optimize": objective, "why": why, "budget": budget and budget.to_json(), "chosen": describe(chosen),
              "alternative": None if alternative is None or describe(alternative) == describe(chosen)
              else describe(alternative)}
    return chosen, record


ROLES = {"memory": ("smallest arena", "fastest"), "speed": ("fastest", "smallest arena"),
         "balanced": ("balanced", "smallest arena")}


def one_line(record: dict) -> str:
    """The plan line of convert's output: which plan won, within what, against which."""
    def text(plan):
        name = "layer by layer" if plan["patch"] == "none" else f"patch {plan['patch']}"
        return (f"{name}, arena {plan['arena_bytes']:,} B, {plan['executed_macs'] / 1e6:.2f} M MACs "
                f"(+{plan['mac_overhead']:.1%})")
    chosen_role, other_role = ROLES[record["optimize"]]
    budget = record["budget"]
    within = ""
    if budget and record["optimize"] != "memory":
        within = (f" within {budget['sram_bytes']:,} B SRAM - {budget['reserve_bytes']:,} B reserve "
                  f"(arena <= {budget['arena_bytes']:,} B)")
        if record["why"].startswith("no plan fits"):
            within += ", none fits"
    line = f"plan: {chosen_role}{within}: {text(record['chosen'])}"
    if record["alternative"]:
        line += f"; {other_role}: {text(record['alternative'])}"
    return line
