"""Range methods: from a tensor's calibration statistics to the real interval int8 will cover.

- minmax: the extremes seen. Nothing clips; outliers stretch the step.
- percentile: the central `percentile` % of the values (default 99.99).
- mse: the interval, among the extremes shrunk by a common factor, whose int8 grid gives the
  least expected squared error over the histogram (rounding inside, clipping outside).
- entropy: the same candidates, scored by the KL divergence between the histogram with the
  clipped outliers folded into its edge bins and the int8-quantized histogram without them
  (TensorRT's entropy calibrator, on 256 asymmetric levels).
"""
from __future__ import annotations

import numpy as np

from .calibrate import TensorStats

METHODS = ("minmax", "percentile", "mse", "entropy")
DEFAULT_PERCENTILE = 99.99
SHRINK = np.linspace(0.2, 1.0, 81)  # candidate intervals: extremes x factor
KL_EPSILON = 1e-4


MIN_SCALE = 2.0 ** -20   # a (nearly) dead activation's scale: what every int8 kernel of TFLM accepts


def affine_params(low: float, high: float, bits: int = 8) -> tuple[float, int]:
    """Scale (as float32) and zero point of `bits`-bit values (int8 storage; 4 bits: [-8, 7])
    covering [low, high], which is widened to hold 0. A range too narrow for a scale of
    MIN_SCALE (an activation all but zero on the calibration data) is widened to it: TFLM's
    kernels refuse the requantization such a scale needs (SOFTMAX asks beta * scale * 2^26 > 1)."""
    low, high = min(low, 0.0), max(high, 0.0)
    qmin, qmax = -(1 << (bits - 1)), (1 << (bits - 1)) - 1
    if high - low < MIN_SCALE * (qmax - qmin):
        high = low + MIN_SCALE * (qmax - qmin)
    scale = float(np.float32((high - low) / (qmax - qmin)))
    zero_point = int(np.clip(np.round(qmin - low / scale), qmin, qmax))
    return scale, zero_point


def _grid_error(centers: np.ndarray, lows: np.ndarray, highs: np.ndarray, bits: int = 8) -> np.ndarray:
    """(candidates, bins): each bin centre's value after quantization to `bits` bits with each interval."""
    params = [affine_params(lo, hi, bits) for lo, hi in zip(lows, highs)]
    scale = np.array([p[0] for p in params])[:, None]
    zp = np.array([p[1] for p in params])[:, None]
    q = np.clip(np.round(centers[None, :] / scale) + zp, -(1 << (bits - 1)), (1 << (bits - 1)) - 1)
    return (q - zp) * scale, q


def _mse(s: TensorStats, bits: int = 8) -> tuple[float, float]:
    centers = (s.edges()[:-1] + s.edges()[1:]) / 2
    deq, _ = _grid_error(centers, s.low * SHRINK, s.high * SHRINK, bits)
    err = ((deq - centers[None, :]) ** 2 * s.histogram[None, :]).sum(axis=1)
    best = SHRINK[int(np.argmin(err))]
    return s.low * best, s.high * best


def _entropy(s: TensorStats) -> tuple[float, float]:
    centers = (s.edges()[:-1] + s.edges()[1:]) / 2
    counts = s.histogram.astype(np.float64)
    _, levels = _grid_error(centers, s.low * SHRINK, s.high * SHRINK)
    scores = []
    for factor, level in zip(SHRINK, levels):
        inside = (centers >= s.low * factor) & (centers <= s.high * factor)
        if inside.sum() < 2:
            scores.append(np.inf)
            continue
        first, last = np.flatnonzero(inside)[[0, -1]]
        sliced = counts[first:last + 1]
        p = sliced.copy()  # the clipped mass lands in the edge bins of p, but not in q
        p[0] += counts[:first].sum()
        p[-1] += counts[last + 1:].sum()
        lv = level[first:last + 1].astype(np.int64) + 128
        nonzero = p > 0
        mass = np.bincount(lv, weights=sliced, minlength=256)
        support = np.bincount(lv, weights=nonzero, minlength=256)
        q = np.where(nonzero, mass[lv] / np.maximum(support[lv], 1), 0.0)[nonzero]
        if q.sum() == 0:
            scores.append(np.inf)
            continue
        p, q = p[nonzero] / p.sum(), q / q.sum()
        empty = q == 0  # edge bins holding only clipped outliers: smoothed, as TensorRT/MXNet do
        if empty.any():
            q = np.where(empty, KL_EPSILON, q - KL_EPSILON * empty.sum() / (~empty).sum())
        scores.append(float(np.sum(p * np.log(p / q))))
    best = SHRINK[int(np.argmin(scores))]
    return s.low * best, s.high * best


def _percentile(s: TensorStats, percentile: float) -> tuple[float, float]:
    cdf = np.cumsum(s.histogram) / s.histogram.sum()
    tail = (100.0 - percentile) / 100.0
    edges = s.edges()
    low = edges[int(np.searchsorted(cdf, tail, side="right"))]
    high = edges[min(int(np.searchsorted(cdf, 1.0 - tail, side="left")) + 1, len(edges) - 1)]
    return max(low, s.low), min(high, s.high)


def choose_range(s: TensorStats, method: str, percentile: float = DEFAULT_PERCENTILE,
                 bits: int = 8) -> tuple[float, float]:
    """The range `method` picks; `bits`: the width of the grid mse fits (entropy scores 8 bits)."""
    if method not in METHODS:
        raise ValueError(f"unknown range method '{method}' (known: {', '.join(METHODS)})")
    if method == "minmax" or s.histogram is None or s.high <= s.low or s.histogram.sum() == 0:
        return s.low, s.high
    if method == "percentile":
        return _percentile(s, percentile)
    return _mse(s, bits) if method == "mse" else _entropy(s)
