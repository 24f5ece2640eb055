"""Receptive fields of spatial ops: which input rows/columns an output region reads."""
from __future__ import annotations

from dataclasses import dataclass

from toolchain.lowering import lower

SPATIAL_KINDS = ("conv2d", "depthwise_conv2d", "avg_pool2d", "max_pool2d")


@dataclass(frozen=True)
class Region:
    """Half-open rows [y0, y1) and columns [x0, x1) of an NHWC tensor."""
    y0: int
    y1: int
    x0: int
    x1: int

    @property
    def area(self) -> int:
        return max(self.y1 - self.y0, 0) * max(self.x1 - self.x0, 0)


def _axis_range(o0: int, o1: int, stride: int, pad: int, kernel: int, dilation: int, size: int):
    """The smallest range holding every in-bounds tap (with dilation, the taps at the edges can
    fall in the padding while inner ones do not)."""
    taps = [o * stride - pad + k * dilation for o in range(o0, o1) for k in range(kernel)]
    inside = [t for t in taps if 0 <= t < size]
    if not inside:
        return 0, 0
    return min(inside), max(inside) + 1


def input_region(params: dict, region: Region) -> Region:
    """The input region an output region of a conv/depthwise/pool op reads (padding clipped)."""
    (kh, kw), (sh, sw) = params["filter"], params["stride"]
    (dh, dw), (pt, pl) = params["dilation"], params["pad"]
    _, ih, iw, _ = params["in_shape"]
    y0, y1 = _axis_range(region.y0, region.y1, sh, pt, kh, dh, ih)
    x0, x1 = _axis_range(region.x0, region.x1, sw, pl, kw, dw, iw)
    return Region(y0, y1, x0, x1)


def spatial_params(graph, op) -> dict:
    return lower(graph, op)
