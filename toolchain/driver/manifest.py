"""convert.json: what convert decided, written once into the output folder and read back by verify
and bench (which rebuild nothing convert decided: the weight bits, QuantMCU's plan, the boundary
type, the prefix come from here; the int8 graph from tflite/model_int8.tflite)."""
from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path

from toolchain.errors import UserError

MANIFEST_FILE = "convert.json"
MODEL_FILE = "tflite/model_int8.tflite"


@dataclass(frozen=True)
class Manifest:
    source: str                    # the model file's name
    io: str
    prefix: str
    target: str
    patch: str
    max_mac_overhead: float
    stream_input: bool
    calib: str | None
    calib_method: str | None
    quant: str                     # int8 | mixed
    mixed: dict | None             # {"budget": {kind: value}, "activations", "bits": tensor -> bits below 8}
    quantmcu: dict | None          # QuantMCUPlan.to_json()
    pruning: dict | None = None    # {"ratio", "budget", "importance", "epochs"}

    @property
    def bits(self) -> dict[str, int]:
        return (self.mixed or {}).get("bits", {})

    def to_json(self) -> dict:
        data = {k: v for k, v in self.__dict__.items() if k != "pruning"}
        if self.pruning is not None:
            data["pruning"] = self.pruning
        return data

    def write(self, out_dir: Path) -> None:
        (Path(out_dir) / MANIFEST_FILE).write_text(json.dumps(self.to_json(), indent=2))

    @classmethod
    def read(cls, out_dir: Path) -> Manifest:
        path = Path(out_dir) / MANIFEST_FILE
        if not path.exists():
            raise UserError(f"{out_dir}: not a tinydeploy output folder (no {MANIFEST_FILE}); run convert first")
        return cls(**json.loads(path.read_text()))
