"""A bounds-checked walk over a TFLite flatbuffer before the `tflite` schema classes read it.

The generated Python readers trust every offset and vector length in the file: a corrupted length
makes a loop run for billions of steps and a corrupted offset reads another table's bytes as this
one. This walk visits every table, vector and string the importer reads (the fields below, by
vtable slot as TensorFlow's schema.fbs numbers them) and checks that each lies inside the buffer,
so that afterwards a read either returns what the file says or the file was refused here.
Each table is visited once, so the walk is linear in the file size.
"""
from __future__ import annotations

import struct

import tflite

# table -> {vtable slot: (accessor in the generated class, kind, detail)}
#   scalar: byte size; vector: element size; string; table/tables: table name;
#   union: (slot of its type field, {type code: table name}); unknown codes get a generic check.
_OPTIONS = {getattr(tflite.BuiltinOptions, name): name for name in (
    "Conv2DOptions", "DepthwiseConv2DOptions", "Pool2DOptions", "FullyConnectedOptions", "AddOptions",
    "MulOptions", "SoftmaxOptions", "ConcatenationOptions", "ReducerOptions")}
SCHEMA = {
    "Model": {4: ("Version", "scalar", 4), 6: ("OperatorCodes", "tables", "OperatorCode"),
              8: ("Subgraphs", "tables", "SubGraph"), 10: ("Description", "string", None),
              12: ("Buffers", "tables", "Buffer")},
    "OperatorCode": {4: ("DeprecatedBuiltinCode", "scalar", 1), 6: ("CustomCode", "string", None),
                     8: ("Version", "scalar", 4), 10: ("BuiltinCode", "scalar", 4)},
    "SubGraph": {4: ("Tensors", "tables", "Tensor"), 6: ("Inputs", "vector", 4), 8: ("Outputs", "vector", 4),
                 10: ("Operators", "tables", "Operator"), 12: ("Name", "string", None)},
    "Tensor": {4: ("Shape", "vector", 4), 6: ("Type", "scalar", 1), 8: ("Buffer", "scalar", 4),
               10: ("Name", "string", None), 12: ("Quantization", "table", "QuantizationParameters"),
               14: ("IsVariable", "scalar", 1), 16: ("Sparsity", "table", None),
               18: ("ShapeSignature", "vector", 4)},
    "QuantizationParameters": {4: ("Min", "vector", 4), 6: ("Max", "vector", 4), 8: ("Scale", "vector", 4),
                               10: ("ZeroPoint", "vector", 8), 12: ("DetailsType", "scalar", 1),
                               14: ("Details", "union", (12, {})), 16: ("QuantizedDimension", "scalar", 4)},
    "Operator": {4: ("OpcodeIndex", "scalar", 4), 6: ("Inputs", "vector", 4), 8: ("Outputs", "vector", 4),
                 10: ("BuiltinOptionsType", "scalar", 1), 12: ("BuiltinOptions", "union", (10, _OPTIONS)),
                 14: ("CustomOptions", "vector", 1)},
    "Buffer": {4: ("Data", "vector", 1), 6: ("Offset", "scalar", 8), 8: ("Size", "scalar", 8)},
    "Conv2DOptions": {4: ("Padding", "scalar", 1), 6: ("StrideW", "scalar", 4), 8: ("StrideH", "scalar", 4),
                      10: ("FusedActivationFunction", "scalar", 1), 12: ("DilationWFactor", "scalar", 4),
                      14: ("DilationHFactor", "scalar", 4)},
    "DepthwiseConv2DOptions": {4: ("Padding", "scalar", 1), 6: ("StrideW", "scalar", 4), 8: ("StrideH", "scalar", 4),
                               10: ("DepthMultiplier", "scalar", 4), 12: ("FusedActivationFunction", "scalar", 1),
                               14: ("DilationWFactor", "scalar", 4), 16: ("DilationHFactor", "scalar", 4)},
    "Pool2DOptions": {4: ("Padding", "scalar", 1), 6: ("StrideW", "scalar", 4), 8: ("StrideH", "scalar", 4),
                      10: ("FilterWidth", "scalar", 4), 12: ("FilterHeight", "scalar", 4),
                      14: ("FusedActivationFunction", "scalar", 1)},
    "FullyConnectedOptions": {4: ("FusedActivationFunction", "scalar", 1), 6: ("WeightsFormat", "scalar", 1),
                              8: ("KeepNumDims", "scalar", 1)},
    "AddOptions": {4: ("FusedActivationFunction", "scalar", 1)},
    "MulOptions": {4: ("FusedActivationFunction", "scalar", 1)},
    "SoftmaxOptions": {4: ("Beta", "scalar", 4)},
    "ConcatenationOptions": {4: ("Axis", "scalar", 4), 6: ("FusedActivationFunction", "scalar", 1)},
    "ReducerOptions": {4: ("KeepDims", "scalar", 1)},
}


