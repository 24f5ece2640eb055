"""Mixed precision: sub-8-bit weight quantization, the bit-width search under its budgets, and
the MNIST example converted with --quant mixed (C byte-exact with the reference)."""
import numpy as np
import pytest

from quantize.ptq import quantize_weights


@pytest.mark.parametrize("bits,qmax", [(8, 127), (4, 7), (2, 1)])
def test_weights_are_symmetric_per_channel_in_their_range(bits, qmax):
    rng = np.random.default_rng(0)
    w = rng.normal(size=(6, 3, 3, 5)) * rng.uniform(0.1, 2.0, size=(6, 1, 1, 1))
    q, scales = quantize_weights(w, 0, None, 1.0, bits)
    assert q.dtype == np.int8 and scales.shape == (6,)
    assert q.min() >= -qmax and q.max() <= qmax
    if bits < 8:   # least-squares clipping: never worse than scaling to the peak
        err = ((q * scales[:, None, None, None] - w) ** 2).sum()
        peak = np.abs(w).reshape(6, -1).max(axis=1) / qmax
        naive = np.clip(np.round(w / peak[:, None, None, None]), -qmax, qmax) * peak[:, None, None, None]
        assert err <= ((naive - w) ** 2).sum() + 1e-12


# ---- the search ----

import json  # noqa: E402

from click.testing import CliRunner  # noqa: E402

from benchmarks.shared_models import REPO  # noqa: E402
from quantize.mixed import (bitops, choose_bits, parse_budget, search_bits, weight_bytes,  # noqa: E402
                            weight_layers)
from toolchain.driver import pipeline  # noqa: E402
from toolchain.driver.verify import verify  # noqa: E402
from toolchain.driver.cli import main  # noqa: E402
from toolchain.errors import UserError  # noqa: E402
from toolchain.importers import load_model  # noqa: E402

EXAMPLE = REPO / "examples" / "mnist_torch"


@pytest.fixture(scope="module")
def mnist():
    return load_model(EXAMPLE / "mnist_mbv2.onnx"), np.load(EXAMPLE / "calib.npz")["x"][:16]


def fake_sensitivity(graph, seed=0):
    rng = np.random.default_rng(seed)
    return {layer.weights: {8: 0.0, 4: float(s), 2: float(s * rng.uniform(2, 20))}
            for layer, s in zip(weight_layers(graph), rng.uniform(1e-4, 1e-1, size=99))}


@pytest.mark.parametrize("fraction", [0.9, 0.6, 0.4, 0.3])
def test_search_meets_the_weight_budget(mnist, fraction):
    graph, _ = mnist
    layers = weight_layers(graph)
    bits = search_bits(graph, fake_sensitivity(graph), "weight_fraction", fraction)
    assert set(bits.values()) <= {8, 4, 2}
    assert weight_bytes(layers, bits) <= fraction * weight_bytes(layers, {})


@pytest.mark.parametrize("share", [0.8, 0.5])
def test_search_meets_a_bitops_budget(mnist, share):
    graph, _ = mnist
    limit = share * bitops(graph, {})
    bits = search_bits(graph, fake_sensitivity(graph, 1), "bitops", limit)
    assert bitops(graph, bits) <= limit < bitops(graph, {})


def test_search_lowers_the_least_sensitive_bytes_first(mnist):
    graph, _ = mnist
    layers = weight_layers(graph)
    sensitivity = {layer.weights: {8: 0.0, 4: 1.0, 2: 10.0} for layer in layers}
    big = max(layers, key=lambda layer: layer.count)
    sensitivity[big.weights] = {8: 0.0, 4: 1e-6, 2: 2e-6}
    bits = search_bits(graph, sensitivity, "weight_fraction", 1 - 0.7 * big.count / weight_bytes(layers, {}))
    assert bits[big.weights] == 2 and all(b == 8 for name, b in bits.items() if name != big.weights)


def test_impossible_budget_says_what_the_floor_is(mnist):
    graph, _ = mnist
    with pytest.raises(UserError, match="cannot be met; with every layer at 2 bits"):
        search_bits(graph, fake_sensitivity(graph), "weight_fraction", 0.1)


def test_measured_sensitivity_grows_as_bits_shrink(mnist):
    graph, samples = mnist
    chosen = choose_bits(graph, samples, "weight_fraction", 0.6)
    bits, record = chosen.bits, chosen.report
    assert record["sensitivity_samples"] == 16
    for s in record["sensitivity"].values():
        assert 0 <= s["4"] <= s["2"]
    assert weight_bytes(weight_layers(graph), bits) <= 0.6 * weight_bytes(weight_layers(graph), {})


@pytest.mark.parametrize("args,message", [
    ((None, None), "needs one budget"), ((0.6, "bitops=5"), "needs one budget"), ((1.5, None), "fraction"),
    ((None, "bitops=x"), "expected bitops=N"), ((None, "flash=3"), "expected bitops=N"),
    ((None, "sram=1000"), "activations are int8")])
