"""Issue 23's coverage matrix: architectures nobody here wrote (torchvision and keras.applications
networks with untrained weights at small input sizes, recurrent and 1-D audio models, an
upsampling U-Net) exported through every front end they have, then converted and verified as a
user would, through the CLI: `tinydeploy convert FILE --target host --calib X` and `tinydeploy
verify`. Each cell: exact (C == reference == TFLM), refused (the one line naming what), or failed
(anything else: a crash, a traceback, a mismatch).

    .venv/bin/python benchmarks/coverage.py [--out benchmarks/coverage.md] [--only NAME,...] [--jobs N]

torchvision (installed by make setup, 0.28.0 beside the CPU torch 2.13.0) registers fake kernels
for its detection operators on import, and those operators come from its compiled extension,
which does not load beside the CPU build: the two schemas are declared first (classification
models never call them).
"""
from __future__ import annotations

import argparse
import concurrent.futures
import json
import os
import re
import subprocess
import sys
import tempfile
from dataclasses import dataclass
from pathlib import Path
from typing import Callable

import numpy as np

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))

from benchmarks.shared_models import PHOTOS  # noqa: E402

CLI = str(Path(sys.executable).with_name("tinydeploy"))
CALIB_SAMPLES = 16
TIMEOUT_S = 1800
_SCHEMAS = []   # torchvision's detection operators, declared once (see the module docstring)


@dataclass(frozen=True)
class Arch:
    name: str
    framework: str                  # torch | keras
    build: Callable                 # () -> nn.Module | keras.Model
    input_shape: tuple[int, ...]    # in the framework's own layout (NCHW for torch images)
    kind: str = "image"             # image | audio: what the calibration samples are


def torchvision():
    import torch
    try:
        import torchvision as tv
    except RuntimeError:   # its fake-kernel registration needs the detection ops' schemas
        lib = torch.library.Library("torchvision", "DEF")
        lib.define("nms(Tensor dets, Tensor scores, float iou_threshold) -> Tensor")
        lib.define("qnms(Tensor qdets, Tensor scores, float iou_threshold) -> Tensor")
        _SCHEMAS.append(lib)   # the definitions live as long as the library object
        import torchvision as tv
    return tv.models


def keras():
    os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "3")
    import keras as k
    return k


def _tv(name, **kwargs):
    return lambda: getattr(torchvision(), name)(weights=None, **kwargs)


def _keras_app(name, **kwargs):
    return lambda: getattr(keras().applications, name)(input_shape=(96, 96, 3), weights=None, **kwargs)


def _keras_rnn(cell):
    def build():
        k = keras()
        return k.Sequential([k.Input((49, 10)), getattr(k.layers, cell)(32), k.layers.Dense(12, activation="softmax")])
    return build


def _torch_rnn(cell):
    def build():
        import torch.nn as nn

        class KeywordSpotter(nn.Module):
            def __init__(self):
                super().__init__()
                self.rnn = getattr(nn, cell)(10, 32, batch_first=True)
                self.head = nn.Linear(32, 12)

            def forward(self, x):
                out, _ = self.rnn(x)
                return self.head(out[:, -1])
        return KeywordSpotter()
    return build


def _conv1d_audio():
    import torch.nn as nn
    return nn.Sequential(nn.Conv1d(40, 32, 3, padding=1), nn.ReLU(), nn.Conv1d(32, 32, 3, stride=2, padding=1),
                         nn.BatchNorm1d(32), nn.ReLU(), nn.Conv1d(32, 48, 3, padding=1), nn.ReLU(),
                         nn.AdaptiveAvgPool1d(1), nn.Flatten(), nn.Linear(48, 12))


def _unet():
    import torch
    import torch.nn as nn

    def block(cin, cout, stride=1):
        return nn.Sequential(nn.Conv2d(cin, cout, 3, stride, 1), nn.BatchNorm2d(cout), nn.ReLU())

    class UNet(nn.Module):
        """Two levels down, two up: nearest and bilinear upsampling, skip connections by concat."""

        def __init__(self):
            super().__init__()
            self.d1, self.d2, self.d3 = block(3, 8), block(8, 16, 2), block(16, 32, 2)
            self.u2, self.u1 = block(48, 16), block(24, 8)
            self.head = nn.Conv2d(8, 2, 1)

        def forward(self, x):
            a = self.d1(x)
            b = self.d2(a)
            c = self.d3(b)
            up2 = nn.functional.interpolate(c, scale_factor=2, mode="nearest")
            y = self.u2(torch.cat([up2, b], 1))
            up1 = nn.functional.interpolate(y, scale_factor=2, mode="bilinear", align_corners=False)
            return self.head(self.u1(torch.cat([up1, a], 1)))
    return UNet()


