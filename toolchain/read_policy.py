"""What tinydeploy accepts from a model file before it trusts any number in it: how big the file
and the model's tensors may be, and whether code inside the file (a pickled Python module, a Keras
Lambda layer) may run. One frozen value, made once by the CLI and handed to every reader."""
from __future__ import annotations

import re
from dataclasses import dataclass

from .errors import UserError

MiB = 1 << 20
GiB = 1 << 30
_UNITS = {"": 1, "K": 1 << 10, "M": MiB, "G": GiB}


@dataclass(frozen=True)
class ReadPolicy:
    # A model file is read whole into memory: past this it is refused before a byte is read.
    max_file_bytes: int = GiB
    # Weights plus every activation the graph declares, at its dtype; also the bound on any one
    # tensor an importer builds and on the uncompressed members of a zip-based file.
    max_tensor_bytes: int = 256 * MiB
    # Run code a model file carries (pickled PyTorch modules, Keras Lambda layers and custom
    # objects): only for files from a trusted source.
    trust_pickle: bool = False

    def __post_init__(self):
        for name in ("max_file_bytes", "max_tensor_bytes"):
            if getattr(self, name) <= 0:
                raise UserError(f"{name.replace('_', '-')} must be positive")

    def check_tensor_bytes(self, nbytes: int, what: str) -> None:
        if nbytes > self.max_tensor_bytes:
            raise UserError(f"{what} needs {nbytes:,} B, more than the limit of {self.max_tensor_bytes:,} B "
                            f"(raise it with --max-tensor-bytes)")


DEFAULT_POLICY = ReadPolicy()


def parse_size(text: str) -> int:
    """'300000', '64K', '256M', '2G' (binary units) -> bytes."""
    match = re.fullmatch(r"\s*(\d+)\s*([KMG]?)i?B?\s*", str(text), re.IGNORECASE)
    if not match:
        raise UserError(f"{text!r} is not a size like 256M, 2G or 1000000")
    return int(match.group(1)) * _UNITS[match.group(2).upper()]
