"""Calibration: read the user's sample inputs, run the float model on them, and keep per-tensor
statistics (min/max, then a histogram within them) from which quantize.ranges picks each range."""
from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import numpy as np

from toolchain.errors import UserError, quoted
from toolchain.float_reference import run_float
from toolchain.ir import Graph
from toolchain.read_policy import DEFAULT_POLICY, ReadPolicy
from toolchain.safe_files import load_array

HISTOGRAM_BINS = 2048
CALIB_HELP = "a .npy, or .npz with key 'x', of float32 samples in the model's own input layout"


def load_calibration(path: str | Path, graph: Graph, policy: ReadPolicy = DEFAULT_POLICY) -> np.ndarray:
    """The samples in `path` as (N, *input shape without batch), checked against `graph`: float32, or
    for a model with an int8 (uint8) input also that type. The file's header is checked against
    the read policy before numpy allocates the samples."""
    path = Path(path)
    if len(graph.inputs) != 1:
        raise UserError(f"calibration supports models with one input; this one has {len(graph.inputs)}")
    shape = graph.tensors[graph.inputs[0]].shape
    if not path.exists():
        raise UserError(f"{path}: no such calibration file (expected {CALIB_HELP})")
    data = load_array(path, policy, "calibration data", npz_key="x")
    integer = graph.tensors[graph.inputs[0]].dtype
    if data.dtype != np.float32 and not (integer in ("int8", "uint8") and data.dtype == np.dtype(integer)):
        also = f" or {integer}, the model's own input type" if integer in ("int8", "uint8") else ""
        raise UserError(f"{path}: calibration data is {data.dtype}, expected float32{also} already scaled the way "
                        f"the model expects (shape [N, {', '.join(map(str, shape[1:]))}])")
    if data.shape[1:] != shape[1:] and data.shape != shape[1:]:
        raise UserError(f"{path}: calibration data has shape {list(data.shape)}, the model input is "
                        f"{list(shape)}: expected [N, {', '.join(map(str, shape[1:]))}] in the model's own layout")
    samples = data.reshape((-1,) + tuple(shape[1:]))
    if len(samples) == 0:
        raise UserError(f"{path}: calibration data holds no samples")
    if samples.dtype == np.float32 and not np.isfinite(samples).all():
        raise UserError(f"{path}: calibration data contains NaN or infinite values")
    return samples


@dataclass
class TensorStats:
    """What calibration saw of one float tensor."""
    low: float
    high: float
    # HISTOGRAM_BINS counts over [low, high] of the non-zero values: int8 holds 0 exactly whatever
    # the range, so ReLU's dead half and padding would only weigh the choice towards tiny ranges.
    histogram: np.ndarray | None = None

    def edges(self) -> np.ndarray:
        return np.linspace(self.low, self.high, HISTOGRAM_BINS + 1)


def _run_all(graph: Graph, samples: np.ndarray, step, visit) -> None:
    shape = graph.tensors[graph.inputs[0]].shape
    for sample in samples:
        values = run_float(graph, [sample.reshape(shape)], keep=True)
        for name, value in values.items():
            if not graph.tensors[name].is_const:
                if not np.isfinite(value).all():   # finite weights can still overflow float32
                    raise UserError(f"calibration: the float model computes NaN or infinite values in tensor "
                                    f"{quoted(name)} on the calibration data; it cannot be quantized")
                visit(name, value)
        step()


def collect_stats(graph: Graph, samples: np.ndarray, histograms: bool = True, progress=None) -> dict[str, TensorStats]:
    """Min/max of every activation over all samples; with histograms=True a second pass bins the
    values within them. progress(done, total) is called after each float inference."""
    total = len(samples) * (2 if histograms else 1)
    done = [0]

    def step():
        done[0] += 1
        if progress is not None:
            progress(done[0], total)

    stats: dict[str, TensorStats] = {}

    def extremes(name, value):
        low, high = float(value.min()), float(value.max())
        if name in stats:
            stats[name].low, stats[name].high = min(stats[name].low, low), max(stats[name].high, high)
        else:
            stats[name] = TensorStats(low, high)

    _run_all(graph, samples, step, extremes)
    if histograms:
        def binned(name, value):
            s = stats[name]
            if s.histogram is None:
                s.histogram = np.zeros(HISTOGRAM_BINS, np.int64)
            s.histogram += _histogram(value, s)
        _run_all(graph, samples, step, binned)
    return stats


def _histogram(values: np.ndarray, s: TensorStats) -> np.ndarray:
    if s.high <= s.low:
        return np.zeros(HISTOGRAM_BINS, np.int64)
    return np.histogram(values[values != 0], bins=HISTOGRAM_BINS, range=(s.low, s.high))[0]


def stats_of(values: np.ndarray) -> TensorStats:
    """What collect_stats gathers, of one array of real values."""
    s = TensorStats(float(values.min()), float(values.max()))
    s.histogram = _histogram(values, s)
    return s
