"""The emitted project as a firmware engineer takes it: a library of the model alone, every
external symbol under the model's prefix (so several models share one firmware), a C API with
error codes and a placeable arena, CMake and the PlatformIO / Arduino / Zephyr manifests, and
headers that strict C and C++ compilers accept without a warning."""
import json
import re
import shutil
import subprocess
from pathlib import Path

import numpy as np
import pytest

from benchmarks.shared_models import INT8_MODELS
from targets import build
from targets.registry import get_target
from toolchain import pipeline
from toolchain.reference import run_reference

REPO = Path(__file__).resolve().parents[2]
MNIST = REPO / "examples" / "mnist" / "mnist_cnn_int8.tflite"
HELLO = INT8_MODELS["hello_world_int8"]


def convert(tmp_path, model, prefix, target="host"):
    out = tmp_path / prefix
    pipeline.convert(model, target, out, prefix=prefix, patch="none")
    return out


def make_lib(out: Path, target: str, build_dir: Path) -> Path:
    proc = subprocess.run(["make", "-s", "-C", str(out / "c"), "lib", f"TARGET={target}", f"BUILD_DIR={build_dir}"],
                          capture_output=True, text=True)
    assert proc.returncode == 0, proc.stderr
    prefix = json.loads((out / "convert.json").read_text())["prefix"]
    return build_dir / f"lib{prefix}.a"


def c_array(values) -> str:
    return ", ".join(str(int(v)) for v in np.asarray(values).reshape(-1))


def two_model_main(projects: list[tuple[str, Path, list[np.ndarray]]]) -> str:
    """A firmware main that runs every project's model on its inputs and prints the outputs."""
    lines = ["#include <stdio.h>"]
    lines += [f'#include "{out.name}/c/model.h"' for _, out, _ in projects]
    body = []
    for prefix, _, inputs in projects:
        P = prefix.upper()
        lines.append(f"static const {prefix}_input_t {prefix}_in[{len(inputs)}][{P}_INPUT_ELEMS] = "
                     "{" + ", ".join("{" + c_array(x) + "}" for x in inputs) + "};")
        lines.append(f"static {prefix}_output_t {prefix}_out[{P}_OUTPUT_ELEMS];")
        body += [f"  for (i = 0; i < {len(inputs)}; ++i) {{",
                 f"    if ({prefix}_invoke({prefix}_in[i], {prefix}_out) != {P}_OK) return 1;",
                 f'    printf("{prefix} %d ", i);',
                 f'    for (b = 0; b < {P}_OUTPUT_BYTES; ++b) printf("%02x", ((const unsigned char *){prefix}_out)[b]);',
                 '    printf("\\n");', "  }"]
    return "\n".join(lines + ["int main(void) {", "  int i, b;", *body, "  return 0;", "}", ""])


def expected_lines(projects) -> list[str]:
    lines = []
    for prefix, out, inputs in projects:
        graph = pipeline.prepare_graph(out / pipeline.MODEL_FILE, "model")
        for i, x in enumerate(inputs):
            got = run_reference(graph, pipeline.split_feeds(graph, x))
            lines.append(f"{prefix} {i} " + b"".join(o.tobytes() for o in got).hex())
    return lines


@pytest.mark.parametrize("target", ["host", "cortex-m4"])
def test_two_models_and_one_model_twice_in_one_firmware(tmp_path, target):
    projects = []
    for model, prefix in ((MNIST, "digits"), (HELLO, "sine_a"), (HELLO, "sine_b")):
        out = convert(tmp_path, model, prefix, target)
        graph = pipeline.prepare_graph(out / pipeline.MODEL_FILE, "model")
        projects.append((prefix, out, pipeline.random_inputs(graph, 3, seed=len(projects))))
    libs = [make_lib(out, target, tmp_path / "build" / prefix) for prefix, out, _ in projects]
    for lib in libs:   # every external symbol of a model's library carries its prefix
        nm = "nm" if target == "host" else "arm-none-eabi-nm"
        names = subprocess.run([nm, "-g", "--defined-only", str(lib)], capture_output=True, text=True).stdout.split()
        prefix = lib.stem[3:]
        symbols = [n for n in names if re.fullmatch(r"[A-Za-z_]\w*", n) and not n.endswith(":")
                   and n not in ("T", "D", "B", "R", "t", "d", "b", "r")]
        assert symbols and all(n.startswith(prefix + "_") for n in symbols), [n for n in symbols if not n.startswith(prefix)]
    main = tmp_path / "main.c"
    main.write_text(two_model_main(projects))
    t = get_target(target)
    cmd = [t.compiler, *t.cflags.split(), "-std=c99", "-Wall", "-Wextra", "-Werror", str(main)]
    if t.bare_metal:
        first = projects[0][1] / "c"
        cmd += [str(first / "platform" / "startup_cortex_m.c"), "-DTDK_BARE_METAL", "-T",
                str(first / "platform" / f"{target}.ld")]
    cmd += ["-o", str(tmp_path / "firmware.elf"), *map(str, libs), *t.ldflags.split()]
    proc = subprocess.run(cmd, capture_output=True, text=True, cwd=tmp_path)
    assert proc.returncode == 0, proc.stderr
    run = subprocess.run([*t.emulator, *([t.kernel_flag] if t.kernel_flag else []), str(tmp_path / "firmware.elf")],
                         capture_output=True, text=True, timeout=120)
    assert run.returncode == 0, run.stderr
    assert run.stdout.split("\n")[:-1] == expected_lines(projects)


