"""report.json (the machine-readable contract) and report.html (the same facts, for people)."""
from __future__ import annotations

import base64
import io
import json
from pathlib import Path


def read(out_dir: Path) -> dict:
    return json.loads((Path(out_dir) / "report.json").read_text())


def write(out_dir: Path, report: dict) -> None:
    out_dir = Path(out_dir)
    (out_dir / "report.json").write_text(json.dumps(report, indent=2, default=_plain))
    (out_dir / "report.html").write_text(render_html(report))


def _plain(value):
    if hasattr(value, "tolist"):
        return value.tolist()
    raise TypeError(f"not JSON serializable: {type(value).__name__}")


def memory_profile_png(report: dict) -> str:
    """Live activation bytes per layer, as a base64 PNG."""
    import matplotlib
    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    layers = report["layers"]
    fig, ax = plt.subplots(figsize=(8, 3), dpi=100)
    ax.bar(range(len(layers)), [row["live_bytes"] for row in layers], color="#4c78a8")
    ax.axhline(report["memory"]["arena_bytes"], color="#e45756", linestyle="--", label="arena")
    ax.set_xlabel("layer")
    ax.set_ylabel("live bytes")
    ax.legend()
    fig.tight_layout()
    buf = io.BytesIO()
    fig.savefig(buf, format="png")
    plt.close(fig)
    return base64.b64encode(buf.getvalue()).decode()


def render_html(report: dict) -> str:
    from targets.c_emitter import template_env
    return template_env().get_template("report.html.j2").render(
        r=report, profile_png=memory_profile_png(report) if report.get("layers") else None)
