"""quantize stage (see DESIGN.md): calibration, int8 post-training quantization, range methods."""
from __future__ import annotations

import numpy as np

from toolchain.ir import Graph

from .calibrate import collect_stats, load_calibration
from .mixed import apply_bits, choose_bits, parse_budget, precision_report
from .ptq import check_float, quantize_graph
from .ranges import DEFAULT_PERCENTILE, METHODS, choose_range

DEFAULT_METHOD = "mse"

__all__ = ["METHODS", "DEFAULT_METHOD", "load_calibration", "post_training_quantize", "calibrated_ranges",
           "apply_bits", "choose_bits", "parse_budget", "precision_report"]


def calibrated_ranges(graph: Graph, samples: np.ndarray, method: str = DEFAULT_METHOD,
                      percentile: float = DEFAULT_PERCENTILE, progress=None) -> dict[str, tuple[float, float]]:
    """The real range of every activation of the float graph on `samples` (N, *input shape
    without batch)."""
    check_float(graph)
    stats = collect_stats(graph, samples, histograms=method != "minmax", progress=progress)
    return {name: choose_range(s, method, percentile) for name, s in stats.items()}


def post_training_quantize(graph: Graph, samples: np.ndarray, method: str = DEFAULT_METHOD,
                           percentile: float = DEFAULT_PERCENTILE, progress=None,
                           bits: dict[str, int] | None = None, ranges: dict | None = None) -> Graph:
    """Calibrate the float graph on `samples` (or take `ranges`) and quantize it; bits: weight
    tensor -> 8, 4 or 2, activation -> 8 or 4 (default 8; quantize.mixed.choose_bits)."""
    ranges = ranges or calibrated_ranges(graph, samples, method, percentile, progress)
    bits = bits or {}
    weights = {n: b for n, b in bits.items() if graph.tensors[n].is_const}
    return quantize_graph(graph, ranges, weights, {n: b for n, b in bits.items() if n not in weights})