def test_cmake_builds_the_library_and_a_harness_equal_to_the_makefile_build(tmp_path):
    if shutil.which("cmake") is None:
        pytest.fail("cmake is not installed: make setup installs Debian's cmake")
    out = convert(tmp_path, MNIST, "digits", "cortex-m4")
    cmake_build = tmp_path / "cmake-build"
    for cmd in (["cmake", "-S", str(out / "c"), "-B", str(cmake_build), "-DTDK_TARGET=cortex-m4"],
                ["cmake", "--build", str(cmake_build)]):
        proc = subprocess.run(cmd, capture_output=True, text=True)
        assert proc.returncode == 0, proc.stdout + proc.stderr
    assert (cmake_build / "libdigits.a").exists()
    from_cmake = build.run("cortex-m4", cmake_build / "digits_harness.elf", count=False)
    from_make = build.run("cortex-m4", build.build(out / "c", "cortex-m4", tmp_path / "make-build"), count=False)
    assert from_cmake.outputs == from_make.outputs and len(from_make.outputs) == pipeline.DEFAULT_TEST_INPUTS


STRICT_C = ["-Wall", "-Wextra", "-Werror", "-pedantic"]


@pytest.mark.parametrize("std", ["c99", "c11"])
def test_the_project_builds_warning_free_as_strict_c(tmp_path, std):
    out = convert(tmp_path, INT8_MODELS["vww_96_int8"], "vww", "host")
    c = out / "c"
    sources = ["model.c", "model_weights.c", *(p.relative_to(c).as_posix() for p in (c / "kernels").glob("*.c"))]
    for source in sources:
        proc = subprocess.run(["gcc", f"-std={std}", *STRICT_C, "-O2", "-I", str(c), "-c", str(c / source),
                               "-o", str(tmp_path / "x.o")], capture_output=True, text=True)
        assert proc.returncode == 0 and not proc.stderr, f"{source}: {proc.stderr}"


def test_model_h_is_warning_free_in_strict_cpp_and_its_api_works(tmp_path):
    """model.h from C++17 with -pedantic; the API's error codes, the arena given at run time
    (MODEL_ARENA_EXTERN), the reentrant entry point and the quantize helpers, checked in a program."""
    out = convert(tmp_path, INT8_MODELS["vww_96_int8"], "vww", "host")
    c = out / "c"
    graph = pipeline.prepare_graph(out / pipeline.MODEL_FILE, "model")
    x = pipeline.random_inputs(graph, 1, seed=9)[0]
    expected = b"".join(o.tobytes() for o in run_reference(graph, pipeline.split_feeds(graph, x))).hex()
    program = tmp_path / "api.cpp"
    program.write_text(f'''#include <cstdio>
#include "model.h"
static const vww_input_t input[VWW_INPUT_ELEMS] = {{{c_array(x)}}};
static int32_t arena[(VWW_ARENA_BYTES + 3) / 4 + 1];
int main() {{
  vww_output_t out[VWW_OUTPUT_ELEMS];
  static_assert(VWW_INPUT_HEIGHT == 96 && VWW_INPUT_CHANNELS == 3, "shape macros");
  if (vww_invoke(input, out) != VWW_ERR_NO_ARENA) return 10;
  if (vww_init(nullptr, VWW_ARENA_BYTES) != VWW_ERR_NULL_ARGUMENT) return 11;
  if (vww_init(arena, VWW_ARENA_BYTES - 1) != VWW_ERR_ARENA_TOO_SMALL) return 12;
  if (vww_init((char *)arena + 1, VWW_ARENA_BYTES) != VWW_ERR_ARENA_UNALIGNED) return 13;
  if (vww_init(arena, VWW_ARENA_BYTES) != VWW_OK) return 14;
  if (vww_invoke(nullptr, out) != VWW_ERR_NULL_ARGUMENT) return 15;
  if (vww_invoke(input, out) != VWW_OK) return 16;
  for (int b = 0; b < VWW_OUTPUT_BYTES; ++b) std::printf("%02x", (unsigned char)out[b]);
  std::printf(" ");
  if (vww_invoke_with_arena(arena, input, out) != VWW_OK) return 17;
  for (int b = 0; b < VWW_OUTPUT_BYTES; ++b) std::printf("%02x", (unsigned char)out[b]);
  std::printf(" %d %d %d %.6f\\n", vww_quantize_input(0.5f), vww_quantize_input(1e30f), vww_quantize_input(-2.0f),
              (double)vww_dequantize_output(out[0]));
  return 0;
}}
''')
    sources = [str(c / "model.c"), str(c / "model_weights.c"), *map(str, (c / "kernels").glob("*.c"))]
    objects = []
    for i, source in enumerate(sources):
        obj = tmp_path / f"{i}.o"
        proc = subprocess.run(["gcc", "-std=c99", *STRICT_C, "-O2", "-DVWW_ARENA_EXTERN", "-I", str(c), "-c", source,
                               "-o", str(obj)], capture_output=True, text=True)
        assert proc.returncode == 0 and not proc.stderr, proc.stderr
        objects.append(str(obj))
    proc = subprocess.run(["g++", "-std=c++17", *STRICT_C, "-I", str(c), str(program), *objects, "-lm",
                           "-o", str(tmp_path / "api")], capture_output=True, text=True)
    assert proc.returncode == 0 and not proc.stderr, proc.stderr
    run = subprocess.run([str(tmp_path / "api")], capture_output=True, text=True)
    assert run.returncode == 0, run.returncode
    first, second, *helpers = run.stdout.split()
    assert first == second == expected
    t_in, t_out = graph.tensors[graph.inputs[0]], graph.tensors[graph.outputs[0]]
    q = int(np.clip(np.sign(0.5 / t_in.scale()) * np.floor(abs(np.float32(0.5) / np.float32(t_in.scale())) + 0.5)
                    + t_in.zero_point(), -128, 127))
    assert helpers[:3] == [str(q), "127", "-128"]
    out0 = np.frombuffer(bytes.fromhex(first), np.int8)[0]
    assert abs(float(helpers[3]) - t_out.scale() * (int(out0) - t_out.zero_point())) < 1e-6


