"""A fuzz worker: runs `convert` in-process on one case after another (JSON lines on stdin, one
result line each on stdout) under a 3 GB data limit. The driver kills it on a hang."""
from __future__ import annotations

import json
import os
import resource
import sys
import time
import traceback
from pathlib import Path

MEMORY_LIMIT = 3 * 10**9


def _peak_rss_reset() -> None:
    with open("/proc/self/clear_refs", "w") as f:   # resets VmHWM (Linux)
        f.write("5")


def _peak_rss() -> int:
    for line in open("/proc/self/status"):
        if line.startswith("VmHWM:"):
            return int(line.split()[1]) * 1024
    return 0


def run_case(case: dict) -> dict:
    from toolchain.driver import pipeline
    from toolchain.driver.options import ConvertOptions, PatchOptions
    from toolchain.errors import UserError, one_line
    from toolchain.read_policy import ReadPolicy
    start = time.time()
    _peak_rss_reset()
    try:
        options = ConvertOptions(patch=PatchOptions(case["patch"]), calib=case.get("calib"),
                                 input_shape=tuple(case["input_shape"]) if case.get("input_shape") else None,
                                 policy=ReadPolicy(trust_pickle=False))
        pipeline.convert(case["model"], case["out"], options)
        outcome, detail = "converted", ""
    except UserError as exc:
        message = one_line(str(exc))
        outcome, detail = ("refused", message) if "\n" not in message else ("multi_line", message)
    except MemoryError:
        outcome, detail = "memory", "MemoryError"
    except Exception as exc:   # what the CLI would call an internal error
        outcome, detail = "internal_error", f"{type(exc).__name__}: {exc}\n{traceback.format_exc()}"
    return {"outcome": outcome, "detail": detail[:4000], "seconds": round(time.time() - start, 3),
            "peak_rss": _peak_rss()}


def main() -> None:
    resource.setrlimit(resource.RLIMIT_DATA, (MEMORY_LIMIT, MEMORY_LIMIT))
    out = os.fdopen(os.dup(1), "w")
    devnull = os.open(os.devnull, os.O_WRONLY)
    os.dup2(devnull, 1)   # what convert prints is not the protocol
    for line in sys.stdin:
        case = json.loads(line)
        result = run_case(case)
        out.write(json.dumps(result) + "\n")
        out.flush()


if __name__ == "__main__":
    sys.path.insert(0, str(Path(__file__).resolve().parents[2]))
    main()
