"""The packages import downward only, and hold no global or context state.

Layers (DESIGN.md section 8): the core (toolchain/ without toolchain/driver/: IR, op registry,
lowering, references, readers and writers) imports no stage; the stages import the core and the
stages before them in STAGES, never one after; the driver (toolchain/driver/) imports anything
and nothing imports it. Every import counts, module-level or inside a function."""
from __future__ import annotations

import ast
from pathlib import Path

from benchmarks.shared_models import REPO

STAGES = ("patch_inference", "quantize", "prune", "targets")
PACKAGES = ("toolchain",) + STAGES


def layer_of(module: str) -> str | None:
    """core, a stage, driver; None: not the project's (numpy, torch, ...)."""
    parts = module.split(".")
    if parts[0] == "toolchain":
        return "driver" if parts[1:2] == ["driver"] else "core"
    return parts[0] if parts[0] in STAGES else None


def source_modules() -> dict[str, Path]:
    modules = {}
    for package in PACKAGES:
        for path in sorted((REPO / package).rglob("*.py")):
            parts = list(path.relative_to(REPO).with_suffix("").parts)
            if parts[-1] == "__init__":
                parts = parts[:-1]
            modules[".".join(parts)] = path
    return modules


def imports_of(module: str, path: Path) -> list[tuple[str, int]]:
    """(imported module, line) of every import statement in the file, at any depth."""
    package = module if path.name == "__init__.py" else module.rpartition(".")[0]
    found = []
    for node in ast.walk(ast.parse(path.read_text(), str(path))):
        if isinstance(node, ast.Import):
            found += [(alias.name, node.lineno) for alias in node.names]
        elif isinstance(node, ast.ImportFrom):
            if node.level:
                base = package.split(".")[:len(package.split(".")) - node.level + 1]
                target = ".".join(base + ([node.module] if node.module else []))
            else:
                target = node.module
            found.append((target, node.lineno))
            # `from package import module` imports the module too
            found += [(f"{target}.{alias.name}", node.lineno) for alias in node.names]
    return found


def allowed(source: str, target: str) -> bool:
    if source == target or target == "core":
        return True
    if source == "driver":
        return True
    if source == "core" or target == "driver":
        return False
    return STAGES.index(target) < STAGES.index(source)


def test_imports_flow_down_the_layers():
    modules = source_modules()
    wrong = []
    for module, path in modules.items():
        source = layer_of(module)
        for target_module, line in imports_of(module, path):
            target = layer_of(target_module)
            if target is not None and not allowed(source, target):
                wrong.append(f"{path.relative_to(REPO)}:{line}: {source} imports {target} ({target_module})")
    assert not wrong, "\n".join(wrong)


def test_the_layer_graph_is_acyclic():
    edges = {}
    for module, path in source_modules().items():
        for target_module, _ in imports_of(module, path):
            target = layer_of(target_module)
            if target is not None and target != layer_of(module):
                edges.setdefault(layer_of(module), set()).add(target)
    state = {}

    def visit(node, trail):
        if state.get(node) == "open":
            raise AssertionError(f"import cycle: {' -> '.join(trail + [node])}")
        if state.get(node) != "done":
            state[node] = "open"
            for nxt in sorted(edges.get(node, ())):
                visit(nxt, trail + [node])
            state[node] = "done"
    for node in list(edges):
        visit(node, [])
    assert "driver" not in {t for targets in edges.values() for t in targets}


def test_the_check_sees_a_wrong_import(tmp_path):
    """The parser finds imports inside functions and relative ones."""
    bad = tmp_path / "groups.py"
    bad.write_text("def f():\n    from ..targets import c_emitter\n    import toolchain.driver.cli\n")
    found = [t for t, _ in imports_of("prune.groups", bad)]
    assert "targets.c_emitter" in found and "toolchain.driver.cli" in found
    assert not allowed("prune", "targets") and not allowed("core", "quantize") and not allowed("targets", "driver")


MUTATORS = {"append", "extend", "insert", "update", "setdefault", "pop", "popitem", "clear", "add", "remove",
            "discard", "__setitem__"}


def module_state_mutations(path: Path) -> list[str]:
    """Global or context state in a module: `global`/`nonlocal` module rebinding, ContextVar,
    thread-locals, memoizing decorators (hidden caches), and functions that change a container
    the module holds (NAME[k] = v, NAME.append(...), ...)."""
    tree = ast.parse(path.read_text(), str(path))
    found = []
    containers = set()
    for node in tree.body:
        if isinstance(node, (ast.Assign, ast.AnnAssign)):
            value = node.value
            targets = node.targets if isinstance(node, ast.Assign) else [node.target]
            if isinstance(value, (ast.Dict, ast.List, ast.Set, ast.DictComp, ast.ListComp, ast.SetComp)) or (
                    isinstance(value, ast.Call) and getattr(value.func, "id", "") in ("dict", "list", "set")):
                containers |= {t.id for t in targets if isinstance(t, ast.Name)}
    for node in ast.walk(tree):
        if isinstance(node, ast.Global):
            found.append(f"line {node.lineno}: global {', '.join(node.names)}")
        if isinstance(node, ast.Name) and node.id in ("ContextVar",) or (
                isinstance(node, ast.Attribute) and node.attr in ("ContextVar", "local") and
                getattr(node.value, "id", "") in ("contextvars", "threading")):
            found.append(f"line {node.lineno}: context or thread-local state")
        if isinstance(node, (ast.FunctionDef, ast.AsyncFunctionDef)):
            for decorator in node.decorator_list:
                name = getattr(decorator, "attr", getattr(decorator, "id", ""))
                if isinstance(decorator, ast.Call):
                    name = getattr(decorator.func, "attr", getattr(decorator.func, "id", ""))
                if name in ("lru_cache", "cache", "cached_property"):
                    found.append(f"line {node.lineno}: {name} on {node.name}")
            local = {a.arg for a in node.args.args + node.args.kwonlyargs}
            for inner in ast.walk(node):
                if isinstance(inner, ast.Name) and isinstance(inner.ctx, ast.Store):
                    local.add(inner.id)
            for inner in ast.walk(node):
                target = None
                if isinstance(inner, (ast.Assign, ast.AugAssign)):
                    for t in (inner.targets if isinstance(inner, ast.Assign) else [inner.target]):
                        if isinstance(t, ast.Subscript) and isinstance(t.value, ast.Name):
                            target = t.value.id
                elif (isinstance(inner, ast.Call) and isinstance(inner.func, ast.Attribute)
                      and inner.func.attr in MUTATORS and isinstance(inner.func.value, ast.Name)):
                    target = inner.func.value.id
                if target in containers and target not in local:
                    found.append(f"line {inner.lineno}: {node.name} changes module-level {target}")
    return found


def test_no_global_or_context_state():
    found = [f"{path.relative_to(REPO)} {what}" for path in source_modules().values()
             for what in module_state_mutations(path)]
    assert not found, "\n".join(found)


def test_the_state_check_finds_what_it_looks_for(tmp_path):
    bad = tmp_path / "bad.py"
    bad.write_text("import contextvars\nimport functools\nSEEN = {}\nFLAG = contextvars.ContextVar('f')\n"
                   "def f(x):\n    global FLAG\n    SEEN[x] = 1\n"
                   "@functools.lru_cache\ndef g(x):\n    return x\n"
                   "def h(SEEN):\n    SEEN[1] = 2\n")
    found = module_state_mutations(bad)
    assert len(found) == 4, found   # ContextVar, global, SEEN[x] in f, lru_cache (h's SEEN is its own)
