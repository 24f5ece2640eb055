"""Mutations of model files: bytes, TFLite flatbuffer offsets and vector lengths, ONNX protobuf
fields, zip members (re-zipped with valid CRCs so the damage reaches the reader) and JSON inside
them. Each mutator is (data, rng, seed) -> bytes; `seed` carries the seed file's parsed forms."""
from __future__ import annotations

import io
import json
import random
import struct
import zipfile
from functools import lru_cache

INTERESTING_INTS = [0, 1, -1, 2, 3, 7, 255, 256, 65535, 65536, 1 << 20, (1 << 31) - 1, -(1 << 31), 1 << 40, -7]


def _span(rng: random.Random, n: int, most: int = 256) -> tuple[int, int]:
    start = rng.randrange(n)
    return start, min(n, start + rng.randint(1, most))


# ---------------------------------------------------------------- bytes

def flip_bytes(data: bytes, rng, seed=None) -> bytes:
    out = bytearray(data)
    for _ in range(rng.randint(1, 8)):
        p = rng.randrange(len(out))
        out[p] = rng.randrange(256) if rng.random() < 0.5 else out[p] ^ (1 << rng.randrange(8))
    return bytes(out)


def truncate(data: bytes, rng, seed=None) -> bytes:
    return data[:rng.randrange(len(data))]


def zero_chunk(data: bytes, rng, seed=None) -> bytes:
    a, b = _span(rng, len(data))
    return data[:a] + bytes(b - a) + data[b:]


def duplicate_chunk(data: bytes, rng, seed=None) -> bytes:
    a, b = _span(rng, len(data))
    at = rng.randrange(len(data))
    return data[:at] + data[a:b] + data[at:]


def random_insert(data: bytes, rng, seed=None) -> bytes:
    at = rng.randrange(len(data))
    return data[:at] + rng.randbytes(rng.randint(1, 64)) + data[at:]


BYTE_MUTATORS = [flip_bytes, truncate, zero_chunk, duplicate_chunk, random_insert]


# ---------------------------------------------------------------- TFLite flatbuffers

@lru_cache(maxsize=None)
def _layout(data: bytes):
    from toolchain.importers.flatbuffer_check import layout_of
    return layout_of(data)


def _put_u32(data: bytes, pos: int, value: int) -> bytes:
    return data[:pos] + struct.pack("<I", value & 0xFFFFFFFF) + data[pos + 4:]


def flatbuffer_offset(data: bytes, rng, seed=None) -> bytes:
    pos = rng.choice(_layout(data).offsets)
    old = struct.unpack_from("<I", data, pos)[0]
    value = rng.choice([0, 1, 4, old + 4, old - 4, old * 2, len(data), len(data) - pos, 1 << 31, rng.randrange(1 << 32)])
    return _put_u32(data, pos, value)


def flatbuffer_length(data: bytes, rng, seed=None) -> bytes:
    pos, _ = rng.choice(_layout(data).lengths)
    old = struct.unpack_from("<I", data, pos)[0]
    value = rng.choice([0, 1, old + 1, old - 1, old * 2, old * 1000, (1 << 31) - 1, 1 << 30, rng.randrange(1 << 32)])
    return _put_u32(data, pos, value)


def flatbuffer_element(data: bytes, rng, seed=None) -> bytes:
    """An element of a 4-byte vector: a shape dimension, a tensor index, an axis."""
    vectors = [(p, n) for p, e in _layout(data).lengths if e == 4 and (n := struct.unpack_from("<I", data, p)[0])]
    pos, n = rng.choice(vectors)
    return _put_u32(data, pos + 4 + 4 * rng.randrange(n), rng.choice(INTERESTING_INTS))


TFLITE_MUTATORS = BYTE_MUTATORS + [flatbuffer_offset, flatbuffer_length, flatbuffer_element] * 2


# ---------------------------------------------------------------- ONNX protobuf fields

def _onnx(data: bytes):
    import onnx
    return onnx.load_model_from_string(data)


def onnx_dims(data: bytes, rng, seed=None) -> bytes:
    model = _onnx(data)
    g = model.graph
    choices = [vi for vi in list(g.input) + list(g.output) + list(g.value_info) if vi.type.tensor_type.shape.dim]
    if g.initializer and (not choices or rng.random() < 0.5):
        init = rng.choice(g.initializer)
        if init.dims:
            init.dims[rng.randrange(len(init.dims))] = rng.choice(INTERESTING_INTS[:12])
    elif choices:
        dim = rng.choice(rng.choice(choices).type.tensor_type.shape.dim)
        dim.dim_value = rng.choice([0, 1, 2, 3, 1000, 1 << 20, 1 << 31])
    return model.SerializeToString()


