"""quantize stage (see DESIGN.md): calibration, int8 post-training quantization, range methods."""
from __future__ import annotations

import numpy as np

from toolchain.ir import Graph

from .calibrate import collect_stats, load_calibration
from .ptq import check_float, quantize_graph
from .ranges import DEFAULT_PERCENTILE, METHODS, choose_range

DEFAULT_METHOD = "mse"

__all__ = ["METHODS", "DEFAULT_METHOD", "load_calibration", "post_training_quantize"]


def post_training_quantize(graph: Graph, samples: np.ndarray, method: str = DEFAULT_METHOD,
                           percentile: float = DEFAULT_PERCENTILE, progress=None) -> Graph:
    """Calibrate the float graph on `samples` (N, *input shape without batch) and quantize it."""
    check_float(graph)
    stats = collect_stats(graph, samples, histograms=method != "minmax", progress=progress)
    ranges = {name: choose_range(s, method, percentile) for name, s in stats.items()}
    return quantize_graph(graph, ranges)