class FlatbufferError(Exception):
    """The buffer is not a well-formed TFLite flatbuffer; the message says where."""


class Layout:
    """Where the walk found offsets and vector lengths (the fuzzer corrupts exactly these)."""

    def __init__(self):
        self.offsets: list[int] = []       # positions of uoffset fields and vector-of-table entries
        self.lengths: list[tuple[int, int]] = []   # (position of a vector's length, element size)


class _Walk:
    def __init__(self, buf: bytes, layout: Layout | None):
        self.buf, self.n, self.layout = buf, len(buf), layout
        self.seen: set[tuple[int, str | None]] = set()

    def need(self, pos: int, size: int, what: str) -> None:
        if pos < 0 or size < 0 or pos + size > self.n:
            raise FlatbufferError(f"{what} at byte {pos} (+{size}) lies outside the {self.n}-byte file")

    def u16(self, pos: int, what: str) -> int:
        self.need(pos, 2, what)
        return struct.unpack_from("<H", self.buf, pos)[0]

    def u32(self, pos: int, what: str) -> int:
        self.need(pos, 4, what)
        return struct.unpack_from("<I", self.buf, pos)[0]

    def i32(self, pos: int, what: str) -> int:
        self.need(pos, 4, what)
        return struct.unpack_from("<i", self.buf, pos)[0]

    def follow(self, pos: int, what: str) -> int:
        """The position a uoffset at `pos` points to."""
        if self.layout is not None:
            self.layout.offsets.append(pos)
        target = pos + self.u32(pos, what)
        self.need(target, 4, what)
        return target

    def vector(self, pos: int, elem: int, what: str) -> tuple[int, int]:
        """(first element position, length) of the vector at `pos`."""
        if self.layout is not None:
            self.layout.lengths.append((pos, elem))
        length = self.u32(pos, f"{what} length")
        self.need(pos + 4, length * elem, f"{what} ({length:,} elements)")
        return pos + 4, length

    def string(self, pos: int, what: str) -> None:
        start, length = self.vector(pos, 1, what)
        self.need(start + length, 1, f"{what} terminator")

    def table(self, pos: int, name: str | None, what: str) -> None:
        if (pos, name) in self.seen:
            return
        self.seen.add((pos, name))
        vtable = pos - self.i32(pos, f"{what} vtable offset")
        vsize = self.u16(vtable, f"{what} vtable")
        tsize = self.u16(vtable + 2, f"{what} vtable")
        if vsize < 4 or vsize % 2 or tsize < 4:
            raise FlatbufferError(f"{what}: malformed vtable at byte {vtable} (sizes {vsize}, {tsize})")
        self.need(vtable, vsize, f"{what} vtable")
        self.need(pos, tsize, what)
        fields = SCHEMA.get(name, {})
        for slot in range(4, vsize, 2):
            voffset = self.u16(vtable + slot, f"{what} vtable")
            if voffset == 0:
                continue
            accessor, kind, detail = fields.get(slot, (None, None, None))
            size = detail if kind == "scalar" else (1 if kind is None else 4)
            if voffset + size > tsize:
                raise FlatbufferError(f"{what}: field {accessor or slot} at {voffset} lies past the table's "
                                      f"{tsize} bytes")
            if kind is not None and kind != "scalar":
                self.field(pos, pos + voffset, vtable, vsize, kind, detail, f"{what}.{accessor}")

    def field(self, table: int, pos: int, vtable: int, vsize: int, kind: str, detail, what: str) -> None:
        target = self.follow(pos, what)
        if kind == "string":
            self.string(target, what)
        elif kind == "vector":
            self.vector(target, detail, what)
        elif kind == "table":
            self.table(target, detail, what)
        elif kind == "tables":
            start, length = self.vector(target, 4, what)
            for i in range(length):
                self.table(self.follow(start + 4 * i, f"{what}[{i}]"), detail, f"{what}[{i}]")
        elif kind == "union":
            type_slot, tables = detail
            code = 0
            if type_slot < vsize:
                voffset = self.u16(vtable + type_slot, f"{what} type")
                code = self.buf[table + voffset] if voffset else 0
            self.table(target, tables.get(code), what)


def verify_tflite(buf: bytes, layout: Layout | None = None) -> None:
    """Raise FlatbufferError unless every part of `buf` the importer reads lies inside it."""
    walk = _Walk(buf, layout)
    walk.need(0, 8, "file header")
    walk.table(walk.follow(0, "root offset"), "Model", "Model")


def layout_of(buf: bytes) -> Layout:
    """The offsets and vector lengths of a well-formed TFLite flatbuffer."""
    layout = Layout()
    verify_tflite(buf, layout)
    return layout
