"""A few hundred cases of the fuzz campaign (the long one: python -m tests.fuzz --minutes N), and
the crafted attacks: every case converts or is refused in one line, nothing is left behind."""
from tests.fuzz.campaign import run_campaign, summary_table


def test_fuzz_campaign(tmp_path):
    summary = run_campaign(tmp_path, cases=250, seed=17, jobs=2, cli_share=0.1, keras=False, progress=None)
    details = "\n".join(f"{f['outcome']} {f['format']} {f['seed']} {f['mutator']}: {f['detail'][:300]}"
                        for f in summary["failures"])
    assert not summary["failures"], summary_table(summary) + "\n" + details
    assert summary["cases"] >= 250
    assert {"tflite", "onnx", "torchscript", "pt2", "h5"} <= set(summary["counts"])
    assert summary["largest_resident_bytes"] < 3 * 10**9
