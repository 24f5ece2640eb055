"""The target registry: targets are data (ISA, compiler, flags, budgets, emulator), not code.

A core is an instruction set with its compiler flags and the emulator that runs it. A board names
its core and adds the real part's memory map (flash and SRAM base and size, extra RAM banks such
as CCM or DTCM, where the reset vector table sits), from the vendor's datasheet or reference
manual: `make TARGET=<board>` links the board's firmware against that map. Under emulation a
board runs on a QEMU machine with the same map where QEMU 7.2 has one (stm32f405 on
netduinoplus2, stm32f100 on stm32vldiscovery); the others run on their core's machine, linked
against the core's map cut down to the board's budgets (`platform/<board>-qemu.ld`), so a build
that would not fit the part does not link either way.

Emulator memory maps, as QEMU 7.2 offers them (`info mtree`):
- mps2-an385 (M3), mps2-an386 (M4): SSRAM1 4 MB at 0x0 (code), SSRAM2/3 4 MB at 0x20000000,
  16 MB at 0x21000000. mps2-an500 (M7): the same, with the 16 MB at 0x60000000.
- mps3-an547 (M55): only 512 KB of ITCM at 0x0 and 512 KB of DTCM at 0x20000000, but 2 MB of
  SRAM at 0x01000000, 4 MB at 0x21000000 and DDR at 0x60000000. The vector table stays at 0x0
  (where the core fetches it on reset); code and weights go to the 2 MB at 0x01000000 (mcunet's
  540 KB of weights do not fit the ITCM) and data to the 4 MB at 0x21000000.
- virt (rv32imc): RAM from 0x80000000 (128 MB by default): 4 MB code, 4 MB data, then test data.
- netduinoplus2 (STM32F405RG): flash 1 MB at 0x08000000 (aliased at 0x0, where the core boots),
  SRAM at 0x20000000 (QEMU models 192 KB; the part has 128 KB, and its 64 KB CCM at 0x10000000,
  which QEMU does not model). stm32vldiscovery (STM32F100RB): flash 128 KB at 0x08000000, 8 KB
  SRAM at 0x20000000.
The emulators' maps have a test-data region outside the budgets for the compiled-in test vectors
(a board would stream its inputs; the vectors must not count against or overflow its flash); a
board emulated on its own map keeps them in its flash, and verify builds as many times as it takes
for the vectors to fit beside the firmware.
"""
from __future__ import annotations

import dataclasses
from dataclasses import dataclass

from toolchain.errors import UserError

KB, MB = 1024, 1024 * 1024


@dataclass(frozen=True)
class Region:
    origin: int
    size: int


@dataclass(frozen=True)
class Bank:
    """A RAM bank beside the main SRAM (CCM, DTCM, SRAM2...): its own linker region and section
    (`.<name>`), for what the planner or the user places there."""
    name: str
    region: Region
    note: str = ""


@dataclass(frozen=True)
class MemoryMap:
    flash: Region            # code, constants (weights), .data's load image
    ram: Region              # .data, .bss, heap, stack (stack at the top)
    test_data: Region | None = None  # compiled-in test vectors: emulator memory outside the budgets (None: in flash)
    vectors: Region | None = None    # where the reset vector table must sit, when not at the start of flash
    banks: tuple[Bank, ...] = ()
    source: str = ""         # where the figures come from (datasheet / reference manual / QEMU)

    def cut(self, flash_bytes: int, sram_bytes: int) -> MemoryMap:
        """This map with flash and RAM cut to a board's budgets."""
        if flash_bytes > self.flash.size or sram_bytes > self.ram.size:
            raise ValueError("board budget larger than its emulator's memory")
        return dataclasses.replace(self, flash=Region(self.flash.origin, flash_bytes),
                                   ram=Region(self.ram.origin, sram_bytes))


