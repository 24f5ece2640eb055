"""Byte-identity of what `tinydeploy convert` emits, before and after a change that must not change it.

    .venv/bin/python benchmarks/identity.py --record /work/snap-base       # at the commit before
    .venv/bin/python benchmarks/identity.py --check /work/snap-base        # after: exit 1 on any difference
    .venv/bin/python benchmarks/identity.py --list                         # the matrix and what it skips

A case is one `tinydeploy convert` (the console script of this checkout, run as a user runs it) of one
model for one target in one mode: models = every shared model the tool converts plus the repository's
examples/, targets = host, cortex-m4, cortex-m55, rv32imc, rpi4, modes = default, --patch none,
--io int8, --quantmcu, --stream-input (int8 models), --prune 0.5 and --quant mixed (with and without
--mixed-activations; float models).
A mode that does not apply to a model is listed as skipped, with why; a refusal (exit 2 and its one
line) is recorded and compared like any output.

`--record DIR` writes the snapshot: the matrix (cases, their command lines), the calibration inputs
it generated from ../shared/data (stored, so a later check reads the very same bytes), and per case
every file of the output folder (content-addressed, gzipped, so the shared files of many cases are
kept once), the exit code, stdout and stderr, and the seconds it took. Volatile parts are removed
first: the output, work, repository and shared folders' absolute paths become <OUT>, <WORK>,
<REPO>, <SHARED>; JSON keys that hold timings or dates (VOLATILE_KEY) are dropped.

`--check DIR` reruns the snapshot's cases (the commands recorded, whatever this script's matrix
says now) and prints one row per case: identical or different, per part (c/ = every emitted C
file; report.json; other = tflite/, bundle/, report.html, harness inputs; convert.json; cli = exit
code, stdout and stderr) and the seconds then and now. It exits 1 when any part but convert.json
differs (--strict-manifest: that too) or a case is missing. --only GLOB picks cases by id
(model/target/mode), --jobs N runs N at once, --diff shows the first lines that differ.
--renames FILE (lines "OLD NEW": C identifiers renamed on purpose, e.g. a helper given a clear
name) compares each recorded text file with the renames applied to it, word by word: a part then
counts as identical when the only differences are exactly those renames. JSON files compare by
value (volatile keys dropped), not by layout.
"""
from __future__ import annotations

import argparse
import concurrent.futures
import fnmatch
import gzip
import hashlib
import json
import os
import re
import shutil
import subprocess
import sys
import tempfile
import time
from dataclasses import asdict, dataclass
from pathlib import Path

import numpy as np

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))

from benchmarks.float_import_ptq import augment, shared_photos  # noqa: E402
from benchmarks.shared_models import MODELS, PHOTOS, SHARED  # noqa: E402

TARGETS = ("host", "cortex-m4", "cortex-m55", "rv32imc", "rpi4")
CALIB_SAMPLES = 16
PRUNE_EPOCHS = 2
VOLATILE_KEY = re.compile(r"(^|_)(seconds|time|timestamp|elapsed|duration|date|datetime|wall)(_s|_ms)?$")
PARTS = ("c", "report.json", "other", "convert.json", "cli")
STRICT_PARTS = ("c", "report.json", "other", "cli")


@dataclass(frozen=True)
class Model:
    name: str
    path: Path
    quantized: bool               # int8 already: no PTQ, pruning or mixed precision
    calib: str                    # calibration input name (see calibration_inputs)
    float_boundary: bool          # --io int8 strips something (a float QUANTIZE/DEQUANTIZE boundary)
    patch_stage: bool = True      # QuantMCU and input streaming need a patch stage
    quantmcu_args: tuple[str, ...] = ()   # what QuantMCU needs besides --quantmcu --calib
    all_targets_for: tuple[str, ...] = ("default", "patch-none", "io-int8", "quantmcu", "stream")