ARCHS = [
    Arch("mobilenet_v2 (0.35)", "torch", _tv("mobilenet_v2", width_mult=0.35), (1, 3, 96, 96)),
    Arch("mobilenet_v3_small", "torch", _tv("mobilenet_v3_small"), (1, 3, 96, 96)),
    Arch("resnet18", "torch", _tv("resnet18"), (1, 3, 64, 64)),
    Arch("squeezenet1_1", "torch", _tv("squeezenet1_1"), (1, 3, 96, 96)),
    Arch("shufflenet_v2_x0_5", "torch", _tv("shufflenet_v2_x0_5"), (1, 3, 96, 96)),
    Arch("mnasnet0_5", "torch", _tv("mnasnet0_5"), (1, 3, 96, 96)),
    Arch("efficientnet_b0", "torch", _tv("efficientnet_b0"), (1, 3, 96, 96)),
    Arch("regnet_x_400mf", "torch", _tv("regnet_x_400mf"), (1, 3, 64, 64)),
    Arch("keras MobileNet (0.25)", "keras", _keras_app("MobileNet", alpha=0.25), (1, 96, 96, 3)),
    Arch("keras MobileNetV2 (0.35)", "keras", _keras_app("MobileNetV2", alpha=0.35), (1, 96, 96, 3)),
    Arch("keras MobileNetV3Small", "keras", _keras_app("MobileNetV3Small"), (1, 96, 96, 3)),
    Arch("keras MobileNetV3Small minimalistic", "keras", _keras_app("MobileNetV3Small", minimalistic=True),
         (1, 96, 96, 3)),
    Arch("keras EfficientNetB0", "keras", _keras_app("EfficientNetB0"), (1, 96, 96, 3)),
    Arch("GRU keyword spotter (keras)", "keras", _keras_rnn("GRU"), (1, 49, 10), "audio"),
    Arch("LSTM keyword spotter (keras)", "keras", _keras_rnn("LSTM"), (1, 49, 10), "audio"),
    Arch("GRU keyword spotter (torch)", "torch", _torch_rnn("GRU"), (1, 49, 10), "audio"),
    Arch("LSTM keyword spotter (torch)", "torch", _torch_rnn("LSTM"), (1, 49, 10), "audio"),
    Arch("Conv1d audio (torch)", "torch", _conv1d_audio, (1, 40, 49), "audio"),
    Arch("U-Net, upsampling + concat (torch)", "torch", _unet, (1, 3, 64, 64)),
]
FORMATS = {"torch": ("TorchScript .pt", "ExportedProgram .pt2", "ONNX"), "keras": (".keras", ".h5")}
SUFFIX = {"TorchScript .pt": ".pt", "ExportedProgram .pt2": ".pt2", "ONNX": ".onnx", ".keras": ".keras", ".h5": ".h5"}


def export(arch: Arch, fmt: str, path: Path) -> None:
    """Write `arch` (untrained) as `fmt` to path."""
    if arch.framework == "keras":
        model = arch.build()
        model.save(str(path))
        return
    import torch
    torch.manual_seed(0)
    model = arch.build().eval()
    example = torch.zeros(arch.input_shape)
    with torch.no_grad():
        if fmt == "TorchScript .pt":
            torch.jit.save(torch.jit.trace(model, example), str(path))
        elif fmt == "ExportedProgram .pt2":
            torch.export.save(torch.export.export(model, (example,)), str(path))
        else:
            torch.onnx.export(model, (example,), str(path), dynamo=False, opset_version=17)


def calibration(arch: Arch) -> np.ndarray:
    """Real photos resized to the input (images), or seeded normal samples (audio features)."""
    if arch.kind == "audio":
        return np.random.default_rng(0).normal(0, 1, (CALIB_SAMPLES, *arch.input_shape[1:])).astype(np.float32)
    photos = np.load(PHOTOS / "vww_like_rgb96_uint8.npy").astype(np.float32) / 255.0   # (5, 96, 96, 3)
    channels_first = arch.framework == "torch"
    h, w = arch.input_shape[2:] if channels_first else arch.input_shape[1:3]
    rng = np.random.default_rng(0)
    samples = []
    for i in range(CALIB_SAMPLES):
        photo = photos[i % len(photos)]
        y, x = rng.integers(0, 96 - min(h, 96) + 1), rng.integers(0, 96 - min(w, 96) + 1)
        crop = photo[y:y + h, x:x + w]
        samples.append(crop.transpose(2, 0, 1) if channels_first else crop)
    return np.stack(samples).astype(np.float32)


def cli(*args, timeout=TIMEOUT_S) -> subprocess.CompletedProcess:
    return subprocess.run([CLI, *map(str, args)], capture_output=True, text=True, timeout=timeout)


def one_line(proc: subprocess.CompletedProcess) -> str:
    lines = [line for line in proc.stderr.strip().splitlines() if line.strip()]
    return lines[-1] if lines else f"exit status {proc.returncode}"