@dataclass(frozen=True)
class Target:
    name: str
    isa: str
    description: str
    platform: str            # host | cortex-m | riscv | linux: startup code, linker script, C library
    compiler: str
    cflags: str              # architecture and optimisation flags (the Makefile adds -std=c99 -W...)
    ldflags: str             # C library and link flags (a bare-metal build adds its linker script)
    emulator: tuple[str, ...] = ()   # the command that runs the program (empty: run it natively)
    kernel_flag: str = ""    # how the emulator takes the program: "-kernel" (system) or "" (user mode)
    memory: MemoryMap | None = None  # bare metal only: the map the firmware is linked against
    core: str = ""           # a board's core; a core names itself
    sram_bytes: int | None = None    # budgets: boards only
    flash_bytes: int | None = None
    packages: str = "gcc make"       # Debian packages that provide the compiler and the emulator
    emulated_memory: MemoryMap | None = None  # the map under emulation, when the emulator lacks `memory`
    clock_hz: int | None = None      # a board's core clock (the part's maximum), for milliseconds

    @property
    def bare_metal(self) -> bool:
        return self.memory is not None

    @property
    def is_board(self) -> bool:
        return self.core != self.name

    @property
    def dsp_kernels(self) -> bool:
        """The build runs the Cortex-M DSP-extension kernels (TDK_DSP in tdk_opt.h): ARMv7E-M."""
        return self.isa.startswith("ARMv7E-M ")

    @property
    def qemu_memory(self) -> MemoryMap | None:
        """The map a build for the emulator is linked against."""
        return self.emulated_memory or self.memory

    @property
    def emulates_real_map(self) -> bool:
        """Whether the emulator runs the board's own memory map (a core's map is its emulator's)."""
        return self.bare_metal and self.emulated_memory is None

    @property
    def machine(self) -> str:
        """The emulated machine: QEMU -M / -cpu, or 'native'."""
        if not self.emulator:
            return "native"
        flag = "-M" if "-M" in self.emulator else "-cpu"
        return f"{self.emulator[0]} {flag} {self.emulator[self.emulator.index(flag) + 1]}"


ARM_PACKAGES = "gcc-arm-none-eabi libnewlib-arm-none-eabi qemu-system-arm"
RISCV_PACKAGES = "gcc-riscv64-unknown-elf picolibc-riscv64-unknown-elf qemu-system-misc"
AARCH64_PACKAGES = "gcc-aarch64-linux-gnu libc6-dev-arm64-cross qemu-user"

COMMON_CFLAGS = "-O2 -ffunction-sections -fdata-sections"
SEMIHOSTING = ("-display", "none", "-monitor", "none", "-serial", "none")

MPS2 = MemoryMap(flash=Region(0x00000000, 4 * MB), ram=Region(0x20000000, 4 * MB),
                 test_data=Region(0x21000000, 16 * MB))
MPS2_AN500 = dataclasses.replace(MPS2, test_data=Region(0x60000000, 16 * MB))
MPS3_AN547 = MemoryMap(flash=Region(0x01000000, 2 * MB), ram=Region(0x21000000, 4 * MB),
                       test_data=Region(0x60000000, 16 * MB), vectors=Region(0x00000000, 512 * KB))
RISCV_VIRT = MemoryMap(flash=Region(0x80000000, 4 * MB), ram=Region(0x80400000, 4 * MB),
                       test_data=Region(0x80800000, 16 * MB))


def cortex_m(name: str, arch: str, fpu: str, machine: str, memory: MemoryMap, description: str) -> Target:
    return Target(
        name, f"{arch} Thumb-2", description, "cortex-m",
        "arm-none-eabi-gcc", f"-mcpu={name} -mthumb {fpu} {COMMON_CFLAGS}",
        "--specs=nano.specs --specs=rdimon.specs -Wl,--gc-sections -lm",
        ("qemu-system-arm", "-M", machine, *SEMIHOSTING, "-semihosting-config", "enable=on,target=native"),
        "-kernel", memory, name, packages=f"gcc make {ARM_PACKAGES}")


def aarch64(name: str, cpu: str, flags: str, description: str) -> Target:
    return Target(name, f"AArch64 ({cpu})", description, "linux", "aarch64-linux-gnu-gcc",
                  f"{flags} {COMMON_CFLAGS}", "-static -Wl,--gc-sections -lm", ("qemu-aarch64", "-cpu", cpu),
                  core=name, packages=f"gcc make {AARCH64_PACKAGES}")