EXAMPLES = REPO / "examples"
# Pruning and mixed precision cost minutes per case: every target for the models named, host only
# for the other float models (each mode still runs on a shared model for every target).
WIDE = ("default", "patch-none", "io-int8", "quantmcu", "stream", "prune", "mixed")
MATRIX_MODELS = [
    Model("vww_96_int8", MODELS / "mlperf_tiny" / "vww_96_int8.tflite", True, "vww96", False),
    Model("resnet8_int8", MODELS / "mlperf_tiny" / "resnet8_int8.tflite", True, "resnet8", False),
    # the default schedule of the float-I/O model runs layer by layer; --io int8 finds a stage (5x5@5)
    Model("mcunet_vww1_int8", MODELS / "tinyengine" / "mcunet_vww1_int8.tflite", True, "mcunet80", True,
          quantmcu_args=("--io", "int8")),
    Model("hello_world_int8", MODELS / "tflm" / "hello_world_int8.tflite", True, "sine", False, patch_stage=False),
    Model("mnist_cnn_int8", EXAMPLES / "mnist" / "mnist_cnn_int8.tflite", True, "mnist28", False),
    Model("vww_96_float", MODELS / "mlperf_tiny" / "vww_96_float.tflite", False, "vww96", True, all_targets_for=WIDE),
    Model("resnet8_float", MODELS / "mlperf_tiny" / "resnet8_float.tflite", False, "resnet8", True,
          all_targets_for=WIDE),
    Model("hello_world_float", MODELS / "tflm" / "hello_world_float.tflite", False, "sine", True, patch_stage=False),
    Model("vww_96_h5", MODELS / "mlperf_tiny" / "vww_96.h5", False, "vww96", True),
    Model("resnet8_h5", MODELS / "mlperf_tiny" / "resnet8.h5", False, "resnet8", True),
    Model("mnist_mbv2_onnx", EXAMPLES / "mnist_torch" / "mnist_mbv2.onnx", False, "mnist_torch", True,
          all_targets_for=WIDE),
    Model("mnist_mbv2_pt", EXAMPLES / "mnist_torch" / "mnist_mbv2.pt", False, "mnist_torch", True),
    Model("mnist_mbv2_pt2", EXAMPLES / "mnist_torch" / "mnist_mbv2.pt2", False, "mnist_torch", True),
]

MODES = {
    "default": [],
    "patch-none": ["--patch", "none"],
    "io-int8": ["--io", "int8"],
    "quantmcu": ["--quantmcu"],
    "stream": ["--stream-input"],
    "prune": ["--prune", "0.5", "--prune-epochs", str(PRUNE_EPOCHS)],
    "mixed": ["--quant", "mixed", "--weight-budget", "0.6"],
    "mixed-act": ["--quant", "mixed", "--weight-budget", "0.6", "--mixed-activations"],
}


@dataclass
class Case:
    id: str
    model: str
    target: str
    mode: str
    args: list[str]               # after `tinydeploy`, with <MODEL-DIR>-free absolute model paths
    skip: str | None = None       # why the mode does not apply


def skip_reason(model: Model, target: str, mode: str) -> str | None:
    if mode in ("prune", "mixed", "mixed-act") and model.quantized:
        return "int8 model: needs the float model"
    if mode == "io-int8" and not model.float_boundary:
        return "int8 boundary already (same as default)"
    if mode in ("quantmcu", "stream") and not model.patch_stage:
        return "no patch stage (fully connected only)"
    if mode == "stream" and not model.quantized:
        return "int8 models only (streaming does not depend on how the model was quantized)"
    if target != "host" and mode not in model.all_targets_for:
        return "host only for this model (pruning / mixed precision run per target on the wide models)"
    return None


