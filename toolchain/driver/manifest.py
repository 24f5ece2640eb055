"""convert.json: what convert decided (Manifest) and the manifest of the files it wrote.

It is written once, last, by convert (Manifest.write), and read back by verify and bench
(Manifest.read), which rebuild nothing convert decided (the weight bits, QuantMCU's plan, the
boundary type, the prefix, the read limits come from here; the int8 graph from MODEL_FILE). The
reading checks it against a schema (prefix a C identifier, io and quant from their choices, the
recorded limits positive, every file entry a size and a SHA-256) and then checks that every file
convert wrote is still there, whole and unchanged (`check_files`). The files verify itself rewrites (the reports
and the test inputs) are not in the manifest; report.json is checked against its own schema. The
same manifest tells a later convert that a folder is a previous output of ours (output_dir)."""
from __future__ import annotations

import hashlib
import json
import os
from dataclasses import dataclass, field, fields
from pathlib import Path

import jsonschema

from toolchain.errors import UserError, quoted
from toolchain.read_policy import ReadPolicy
from toolchain.safe_files import check_regular_file

SETTINGS_FILE = "convert.json"
MODEL_FILE = "tflite/model_int8.tflite"
REPORT_FILE = "report.json"
TEST_INPUTS_C, TEST_INPUTS_NPY = "c/harness/test_inputs.c", "c/harness/test_inputs.npy"
# What verify rewrites (reports, the inputs it was given) and creates (builds): not in the manifest.
VERIFY_WRITES = (REPORT_FILE, "report.html", TEST_INPUTS_C, TEST_INPUTS_NPY)
BUILD_DIR = "build"
BENCH_WRITES = ("bench.json", "bench_inputs.npy")   # `tinydeploy bench` adds these
MAX_JSON_BYTES = 64 << 20
C_IDENTIFIER = r"^[A-Za-z_][A-Za-z0-9_]{0,62}$"

_SIZE = {"type": "integer", "minimum": 1}
SETTINGS_SCHEMA = {
    "type": "object",
    "required": ["source", "io", "prefix", "target", "patch", "max_mac_overhead", "stream_input", "quant", "files"],
    "properties": {
        "source": {"type": "string"},
        "io": {"enum": ["model", "int8"]},
        "prefix": {"type": "string", "pattern": C_IDENTIFIER},
        "target": {"type": "string", "pattern": r"^[a-z0-9][a-z0-9-]*$"},
        "patch": {"type": "string"},
        "max_mac_overhead": {"type": "number", "minimum": 0},
        "stream_input": {"type": "boolean"},
        "calib": {"type": ["string", "null"]},
        "calib_method": {"type": ["string", "null"]},
        "quant": {"enum": ["int8", "mixed"]},
        "mixed": {"anyOf": [{"type": "null"}, {
            "type": "object", "required": ["bits"],
            "properties": {"bits": {"type": "object", "additionalProperties": {"type": "integer", "minimum": 1,
                                                                                 "maximum": 8}}}}]},
        "quantmcu": {"anyOf": [{"type": "null"}, {
            "type": "object", "required": ["stage", "sigma", "lam", "bounds", "bits", "grids", "search"],
            "properties": {
                "stage": {"type": "string"}, "sigma": {"type": "number"}, "lam": {"type": "number"},
                "bounds": {"type": "array", "items": {"type": "integer"}, "minItems": 2, "maxItems": 2},
                "bits": {"type": "object", "additionalProperties": {"type": "integer", "minimum": 1, "maximum": 8}},
                "grids": {"type": "object", "additionalProperties": {
                    "type": "array", "prefixItems": [{"type": "number", "exclusiveMinimum": 0}, {"type": "integer"}],
                    "minItems": 2, "maxItems": 2}}}}]},
        "limits": {"type": "object", "properties": {"max_file_bytes": _SIZE, "max_tensor_bytes": _SIZE},
                   "additionalProperties": False},
        "files": {"type": "object", "additionalProperties": {
            "type": "object", "required": ["bytes", "sha256"], "additionalProperties": False,
            "properties": {"bytes": {"type": "integer", "minimum": 0},
                           "sha256": {"type": "string", "pattern": "^[0-9a-f]{64}$"}}}},
    },
}
REPORT_SCHEMA = {
    "type": "object",
    "required": ["memory", "plan"],
    "properties": {
        "memory": {"type": "object", "required": ["arena_bytes", "output_buffer_bytes"],
                   "properties": {"arena_bytes": {"type": "integer", "minimum": 0},
                                  "output_buffer_bytes": {"type": "integer", "minimum": 0}}},
        "plan": {"type": "object"},
        "quantmcu": {"type": "object", "properties": {"patch_stage_bitops": {"type": "object"}}},
    },
}


def _sha256(path: Path) -> str:
    digest = hashlib.sha256()
    with open(path, "rb") as f:
        for block in iter(lambda: f.read(1 << 20), b""):
            digest.update(block)
    return digest.hexdigest()


def walk_files(folder: Path) -> list[str]:
    """Every file and symbolic link below `folder`, as relative POSIX paths (links not followed)."""
    found = []
    for root, dirs, files in os.walk(folder):
        rel = Path(root).relative_to(folder)
        found.extend((rel / name).as_posix() for name in files)
        found.extend((rel / name).as_posix() for name in dirs if os.path.islink(os.path.join(root, name)))
    return sorted(found)


