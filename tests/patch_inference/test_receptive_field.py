"""Receptive fields against brute-force dependency tracing."""
import numpy as np
import pytest
from hypothesis import given, settings, strategies as st

from benchmarks.shared_models import INT8_MODELS
from toolchain.ops.window import Region, input_region
from patch_inference.schedule import make_stage
from toolchain.importers import load_model
from toolchain.passes import fold_pad_into_conv, strip_float_io
from toolchain.reference import run_reference


def taps(params, region):
    """Every input row/column a conv-like loop touches for the output region (as the C kernels
    iterate: skipped when outside the input)."""
    (kh, kw), (sh, sw) = params["filter"], params["stride"]
    (dh, dw), (pt, pl) = params["dilation"], params["pad"]
    _, ih, iw, _ = params["in_shape"]
    rows = {oy * sh - pt + ky * dh for oy in range(region.y0, region.y1) for ky in range(kh)}
    cols = {ox * sw - pl + kx * dw for ox in range(region.x0, region.x1) for kx in range(kw)}
    rows = [r for r in rows if 0 <= r < ih]
    cols = [c for c in cols if 0 <= c < iw]
    return Region(min(rows), max(rows) + 1, min(cols), max(cols) + 1)


@settings(max_examples=300, deadline=None)
@given(k=st.integers(1, 7), s=st.integers(1, 3), d=st.integers(1, 3), pad=st.integers(0, 4),
       size=st.integers(8, 40), data=st.data())
def test_input_region_matches_brute_force_taps(k, s, d, pad, size, data):
    effective = (k - 1) * d + 1
    out = (size + 2 * pad - effective) // s + 1
    if out < 1:
        return
    y0 = data.draw(st.integers(0, out - 1))
    y1 = data.draw(st.integers(y0 + 1, out))
    x0 = data.draw(st.integers(0, out - 1))
    x1 = data.draw(st.integers(x0 + 1, out))
    params = {"filter": (k, k), "stride": (s, s), "dilation": (d, d), "pad": (pad, pad),
              "in_shape": (1, size, size, 3)}
    region = Region(y0, y1, x0, x1)
    try:
        expected = taps(params, region)
    except ValueError:  # the region reads only padding
        return
    assert input_region(params, region) == expected


@pytest.mark.parametrize("name,io,grid", [("mcunet_vww1_int8", "int8", 3), ("vww_96_int8", "model", 4)])
def test_stage_regions_hold_every_dependency(name, io, grid):
    """Perturb every input pixel outside a patch's input region: that patch's output must not
    change (run on the reference executor over the real stage ops)."""
    graph = load_model(INT8_MODELS[name])
    graph = fold_pad_into_conv(strip_float_io(graph) if io == "int8" else graph)
    stage = make_stage(graph, 0, 4, grid)
    out_name = graph.ops[stage.last].outputs[0]
    x = np.random.default_rng(0).integers(-128, 128, graph.tensors[graph.inputs[0]].shape, dtype=np.int8)
    base = run_reference(graph, [x], keep=True)[out_name]
    for patch in (0, len(stage.out_regions) // 2, len(stage.out_regions) - 1):
        need, region = stage.in_regions[patch][0], stage.out_regions[patch][-1]
        y = x.copy()
        mask = np.ones(y.shape[1:3], bool)
        mask[need.y0:need.y1, need.x0:need.x1] = False
        y[0][mask] = np.int8(127) - y[0][mask]
        changed = run_reference(graph, [y], keep=True)[out_name]
        sl = (0, slice(region.y0, region.y1), slice(region.x0, region.x1))
        assert np.array_equal(base[sl], changed[sl])
        # and the region is not larger than needed: the whole output does change
        assert not np.array_equal(base, changed)
