"""Reading files a user hands us as if they were hostile: regular files only (a FIFO would block,
a device or /proc file never ends), a size limit checked before a byte is read, zip archives
checked through their central directory, and .npy/.npz arrays whose header shape is checked
against the bytes present before numpy allocates anything."""
from __future__ import annotations

import errno
import math
import os
import stat
import zipfile
import zlib
from pathlib import Path

import numpy as np

from .errors import UserError, quoted
from .read_policy import DEFAULT_POLICY, ReadPolicy

# Pseudo file systems: their "regular" files have no honest size and may never end.
PSEUDO_ROOTS = ("/proc", "/sys", "/dev")
MAX_ZIP_MEMBERS = 100_000


def _is_pseudo(path: Path) -> bool:
    real = os.path.realpath(path)
    return any(real == root or real.startswith(root + "/") for root in PSEUDO_ROOTS)


def _kind(mode: int) -> str:
    for test, name in ((stat.S_ISFIFO, "a FIFO (named pipe)"), (stat.S_ISCHR, "a character device"),
                       (stat.S_ISBLK, "a block device"), (stat.S_ISSOCK, "a socket"), (stat.S_ISDIR, "a directory")):
        if test(mode):
            return name
    return "not a regular file"


def check_regular_file(path: Path, what: str = "file") -> os.stat_result:
    """The stat of `path` if it is a regular file we may read, else one line saying what it is."""
    try:
        st = os.stat(path)
    except FileNotFoundError:
        raise UserError(f"{quoted(path)}: no such file") from None
    except OSError as exc:
        raise UserError(f"{quoted(path)}: cannot read ({os.strerror(exc.errno or errno.EIO)})") from None
    if not stat.S_ISREG(st.st_mode):
        raise UserError(f"{quoted(path)}: is {_kind(st.st_mode)}, not a {what}")
    if _is_pseudo(path):
        raise UserError(f"{quoted(path)}: is on a pseudo file system ({os.path.realpath(path).split('/')[1]}), "
                        f"not a {what}")
    return st


def check_size(path: Path, size: int, limit: int, what: str = "file") -> None:
    if size > limit:
        raise UserError(f"{quoted(path)}: the {what} has {size:,} B, more than the limit of {limit:,} B "
                        f"(raise it with --max-file-bytes)")


def read_file(path: str | Path, policy: ReadPolicy = DEFAULT_POLICY, what: str = "file") -> bytes:
    """The whole file, read through one descriptor that is checked after opening (O_NONBLOCK: a
    FIFO swapped in after the stat cannot block us), never more than the size limit."""
    path = Path(path)
    check_regular_file(path, what)
    try:
        fd = os.open(path, os.O_RDONLY | os.O_NONBLOCK | getattr(os, "O_CLOEXEC", 0))
    except OSError as exc:
        raise UserError(f"{quoted(path)}: cannot open ({os.strerror(exc.errno or errno.EIO)})") from None
    with os.fdopen(fd, "rb") as f:
        st = os.fstat(f.fileno())
        if not stat.S_ISREG(st.st_mode):
            raise UserError(f"{quoted(path)}: is {_kind(st.st_mode)}, not a {what}")
        check_size(path, st.st_size, policy.max_file_bytes, what)
        data = f.read(policy.max_file_bytes + 1)
    check_size(path, len(data), policy.max_file_bytes, what)   # it grew while we read
    return data


def read_header(path: Path, count: int) -> bytes:
    """The first `count` bytes of a checked regular file (format detection)."""
    with open(path, "rb") as f:
        return f.read(count)


def check_zip(path: Path, policy: ReadPolicy = DEFAULT_POLICY) -> list[str]:
    """The member names of a zip-based model file (TorchScript, .pt2, .keras), after checking its
    central directory: member count, names that stay inside the archive, no duplicates, no
    encryption, uncompressed sizes within the limits, and every member's CRC."""
    try:
        with zipfile.ZipFile(path) as archive:
            infos = archive.infolist()
            if len(infos) > MAX_ZIP_MEMBERS:
                raise UserError(f"{quoted(path)}: zip archive has {len(infos):,} members "
                                f"(more than {MAX_ZIP_MEMBERS:,})")
            names = [i.filename for i in infos]
            _check_members(path, infos, policy)
            bad = archive.testzip()   # reads every member: CRC and compressed stream
            if bad is not None:
                raise UserError(f"{quoted(path)}: corrupt zip archive (member {quoted(bad)} fails its CRC check)")
            return names
    except UserError:
        raise
    except (zipfile.BadZipFile, zipfile.LargeZipFile, NotImplementedError, EOFError, OSError, zlib.error,
            ValueError, KeyError, RuntimeError, OverflowError) as exc:
        raise UserError(f"{quoted(path)}: corrupt zip archive ({type(exc).__name__}: {_short(exc)})") from None