def file_entries(folder: Path) -> dict:
    return {rel: {"bytes": (folder / rel).stat().st_size, "sha256": _sha256(folder / rel)}
            for rel in walk_files(folder) if rel != SETTINGS_FILE and rel not in VERIFY_WRITES}


def _load_json(path: Path, schema: dict, what: str) -> dict:
    st = check_regular_file(path, what)
    if st.st_size > MAX_JSON_BYTES:
        raise UserError(f"{quoted(path)}: {st.st_size:,} B is too large for a {what}")
    try:
        document = json.loads(path.read_bytes())
    except (ValueError, RecursionError) as exc:
        raise UserError(f"{quoted(path)}: not valid JSON ({type(exc).__name__}: {str(exc)[:120]})") from None
    error = jsonschema.exceptions.best_match(jsonschema.Draft202012Validator(schema).iter_errors(document))
    if error is not None:
        where = "/".join(str(p) for p in error.absolute_path) or "the top level"
        raise UserError(f"{quoted(path)}: tampered or not from tinydeploy ({where}: {error.message[:200]})")
    return document


def read_settings(folder: Path) -> dict:
    """The settings of a convert output folder, checked against the schema."""
    path = Path(folder) / SETTINGS_FILE
    if not os.path.lexists(path):
        raise UserError(f"{folder}: not a tinydeploy output folder (no {SETTINGS_FILE}); run convert first")
    return _load_json(path, SETTINGS_SCHEMA, "tinydeploy settings file")


def read_report(folder: Path) -> dict:
    return _load_json(Path(folder) / REPORT_FILE, REPORT_SCHEMA, "tinydeploy report")


def check_files(folder: Path, files: dict) -> None:
    """Every file convert wrote (files: the manifest's entries) is present, a regular file, and byte
    for byte what it wrote."""
    for rel, entry in files.items():
        path = Path(folder) / rel
        if not os.path.lexists(path):
            raise UserError(f"{quoted(folder)}: {quoted(rel)} is missing (convert wrote it); run convert again")
        st = check_regular_file(path)
        if st.st_size != entry["bytes"] or _sha256(path) != entry["sha256"]:
            raise UserError(f"{quoted(folder)}: {quoted(rel)} was changed or truncated since convert wrote it "
                            f"({st.st_size:,} B, convert wrote {entry['bytes']:,} B); run convert again")
    for rel in (REPORT_FILE, "report.html", TEST_INPUTS_NPY):   # verify rewrites test_inputs.c from the .npy
        path = Path(folder) / rel
        if not os.path.lexists(path):
            raise UserError(f"{quoted(folder)}: {quoted(rel)} is missing; run convert again")
        check_regular_file(path)


def foreign_files(folder: Path) -> list[str]:
    """Empty if `folder` holds only what tinydeploy wrote there (a manifest whose files are
    unchanged, what verify writes, builds); else the first few files that are not ours."""
    try:
        listed = read_settings(folder)["files"]
    except UserError:
        listed = None
    foreign = []
    for rel in walk_files(folder):
        path = folder / rel
        if listed is None:
            ours = False
        elif rel == SETTINGS_FILE or rel.startswith(BUILD_DIR + "/") or rel in VERIFY_WRITES + BENCH_WRITES:
            ours = not os.path.islink(path)
        else:
            entry = listed.get(rel)
            ours = (entry is not None and not os.path.islink(path) and path.stat().st_size == entry["bytes"]
                    and _sha256(path) == entry["sha256"])
        if not ours:
            foreign.append(rel)
            if len(foreign) == 3:
                break
    return foreign


@dataclass(frozen=True)
class Manifest:
    source: str                    # the model file's name
    io: str
    prefix: str
    target: str
    patch: str
    max_mac_overhead: float
    stream_input: bool
    calib: str | None
    calib_method: str | None
    quant: str                     # int8 | mixed
    mixed: dict | None             # {"budget": {kind: value}, "activations", "bits": tensor -> bits below 8}
    quantmcu: dict | None          # QuantMCUPlan.to_json()
    limits: dict | None = None     # {"max_file_bytes", "max_tensor_bytes"}: the read policy convert used
    pruning: dict | None = None    # {"ratio", "budget", "importance", "epochs"}
    files: dict = field(default_factory=dict)   # relative path -> {bytes, sha256}, by write()

    @property
    def bits(self) -> dict[str, int]:
        return (self.mixed or {}).get("bits", {})

    @property
    def policy(self) -> ReadPolicy:
        return ReadPolicy(**(self.limits or {}))

    def write(self, folder: Path) -> None:
        """convert.json with the manifest of everything else in `folder`: the last file convert writes."""
        data = {f.name: getattr(self, f.name) for f in fields(self) if f.name not in ("pruning", "files")}
        if self.pruning is not None:
            data["pruning"] = self.pruning
        data["files"] = file_entries(Path(folder))
        (Path(folder) / SETTINGS_FILE).write_text(json.dumps(data, indent=2))

    @classmethod
    def read(cls, folder: Path) -> Manifest:
        """The manifest of a convert output folder, checked against the schema, with every file it
        lists checked to be whole and unchanged."""
        document = read_settings(folder)
        check_files(folder, document["files"])
        return cls(**{f.name: document[f.name] for f in fields(cls) if f.name in document})