def test_bad_budgets(args, message):
    with pytest.raises(UserError, match=message):
        parse_budget(*args)


def test_cli_budget_without_mixed_is_refused(tmp_path):
    result = CliRunner().invoke(main, ["convert", str(EXAMPLE / "mnist_mbv2.onnx"), "--calib",
                                       str(EXAMPLE / "calib.npz"), "--weight-budget", "0.6", "-o", str(tmp_path / "o")])
    assert result.exit_code == 2 and "add --quant mixed" in result.output
    assert not (tmp_path / "o").exists()


def test_mixed_mnist_end_to_end_is_byte_exact(tmp_path):
    out = tmp_path / "mixed"
    result = CliRunner().invoke(main, ["convert", str(EXAMPLE / "mnist_mbv2.onnx"), "--calib",
                                       str(EXAMPLE / "calib.npz"), "--quant", "mixed", "--budget", "bitops=45e6",
                                       "--patch", "none", "-o", str(out)])
    assert result.exit_code == 0, result.output
    report = json.loads((out / "report.json").read_text())
    precision = report["precision"]
    assert report["compute"]["bitops"] == precision["bitops"] <= 45e6
    assert {r["weight_bits"] for r in precision["layers"]} > {8}
    assert precision["weight_bytes"] == sum(r["weight_bytes"] for r in precision["layers"])
    assert json.loads((out / "convert.json").read_text())["mixed"]["bits"]
    assert "tdk_unpack_weights(" in (out / "c" / "model.c").read_text()
    verified = verify(out, "host")
    assert verified["verification"]["bit_exact"]


# ---- 4-bit activations ----

from quantize import calibrated_ranges, post_training_quantize  # noqa: E402
from quantize.mixed import layer_sensitivity  # noqa: E402
from quantize.ptq import four_bit_candidates, quantize_graph  # noqa: E402
from toolchain.reference import run_reference  # noqa: E402


def test_four_bit_activations_hold_values_in_range(mnist):
    graph, samples = mnist
    candidates = four_bit_candidates(graph)
    assert candidates and not set(candidates) & set(graph.outputs)
    q = post_training_quantize(graph, samples, bits=dict.fromkeys(candidates, 4))
    values = run_reference(q, [samples[0][None]], keep=True)
    for name in candidates:
        t = q.tensors[name]
        assert t.quant.bits == 4 and -8 <= t.zero_point() <= 7
        assert values[name].min() >= -8 and values[name].max() <= 7
    from quantize import precision_report
    whole = precision_report(q, range(len(q.ops)))
    assert whole["patch_stage"]["bitops"] == whole["bitops"] < whole["patch_stage"]["int8_bitops"]
    with pytest.raises(UserError, match="4 bits only"):
        quantize_graph(graph, calibrated_ranges(graph, samples), activation_bits={graph.outputs[0]: 4})


def test_search_lowers_activations_only_for_bitops(mnist):
    graph, samples = mnist
    sensitivity = layer_sensitivity(graph, samples[:4], calibrated_ranges(graph, samples))
    activations = [n for n in sensitivity if not graph.tensors[n].is_const]
    assert activations == four_bit_candidates(graph)
    by_bytes = search_bits(graph, sensitivity, "weight_fraction", 0.6)
    assert all(by_bytes[n] == 8 for n in activations)
    limit = 0.4 * bitops(graph, {})
    by_bitops = search_bits(graph, sensitivity, "bitops", limit)
    assert bitops(graph, by_bitops) <= limit


def test_mixed_activations_end_to_end_is_byte_exact(tmp_path):
    out = tmp_path / "mixed"
    result = CliRunner().invoke(main, ["convert", str(EXAMPLE / "mnist_mbv2.onnx"), "--calib",
                                       str(EXAMPLE / "calib.npz"), "--quant", "mixed", "--mixed-activations",
                                       "--budget", "bitops=30e6", "--patch", "none", "-o", str(out)])
    assert result.exit_code == 0, result.output
    precision = json.loads((out / "report.json").read_text())["precision"]
    assert precision["bitops"] <= 30e6 and precision["four_bit_activations"]
    assert any(r["activation_bits"] == 4 for r in precision["layers"])
    verification = verify(out, "host")["verification"]
    assert verification["bit_exact"] and verification["tflm_bit_exact"] is None


def test_mixed_activations_refused_for_tflite_bundles(tmp_path):
    result = CliRunner().invoke(main, ["convert", str(EXAMPLE / "mnist_mbv2.onnx"), "--calib", str(EXAMPLE / "calib.npz"),
                                       "--quant", "mixed", "--mixed-activations", "--budget", "bitops=30e6",
                                       "--target", "rpi4", "-o", str(tmp_path / "o")])
    assert result.exit_code == 2 and "TFLite cannot express 4-bit activations" in result.output
    assert not (tmp_path / "o").exists()
