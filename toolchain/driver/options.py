"""What `convert` is asked to do, as frozen option dataclasses, checked in one place
(ConvertOptions.check) before any file is read. The CLI builds them from its flags
(ConvertOptions.from_flags); tests and scripts build them directly."""
from __future__ import annotations

import re
from dataclasses import dataclass, field
from pathlib import Path

from prune import parse_budget as parse_prune_budget
from quantize import DEFAULT_METHOD, METHODS
from quantize import parse_budget as parse_precision_budget
from quantize.quantmcu import DEFAULT_LAMBDA, DEFAULT_SIGMA
from targets.bundle import is_bundle_target
from targets.registry import get_target
from toolchain.errors import UserError
from toolchain.read_policy import DEFAULT_POLICY, ReadPolicy

from .manifest import C_IDENTIFIER


@dataclass(frozen=True)
class TargetOptions:
    name: str = "host"            # a core or board of targets/registry.py
    io: str = "model"             # the C API's boundary type: the model's own, or int8
    prefix: str = "model"         # C symbol prefix
    labels_file: Path | None = None   # one class label per line, for model.h


@dataclass(frozen=True)
class PatchOptions:
    schedule: str = "auto"        # auto (searched), none (layer by layer), NxN@LAYER or NxN@FIRST-LAST
    max_mac_overhead: float = 0.10
    stream_input: bool = False    # the stage reads the input patch by patch through a reader callback
    optimize: str | None = None   # auto's objective: memory | speed | balanced (None: the target's default)
    sram_budget: int | None = None    # bytes of SRAM the model may use (default: a board's SRAM)
    reserve_sram: int | None = None   # bytes of it kept for the application (default: 10% of a board's)


@dataclass(frozen=True)
class PrecisionOptions:
    calib_method: str = DEFAULT_METHOD
    mixed: tuple[str, float] | None = None   # --quant mixed: ("weight_fraction", F) or ("bitops", N)
    mixed_activations: bool = False          # the search may also hold feature maps in 4 bits


@dataclass(frozen=True)
class PruneOptions:
    ratio: float | None = None               # fraction of the MACs to remove
    budget: str | None = None                # or the smallest pruning meeting macs=N, flash=BYTES or sram=BYTES
    importance: str = "l1"
    epochs: int = 60
    labels: Path | None = None

    @property
    def limit(self) -> tuple[str, float] | None:
        return parse_prune_budget(self.budget) if self.budget else None


@dataclass(frozen=True)
class QuantMCUOptions:
    sigma: float = DEFAULT_SIGMA               # outlier bounds: mean +- sigma standard deviations
    vdqs_lambda: float = DEFAULT_LAMBDA        # VDQS: weight of the entropy change against BitOPs saved


@dataclass(frozen=True)
class ConvertOptions:
    target: TargetOptions = field(default_factory=TargetOptions)
    patch: PatchOptions = field(default_factory=PatchOptions)
    precision: PrecisionOptions = field(default_factory=PrecisionOptions)
    prune: PruneOptions | None = None
    quantmcu: QuantMCUOptions | None = None
    calib: Path | None = None                  # calibration samples (.npy / .npz key x)
    input_shape: tuple[int, ...] | None = None  # PyTorch files that record none
    policy: ReadPolicy = DEFAULT_POLICY         # what a model file may be (sizes, code it carries)
    force: bool = False                         # -o may name a folder of other files: moved aside

    def check(self) -> None:
        """Every rule that needs no file: one UserError line for the first one broken."""
        t = self.target
        if not re.fullmatch(C_IDENTIFIER, t.prefix):
            raise UserError(f"--prefix {t.prefix!r} is not a C identifier")
        get_target(t.name)
        if self.precision.calib_method not in METHODS:
            raise UserError(f"--calib-method '{self.precision.calib_method}': expected one of {', '.join(METHODS)}")
        if self.precision.mixed_activations and is_bundle_target(t.name):
            raise UserError(f"--mixed-activations: the {t.name} bundle runs the TFLite model, and TFLite cannot "
                            f"express 4-bit activations; use --quant mixed without it")
        if self.prune is not None:
            if self.prune.ratio is not None and self.prune.budget is not None:
                raise UserError("give --prune or --prune-to, not both")
            if self.prune.budget is not None:
                parse_prune_budget(self.prune.budget)   # a malformed budget is refused here, not after import
        q = self.quantmcu
        if q is not None:
            if is_bundle_target(t.name):
                raise UserError(f"--quantmcu: the {t.name} bundle runs the TFLite model, and TFLite cannot switch "
                                f"grids per patch; convert for a core (e.g. --target host) and verify with "
                                f"--target {t.name}")
            if self.calib is None:
                raise UserError("--quantmcu needs calibration inputs to set the outlier bounds and bit widths: "
                                "--calib FILE (.npy or .npz with key 'x', in the model's input layout)")
            if not 0 <= q.vdqs_lambda <= 1 or q.sigma <= 0:
                raise UserError(f"--quantmcu: expected --outlier-sigma > 0 and 0 <= --vdqs-lambda <= 1 "
                                f"(got {q.sigma}, {q.vdqs_lambda})")

    @classmethod
    def from_flags(cls, target, io, prefix, patch, max_mac_overhead, stream_input, optimize, sram_budget, reserve_sram,
                   calib, calib_method, input_shape,
                   prune_ratio, prune_budget, prune_importance, prune_epochs, labels, quant, weight_budget,
                   quant_budget, mixed_activations, labels_file, quantmcu, outlier_sigma, vdqs_lambda,
                   force=False, policy=DEFAULT_POLICY) -> ConvertOptions:
        """The options `tinydeploy convert`'s flags ask for; what only flags can get wrong (two that
        exclude each other, one that needs another) is refused here, the rest by check()."""
        if prune_ratio is not None and prune_budget is not None:
            raise UserError("give --prune or --prune-to, not both")
        mixed = None
        if quant == "mixed":
            mixed = parse_precision_budget(weight_budget, quant_budget)
        elif weight_budget is not None or quant_budget is not None or mixed_activations:
            raise UserError("--weight-budget, --budget and --mixed-activations choose mixed precision: add --quant mixed")
        if not quantmcu and (outlier_sigma is not None or vdqs_lambda is not None):
            raise UserError("--outlier-sigma and --vdqs-lambda tune QuantMCU: add --quantmcu")
        prune = None
        if prune_ratio is not None or prune_budget is not None:
            prune = PruneOptions(prune_ratio, prune_budget, prune_importance, prune_epochs, labels)
        return cls(TargetOptions(target, io, prefix, labels_file), PatchOptions(patch, max_mac_overhead, stream_input, optimize, sram_budget,
                                                                          reserve_sram),
                   PrecisionOptions(calib_method, mixed, mixed_activations), prune,
                   QuantMCUOptions(DEFAULT_SIGMA if outlier_sigma is None else outlier_sigma,
                                   DEFAULT_LAMBDA if vdqs_lambda is None else vdqs_lambda) if quantmcu else None,
                   calib, input_shape, policy, force)
