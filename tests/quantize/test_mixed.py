"""Mixed precision: sub-8-bit weight quantization, the bit-width search under its budgets, and
the MNIST example converted with --quant mixed (C byte-exact with the reference)."""
import numpy as np
import pytest

from quantize.ptq import quantize_weights


@pytest.mark.parametrize("bits,qmax", [(8, 127), (4, 7), (2, 1)])
def test_weights_are_symmetric_per_channel_in_their_range(bits, qmax):
    rng = np.random.default_rng(0)
    w = rng.normal(size=(6, 3, 3, 5)) * rng.uniform(0.1, 2.0, size=(6, 1, 1, 1))
    q, scales = quantize_weights(w, 0, None, 1.0, bits)
    assert q.dtype == np.int8 and scales.shape == (6,)
    assert q.min() >= -qmax and q.max() <= qmax
    if bits < 8:   # least-squares clipping: never worse than scaling to the peak
        err = ((q * scales[:, None, None, None] - w) ** 2).sum()
        peak = np.abs(w).reshape(6, -1).max(axis=1) / qmax
        naive = np.clip(np.round(w / peak[:, None, None, None]), -qmax, qmax) * peak[:, None, None, None]
        assert err <= ((naive - w) ** 2).sum() + 1e-12
