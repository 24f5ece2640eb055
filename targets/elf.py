"""Just enough of the ELF format to size a firmware and find its symbols: section headers and the
symbol table, 32- or 64-bit, little-endian (every target of the registry)."""
from __future__ import annotations

import struct
from dataclasses import dataclass
from pathlib import Path

SHT_SYMTAB, SHT_NOBITS = 2, 8
SHF_WRITE, SHF_ALLOC = 0x1, 0x2


@dataclass(frozen=True)
class Section:
    name: str
    type: int
    flags: int
    addr: int
    offset: int
    size: int
    link: int

    @property
    def in_memory(self) -> bool:
        return bool(self.flags & SHF_ALLOC)

    @property
    def writable(self) -> bool:
        return bool(self.flags & SHF_WRITE)

    @property
    def has_contents(self) -> bool:
        return self.type != SHT_NOBITS


@dataclass(frozen=True)
class Symbol:
    name: str
    value: int
    size: int


class Elf:
    def __init__(self, path: Path):
        self.data = Path(path).read_bytes()
        if self.data[:4] != b"\x7fELF" or self.data[5] != 1:
            raise ValueError(f"{path}: not a little-endian ELF file")
        self.is64 = self.data[4] == 2
        self.sections = self._sections()

    def _sections(self) -> list[Section]:
        d = self.data
        if self.is64:
            shoff, = struct.unpack_from("<Q", d, 0x28)
            shentsize, shnum, shstrndx = struct.unpack_from("<HHH", d, 0x3A)
            fmt = "<IIQQQQI"
        else:
            shoff, = struct.unpack_from("<I", d, 0x20)
            shentsize, shnum, shstrndx = struct.unpack_from("<HHH", d, 0x2E)
            fmt = "<IIIIIII"
        raw = [struct.unpack_from(fmt, d, shoff + i * shentsize) for i in range(shnum)]
        names = raw[shstrndx][4]
        return [Section(self._string(names, name), *rest) for name, *rest in raw]

    def _string(self, table_offset: int, index: int) -> str:
        start = table_offset + index
        return self.data[start:self.data.index(b"\0", start)].decode()

    def symbols(self) -> dict[str, Symbol]:
        d = self.data
        out = {}
        for sec in self.sections:
            if sec.type != SHT_SYMTAB:
                continue
            strtab = self.sections[sec.link].offset
            entsize = 24 if self.is64 else 16
            for pos in range(sec.offset, sec.offset + sec.size, entsize):
                if self.is64:
                    name, _info, _other, _shndx, value, size = struct.unpack_from("<IBBHQQ", d, pos)
                else:
                    name, value, size, _info, _other, _shndx = struct.unpack_from("<IIIBBH", d, pos)
                if name:
                    text = self._string(strtab, name)
                    out.setdefault(text, Symbol(text, value, size))
        return out
