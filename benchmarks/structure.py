"""Structure figures of the source tree at one or two commits (issue 18's before/after table).

    .venv/bin/python benchmarks/structure.py                     # the working tree
    .venv/bin/python benchmarks/structure.py --compare 879fd37 HEAD

Counted over the source packages (toolchain, quantize, prune, patch_inference, targets; not tests,
benchmarks or examples): the longest functions and largest files (lines), the files that name
DEPTHWISE_CONV_2D (the IR kind `depthwise_conv2d` or the TFLite builtin), comparisons of an op's
kind (`x.kind == ...`, `!=`, `in`, `not in`) outside the op registry (toolchain/ops/), the
parameters of every `convert` entry point, and the pairs of packages that import each other
(toolchain/driver counted as a package of its own).
"""
from __future__ import annotations

import argparse
import ast
import re
import subprocess
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
PACKAGES = ("toolchain", "quantize", "prune", "patch_inference", "targets")
REGISTRY = "toolchain/ops/"
DEPTHWISE = re.compile(r"depthwise_conv2d|DEPTHWISE_CONV_2D")


def sources(rev: str | None) -> dict[str, str]:
    """path -> text of the .py files of the source packages at `rev` (None: the working tree)."""
    if rev is None:
        paths = [p.relative_to(REPO).as_posix() for pkg in PACKAGES for p in (REPO / pkg).rglob("*.py")]
        return {p: (REPO / p).read_text() for p in sorted(paths)}
    names = subprocess.run(["git", "ls-tree", "-r", "--name-only", rev], cwd=REPO, capture_output=True,
                           text=True, check=True).stdout.split()
    return {p: subprocess.run(["git", "show", f"{rev}:{p}"], cwd=REPO, capture_output=True, text=True,
                              check=True).stdout
            for p in names if p.endswith(".py") and p.split("/")[0] in PACKAGES}


def package_of(path: str) -> str:
    parts = path.split("/")
    return "toolchain/driver" if parts[:2] == ["toolchain", "driver"] else parts[0]


def imported_packages(path: str, tree: ast.AST) -> set[str]:
    found = set()
    module_parts = path[:-3].split("/")
    for node in ast.walk(tree):
        names = []
        if isinstance(node, ast.Import):
            names = [a.name for a in node.names]
        elif isinstance(node, ast.ImportFrom):
            if node.level:
                base = module_parts[:-node.level] if not path.endswith("__init__.py") else module_parts[:-node.level]
                names = [".".join(base + ([node.module] if node.module else []))]
            else:
                names = [node.module or ""]
        for name in names:
            parts = name.split(".")
            if parts[0] in PACKAGES:
                found.add("toolchain/driver" if parts[:2] == ["toolchain", "driver"] else parts[0])
    return found


def figures(rev: str | None) -> dict:
    files = sources(rev)
    functions, kind_tests, depthwise, convert_params, edges = [], 0, [], {}, set()
    for path, text in files.items():
        tree = ast.parse(text)
        for node in ast.walk(tree):
            if isinstance(node, (ast.FunctionDef, ast.AsyncFunctionDef)):
                functions.append((node.end_lineno - node.lineno + 1, f"{path}:{node.name}"))
                if node.name == "convert":
                    a = node.args
                    convert_params[f"{path[:-3].replace('/', '.')}.convert"] = (
                        len(a.posonlyargs) + len(a.args) + len(a.kwonlyargs))
            if (isinstance(node, ast.Compare) and isinstance(node.left, ast.Attribute)
                    and node.left.attr == "kind" and not path.startswith(REGISTRY)
                    and all(isinstance(o, (ast.Eq, ast.NotEq, ast.In, ast.NotIn)) for o in node.ops)):
                kind_tests += 1
        if DEPTHWISE.search(text):
            depthwise.append(path)
        for target in imported_packages(path, tree):
            if target != package_of(path):
                edges.add((package_of(path), target))
    sizes = sorted(((len(t.splitlines()), p) for p, t in files.items()), reverse=True)
    mutual = sorted({tuple(sorted(e)) for e in edges if (e[1], e[0]) in edges})
    return {"files": len(files), "lines": sum(n for n, _ in sizes), "longest": sorted(functions, reverse=True)[:8],
            "largest": sizes[:8], "depthwise_files": depthwise, "kind_tests": kind_tests,
            "convert_params": convert_params, "mutual_imports": mutual}


def describe(f: dict) -> list[str]:
    return [f"{f['files']} files, {f['lines']:,} lines",
            "longest functions: " + ", ".join(f"{name} {n}" for n, name in f["longest"]),
            "largest files: " + ", ".join(f"{name} {n}" for n, name in f["largest"]),
            f"files naming DEPTHWISE_CONV_2D: {len(f['depthwise_files'])} ({', '.join(f['depthwise_files'])})",
            f"`op.kind` comparisons outside the registry: {f['kind_tests']}",
            "convert entry points: " + ", ".join(f"{k} {v} parameters" for k, v in f["convert_params"].items()),
            "packages importing each other: " + (", ".join(f"{a}<->{b}" for a, b in f["mutual_imports"]) or "none")]


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--rev", default=None, help="a commit (default: the working tree)")
    ap.add_argument("--compare", nargs=2, metavar=("BEFORE", "AFTER"))
    args = ap.parse_args()
    if not args.compare:
        print("\n".join(describe(figures(args.rev))))
        return
    before, after = (describe(figures(None if r == "." else r)) for r in args.compare)
    print(f"| figure | {args.compare[0]} | {args.compare[1]} |\n|---|---|---|")
    for b, a in zip(before, after):
        label, _, b_value = b.partition(": ") if ": " in b else ("size", "", b)
        a_value = a.partition(": ")[2] if ": " in a else a
        print(f"| {label} | {b_value} | {a_value} |")


if __name__ == "__main__":
    main()