def matrix() -> list[Case]:
    cases = []
    for model in MATRIX_MODELS:
        for target in TARGETS:
            for mode, extra in MODES.items():
                args = ["convert", str(model.path), "--target", target, *extra]
                if mode == "quantmcu":
                    args += list(model.quantmcu_args)
                if not model.quantized or mode == "quantmcu":
                    args += ["--calib", f"<WORK>/inputs/{model.calib}.npy"]
                case_id = f"{model.name}/{target}/{mode}"
                cases.append(Case(case_id, model.name, target, mode, args, skip_reason(model, target, mode)))
    return cases


# ---- calibration inputs (generated once, at --record, from ../shared/data; then read from the snapshot)

def calibration_inputs() -> dict[str, np.ndarray]:
    """float32 samples in each model's own input convention."""
    vww_photos, _ = shared_photos("vww")
    resnet_photos, _ = shared_photos("resnet8")
    rgb80 = np.load(PHOTOS / "vww_like_rgb80_uint8.npy").astype(np.float32) / 255.0
    digits = np.load(SHARED / "data" / "mnist5k" / "mnist5k_28x28_uint8.npy")[:CALIB_SAMPLES].astype(np.float32)
    torch_calib = np.load(EXAMPLES / "mnist_torch" / "calib.npz")["x"][:CALIB_SAMPLES]
    return {
        "vww96": augment(vww_photos, 1.0, CALIB_SAMPLES, seed=1),
        "resnet8": augment(resnet_photos, 255.0, CALIB_SAMPLES, seed=1),
        "mcunet80": (augment(rgb80, 1.0, CALIB_SAMPLES, seed=1) - 0.5) * 2.0,
        "sine": np.linspace(0, 2 * np.pi, 2 * CALIB_SAMPLES, dtype=np.float32).reshape(-1, 1),
        "mnist28": (digits / 255.0).reshape(-1, 28, 28, 1),
        "mnist_torch": torch_calib.astype(np.float32),
    }


# ---- running a case and reading what it left ------------------------------------------------------

def normalize_text(text: str, places: dict[str, str]) -> str:
    for path, token in sorted(places.items(), key=lambda item: -len(item[0])):   # longest first
        text = text.replace(path, token)
    return text


def without_volatile(value):
    """(value without timing/date keys, whether any was removed)."""
    if isinstance(value, dict):
        kept, removed = {}, False
        for k, v in value.items():
            if VOLATILE_KEY.search(str(k)):
                removed = True
                continue
            kept[k], sub = without_volatile(v)
            removed |= sub
        return kept, removed
    if isinstance(value, list):
        items = [without_volatile(v) for v in value]
        return [v for v, _ in items], any(r for _, r in items)
    return value, False


def normalized_file(path: Path, places: dict[str, str]) -> bytes:
    data = path.read_bytes()
    try:
        text = data.decode("utf-8")
    except UnicodeDecodeError:
        return data   # binary (.npy, .tflite): no paths to strip
    text = normalize_text(text, places)
    if path.suffix == ".json":
        parsed, removed = without_volatile(json.loads(text))
        if removed:
            text = json.dumps(parsed, indent=2) + "\n"
    return text.encode("utf-8")


def part_of(rel: str) -> str:
    if rel.startswith("c/"):
        return "c"
    if rel in ("report.json", "convert.json"):
        return rel
    return "other"


def run_case(case: Case, tool: Path, work: Path) -> dict:
    out = work / "out" / case.id.replace("/", "__")
    places = {str(out): "<OUT>", str(work): "<WORK>", str(REPO): "<REPO>", str(SHARED.resolve()): "<SHARED>",
              str(SHARED): "<SHARED>"}
    args = [a.replace("<WORK>", str(work)) for a in case.args] + ["-o", str(out)]
    env = {**os.environ, "OMP_NUM_THREADS": "1", "MKL_NUM_THREADS": "1", "TF_CPP_MIN_LOG_LEVEL": "3",
           "COLUMNS": "200"}
    start = time.monotonic()
    proc = subprocess.run([str(tool), *args], cwd=work, capture_output=True, text=True, env=env,
                          stdin=subprocess.DEVNULL)
    seconds = time.monotonic() - start
    files = {}
    if out.is_dir():
        for path in sorted(p for p in out.rglob("*") if p.is_file()):
            files[path.relative_to(out).as_posix()] = normalized_file(path, places)
        shutil.rmtree(out)
    return {"exit": proc.returncode, "stdout": normalize_text(proc.stdout, places),
            "stderr": normalize_text(proc.stderr, places), "seconds": round(seconds, 2), "files": files}