def test_library_manifests_have_the_shape_their_tools_read(tmp_path):
    out = convert(tmp_path, MNIST, "digits")
    c = out / "c"
    sources = {"model.c", "model_weights.c", *(p.relative_to(c).as_posix() for p in (c / "kernels").glob("*.c"))}
    pio = json.loads((c / "library.json").read_text())
    assert pio["name"] == "digits" and re.fullmatch(r"\d+\.\d+\.\d+", pio["version"])
    assert "-<harness/>" in pio["build"]["srcFilter"] and "-<platform/>" in pio["build"]["srcFilter"]
    props = dict(line.split("=", 1) for line in (out / "arduino" / "digits" / "library.properties").read_text().splitlines())
    assert {"name", "version", "author", "maintainer", "sentence", "paragraph", "category", "architectures"} <= set(props)
    assert props["name"] == "digits" and props["includes"] == "model.h"
    arduino_src = out / "arduino" / "digits" / "src"
    assert {p.relative_to(arduino_src).as_posix() for p in arduino_src.rglob("*.c")} == sources
    assert (arduino_src / "model.h").exists() and not (arduino_src / "harness").exists()
    module = (c / "zephyr" / "module.yml").read_text()
    assert re.search(r"^name: digits$", module, re.M) and re.search(r"^\s+cmake: zephyr$", module, re.M)
    assert re.search(r"^\s+kconfig: zephyr/Kconfig$", module, re.M)
    zephyr_cmake = (c / "zephyr" / "CMakeLists.txt").read_text()
    assert "if(CONFIG_DIGITS)" in zephyr_cmake and all(f"/../{s}" in zephyr_cmake for s in sources)
    assert "config DIGITS" in (c / "zephyr" / "Kconfig").read_text()


def test_labels_reach_model_h_as_escaped_c_strings(tmp_path):
    labels = ['no person', 'a "quoted" \\ label */ ??= <script>', "café ✓"]
    path = tmp_path / "labels.txt"
    path.write_text("\n".join(labels[:2]) + "\n", encoding="utf-8")
    out = tmp_path / "vww"
    pipeline.convert(INT8_MODELS["vww_96_int8"], "host", out, prefix="vww", patch="none", labels_file=path)
    program = tmp_path / "labels.c"
    program.write_text('#include <stdio.h>\n#include "model.h"\nint main(void) {\n  int i;\n'
                       '  for (i = 0; i < VWW_NUM_LABELS; ++i) printf("%s\\n", vww_labels[i]);\n  return 0;\n}\n')
    c = out / "c"
    proc = subprocess.run(["gcc", "-std=c99", *STRICT_C, "-I", str(c), str(program), str(c / "model.c"),
                           str(c / "model_weights.c"), *map(str, (c / "kernels").glob("*.c")), "-lm",
                           "-o", str(tmp_path / "labels")], capture_output=True, text=True)
    assert proc.returncode == 0 and not proc.stderr, proc.stderr
    run = subprocess.run([str(tmp_path / "labels")], capture_output=True)
    assert run.stdout.decode("utf-8").splitlines() == labels[:2]
    path.write_text("\n".join(labels) + "\n", encoding="utf-8")   # three labels, two classes
    with pytest.raises(pipeline.UserError, match="3 labels for 2 output values"):
        pipeline.convert(INT8_MODELS["vww_96_int8"], "host", tmp_path / "bad", patch="none", labels_file=path)
    assert not (tmp_path / "bad").exists()
