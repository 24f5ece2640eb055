"""`tinydeploy bench`: both kernel flavours verified, figures consistent, per-op counts adding
up to the whole inference."""
import json

from click.testing import CliRunner

from benchmarks.shared_models import INT8_MODELS
from toolchain.cli import main


def test_bench_reports_both_flavours_and_per_op_counts(tmp_path):
    out = tmp_path / "bench"
    result = CliRunner().invoke(main, ["bench", str(INT8_MODELS["resnet8_int8"]), "--target", "cortex-m4",
                                       "-o", str(out)])
    assert result.exit_code == 0, result.output
    bench = json.loads((out / "bench.json").read_text())
    optimized, portable = bench["builds"]["optimized"], bench["builds"]["portable"]
    assert optimized["bit_exact"] and portable["bit_exact"]
    assert optimized["instructions_per_inference"] < portable["instructions_per_inference"]
    for flavour, build in bench["builds"].items():
        per_op = sum(row[flavour] for row in bench["ops"])
        assert per_op + build["glue_instructions"] == build["instructions_per_inference"]
        assert 0 <= build["glue_instructions"] < 0.01 * build["instructions_per_inference"]
        assert build["instructions_per_mac"] == round(build["instructions_per_inference"] / bench["macs"], 3)
        assert build["flash_bytes"] > 0 and build["peak_sram_bytes"] > 0
    assert "per op" in result.output and "optimized" in result.output


def test_bench_refuses_a_native_target(tmp_path):
    result = CliRunner().invoke(main, ["bench", str(INT8_MODELS["resnet8_int8"]), "--target", "host",
                                       "-o", str(tmp_path / "b")])
    assert result.exit_code == 2 and "emulated target" in result.output
