"""QuantMCU on a patch stage: the VDPC bounds, the VDQS search, the two-path reference, and the
emitted C byte-exact with it on the host and in QEMU (cortex-m4, rv32imc)."""
import json
from dataclasses import replace

import numpy as np
import pytest
from click.testing import CliRunner

from benchmarks.shared_models import REPO
from quantize.calibrate import load_calibration
from quantize.quantmcu import (CANDIDATE_BITS, LowPath, calibration_feeds, feature_maps, patch_bitops,
                               plan_quantmcu)
from patch_inference.schedule import stage_executed_macs
from toolchain.driver import pipeline
from toolchain.driver.options import ConvertOptions
from toolchain.driver.verify import verify
from toolchain.driver.cli import main
from toolchain.ir import Graph, Op, QuantParams, Tensor
from toolchain.ops import lower, macs, op_def
from toolchain.reference import run_reference

EXAMPLE = REPO / "examples" / "mnist_torch"
MODEL, CALIB = EXAMPLE / "mnist_mbv2.onnx", EXAMPLE / "calib.npz"


@pytest.fixture(scope="module")
def mnist():
    """The MNIST example as int8, its searched patch schedule and calibration feeds."""
    graph = pipeline.import_int8(MODEL, ConvertOptions(calib=CALIB)).graph
    schedule = pipeline.make_schedule(graph)
    samples = load_calibration(CALIB, schedule.graph)
    return schedule.graph, schedule.stage, calibration_feeds(schedule.graph, samples[:24])


def int8_plan(graph, stage, feeds, bounds):
    """A plan that keeps every feature map on its int8 grid."""
    plan, _ = plan_quantmcu(graph, stage, feeds, lam=1.0)
    grids = {m: (graph.tensors[m].scale(), graph.tensors[m].zero_point()) for m in feature_maps(graph, stage)}
    return replace(plan, bounds=bounds, bits=dict.fromkeys(grids, 8), grids=grids)


def test_low_path_on_the_int8_grids_is_the_int8_program(mnist):
    graph, stage, feeds = mnist
    low = LowPath.build(graph, stage, int8_plan(graph, stage, feeds, (-128, 127)))
    assert low.source_requantize() is None
    for f in feeds[:4]:
        outputs, flags = low.run(f)
        assert all(flags)
        assert np.array_equal(outputs[0], run_reference(graph, f)[0])


def test_patches_with_outliers_run_int8(mnist):
    graph, stage, feeds = mnist
    plan, _ = plan_quantmcu(graph, stage, feeds, lam=0.0)
    nowhere = LowPath.build(graph, stage, replace(plan, bounds=(1, 0)))   # every value is an outlier
    for f in feeds[:4]:
        outputs, flags = nowhere.run(f)
        assert not any(flags)
        assert np.array_equal(outputs[0], run_reference(graph, f)[0])


def test_vdqs_keeps_the_best_score_and_lambda_weighs_entropy(mnist):
    graph, stage, feeds = mnist
    plan, calibration = plan_quantmcu(graph, stage, feeds)
    for record in plan.search:
        scores = {int(b): c["score"] for b, c in record["candidates"].items()}
        assert set(scores) == set(CANDIDATE_BITS) and scores[8] == 0
        assert record["bits"] == max(scores, key=lambda b: (scores[b], b))
    entropy_only, _ = plan_quantmcu(graph, stage, feeds, lam=1.0)
    bitops_only, _ = plan_quantmcu(graph, stage, feeds, lam=0.0)
    assert set(entropy_only.bits.values()) == {8}
    assert set(bitops_only.bits.values()) == {min(CANDIDATE_BITS)}
    assert 0 < calibration["low_path_patches"] <= calibration["patches"]
    assert calibration["mean"] <= calibration["int8"]


def test_patch_bitops_count_the_recomputed_macs(mnist):
    graph, stage, _ = mnist
    int8 = sum(patch_bitops(graph, stage))
    assert int8 == 64 * stage_executed_macs(graph, stage)
    first = graph.ops[stage.first]
    per_pixel = macs(graph, first) // np.prod(graph.tensors[first.outputs[0]].shape[1:3])
    first_macs = per_pixel * sum(outs[0].area for outs in stage.out_regions)
    assert sum(patch_bitops(graph, stage, {first.inputs[0]: 4})) == int8 - 32 * first_macs


