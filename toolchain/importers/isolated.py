"""Framework readers (PyTorch, TensorFlow/Keras, h5py) run in a child process of their own.

Their C++ deserializers are not hardened against hostile files: a crafted file can crash them
(taking our one-line promise with it), their loggers write to the terminal, and their pickle
paths run code. In a child process a crash becomes one line naming the signal, everything the
child writes goes to a log nobody reads (TINYDEPLOY_DEBUG=1 prints it), its memory is capped,
and, unless the user trusts the file, every route to Python's unpickler is closed before the
framework is imported (PyTorch's own TORCH_FORCE_WEIGHTS_ONLY_LOAD switch, and pickle itself).
The child hands back bytes (an ONNX or TFLite model) that the parent reads with its own checked
importers.

    parent: convert_in_child("torch", path, {...}, policy) -> bytes
    child:  python -m toolchain.importers.isolated   (request as JSON on stdin)
"""
from __future__ import annotations

import json
import os
import resource
import signal
import subprocess
import sys
import tempfile
import traceback
from pathlib import Path

from ..errors import UserError, quoted
from ..read_policy import GiB, ReadPolicy

# The child's data segment (heap and private mappings; TensorFlow reserves GBs of address space
# it never touches, so RLIMIT_AS would not do): TensorFlow converting MLPerf's VWW uses 0.6 GB.
CHILD_DATA_BYTES = 2 * GiB
UNTRUSTED_ENV = {"TORCH_FORCE_WEIGHTS_ONLY_LOAD": "1"}
QUIET_ENV = {"TF_CPP_MIN_LOG_LEVEL": "3", "TF_ENABLE_ONEDNN_OPTS": "0", "GRPC_VERBOSITY": "ERROR",
             "ABSL_MIN_LOG_LEVEL": "3", "KERAS_BACKEND": "tensorflow", "PYTHONWARNINGS": "ignore"}
CRASHED, FAILED = 3, 4   # child exit codes beside 0 (bytes written) and 2 (UserError written)


def _limit_memory(data_bytes: int) -> None:
    """Set in the child itself, before any framework is imported (a preexec_fn could deadlock
    with the parent's threads)."""
    resource.setrlimit(resource.RLIMIT_DATA, (data_bytes, data_bytes))
    resource.setrlimit(resource.RLIMIT_CORE, (0, 0))   # a crash leaves no core file behind


def convert_in_child(task: str, path: Path, options: dict, policy: ReadPolicy, what: str) -> bytes:
    """Run TASKS[task](path, options) in a child process; its result bytes, or the UserError it
    raised, or one line if it died."""
    with tempfile.TemporaryDirectory(prefix="tinydeploy-reader-") as tmp:
        tmp = Path(tmp)
        request = {"task": task, "path": str(path), "options": options, "trust_pickle": policy.trust_pickle,
                   "result": str(tmp / "result"), "error": str(tmp / "error"), "sys_path": sys.path,
                   "data_bytes": max(CHILD_DATA_BYTES, 6 * policy.max_tensor_bytes)}
        (tmp / "tmp").mkdir()   # what the frameworks leave in TMPDIR (autograph, inductor caches) goes with it
        env = {**os.environ, **QUIET_ENV, **({} if policy.trust_pickle else UNTRUSTED_ENV),
               "PYTHONPATH": os.pathsep.join(p for p in sys.path if p), "TMPDIR": str(tmp / "tmp")}
        with open(tmp / "log", "wb") as log:
            proc = subprocess.run([sys.executable, "-m", "toolchain.importers.isolated"],
                                  input=json.dumps(request).encode(), stdout=log, stderr=log, env=env)
        if os.environ.get("TINYDEPLOY_DEBUG"):
            sys.stderr.write((tmp / "log").read_text(errors="replace"))
        if proc.returncode == 0:
            return (tmp / "result").read_bytes()
        if proc.returncode == 2:
            raise UserError((tmp / "error").read_text(errors="replace"))
        if proc.returncode < 0:
            name = signal.Signals(-proc.returncode).name
            raise UserError(f"{quoted(path)}: the {what} reader crashed on this file ({name}): it is corrupt "
                            f"or made to crash readers")
        if proc.returncode == CRASHED and (tmp / "error").exists():
            raise UserError(f"{quoted(path)}: the {what} reader ran out of memory or failed inside its "
                            f"native code ({(tmp / 'error').read_text(errors='replace')})")
        detail = (tmp / "error").read_text(errors="replace") if (tmp / "error").exists() else f"exit code {proc.returncode}"
        raise RuntimeError(f"the {what} reader failed: {detail}")


def _close_pickle(path: str) -> None:
    """Without --trust-pickle no unpickler but PyTorch's weights-only one may run in this process
    (torch.export.load, for one, falls back to pickle.loads for some payloads)."""
    import pickle

    def refuse(*args, **kwargs):
        raise UserError(f"{quoted(path)}: the file holds a pickled Python object, which only loads by "
                        f"running code from the file; convert it only if you trust its source, with --trust-pickle")

    class Refused:
        def __init__(self, *args, **kwargs):
            refuse()
    pickle.load = pickle.loads = refuse
    pickle.Unpickler = pickle._Unpickler = Refused


def _report(error_file: str, text: str) -> None:
    """The child's error channel; a name from the file may hold any code point (surrogates too)."""
    Path(error_file).write_text(text, errors="backslashreplace")


def _tasks():
    from . import keras, torch as torch_importer
    return {"torch": torch_importer.export_onnx, "keras": keras.keras_file_to_tflite,
            "saved_model": keras.saved_model_file_to_tflite}


def main() -> None:
    request = json.load(sys.stdin)
    sys.path[:] = request["sys_path"]
    _limit_memory(request["data_bytes"])
    code = 0
    try:
        if not request["trust_pickle"]:
            _close_pickle(request["path"])
        data = _tasks()[request["task"]](Path(request["path"]), request["options"], request["trust_pickle"])
        Path(request["result"]).write_bytes(data)
    except UserError as exc:
        _report(request["error"], str(exc))
        code = 2
    except MemoryError:
        _report(request["error"], "MemoryError")
        code = CRASHED
    except BaseException as exc:   # a bug of ours: the parent reports it as an internal error
        traceback.print_exc()
        _report(request["error"], f"{type(exc).__name__}: {str(exc).strip().splitlines()[0][:200] if str(exc).strip() else ''}")
        code = FAILED
    sys.stdout.flush()
    sys.stderr.flush()
    os._exit(code)   # no framework atexit handlers: they may hang or print


if __name__ == "__main__":
    main()
