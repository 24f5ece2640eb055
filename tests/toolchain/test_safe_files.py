"""Files are checked before they are read: only regular files, within the size limits, zip archives
through their central directory, arrays through their .npy header; allocations from a declared
shape come after its size check."""
import os
import struct
import zipfile

import numpy as np
import pytest

from benchmarks.shared_models import INT8_MODELS, REPO
from tests.toolchain.test_cli_errors import assert_one_line_failure, convert_fails, run_cli
from toolchain.errors import UserError
from toolchain.importers.flatbuffer_check import layout_of
from toolchain.read_policy import ReadPolicy, parse_size
from toolchain.safe_files import load_array

EXAMPLE = REPO / "examples" / "mnist_torch"


def test_fifo_device_and_proc_files_are_refused_at_once(tmp_path):
    os.mkfifo(tmp_path / "pipe.tflite")
    convert_fails(tmp_path, tmp_path / "pipe.tflite", "a FIFO")
    convert_fails(tmp_path, "/dev/zero", "a character device")
    convert_fails(tmp_path, "/proc/self/environ", "pseudo file system")
    proc = run_cli("convert", EXAMPLE / "mnist_mbv2.onnx", "--calib", "/dev/zero", "-o", tmp_path / "out")
    assert_one_line_failure(proc, "a character device")


def test_file_and_tensor_size_limits_name_the_numbers(tmp_path):
    model = INT8_MODELS["vww_96_int8"]
    convert_fails(tmp_path, model, "333,288 B, more than the limit of 100,000 B", args=["--max-file-bytes", "100000"])
    convert_fails(tmp_path, model, "more than the limit of 65,536 B", args=["--max-tensor-bytes", "64K"])
    assert parse_size("256M") == 256 << 20 and parse_size("2G") == 2 << 30 and parse_size("1000") == 1000


def test_a_declared_huge_shape_is_refused_before_allocation(tmp_path):
    data = INT8_MODELS["hello_world_int8"].read_bytes()
    layout = layout_of(data)
    # every 4-byte vector element set to 2^30 in turn until the importer names a shape too large
    for pos, elem in layout.lengths:
        n = struct.unpack_from("<I", data, pos)[0]
        if elem == 4 and n == 2:   # a [1, 16]-like shape
            bad = data[:pos + 8] + struct.pack("<I", 1 << 30) + data[pos + 12:]
            (tmp_path / "huge.tflite").write_bytes(bad)
            proc = run_cli("convert", tmp_path / "huge.tflite", "-o", tmp_path / "out")
            if "more than the limit" in proc.stderr:
                assert_one_line_failure(proc, "B, more than the limit of 268,435,456 B")
                return
    pytest.fail("no shape vector found")


def test_zip_checks(tmp_path):
    bomb = tmp_path / "bomb.pt"
    with zipfile.ZipFile(bomb, "w", compression=zipfile.ZIP_DEFLATED) as z:
        z.writestr("archive/data.pkl", bytes(4 << 20))
        z.writestr("archive/constants.pkl", b"")
    convert_fails(tmp_path, bomb, "unpacks to more than the limit of 1,000,000 B", args=["--max-file-bytes", "1000000"])
    dup = tmp_path / "dup.pt"
    with zipfile.ZipFile(dup, "w") as z:
        z.writestr("archive/data.pkl", b"a")
        z.writestr("archive/data.pkl", b"b")
    convert_fails(tmp_path, dup, "holds 'archive/data.pkl' twice")
    escape = tmp_path / "escape.pt"
    with zipfile.ZipFile(escape, "w") as z:
        z.writestr("../../data.pkl", b"a")
    convert_fails(tmp_path, escape, "points outside the archive")
    good = EXAMPLE / "mnist_mbv2.pt"
    data = bytearray(good.read_bytes())
    data[len(data) // 2] ^= 0xFF   # inside a stored member: its CRC no longer matches
    (tmp_path / "crc.pt").write_bytes(bytes(data))
    convert_fails(tmp_path, tmp_path / "crc.pt", "corrupt zip archive")


def test_npy_header_is_checked_before_numpy_allocates(tmp_path):
    np.save(tmp_path / "a.npy", np.zeros((4, 3), np.float32))
    assert load_array(tmp_path / "a.npy").shape == (4, 3)
    header = open(tmp_path / "a.npy", "rb").read()
    lie = header.replace(b"(4, 3)", b"(4000000000, 3)", 1)
    (tmp_path / "lie.npy").write_bytes(lie)
    with pytest.raises(UserError, match="more than the limit"):
        load_array(tmp_path / "lie.npy")
    with pytest.raises(UserError, match="is truncated"):
        load_array(tmp_path / "lie.npy", ReadPolicy(max_tensor_bytes=1 << 40))
    np.save(tmp_path / "o.npy", np.array([object()], dtype=object), allow_pickle=True)
    with pytest.raises(UserError, match="Python objects"):
        load_array(tmp_path / "o.npy")


def test_calibration_with_nan_or_the_wrong_shape_is_refused(tmp_path):
    np.save(tmp_path / "nan.npy", np.full((2, 1, 28, 28), np.nan, np.float32))
    np.save(tmp_path / "shape.npy", np.zeros((2, 3, 28, 28), np.float32))
    for name, fragment in (("nan.npy", "NaN or infinite"), ("shape.npy", "has shape [2, 3, 28, 28]")):
        proc = run_cli("convert", EXAMPLE / "mnist_mbv2.onnx", "--calib", tmp_path / name, "-o", tmp_path / "out")
        assert_one_line_failure(proc, fragment)
