"""quantize stage (see DESIGN.md): calibration, int8 post-training quantization, range methods."""
from __future__ import annotations

import numpy as np

from toolchain.ir import Graph

from .calibrate import collect_stats, load_calibration
from .mixed import apply_weight_bits, choose_weight_bits, parse_budget, precision_report
from .ptq import check_float, quantize_graph
from .ranges import DEFAULT_PERCENTILE, METHODS, choose_range

DEFAULT_METHOD = "mse"

__all__ = ["METHODS", "DEFAULT_METHOD", "load_calibration", "post_training_quantize", "apply_weight_bits",
           "choose_weight_bits", "parse_budget", "precision_report"]


def post_training_quantize(graph: Graph, samples: np.ndarray, method: str = DEFAULT_METHOD,
                           percentile: float = DEFAULT_PERCENTILE, progress=None,
                           weight_bits: dict[str, int] | None = None) -> Graph:
    """Calibrate the float graph on `samples` (N, *input shape without batch) and quantize it
    (weight_bits: weight tensor -> 8, 4 or 2 bits; default 8)."""
    check_float(graph)
    stats = collect_stats(graph, samples, histograms=method != "minmax", progress=progress)
    ranges = {name: choose_range(s, method, percentile) for name, s in stats.items()}
    return quantize_graph(graph, ranges, weight_bits)
