"""What the sliding-window ops (conv, depthwise conv, pools) share: their windows over the input,
and the input region an output region reads (a patch's receptive field)."""
from __future__ import annotations

from dataclasses import dataclass

import numpy as np
from numpy.lib.stride_tricks import sliding_window_view

from ..lowering import spatial_geometry


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


def geometry(graph, op) -> dict:
    """spatial_geometry with the window's size: the weights' (conv) or the pool's filter."""
    if "filter" in op.attrs:
        return spatial_geometry(graph, op, *op.attrs["filter"])
    shape = graph.tensors[op.inputs[1]].shape
    return spatial_geometry(graph, op, shape[1], shape[2])


def sliding_windows(x, p, pad_value):
    """(N, OH, OW, C, KH, KW) input windows of a strided, dilated, padded 2D sliding filter."""
    (kh, kw), (sh, sw), (dh, dw), (pt, pl) = p["filter"], p["stride"], p["dilation"], p["pad"]
    n, oh, ow = p["out_shape"][0], p["out_shape"][1], p["out_shape"][2]
    eh, ew = (kh - 1) * dh + 1, (kw - 1) * dw + 1
    need_h, need_w = (oh - 1) * sh + eh, (ow - 1) * sw + ew
    h, w = x.shape[1], x.shape[2]
    padded = np.pad(x, ((0, 0), (pt, max(need_h - h - pt, 0)), (pl, max(need_w - w - pl, 0)), (0, 0)),
                    constant_values=pad_value)
    win = sliding_window_view(padded, (eh, ew), axis=(1, 2))
    return win[:, : (oh - 1) * sh + 1 : sh, : (ow - 1) * sw + 1 : sw, :, ::dh, ::dw]


def _axis_range(o0: int, o1: int, stride: int, pad: int, kernel: int, dilation: int, size: int):
    """The smallest range holding every in-bounds tap o * stride - pad + k * dilation, o in
    [o0, o1), k in [0, kernel) (with dilation, the taps at the edges can fall in the padding
    while inner ones do not). Per tap k, the first and the last output whose tap is in bounds
    (a floor division each), so the cost does not grow with the region."""
    low, high = None, None
    for k in range(kernel):
        offset = k * dilation - pad                       # tap = o * stride + offset
        first = max(o0, -(offset // stride))              # smallest o with tap >= 0
        last = min(o1 - 1, (size - 1 - offset) // stride)  # largest o with tap < size
        if first > last:
            continue
        low = first * stride + offset if low is None else min(low, first * stride + offset)
        high = last * stride + offset if high is None else max(high, last * stride + offset)
    if low is None:
        return 0, 0
    return low, high + 1


def input_region(params: dict, region: Region) -> Region:
    """The input region an output region of a window op reads (padding clipped)."""
    (kh, kw), (sh, sw) = params["filter"], params["stride"]
    (dh, dw), (pt, pl) = params["dilation"], params["pad"]
    _, ih, iw, _ = params["in_shape"]
    y0, y1 = _axis_range(region.y0, region.y1, sh, pt, kh, dh, ih)
    x0, x1 = _axis_range(region.x0, region.x1, sw, pl, kw, dw, iw)
    return Region(y0, y1, x0, x1)


def pads(p) -> tuple[int, int, int, int]:
    """(left, right, top, bottom) padding of the window geometry p (torch's F.pad order)."""
    (kh, kw), (sh, sw), (dh, dw), (pt, pl) = p["filter"], p["stride"], p["dilation"], p["pad"]
    _, ih, iw, _ = p["in_shape"]
    _, oh, ow, _ = p["out_shape"]
    pb = max((oh - 1) * sh + (kh - 1) * dh + 1 - ih - pt, 0)
    pr = max((ow - 1) * sw + (kw - 1) * dw + 1 - iw - pl, 0)
    return (pl, pr, pt, pb)