# ---- the snapshot ----------------------------------------------------------------------------------

def sha(data: bytes) -> str:
    return hashlib.sha256(data).hexdigest()


def put_blob(snap: Path, data: bytes) -> str:
    digest = sha(data)
    path = snap / "blobs" / digest[:2] / f"{digest}.gz"
    if not path.exists():
        path.parent.mkdir(parents=True, exist_ok=True)
        tmp = path.with_suffix(".tmp")
        tmp.write_bytes(gzip.compress(data, mtime=0))
        tmp.replace(path)
    return digest


def get_blob(snap: Path, digest: str) -> bytes:
    return gzip.decompress((snap / "blobs" / digest[:2] / f"{digest}.gz").read_bytes())


def case_file(snap: Path, case_id: str) -> Path:
    return snap / "cases" / (case_id.replace("/", "__") + ".json")


def cli_record(result: dict) -> bytes:
    return json.dumps({"exit": result["exit"], "stdout": result["stdout"], "stderr": result["stderr"]},
                      indent=1).encode()


def summary(result: dict, store) -> dict:
    """Per case: part -> {file: digest}, plus the CLI's exit code and output."""
    files = {rel: store(data) for rel, data in result["files"].items()}
    return {"exit": result["exit"], "seconds": result["seconds"], "cli": store(cli_record(result)), "files": files}


def prepare_work(work: Path, snap: Path) -> None:
    (work / "inputs").mkdir(parents=True, exist_ok=True)
    for path in (snap / "inputs").glob("*.npy"):
        shutil.copyfile(path, work / "inputs" / path.name)


def git_commit() -> str:
    proc = subprocess.run(["git", "describe", "--always", "--dirty"], cwd=REPO, capture_output=True, text=True)
    return proc.stdout.strip()


def selected(cases: list[Case], only: list[str] | None) -> list[Case]:
    if not only:
        return cases
    return [c for c in cases if any(fnmatch.fnmatchcase(c.id, pattern) for pattern in only)]


def run_all(cases: list[Case], tool: Path, work: Path, jobs: int, done) -> None:
    with concurrent.futures.ThreadPoolExecutor(max_workers=jobs) as pool:
        futures = {pool.submit(run_case, c, tool, work): c for c in cases}
        for future in concurrent.futures.as_completed(futures):
            done(futures[future], future.result())


def record(snap: Path, tool: Path, only: list[str] | None, jobs: int) -> int:
    snap.mkdir(parents=True, exist_ok=True)
    (snap / "inputs").mkdir(exist_ok=True)
    for name, samples in calibration_inputs().items():
        np.save(snap / "inputs" / f"{name}.npy", samples.astype(np.float32))
    cases = matrix()
    meta_path = snap / "matrix.json"
    if meta_path.exists() and only:   # adding cases to an existing snapshot
        known = {c["id"]: c for c in json.loads(meta_path.read_text())["cases"]}
        known.update({c.id: asdict(c) for c in selected(cases, only)})
        listed = list(known.values())
    else:
        listed = [asdict(c) for c in cases]
    meta_path.write_text(json.dumps({"commit": git_commit(), "created_with": "benchmarks/identity.py",
                                     "cases": listed}, indent=1))
    todo = [c for c in selected(cases, only) if c.skip is None]
    with tempfile.TemporaryDirectory(prefix="identity-") as tmp:
        work = Path(tmp)
        prepare_work(work, snap)
        count = [0]

        def done(case, result):
            count[0] += 1
            case_file(snap, case.id).parent.mkdir(exist_ok=True)
            case_file(snap, case.id).write_text(json.dumps(summary(result, lambda d: put_blob(snap, d)), indent=1))
            print(f"[{count[0]}/{len(todo)}] {case.id}: exit {result['exit']}, {len(result['files'])} files, "
                  f"{result['seconds']:.1f} s", flush=True)
        run_all(todo, tool, work, jobs, done)
    print(f"recorded {len(todo)} cases into {snap} at {git_commit()}")
    return 0