CORES = [
    Target("host", "x86-64 (build machine)", "the build machine itself", "host", "gcc", "-O2",
           "-lm -Wl,-z,now", core="host"),
    cortex_m("cortex-m3", "ARMv7-M", "-mfloat-abi=soft", "mps2-an385", MPS2, "Cortex-M3, no FPU, no DSP"),
    cortex_m("cortex-m4", "ARMv7E-M", "-mfloat-abi=hard -mfpu=fpv4-sp-d16", "mps2-an386", MPS2,
             "Cortex-M4F: DSP extension (SMLAD), single-precision FPU"),
    cortex_m("cortex-m7", "ARMv7E-M", "-mfloat-abi=hard -mfpu=fpv5-d16", "mps2-an500", MPS2_AN500,
             "Cortex-M7: DSP extension, double-precision FPU"),
    cortex_m("cortex-m55", "ARMv8.1-M", "-mfloat-abi=hard", "mps3-an547", MPS3_AN547,
             "Cortex-M55: Helium (MVE) vector extension"),
    Target("rv32imc", "RV32IMC", "32-bit RISC-V MCU core (integer, multiply, compressed)", "riscv",
           "riscv64-unknown-elf-gcc", f"-march=rv32imc -mabi=ilp32 {COMMON_CFLAGS}",
           "--specs=picolibc.specs --oslib=semihost --crt0=semihost -Wl,--gc-sections -lm",
           ("qemu-system-riscv32", "-M", "virt", "-bios", "none", *SEMIHOSTING, "-chardev", "stdio,id=sh0",
            "-semihosting-config", "enable=on,target=native,chardev=sh0"),
           "-kernel", RISCV_VIRT, "rv32imc", packages=f"gcc make {RISCV_PACKAGES}"),
    aarch64("rpi-zero2", "cortex-a53", "-mcpu=cortex-a53", "Raspberry Pi Zero 2 W / Pi 3 (Cortex-A53), Linux"),
    aarch64("rpi4", "cortex-a72", "-mcpu=cortex-a72", "Raspberry Pi 4 (Cortex-A72), Linux"),
    aarch64("rpi5", "cortex-a76", "-mcpu=cortex-a76", "Raspberry Pi 5 (Cortex-A76, dot product), Linux"),
    # Any arm64-v8a phone: the ABI's baseline instruction set, run on its oldest core. A static
    # binary runs on Android as it is (same kernel interface); the NDK is not needed to test it.
    aarch64("android-arm64", "cortex-a53", "-march=armv8-a", "Android phone, arm64-v8a baseline (static binary)"),
]


def board(name: str, core: str, memory: MemoryMap, description: str, clock_hz: int,
          machine: str | None = None) -> Target:
    """A board: its core's compiler and flags, the part's own memory map and budgets. `machine`:
    a QEMU machine with that map (else the core's machine, on the core's map cut to the budgets)."""
    base = next(c for c in CORES if c.name == core)
    flash, sram = memory.flash.size, memory.ram.size
    common = dict(name=name, core=core, description=description, sram_bytes=sram, flash_bytes=flash,
                  clock_hz=clock_hz)
    if base.memory is None:   # a Linux core: budgets only
        return dataclasses.replace(base, **common)
    if machine is None:
        return dataclasses.replace(base, **common, memory=memory, emulated_memory=base.memory.cut(flash, sram))
    emulator = list(base.emulator)
    emulator[emulator.index("-M") + 1] = machine
    return dataclasses.replace(base, **common, memory=memory, emulator=tuple(emulator))


def stm32(flash: int, sram: int, banks: tuple[Bank, ...] = (), source: str = "") -> MemoryMap:
    """An STM32's map: flash at 0x08000000 (the vector table at its start; booting from flash
    aliases it at 0x0), SRAM from 0x20000000."""
    return MemoryMap(flash=Region(0x08000000, flash), ram=Region(0x20000000, sram), banks=banks, source=source)


def nrf52(flash: int, sram: int, source: str) -> MemoryMap:
    """A Nordic nRF52's map: flash (code) at 0x0, Data RAM at 0x20000000."""
    return MemoryMap(flash=Region(0x00000000, flash), ram=Region(0x20000000, sram), source=source)