def test_requantize_onto_fewer_bits_clamps_to_their_range():
    wide = Tensor("x", (1, 4), "int8", quant=QuantParams(np.array([0.01], np.float32), np.array([0])))
    narrow = Tensor("y", (1, 4), "int8", quant=QuantParams(np.array([0.1], np.float32), np.array([-1]), None, 4))
    graph = Graph({"x": wide, "y": narrow}, [Op("quantize", ["x"], ["y"])], ["x"], ["y"])
    p = lower(graph, graph.ops[0])
    out = op_def("quantize").reference(p, np.array([[-128, -5, 40, 127]], np.int8))
    assert p["act"] == (-8, 7) and out.tolist() == [[-8, -2, 3, 7]]


@pytest.fixture(scope="module")
def converted(tmp_path_factory):
    out = tmp_path_factory.mktemp("quantmcu") / "mnist"
    result = CliRunner().invoke(main, ["convert", str(MODEL), "--calib", str(CALIB), "--quantmcu", "-o", str(out)])
    assert result.exit_code == 0, result.output
    return out


def test_convert_records_the_plan_and_the_c_has_both_paths(converted):
    report = json.loads((converted / "report.json").read_text())
    settings = json.loads((converted / "convert.json").read_text())
    q = report["quantmcu"]
    assert settings["quantmcu"]["stage"] == q["stage"] == report["plan"]["patch"]
    assert q["agreement_on_calibration"]["top1_agreement_with_int8"] > 0.9
    assert "top1_agreement_with_float" in q["agreement_on_calibration"]
    source = (converted / "c" / "model.c").read_text()
    assert "tdk_region_within(" in source and "QuantMCU low path" in source


@pytest.mark.parametrize("target", ["host", "cortex-m4", "rv32imc"])
def test_quantmcu_c_is_byte_exact_with_its_reference(converted, target):
    report = verify(converted, target)
    v, bitops = report["verification"], report["quantmcu"]["patch_stage_bitops"]["verified_inputs"]
    assert v["bit_exact"] and v["tflm_bit_exact"] is None
    # random inputs are outliers, the calibration inputs among the test vectors mostly are not
    assert 0 < bitops["low_path_patches"] < bitops["patches"]
    assert bitops["mean"] < bitops["int8"]


def test_quantmcu_with_mixed_weights_is_byte_exact(tmp_path):
    out = tmp_path / "both"
    result = CliRunner().invoke(main, ["convert", str(MODEL), "--calib", str(CALIB), "--quant", "mixed",
                                       "--weight-budget", "0.5", "--quantmcu", "--outlier-sigma", "6", "-o", str(out)])
    assert result.exit_code == 0, result.output
    assert verify(out, "host")["verification"]["bit_exact"]


@pytest.mark.parametrize("args,message", [
    (["--patch", "none"], "works on a patch-based schedule"),
    (["--outlier-sigma", "4"], "add --quantmcu"),
    (["--target", "rpi4"], "bundle runs the TFLite model"),
])
def test_quantmcu_refusals(tmp_path, args, message):
    extra = ["--quantmcu"] if "--outlier-sigma" not in args else []
    result = CliRunner().invoke(main, ["convert", str(MODEL), "--calib", str(CALIB), *extra, *args,
                                       "-o", str(tmp_path / "o")])
    assert result.exit_code == 2 and message in result.output, result.output
    assert not (tmp_path / "o").exists()


def test_quantmcu_on_an_int8_model_needs_calibration(tmp_path):
    model = REPO / "examples" / "mnist" / "mnist_cnn_int8.tflite"
    result = CliRunner().invoke(main, ["convert", str(model), "--quantmcu", "-o", str(tmp_path / "o")])
    assert result.exit_code == 2 and "--quantmcu needs calibration inputs" in result.output
    assert not (tmp_path / "o").exists()


def test_a_pool_ending_the_stage_keeps_its_input_on_the_int8_grid(tmp_path):
    """The int8 demo model's stage 3x3@1 is conv -> max pool: TFLite's pool keeps its input's grid,
    so the conv's output stays int8 on the low path while the stage input is lowered."""
    demo = REPO / "examples" / "mnist"
    out = tmp_path / "demo"
    result = CliRunner().invoke(main, ["convert", str(demo / "mnist_cnn_int8.tflite"), "--patch", "3x3@1",
                                       "--quantmcu", "--vdqs-lambda", "0", "--calib", str(demo / "digits_int8.npy"),
                                       "-o", str(out)])
    assert result.exit_code == 0, result.output
    search = json.loads((out / "report.json").read_text())["quantmcu"]["search"]
    assert search[0]["bits"] == min(CANDIDATE_BITS)
    assert search[1]["grid_of"] == "the stage output (int8)"
    report = verify(out, "host")
    assert report["verification"]["bit_exact"]
    assert report["quantmcu"]["patch_stage_bitops"]["verified_inputs"]["low_path_patches"] > 0