def read_renames(path: Path | None) -> list[tuple[re.Pattern, str]]:
    if path is None:
        return []
    pairs = [line.split() for line in path.read_text().splitlines() if line.strip() and not line.startswith("#")]
    return [(re.compile(rf"\b{re.escape(old)}\b"), new) for old, new in pairs]


def renamed(snap: Path, digest: str | None, renames) -> str | None:
    """The digest of a recorded text file with the renames applied."""
    if digest is None or not renames:
        return digest
    data = get_blob(snap, digest)
    try:
        text = data.decode("utf-8")
    except UnicodeDecodeError:
        return digest
    for pattern, new in renames:
        text = pattern.sub(new, text)
    return sha(text.encode("utf-8"))


def same_json(snap: Path, digest_then: str | None, data_now: bytes | None) -> bool:
    """Both JSON files hold the same values once volatile keys are dropped (a file that had a
    volatile key removed is written anew, so its layout may differ from one that had none)."""
    if digest_then is None or data_now is None:
        return False
    try:
        then, now = (without_volatile(json.loads(d))[0] for d in (get_blob(snap, digest_then), data_now))
    except ValueError:
        return False
    return then == now


def compare(snap: Path, case: Case, then: dict, now: dict, renames=(), now_files=None) -> dict[str, list[str]]:
    """part -> files (or 'exit/stdout/stderr') that differ (now_files: the files' bytes, to
    compare JSON files by value)."""
    differ: dict[str, list[str]] = {p: [] for p in PARTS}
    if then["cli"] != now["cli"]:
        differ["cli"].append("exit/stdout/stderr")
    for rel in sorted(set(then["files"]) | set(now["files"])):
        old = then["files"].get(rel)
        if old != now["files"].get(rel) and renamed(snap, old, renames) != now["files"].get(rel):
            if not (rel.endswith(".json") and now_files and same_json(snap, old, now_files.get(rel))):
                differ[part_of(rel)].append(rel)
    return differ


def first_difference(snap: Path, digest_then: str | None, data_now: bytes | None, limit: int = 12) -> str:
    import difflib
    old = get_blob(snap, digest_then).decode("utf-8", "replace") if digest_then else ""
    new = (data_now or b"").decode("utf-8", "replace")
    lines = list(difflib.unified_diff(old.splitlines(), new.splitlines(), "snapshot", "now", lineterm="", n=1))
    return "\n".join(lines[:limit])


