"""Sub-8-bit weight packing: round trip, byte layout, range checks."""
import numpy as np
import pytest

from toolchain.packing import pack_weights, packed_bytes, unpack_weights, weight_range


@pytest.mark.parametrize("bits", [4, 2])
@pytest.mark.parametrize("count", [1, 3, 4, 7, 8, 33])
def test_round_trip_covers_the_whole_range(bits, count):
    lo, hi = weight_range(bits)
    values = np.resize(np.arange(lo, hi + 1), count).reshape(-1)
    np.random.default_rng(count).shuffle(values)
    packed = pack_weights(values, bits)
    assert packed.dtype == np.uint8 and packed.size == packed_bytes(count, bits)
    assert np.array_equal(unpack_weights(packed, count, bits), values.astype(np.int8))


def test_layout_is_low_bits_first_twos_complement():
    assert list(pack_weights(np.array([1, -1, -8]), 4)) == [0xF1, 0x08]
    assert list(pack_weights(np.array([1, -1, -2, 0, 1]), 2)) == [0b00101101, 0b01]


@pytest.mark.parametrize("bits,bad", [(4, 8), (4, -9), (2, 2), (2, -3)])
def test_out_of_range_values_are_refused(bits, bad):
    with pytest.raises(ValueError, match=f"{bits}-bit weights"):
        pack_weights(np.array([0, bad]), bits)


def test_unsupported_width_is_refused():
    with pytest.raises(ValueError, match="supported are 8, 4, 2"):
        weight_range(3)
