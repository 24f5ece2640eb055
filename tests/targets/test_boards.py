"""Boards link against their real memory maps; two of them run on QEMU machines with those maps."""
from pathlib import Path

import pytest

from targets import build
from targets.elf import Elf
from targets.registry import BOARDS, KB, MB, TARGETS
from toolchain import pipeline

SHARED = Path(__file__).resolve().parents[2].parent / "shared" / "models"
HELLO = SHARED / "tflm" / "hello_world_int8.tflite"

# (flash base, flash bytes, SRAM base, SRAM bytes) as the vendors' reference manuals and
# datasheets give them, written out here independently of the registry.
DATASHEET = {
    "stm32f746": (0x08000000, 1 * MB, 0x20000000, 320 * KB),   # RM0385
    "stm32l4r5": (0x08000000, 2 * MB, 0x20000000, 640 * KB),   # RM0432
    "stm32f412": (0x08000000, 1 * MB, 0x20000000, 256 * KB),   # RM0402
    "stm32f405": (0x08000000, 1 * MB, 0x20000000, 128 * KB),   # RM0090 (plus 64 KB CCM at 0x10000000)
    "stm32f100": (0x08000000, 128 * KB, 0x20000000, 8 * KB),   # RM0041, STM32F100RB
    "nrf52840": (0x00000000, 1 * MB, 0x20000000, 256 * KB),    # nRF52840 PS
    "nrf52832": (0x00000000, 512 * KB, 0x20000000, 64 * KB),   # nRF52832 PS
    "stm32f103c8": (0x08000000, 64 * KB, 0x20000000, 20 * KB),  # RM0008
    "esp32c3": (0x42000000, 4 * MB, 0x3FC80000, 384 * KB),     # ESP32-C3 TRM: flash through the cache, SRAM1
}


def test_every_board_has_its_datasheet_memory_map():
    assert {b.name for b in BOARDS} == set(DATASHEET)
    for b in BOARDS:
        m = b.memory
        assert (m.flash.origin, m.flash.size, m.ram.origin, m.ram.size) == DATASHEET[b.name], b.name
        assert (b.flash_bytes, b.sram_bytes) == (m.flash.size, m.ram.size)
        assert m.source and b.clock_hz


def sections_in(elf: Path, lo: int, hi: int, names) -> bool:
    found = {s.name: s for s in Elf(elf).sections if s.name in names and s.size}
    return bool(found) and all(lo <= s.addr and s.addr + s.size <= hi for s in found.values())


@pytest.mark.parametrize("board", [b.name for b in BOARDS if b.bare_metal])
def test_board_firmware_links_at_the_real_addresses(tmp_path, board):
    """make TARGET=<board> (no MAP=qemu): the firmware the board itself runs."""
    out = tmp_path / "hw"
    pipeline.convert(HELLO, board, out)
    t = TARGETS[board]
    build_dir = tmp_path / "build"
    proc = build.subprocess.run(["make", "-s", "-C", str(out / "c"), f"TARGET={board}", f"BUILD_DIR={build_dir}"],
                                capture_output=True, text=True)
    assert proc.returncode == 0, proc.stderr
    elf = build_dir / "model.elf"
    m = t.memory
    text = next(s for s in Elf(elf).sections if s.name == ".text")
    assert text.addr == m.flash.origin   # the vector table (Cortex-M) or crt0 opens .text
    assert sections_in(elf, m.flash.origin, m.flash.origin + m.flash.size, {".text"})
    assert sections_in(elf, m.ram.origin, m.ram.origin + m.ram.size, {".data", ".bss"})


@pytest.mark.parametrize("board", ["stm32f405", "stm32f100"])
def test_board_runs_byte_exact_on_a_qemu_machine_with_its_own_map(tmp_path, board):
    t = TARGETS[board]
    assert t.emulates_real_map and t.machine.endswith({"stm32f405": "netduinoplus2",
                                                       "stm32f100": "stm32vldiscovery"}[board])
    out = tmp_path / "hw"
    pipeline.convert(HELLO, board, out)
    report = pipeline.verify(out, board)
    assert report["verification"]["bit_exact"] and report["verification"]["tflm_bit_exact"]
    elf = out / "build" / board / "model.elf"
    symbols = Elf(elf).symbols()
    assert symbols["vector_table"].value == 0x08000000
    ram = t.memory.ram
    assert sections_in(elf, ram.origin, ram.origin + ram.size, {".data", ".bss"})
    assert report["memory"]["peak_sram_bytes"] <= ram.size


def test_test_vectors_too_big_for_the_board_flash_run_in_several_builds(tmp_path):
    """stm32f100 keeps the test vectors in its 128 KB of flash: 320 inputs of 400 bytes fit only
    a batch at a time, and still every output is compared, numbered as given."""
    import numpy as np
    from opmodels import op_model
    path = tmp_path / "fc.tflite"
    path.write_bytes(op_model("fully_connected", (1, 400), units=4))
    out = tmp_path / "fc"
    pipeline.convert(path, "stm32f100", out)
    graph = pipeline.prepare_graph(out / pipeline.MODEL_FILE, "model")
    np.save(tmp_path / "many.npy", np.stack(pipeline.random_inputs(graph, 320, seed=3)))
    steps = []
    report = pipeline.verify(out, "stm32f100", tmp_path / "many.npy", progress=steps.append)
    v = report["verification"]
    assert v["inputs"] == 320 and v["bit_exact"] and v["tflm_bit_exact"]
    assert sum("the test vectors fill its flash" in s for s in steps) >= 2
    assert len(np.load(out / "c" / "harness" / "test_inputs.npy")) == 320
