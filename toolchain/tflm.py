"""TensorFlow Lite Micro as a second oracle, where the `tflite-micro` package exists (x86-64).

TFLM runs in a child process: its kernels assert (abort) on inputs beyond their fixed-point
range, e.g. SOFTMAX over more than 512 classes near the row's maximum, and an abort in our own
process would end `verify` with nothing printed. A child that dies becomes a TflmFailure that
names the inference it died on; the caller turns it into one line.
"""
from __future__ import annotations

import concurrent.futures
import contextlib
import multiprocessing
import os

import numpy as np

ARENA_BYTES = 8 * 1024 * 1024


class TflmFailure(Exception):
    """TFLM's process died (abort, fault) or raised while running inference `index`."""

    def __init__(self, index: int | None, reason: str):
        super().__init__(reason)
        self.index, self.reason = index, reason


def available() -> bool:
    try:
        from tflite_micro.python.tflite_micro import runtime  # noqa: F401
    except Exception:
        return False
    return True


def _invoke_all(model_bytes: bytes, feeds_per_inference, n_outputs: int, arena_bytes: int):
    """In the child: run every inference, returning outputs (or the failing index and message)."""
    from tflite_micro.python.tflite_micro import runtime
    try:
        interp = runtime.Interpreter.from_bytes(model_bytes, arena_size=arena_bytes)
    except Exception as exc:
        return None, (None, f"{type(exc).__name__}: {exc}")
    results = []
    for index, feeds in enumerate(feeds_per_inference):
        try:
            for k, x in enumerate(feeds):
                interp.set_input(np.ascontiguousarray(x), k)
            interp.invoke()
            results.append([np.array(interp.get_output(k)) for k in range(n_outputs)])
        except Exception as exc:
            return results, (index, f"{type(exc).__name__}: {exc}")
    return results, None


def _works(model_bytes: bytes, feeds, n_outputs: int, arena_bytes: int) -> bool:
    with _quiet_stderr():  # TFLM reports every failed allocation on C-level stderr
        _, failure = _invoke_all(model_bytes, [feeds], n_outputs, arena_bytes)
    return failure is None


def _bisect_arena(model_bytes: bytes, feeds, n_outputs: int, low: int, high: int) -> int | None:
    if not _works(model_bytes, feeds, n_outputs, high):
        return None
    while high - low > 1:
        mid = (low + high) // 2
        if _works(model_bytes, feeds, n_outputs, mid):
            high = mid
        else:
            low = mid
    return high


def _in_child(function, *args):
    """Run function(*args) in a fresh process; a child that dies raises BrokenProcessPool."""
    context = multiprocessing.get_context("spawn")
    with concurrent.futures.ProcessPoolExecutor(max_workers=1, mp_context=context) as pool:
        return pool.submit(function, *args).result()


def run_tflm(model_bytes: bytes, feeds_per_inference: list[list[np.ndarray]], n_outputs: int,
             arena_bytes: int = ARENA_BYTES) -> list[list[np.ndarray]]:
    """Run TFLM once per inference (feeds: one array per model input); returns all outputs.
    Raises TflmFailure naming the first inference TFLM could not run."""
    try:
        results, failure = _in_child(_invoke_all, model_bytes, feeds_per_inference, n_outputs, arena_bytes)
    except concurrent.futures.process.BrokenProcessPool:
        return _run_one_by_one(model_bytes, feeds_per_inference, n_outputs, arena_bytes)
    if failure is not None:
        raise TflmFailure(*failure)
    return results


def _run_one_by_one(model_bytes: bytes, feeds_per_inference, n_outputs: int, arena_bytes: int):
    """The batch killed TFLM's process: one child per inference, to name the one that does."""
    done = []
    for index, feeds in enumerate(feeds_per_inference):
        try:
            results, failure = _in_child(_invoke_all, model_bytes, [feeds], n_outputs, arena_bytes)
        except concurrent.futures.process.BrokenProcessPool:
            raise TflmFailure(index, "TensorFlow Lite Micro aborted") from None
        if failure is not None:
            raise TflmFailure(index, failure[1])
        done.extend(results)
    return done


def smallest_arena(model_bytes: bytes, feeds: list[np.ndarray], n_outputs: int,
                   low: int = 1024, high: int = 4 * 1024 * 1024) -> int:
    """The smallest arena_size TFLM runs the model with, by bisection (its printed total can be
    below what actually works)."""
    try:
        size = _in_child(_bisect_arena, model_bytes, feeds, n_outputs, low, high)
    except concurrent.futures.process.BrokenProcessPool:
        raise TflmFailure(0, "TensorFlow Lite Micro aborted") from None
    if size is None:
        raise TflmFailure(None, "TFLM does not run the model even with the largest arena tried")
    return size


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