def onnx_attribute(data: bytes, rng, seed=None) -> bytes:
    import onnx
    model = _onnx(data)
    attrs = [a for n in model.graph.node for a in n.attribute
             if a.type in (onnx.AttributeProto.INT, onnx.AttributeProto.INTS, onnx.AttributeProto.FLOAT)]
    if not attrs:
        return flip_bytes(data, rng)
    a = rng.choice(attrs)
    if a.type == onnx.AttributeProto.INT:
        a.i = rng.choice(INTERESTING_INTS)
    elif a.type == onnx.AttributeProto.FLOAT:
        a.f = rng.choice([0.0, -1.0, float("nan"), float("inf"), 1e30])
    elif a.ints:
        if rng.random() < 0.2:
            a.ints.append(rng.choice(INTERESTING_INTS))
        else:
            a.ints[rng.randrange(len(a.ints))] = rng.choice(INTERESTING_INTS)
    return model.SerializeToString()


def onnx_dtype(data: bytes, rng, seed=None) -> bytes:
    model = _onnx(data)
    g = model.graph
    if g.initializer and rng.random() < 0.5:
        rng.choice(g.initializer).data_type = rng.randrange(0, 24)
    else:
        rng.choice(list(g.input) + list(g.output)).type.tensor_type.elem_type = rng.randrange(0, 24)
    return model.SerializeToString()


OP_TYPES = ["Conv", "Relu", "Add", "Mul", "MaxPool", "AveragePool", "Gemm", "MatMul", "Reshape", "Flatten",
            "Transpose", "Concat", "Softmax", "Pad", "Clip", "GlobalAveragePool", "Identity", "Squeeze",
            "Unsqueeze", "Gather", "Slice", "Resize", "LSTM", "Loop", "NoSuchOp", "BatchNormalization"]


def onnx_op_type(data: bytes, rng, seed=None) -> bytes:
    model = _onnx(data)
    rng.choice(model.graph.node).op_type = rng.choice(OP_TYPES)
    return model.SerializeToString()


def onnx_remove_initializer(data: bytes, rng, seed=None) -> bytes:
    model = _onnx(data)
    if model.graph.initializer:
        del model.graph.initializer[rng.randrange(len(model.graph.initializer))]
    return model.SerializeToString()


def onnx_cycle(data: bytes, rng, seed=None) -> bytes:
    """A node reads a value produced by itself or a later node (a cycle, or out of order)."""
    model = _onnx(data)
    nodes = model.graph.node
    i = rng.randrange(len(nodes))
    j = rng.randrange(i, len(nodes))
    if nodes[i].input and nodes[j].output:
        nodes[i].input[rng.randrange(len(nodes[i].input))] = nodes[j].output[0]
    return model.SerializeToString()


def onnx_rewire(data: bytes, rng, seed=None) -> bytes:
    """Duplicate an output name, drop a node, or point an input at another value."""
    model = _onnx(data)
    nodes = model.graph.node
    what = rng.randrange(3)
    if what == 0 and len(nodes) > 1:
        a, b = rng.sample(range(len(nodes)), 2)
        nodes[a].output[0] = nodes[b].output[0]
    elif what == 1:
        del nodes[rng.randrange(len(nodes))]
    else:
        names = [o for n in nodes for o in n.output] + [i.name for i in model.graph.initializer]
        node = rng.choice(nodes)
        if node.input:
            node.input[rng.randrange(len(node.input))] = rng.choice(names)
    return model.SerializeToString()


def onnx_weights(data: bytes, rng, seed=None) -> bytes:
    """NaN, infinity or garbage in a float initializer, or raw data of the wrong length."""
    import numpy as np
    from onnx import numpy_helper
    model = _onnx(data)
    inits = [i for i in model.graph.initializer if i.data_type == 1 and i.raw_data]
    if not inits:
        return flip_bytes(data, rng)
    init = rng.choice(inits)
    if rng.random() < 0.3:
        init.raw_data = init.raw_data[:rng.randrange(len(init.raw_data))]
    else:
        array = numpy_helper.to_array(init).copy()
        array.reshape(-1)[rng.randrange(array.size)] = rng.choice([np.nan, np.inf, -np.inf, 3e38])
        init.CopyFrom(numpy_helper.from_array(array, init.name))
    return model.SerializeToString()


def onnx_external(data: bytes, rng, seed=None) -> bytes:
    import onnx
    model = _onnx(data)
    init = rng.choice(model.graph.initializer)
    init.ClearField("raw_data")
    init.data_location = onnx.TensorProto.EXTERNAL
    entry = init.external_data.add()
    entry.key, entry.value = "location", rng.choice(["/dev/zero", "/etc/passwd", "../../../etc/shadow", "weights.bin"])
    return model.SerializeToString()