BOARDS = [
    board("stm32f746", "cortex-m7",
          stm32(1 * MB, 320 * KB, (Bank("itcm", Region(0x00000000, 16 * KB), "ITCM RAM (instructions)"),),
                "RM0385 sec. 2.2.2: flash 1 MB at 0x08000000 (AXIM); DTCM 64 KB at 0x20000000, SRAM1 240 KB "
                "at 0x20010000, SRAM2 16 KB at 0x2004C000 (one 320 KB range); ITCM RAM 16 KB at 0x0"),
          "STM32F746 (Discovery kit): 320 KB SRAM, 1 MB flash", 216_000_000),
    board("stm32l4r5", "cortex-m4",
          stm32(2 * MB, 640 * KB, source="RM0432 sec. 2.2: flash 2 MB at 0x08000000; SRAM1 192 KB at 0x20000000, "
                "SRAM2 64 KB at 0x20030000 (also at 0x10000000), SRAM3 384 KB at 0x20040000 (one 640 KB range)"),
          "STM32L4R5 (NUCLEO-L4R5ZI, MLPerf Tiny reference)", 120_000_000),
    board("stm32f412", "cortex-m4",
          stm32(1 * MB, 256 * KB, source="RM0402 sec. 2.3: flash 1 MB at 0x08000000; SRAM1 256 KB at 0x20000000"),
          "STM32F412 (NUCLEO-F412ZG)", 100_000_000),
    board("stm32f405", "cortex-m4",
          stm32(1 * MB, 128 * KB, (Bank("ccmram", Region(0x10000000, 64 * KB),
                                        "core-coupled, data only, not reachable by DMA; QEMU does not model it"),),
                "RM0090 sec. 2.3, DS8626: flash 1 MB at 0x08000000; SRAM1 112 KB + SRAM2 16 KB at 0x20000000 "
                "(one 128 KB range); CCM 64 KB at 0x10000000"),
          "STM32F405RG (Netduino Plus 2): 128 KB SRAM + 64 KB CCM, 1 MB flash; QEMU runs its real map",
          168_000_000, machine="netduinoplus2"),
    board("stm32f100", "cortex-m3",
          stm32(128 * KB, 8 * KB, source="RM0041 sec. 2.3, DS5965: STM32F100RB flash 128 KB at 0x08000000, "
                "SRAM 8 KB at 0x20000000"),
          "STM32F100RB (STM32VLDISCOVERY): 8 KB SRAM, 128 KB flash; QEMU runs its real map",
          24_000_000, machine="stm32vldiscovery"),
    board("nrf52840", "cortex-m4",
          nrf52(1 * MB, 256 * KB, "nRF52840 PS v1.7 sec. 4.2: flash 1 MB at 0x0, Data RAM 256 KB at 0x20000000"),
          "nRF52840 (Arduino Nano 33 BLE)", 64_000_000),
    board("nrf52832", "cortex-m4",
          nrf52(512 * KB, 64 * KB, "nRF52832 PS v1.4 sec. 9: flash 512 KB at 0x0, Data RAM 64 KB at 0x20000000"),
          "nRF52832: 64 KB RAM, 512 KB flash", 64_000_000),
    board("stm32f103c8", "cortex-m3",
          stm32(64 * KB, 20 * KB, source="RM0008 sec. 3.3.3, DS5319: flash 64 KB at 0x08000000, SRAM 20 KB at 0x20000000"),
          "STM32F103C8 (Blue Pill): 20 KB SRAM, 64 KB flash", 72_000_000),
    board("esp32c3", "rv32imc",
          MemoryMap(flash=Region(0x42000000, 4 * MB), ram=Region(0x3FC80000, 384 * KB),
                    banks=(Bank("iram", Region(0x4037C000, 16 * KB), "SRAM0: cache-able instruction RAM"),),
                    source="ESP32-C3 TRM v1.1 sec. 3.3.2 / datasheet sec. 4.1.3: 4 MB in-package flash mapped "
                           "(through the cache) at 0x42000000 for code; SRAM1 as data RAM from 0x3FC80000, "
                           "384 KB of the 400 KB (16 KB of SRAM0 serve the cache); ESP-IDF's bootloader loads "
                           "the image (esptool elf2image)"),
          "ESP32-C3 (RISC-V): 400 KB SRAM, 4 MB in-package flash", 160_000_000),
]

TARGETS = {t.name: t for t in CORES + BOARDS}


def get_target(name: str) -> Target:
    if name not in TARGETS:
        raise UserError(f"unknown target '{name}' (known: {', '.join(TARGETS)})")
    return TARGETS[name]
