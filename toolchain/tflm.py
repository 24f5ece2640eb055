"""TensorFlow Lite Micro as a second oracle, where the `tflite-micro` package exists (x86-64)."""
from __future__ import annotations

import contextlib
import os

import numpy as np

ARENA_BYTES = 8 * 1024 * 1024


def available() -> bool:
    try:
        from tflite_micro.python.tflite_micro import runtime  # noqa: F401
    except Exception:
        return False
    return True


def run_tflm(model_bytes: bytes, feeds_per_inference: list[list[np.ndarray]], n_outputs: int,
             arena_bytes: int = ARENA_BYTES) -> list[list[np.ndarray]]:
    """Run TFLM once per inference (feeds: one array per model input); returns all outputs."""
    from tflite_micro.python.tflite_micro import runtime
    interp = runtime.Interpreter.from_bytes(model_bytes, arena_size=arena_bytes)
    results = []
    for feeds in feeds_per_inference:
        for index, x in enumerate(feeds):
            interp.set_input(np.ascontiguousarray(x), index)
        interp.invoke()
        results.append([np.array(interp.get_output(k)) for k in range(n_outputs)])
    return results


def smallest_arena(model_bytes: bytes, feeds: list[np.ndarray], n_outputs: int,
                   low: int = 1024, high: int = 4 * 1024 * 1024) -> int:
    """The smallest arena_size TFLM runs the model with, by bisection (its printed total can be
    below what actually works)."""
    def works(size: int) -> bool:
        with _quiet_stderr():  # TFLM reports every failed allocation on C-level stderr
            try:
                run_tflm(model_bytes, [feeds], n_outputs, arena_bytes=size)
                return True
            except Exception:
                return False
    if not works(high):
        raise RuntimeError("TFLM does not run the model even with the largest arena tried")
    while high - low > 1:
        mid = (low + high) // 2
        if works(mid):
            high = mid
        else:
            low = mid
    return high


@contextlib.contextmanager
def _quiet_stderr():
    saved = os.dup(2)
    try:
        with open(os.devnull, "w") as null:
            os.dup2(null.fileno(), 2)
            yield
    finally:
        os.dup2(saved, 2)
        os.close(saved)
