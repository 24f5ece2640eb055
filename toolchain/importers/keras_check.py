"""A Keras model config read as data before Keras deserializes it.

A Lambda layer stores Python bytecode, and a custom object names a module that Keras imports
(running its code) to find the class. Keras's own safe mode stops the first; this check refuses
both, with the layer named, unless the user trusts the file (--trust-pickle)."""
from __future__ import annotations

import json
from pathlib import Path

from ..errors import UserError, quoted

CODE_LAYERS = {"Lambda", "TFOpLambda", "SlicingOpLambda", "__lambda__"}
KERAS_PACKAGES = {"keras", "builtins"}
TRUST_HINT = "convert it only if you trust its source, with --trust-pickle"


def _objects(value):
    """Every serialized object (a dict with a class_name) in a config tree."""
    if isinstance(value, dict):
        if "class_name" in value:
            yield value
        for v in value.values():
            yield from _objects(v)
    elif isinstance(value, list):
        for v in value:
            yield from _objects(v)


def check_keras_config(text: str, path: Path) -> None:
    try:
        config = json.loads(text)
    except (ValueError, RecursionError):
        raise UserError(f"{quoted(path)}: the Keras model config is not valid JSON") from None
    for obj in _objects(config):
        class_name, config = obj["class_name"], obj.get("config")
        if not isinstance(class_name, str):
            raise UserError(f"{quoted(path)}: the Keras model config has a class name that is not a string")
        name = obj.get("name") or (config.get("name") if isinstance(config, dict) else None)
        label = quoted(class_name) + (f" layer {quoted(name)}" if name else "")
        if class_name in CODE_LAYERS:
            raise UserError(f"{quoted(path)}: {label} holds Python code; {TRUST_HINT}")
        module = obj.get("module")
        if module is not None and (not isinstance(module, str) or module.split(".")[0] not in KERAS_PACKAGES):
            raise UserError(f"{quoted(path)}: {label} is a custom object from module {quoted(module)}, which "
                            f"Keras would import; {TRUST_HINT}")
        registered = obj.get("registered_name")
        if isinstance(registered, str) and ">" in registered:
            raise UserError(f"{quoted(path)}: {label} is a registered custom object ({quoted(registered)}); "
                            f"{TRUST_HINT}")