def _check_members(path: Path, infos, policy: ReadPolicy) -> None:
    seen, total = set(), 0
    for info in infos:
        name = info.filename
        if name in seen:
            raise UserError(f"{quoted(path)}: zip archive holds {quoted(name)} twice")
        seen.add(name)
        parts = name.split("/")
        if name.startswith(("/", "\\")) or ".." in parts or "\x00" in name:
            raise UserError(f"{quoted(path)}: zip member {quoted(name)} points outside the archive")
        if info.flag_bits & 0x1:
            raise UserError(f"{quoted(path)}: zip member {quoted(name)} is encrypted")
        total += info.file_size
        if info.file_size > policy.max_file_bytes or total > policy.max_file_bytes:
            raise UserError(f"{quoted(path)}: zip archive unpacks to more than the limit of "
                            f"{policy.max_file_bytes:,} B (raise it with --max-file-bytes)")


def _short(exc: Exception) -> str:
    text = str(exc).strip()
    return text.splitlines()[0][:160] if text else "no details"


# ---------------------------------------------------------------- arrays (.npy, .npz)

def _npy_header(stream, path: Path, total: int, policy: ReadPolicy, what: str) -> None:
    """Check an .npy header before numpy reads the data: known format, no objects, and a shape
    whose bytes are present in the `total` bytes of the stream and within the limit."""
    try:
        version = np.lib.format.read_magic(stream)
        reader = {(1, 0): np.lib.format.read_array_header_1_0, (2, 0): np.lib.format.read_array_header_2_0}.get(version)
        if reader is None:
            raise ValueError(f"unsupported .npy version {version}")
        shape, _, dtype = reader(stream)
    except UserError:
        raise
    except Exception as exc:
        raise UserError(f"{quoted(path)}: cannot read {what} as .npy ({type(exc).__name__}: {_short(exc)})") from None
    available = total - stream.tell()
    if dtype.hasobject:
        raise UserError(f"{quoted(path)}: {what} holds Python objects (only numeric arrays are read)")
    if any(d < 0 for d in shape):
        raise UserError(f"{quoted(path)}: {what} has a negative dimension in its shape {list(shape)}")
    nbytes = math.prod(shape) * dtype.itemsize
    policy.check_tensor_bytes(nbytes, f"{quoted(path)}: {what} of shape {list(shape)}")
    if nbytes > available:
        raise UserError(f"{quoted(path)}: {what} is truncated (shape {list(shape)} needs {nbytes:,} B, "
                        f"the file holds {available:,})")


def load_array(path: str | Path, policy: ReadPolicy = DEFAULT_POLICY, what: str = "array",
               npz_key: str | None = None) -> np.ndarray:
    """A numeric array from an .npy file, or from member `npz_key` of an .npz archive (None: an
    .npz is refused), checked before numpy allocates it."""
    path = Path(path)
    st = check_regular_file(path, what)
    check_size(path, st.st_size, policy.max_file_bytes, what)
    with open(path, "rb") as f:
        magic = f.read(4)
    if magic == b"PK\x03\x04":
        if npz_key is None:
            raise UserError(f"{quoted(path)}: expected a .npy array, got an .npz archive")
        return _npz_member(path, npz_key, policy, what)
    with open(path, "rb") as f:
        _npy_header(f, path, st.st_size, policy, what)
        f.seek(0)
        try:
            return np.load(f, allow_pickle=False)
        except Exception as exc:
            raise UserError(f"{quoted(path)}: cannot read {what} ({type(exc).__name__}: {_short(exc)})") from None


def _npz_member(path: Path, key: str, policy: ReadPolicy, what: str) -> np.ndarray:
    names = check_zip(path, policy)
    members = {n[:-4] if n.endswith(".npy") else n: n for n in names}
    if key not in members:
        raise UserError(f"{quoted(path)}: .npz has no key {quoted(key)} (keys: {', '.join(members) or 'none'})")
    try:
        with zipfile.ZipFile(path) as archive:
            info = archive.getinfo(members[key])
            with archive.open(info) as stream:
                _npy_header(stream, path, info.file_size, policy, what)
            with archive.open(info) as stream:
                return np.lib.format.read_array(stream, allow_pickle=False)
    except UserError:
        raise
    except Exception as exc:
        raise UserError(f"{quoted(path)}: cannot read {what} ({type(exc).__name__}: {_short(exc)})") from None