ONNX_MUTATORS = BYTE_MUTATORS + [onnx_dims, onnx_attribute, onnx_dtype, onnx_op_type, onnx_remove_initializer,
                                 onnx_cycle, onnx_rewire, onnx_weights, onnx_external] * 2


# ---------------------------------------------------------------- zip archives (TorchScript, .pt2, .keras)

def _members(data: bytes) -> list[tuple[zipfile.ZipInfo, bytes]]:
    with zipfile.ZipFile(io.BytesIO(data)) as archive:
        return [(info, archive.read(info)) for info in archive.infolist()]


def _rezip(members) -> bytes:
    buffer = io.BytesIO()
    with zipfile.ZipFile(buffer, "w") as archive:
        for info, body in members:
            archive.writestr(info, body, compress_type=info.compress_type)
    return buffer.getvalue()


def zip_member_bytes(data: bytes, rng, seed=None) -> bytes:
    members = _members(data)
    k = rng.randrange(len(members))
    info, body = members[k]
    if body:
        members[k] = (info, rng.choice(BYTE_MUTATORS)(body, rng))
    return _rezip(members)


def zip_member_drop_or_copy(data: bytes, rng, seed=None) -> bytes:
    members = _members(data)
    k = rng.randrange(len(members))
    if rng.random() < 0.5:
        del members[k]
    else:
        info, body = members[k]
        other = members[rng.randrange(len(members))][0]
        members[k] = (zipfile.ZipInfo(other.filename if rng.random() < 0.5 else info.filename + "x"), body)
    return _rezip(members)


HOSTILE_STRINGS = ["torch.os.system", "torch.ops.aten.conv2d.default", "Lambda", "os", "builtins.eval",
                   "__import__('os').system('true')", "s0", "", "<script>alert(1)</script>", "x\ny", "-1"]


def _mutate_json(value, rng):
    """One leaf of a JSON tree replaced (a number, a string, a list shortened or grown)."""
    paths = []

    def walk(v, parent, key):
        if isinstance(v, dict):
            for k, x in v.items():
                walk(x, v, k)
        elif isinstance(v, list):
            paths.append((parent, key, v))
            for i, x in enumerate(v):
                walk(x, v, i)
        else:
            paths.append((parent, key, v))
    walk(value, None, None)
    leaves = [p for p in paths if p[0] is not None]
    if not leaves:
        return value
    parent, key, v = rng.choice(leaves)
    if isinstance(v, bool) or v is None:
        parent[key] = rng.choice([True, False, None, 0, "x"])
    elif isinstance(v, (int, float)):
        parent[key] = rng.choice(INTERESTING_INTS + [0.5, -3.5])
    elif isinstance(v, str):
        parent[key] = rng.choice(HOSTILE_STRINGS)
    elif isinstance(v, list):
        if v and rng.random() < 0.5:
            del v[rng.randrange(len(v))]
        else:
            v.append(rng.choice(v) if v else 0)
    return value


def zip_json(data: bytes, rng, seed=None) -> bytes:
    members = _members(data)
    documents = [k for k, (info, _) in enumerate(members) if info.filename.endswith(".json")]
    if not documents:
        return zip_member_bytes(data, rng)
    k = rng.choice(documents)
    info, body = members[k]
    try:
        document = json.loads(body)
    except ValueError:
        return zip_member_bytes(data, rng)
    for _ in range(rng.randint(1, 3)):
        document = _mutate_json(document, rng)
    members[k] = (info, json.dumps(document).encode())
    return _rezip(members)


ZIP_MUTATORS = BYTE_MUTATORS + [zip_member_bytes, zip_member_bytes, zip_member_drop_or_copy, zip_json, zip_json]
H5_MUTATORS = BYTE_MUTATORS

MUTATORS = {"tflite": TFLITE_MUTATORS, "onnx": ONNX_MUTATORS, "torchscript": ZIP_MUTATORS, "pt2": ZIP_MUTATORS,
            "keras": ZIP_MUTATORS, "h5": H5_MUTATORS}


def mutate(fmt: str, data: bytes, rng: random.Random) -> tuple[str, bytes]:
    """(mutator name, mutated bytes); one to three mutations, each of the format's kinds."""
    names = []
    for _ in range(rng.choice([1, 1, 1, 2, 3])):
        mutator = rng.choice(MUTATORS[fmt])
        try:
            mutated = mutator(data, rng)
        except Exception:   # the previous mutation broke the structure this one edits: bytes instead
            mutator = flip_bytes
            mutated = flip_bytes(data, rng)
        if mutated:
            data = mutated
        names.append(mutator.__name__)
    return "+".join(names), data
