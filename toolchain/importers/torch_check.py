"""What a PyTorch ExportedProgram (.pt2) asks to run, read from its JSON before torch loads it.

torch.export.load resolves every node target by attribute lookup from the `torch` module
(so 'torch.os.system' is a valid target), turns guard strings into Python code, parses symbolic
sizes with sympy (which evaluates them), falls back to pickle for some payloads, and allocates
every weight from the sizes it declares. So, unless the user trusts the file: targets must be
PyTorch operators, there may be no guards, symbolic sizes or custom objects, no payload may be
pickled, and every declared tensor must fit the read policy.
"""
from __future__ import annotations

import json
import math
import re
import zipfile
from pathlib import Path

from ..errors import UserError, quoted
from ..read_policy import ReadPolicy

OPERATOR_TARGET = re.compile(r"torch\.ops\.(aten|prims|quantized_decomposed)\.\w+\.\w+")
PYTHON_OPERATORS = {"getitem", "add", "sub", "mul", "floordiv", "truediv", "neg", "pos", "mod", "pow",
                    "eq", "ne", "lt", "le", "gt", "ge", "and_", "or_", "not_"}
# torch's serialized ScalarType codes -> bytes per element (anything else: 8, the widest scalar)
ELEMENT_BYTES = {1: 1, 2: 1, 3: 2, 4: 4, 5: 8, 6: 2, 7: 4, 8: 8, 12: 1, 13: 2}
TRUST_HINT = "convert it only if you trust its source, with --trust-pickle"


def _walk(value, key=None):
    """(key, value) of every entry in a JSON tree."""
    if isinstance(value, dict):
        for k, v in value.items():
            yield k, v
            yield from _walk(v, k)
    elif isinstance(value, list):
        for v in value:
            yield from _walk(v, key)


def _allowed_target(target) -> bool:
    if not isinstance(target, str):
        return False
    if OPERATOR_TARGET.fullmatch(target):
        return True
    module, _, name = target.partition(".")
    return module == "_operator" and name in PYTHON_OPERATORS


def _size_text(size: dict) -> str:
    """A size as text: the number, or the symbol's name (read, never evaluated)."""
    if "as_int" in size:
        return str(size["as_int"])
    expr = str((size.get("as_expr") or {}).get("expr_str", "?"))
    symbol = re.match(r"Symbol\('(\w+)'", expr)
    return symbol.group(1) if symbol else expr[:40]


def _dynamic_input(program: dict) -> tuple[str, list[str]] | None:
    """(input name, sizes as text) of the first user input with a symbolic size."""
    module = program.get("graph_module") or {}
    values = (module.get("graph") or {}).get("tensor_values") or {}
    for spec in (module.get("signature") or {}).get("input_specs") or []:
        arg = ((spec.get("user_input") or {}).get("arg") or {}).get("as_tensor") or {}
        sizes = (values.get(arg.get("name")) or {}).get("sizes") or []
        if any("as_int" not in s for s in sizes):
            return arg["name"], [_size_text(s) for s in sizes]
    return None


def _tensor_bytes(meta: dict, where: str, policy: ReadPolicy) -> int:
    sizes = meta.get("sizes") or []
    if not all(isinstance(s, dict) and isinstance(s.get("as_int"), int) for s in sizes):
        raise UserError(f"{where} has a symbolic size (tinydeploy needs fixed shapes)")
    dims = [s["as_int"] for s in sizes]
    if any(d < 0 for d in dims):
        raise UserError(f"{where} has a negative size {dims}")
    nbytes = math.prod(dims) * ELEMENT_BYTES.get(meta.get("dtype"), 8)
    policy.check_tensor_bytes(nbytes, f"{where} of shape {dims}")
    return nbytes


def _check_program(path: Path, name: str, program: dict, policy: ReadPolicy) -> None:
    where = f"{quoted(path)} ({name})"
    dynamic = _dynamic_input(program)
    if dynamic:
        raise UserError(f"{quoted(path)}: input {quoted(dynamic[0])} has a dynamic shape {dynamic[1]} "
                        f"(tinydeploy needs fixed shapes: export without dynamic_shapes)")
    if program.get("guards_code"):
        raise UserError(f"{where}: carries guard code, which loads as Python; {TRUST_HINT}")
    for key, value in _walk(program):
        if key == "target" and not _allowed_target(value):
            raise UserError(f"{where}: calls {quoted(value)}, which is not a PyTorch operator; {TRUST_HINT}")
        if key == "expr_str":
            raise UserError(f"{where}: declares symbolic sizes (tinydeploy needs fixed shapes)")
        if key in ("as_custom_obj", "custom_obj_values") and value:
            raise UserError(f"{where}: holds custom (pickled) objects; {TRUST_HINT}")
    values = ((program.get("graph_module") or {}).get("graph") or {}).get("tensor_values") or {}
    for value_name, meta in values.items():
        _tensor_bytes(meta, f"{quoted(path)}: tensor {quoted(value_name)}", policy)


def _check_payloads(path: Path, name: str, config: dict, policy: ReadPolicy) -> int:
    total = 0
    for fqn, payload in (config.get("config") or {}).items():
        where = f"{quoted(path)}: {quoted(fqn)}"
        if payload.get("use_pickle"):
            raise UserError(f"{where} is a pickled object; {TRUST_HINT}")
        total += _tensor_bytes(payload.get("tensor_meta") or {}, where, policy)
    return total


def check_exported_program(path: Path, names: list[str], policy: ReadPolicy) -> None:
    if policy.trust_pickle:
        return
    total = 0
    try:
        with zipfile.ZipFile(path) as archive:
            for name in names:
                if not name.endswith(".json"):
                    continue
                try:
                    document = json.loads(archive.read(name))
                except (ValueError, RecursionError):
                    raise UserError(f"{quoted(path)}: {quoted(name)} is not valid JSON") from None
                if not isinstance(document, dict):
                    raise UserError(f"{quoted(path)}: {quoted(name)} is not a JSON object")
                if "/models/" in name:
                    _check_program(path, name, document, policy)
                elif name.endswith("_config.json"):
                    total += _check_payloads(path, name, document, policy)
    except (AttributeError, TypeError) as exc:   # a JSON value of the wrong type where a table is expected
        raise UserError(f"{quoted(path)}: malformed ExportedProgram JSON ({type(exc).__name__})") from None
    policy.check_tensor_bytes(total, f"{quoted(path)}: the program's weights and constants")
