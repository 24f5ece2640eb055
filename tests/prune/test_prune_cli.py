"""`tinydeploy convert --prune / --prune-to` end to end: the pruned float model goes through PTQ and
patch planning to a C project that verify finds byte-exact, report.json says what was pruned, and
bad pruning requests end in one line and exit code 2 with no output folder."""
import json
import sys

import pytest

from benchmarks.shared_models import INT8_MODELS, REPO
from toolchain.driver import pipeline
from toolchain.driver.verify import verify

sys.path.insert(0, str(REPO / "tests" / "toolchain"))
from test_cli_errors import assert_one_line_failure, run_cli  # noqa: E402

EXAMPLE = REPO / "examples" / "mnist_torch"
MODEL, CALIB = EXAMPLE / "mnist_mbv2.onnx", EXAMPLE / "calib.npz"


def test_pruned_model_converts_and_verifies_byte_exact(tmp_path):
    out = tmp_path / "pruned"
    proc = run_cli("convert", MODEL, "--calib", CALIB, "--prune", "0.5", "--prune-importance", "activation",
                   "--prune-epochs", "3", "-o", out)
    assert proc.returncode == 0, proc.stderr
    assert "pruned: MACs 1,060,792 ->" in proc.stdout
    report = json.loads((out / "report.json").read_text())
    p = report["pruning"]
    assert p["macs"][1] <= 0.5 * p["macs"][0] + 0.05 * p["macs"][0]
    assert p["params"][1] < p["params"][0] and p["int8_flash_bytes"][1] < p["int8_flash_bytes"][0]
    assert report["compute"]["macs"] < p["macs"][0]
    assert any(layer["params"][1] < layer["params"][0] for layer in p["layers"])
    assert 0.0 <= p["agreement_with_unpruned"]["top1_agreement"] <= 1.0
    assert report["plan"]["stage"]["patches"], "pruning composes with patch planning"
    v = verify(out, "host")["verification"]
    assert v["bit_exact"] and v["tflm_bit_exact"], v


def test_prune_to_a_mac_budget_meets_it(tmp_path):
    out = tmp_path / "budget"
    proc = run_cli("convert", MODEL, "--calib", CALIB, "--prune-to", "macs=600000", "--prune-epochs", "0", "-o", out)
    assert proc.returncode == 0, proc.stderr
    assert json.loads((out / "report.json").read_text())["pruning"]["macs"][1] <= 600_000


@pytest.mark.parametrize("args, fragment", [
    (["--prune", "0.5", "--prune-to", "macs=1e5"], "not both"),
    (["--prune-to", "bytes=12"], "expected macs=N, flash=BYTES or sram=BYTES"),
])
def test_bad_pruning_requests_fail_in_one_line(tmp_path, args, fragment):
    out = tmp_path / "bad"
    assert_one_line_failure(run_cli("convert", MODEL, "--calib", CALIB, *args, "-o", out), fragment)
    assert not out.exists()


def test_pruning_an_int8_model_is_refused(tmp_path):
    out = tmp_path / "int8"
    proc = run_cli("convert", INT8_MODELS["hello_world_int8"], "--prune", "0.5", "-o", out)
    assert_one_line_failure(proc, "already quantized; pruning needs the float model")
    assert not out.exists()