def run_case(index: int, fmt: str, work: Path) -> dict:
    """Export, convert and verify ARCHS[index] in one format (an index: builders do not pickle)."""
    arch = ARCHS[index]
    slug = re.sub(r"\W+", "_", f"{arch.name}_{fmt}").strip("_")
    model = work / f"{slug}{SUFFIX[fmt]}"
    calib = work / f"{slug}_calib.npy"
    result = {"arch": arch.name, "format": fmt}
    try:
        export(arch, fmt, model)
    except Exception as exc:   # the framework's own exporter fails: not ours to convert
        return {**result, "outcome": "export failed", "detail": f"{type(exc).__name__}: {str(exc).splitlines()[0][:200]}"}
    np.save(calib, calibration(arch))
    out = work / f"{slug}_out"
    try:
        proc = cli("convert", model, "--target", "host", "-o", out, "--calib", calib)
        if proc.returncode != 0:
            kind = "refused" if proc.returncode == 2 and "Traceback" not in proc.stderr else "failed"
            return {**result, "outcome": kind, "detail": one_line(proc)}
        proc = cli("verify", out)
    except subprocess.TimeoutExpired:
        return {**result, "outcome": "failed", "detail": f"timed out after {TIMEOUT_S} s"}
    if proc.returncode != 0:
        return {**result, "outcome": "failed", "detail": "verify: " + one_line(proc)}
    report = json.loads((out / "report.json").read_text())
    v = report["verification"]
    exact = v["bit_exact"] and v["tflm_bit_exact"] is not False
    return {**result, "outcome": "exact" if exact else "failed",
            "detail": f"{report['compute']['macs']:,} MACs, arena {report['memory']['arena_bytes']:,} B, "
                      f"TFLM {'yes' if v['tflm_bit_exact'] else v.get('tflm_note', 'not compared')}"}


def without_paths(detail: str, work: Path) -> str:
    """The CLI's line without 'error: ' and the temporary folder the model sat in."""
    return detail.removeprefix("error: ").replace(f"{work}/", "")


def short(detail: str) -> str:
    """The reason in a few words for the matrix cell: the op named, or the line after the file name."""
    m = re.search(r"unsupported (?:ONNX )?ops?:?\s*([A-Za-z_0-9]+)", detail)
    if m:
        return m.group(1)
    reason = detail.split(": ", 1)[1] if re.match(r"^\S+\.(pt2?|onnx|keras|h5): ", detail) else detail
    return reason[:70].strip()


def matrix(results: list[dict]) -> list[str]:
    formats = sorted({f for fs in FORMATS.values() for f in fs}, key=list(SUFFIX).index)
    rows = ["| architecture | " + " | ".join(formats) + " |", "|---|" + "---|" * len(formats)]
    by_cell = {(r["arch"], r["format"]): r for r in results}
    for arch in dict.fromkeys(r["arch"] for r in results):
        cells = []
        for fmt in formats:
            r = by_cell.get((arch, fmt))
            cells.append("-" if r is None else r["outcome"] if r["outcome"] == "exact"
                         else f"{r['outcome']}: {short(r['detail'])}")
        rows.append(f"| {arch} | " + " | ".join(cells) + " |")
    return rows


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--out", type=Path, default=None)
    parser.add_argument("--only", default=None, help="comma-separated architecture names (substrings)")
    parser.add_argument("--jobs", type=int, default=os.cpu_count() or 1)
    args = parser.parse_args()
    chosen = [i for i, a in enumerate(ARCHS) if not args.only or any(s in a.name for s in args.only.split(","))]
    cases = [(i, f) for i in chosen for f in FORMATS[ARCHS[i].framework]]
    with tempfile.TemporaryDirectory(prefix="tinydeploy-coverage-") as tmp:
        with concurrent.futures.ProcessPoolExecutor(args.jobs) as pool:
            futures = [pool.submit(run_case, i, f, Path(tmp)) for i, f in cases]
            results = []
            for future in concurrent.futures.as_completed(futures):
                result = future.result()
                results.append({**result, "detail": without_paths(result["detail"], Path(tmp))})
                r = results[-1]
                print(f"{r['arch']} / {r['format']}: {r['outcome']} ({r['detail']})", flush=True)
    order = {(ARCHS[i].name, f): k for k, (i, f) in enumerate(cases)}
    results.sort(key=lambda r: order[(r["arch"], r["format"])])
    commit = subprocess.run(["git", "describe", "--always", "--dirty"], capture_output=True, text=True,
                            cwd=REPO).stdout.strip()
    counts = {k: sum(r["outcome"] == k for r in results) for k in ("exact", "refused", "failed", "export failed")}
    text = "\n".join([
        "# Coverage: real architectures through every front end (issue 23)", "",
        f"Produced by `.venv/bin/python benchmarks/coverage.py --out benchmarks/coverage.md` at {commit}: "
        "untrained weights, small inputs, converted for host with calibration on real photos (images) or "
        "seeded normal samples (audio), verified byte for byte against the reference and TFLM.", "",
        f"{counts['exact']} exact, {counts['refused']} refused in one line, {counts['failed']} failed, "
        f"{counts['export failed']} not exportable by the framework itself, of {len(results)}.", "",
        *matrix(results), "", "## Every cell", "",
        "| architecture | format | outcome | detail |", "|---|---|---|---|",
        *[f"| {r['arch']} | {r['format']} | {r['outcome']} | {r['detail'].replace('|', '/')} |" for r in results], ""])
    if args.out:
        args.out.write_text(text)
    print(text)


if __name__ == "__main__":
    main()
