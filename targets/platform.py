"""The build files of an emitted C project: its Makefile (every target of the registry) and, for
the bare-metal targets, start-up code and one linker script per memory map (platform/)."""
from __future__ import annotations

from pathlib import Path

import jinja2

from .registry import TARGETS

# Below this much RAM left for the stack a bare-metal build does not link (the harness, printf and
# the shallowest model need about this much; verify measures the real high-water mark).
MIN_STACK_BYTES = 1024


def linker_scripts(t) -> dict[str, object]:
    """platform/<target>.ld (the board's own memory map) and, for a board its emulator cannot run
    on that map, platform/<target>-qemu.ld (the emulator's map cut to the board's budgets)."""
    scripts = {f"platform/{t.name}.ld": t.memory}
    if t.emulated_memory is not None:
        scripts[f"platform/{t.name}-qemu.ld"] = t.emulated_memory
    return scripts


def build_files(env: jinja2.Environment, prefix: str) -> dict[str, str]:
    """Relative path in the C project -> contents."""
    targets = list(TARGETS.values())
    files = {"Makefile": env.get_template("Makefile.j2").render(targets=targets, prefix=prefix)}
    linker = env.get_template("platform/link.ld.j2")
    for t in targets:
        if t.bare_metal:
            for rel, memory in linker_scripts(t).items():
                files[rel] = linker.render(t=t, m=memory, emulated=memory is not t.memory, hex=hex,
                                           min_stack=MIN_STACK_BYTES)
    if any(t.platform == "cortex-m" for t in targets):
        files["platform/startup_cortex_m.c"] = env.get_template("platform/startup_cortex_m.c.j2").render()
    return files


def write_build_files(c_dir: Path, env: jinja2.Environment, prefix: str) -> None:
    for rel, text in build_files(env, prefix).items():
        path = c_dir / rel
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(text)