def check(snap: Path, tool: Path, only: list[str] | None, jobs: int, strict_manifest: bool, show_diff: bool,
          renames=()) -> int:
    meta = json.loads((snap / "matrix.json").read_text())
    cases = selected([Case(**c) for c in meta["cases"]], only)
    todo = [c for c in cases if c.skip is None]
    strict = STRICT_PARTS + (("convert.json",) if strict_manifest else ())
    rows, failures, diffs = {}, [], []
    with tempfile.TemporaryDirectory(prefix="identity-") as tmp:
        work = Path(tmp)
        prepare_work(work, snap)

        def done(case, result):
            path = case_file(snap, case.id)
            if not path.exists():
                rows[case.id] = (case, None, result, None)
                failures.append(case.id)
                print(f"{case.id}: not in the snapshot", flush=True)
                return
            then = json.loads(path.read_text())
            now = summary(result, sha)
            differ = compare(snap, case, then, now, renames, result["files"])
            rows[case.id] = (case, then, result, differ)
            bad = any(differ[p] for p in strict)
            if bad:
                failures.append(case.id)
            print(f"{case.id}: {'DIFFERENT ' + str({p: v for p, v in differ.items() if v}) if bad else 'identical'}"
                  f" ({then['seconds']:.1f} s -> {result['seconds']:.1f} s)", flush=True)
            if show_diff and bad:
                for part in strict:
                    for rel in differ[part][:1]:
                        if rel == "exit/stdout/stderr":
                            diffs.append((case.id, rel, first_difference(snap, then["cli"], cli_record(result))))
                        else:
                            diffs.append((case.id, rel, first_difference(snap, then["files"].get(rel),
                                                                          result["files"].get(rel))))
        run_all(todo, tool, work, jobs, done)
    print_table(snap, meta, cases, rows, strict)
    for case_id, rel, text in diffs:
        print(f"\n--- {case_id}: {rel}\n{text}")
    total_then = sum(r[1]["seconds"] for r in rows.values() if r[1])
    total_now = sum(r[2]["seconds"] for r in rows.values())
    print(f"\n{len(todo) - len(failures)} of {len(todo)} cases identical ({len(cases) - len(todo)} skipped); "
          f"snapshot {meta['commit']}, now {git_commit()}; convert seconds {total_then:.0f} then, {total_now:.0f} now")
    return 1 if failures else 0


def print_table(snap: Path, meta: dict, cases: list[Case], rows: dict, strict) -> None:
    print(f"\n| case | {' | '.join(PARTS)} | seconds then -> now |")
    print("|---" * (len(PARTS) + 2) + "|")
    for case in cases:
        if case.skip:
            print(f"| {case.id} | skipped: {case.skip} |" + " |" * len(PARTS))
            continue
        case_, then, result, differ = rows[case.id]
        if then is None:
            print(f"| {case.id} | missing from the snapshot |" + " |" * len(PARTS))
            continue
        cells = []
        for part in PARTS:
            if differ[part]:
                cells.append(f"different ({len(differ[part])})" + ("" if part in strict else " [not compared]"))
            else:
                cells.append("identical")
        note = f" (exit {result['exit']})" if result["exit"] else ""
        print(f"| {case.id}{note} | {' | '.join(cells)} | {then['seconds']:.1f} -> {result['seconds']:.1f} |")


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    what = ap.add_mutually_exclusive_group(required=True)
    what.add_argument("--record", type=Path, metavar="DIR")
    what.add_argument("--check", type=Path, metavar="DIR")
    what.add_argument("--list", action="store_true")
    ap.add_argument("--only", action="append", metavar="GLOB", help="case ids (model/target/mode), repeatable")
    ap.add_argument("--jobs", "-j", type=int, default=2)
    ap.add_argument("--tool", type=Path, default=REPO / ".venv" / "bin" / "tinydeploy")
    ap.add_argument("--strict-manifest", action="store_true", help="convert.json must be identical too")
    ap.add_argument("--diff", action="store_true", help="show the first lines of each differing file")
    ap.add_argument("--renames", type=Path, default=None, help="lines 'OLD NEW': identifiers renamed on purpose")
    args = ap.parse_args()
    if args.list:
        for case in selected(matrix(), args.only):
            print(f"{case.id:45s} {'skipped: ' + case.skip if case.skip else 'tinydeploy ' + ' '.join(case.args)}")
        return 0
    if args.record:
        return record(args.record.resolve(), args.tool, args.only, args.jobs)
    return check(args.check.resolve(), args.tool, args.only, args.jobs, args.strict_manifest, args.diff,
                 read_renames(args.renames))


if __name__ == "__main__":
    sys.exit(main())
