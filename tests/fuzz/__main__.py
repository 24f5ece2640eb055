"""python -m tests.fuzz --minutes N: the mutation fuzz campaign over every importer (see campaign.py).

Prints the counts per format and outcome (a markdown table) and writes them as JSON with --summary;
failing cases are kept in WORK/failures/ with the command that reproduces each. Exit code 1 if any
case did not convert or refuse in one line."""
from __future__ import annotations

import argparse
import json
import subprocess
import sys
import tempfile
from pathlib import Path

from .campaign import MEMORY_LIMIT, TIME_LIMIT, run_campaign, summary_table


def _markdown(table: str, totals: str, argv: list[str]) -> str:
    commit = subprocess.run(["git", "rev-parse", "--short", "HEAD"], capture_output=True, text=True,
                            cwd=Path(__file__).parent).stdout.strip()
    return (f"# Fuzz campaign\n\n`.venv/bin/python -m tests.fuzz {' '.join(argv)}` at {commit}: mutated seed "
            f"files (the shared models and the examples in every format) and crafted attacks, each converted in a "
            f"worker process or (a share) through the CLI, under {TIME_LIMIT} s and a "
            f"{MEMORY_LIMIT / 1e9:.0f} GB data limit. converted / refused (one line, exit 2) are the two "
            f"acceptable outcomes; any other column counts a failure.\n\n{table}\n\n{totals}.\n")


def main() -> int:
    parser = argparse.ArgumentParser(prog="python -m tests.fuzz", description=__doc__.splitlines()[0])
    parser.add_argument("--minutes", type=float, default=None, help="stop starting new cases after this long")
    parser.add_argument("--cases", type=int, default=None, help="stop after this many mutated cases")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--jobs", type=int, default=2)
    parser.add_argument("--cli-share", type=float, default=0.1, help="share of cases run through the real CLI")
    parser.add_argument("--formats", default=None, help="comma-separated: tflite,onnx,torchscript,pt2,h5,keras")
    parser.add_argument("--weights", default=None, help="share of cases per format, e.g. tflite=70,onnx=25,pt2=2")
    parser.add_argument("--no-attacks", action="store_true", help="leave out the crafted attack files")
    parser.add_argument("--work", type=Path, default=None, help="working folder (default: a new temporary one)")
    parser.add_argument("--summary", type=Path, default=None, help="write the counts as JSON here")
    parser.add_argument("--markdown", type=Path, default=None, help="write the table, command and commit here")
    args = parser.parse_args()
    if args.minutes is None and args.cases is None:
        parser.error("give --minutes or --cases")
    work = args.work or Path(tempfile.mkdtemp(prefix="tinydeploy-fuzz-"))
    summary = run_campaign(work, args.minutes, args.cases, args.seed, args.jobs, args.cli_share,
                           args.formats and args.formats.split(","), with_attacks=not args.no_attacks,
                           progress=lambda m: print(m, file=sys.stderr, flush=True),
                           weights=args.weights and {k: float(v) for k, v in
                                                     (item.split("=") for item in args.weights.split(","))})
    table = summary_table(summary)
    print(table)
    totals = (f"{summary['cases']:,} cases in {summary['seconds']:,} s (seed {summary['seed']}); largest resident "
              f"set of any process {summary['largest_resident_bytes'] / 1e9:.2f} GB; slowest case "
              f"{summary['slowest'][0]:.1f} s ({summary['slowest'][1]})")
    print(f"\n{totals}; failing cases kept in {work / 'failures'}")
    for f in summary["failures"][:20]:
        print(f"  {f['outcome']}: case {f['case']} {f['format']} {f['seed']} {f['mutator']}: "
              f"{f['detail'].splitlines()[0][:200] if f['detail'] else ''}")
    if args.summary:
        args.summary.write_text(json.dumps(summary, indent=2, default=str))
    if args.markdown:
        args.markdown.write_text(_markdown(table, totals, sys.argv[1:]))
    return 1 if summary["failures"] else 0


if __name__ == "__main__":
    sys.exit(main())
