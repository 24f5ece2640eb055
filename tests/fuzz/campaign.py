"""The mutation fuzz campaign: seed files mutated case by case, each converted in a worker process
(or, for a share of cases, through the real CLI in its own process), each under a 60 s time limit
and a 3 GB data limit. A case passes when it converts, or is refused with one line (exit 2),
and leaves no output or temporary folder behind after a refusal."""
from __future__ import annotations

import json
import os
import random
import resource
import select
import shutil
import signal
import subprocess
import sys
import threading
import time
from collections import Counter, defaultdict
from dataclasses import dataclass, field
from pathlib import Path

from .mutators import mutate
from .seeds import REPO, attacks, seed_corpus

TIME_LIMIT = 60
MEMORY_LIMIT = 3 * 10**9
GOOD = ("converted", "refused")
# cheap formats weigh more: a TorchScript, .pt2 or Keras case starts PyTorch or TensorFlow in a child
FORMAT_WEIGHTS = {"tflite": 62, "onnx": 26, "torchscript": 3, "pt2": 3, "h5": 3, "keras": 3}
HOSTILE_NAME = "m<script>alert(\"x\")<\\script>'*\n"   # no '/': it would be a folder
CLI = str(Path(sys.executable).with_name("tinydeploy"))


@dataclass
class Case:
    index: int
    fmt: str
    seed: str
    mutator: str
    model: Path
    out: Path
    patch: str
    calib: Path | None
    via_cli: bool
    args: list[str] = field(default_factory=list)
    marker: Path | None = None

    def command(self) -> list[str]:
        cmd = [CLI, "convert", str(self.model), "-o", str(self.out), "--patch", self.patch]
        return cmd + (["--calib", str(self.calib)] if self.calib else []) + self.args


@dataclass
class Results:
    counts: dict = field(default_factory=lambda: defaultdict(Counter))
    failures: list = field(default_factory=list)
    slowest: tuple = (0.0, "")
    worker_peak_rss: int = 0
    lock: threading.Lock = field(default_factory=threading.Lock)

    def add(self, case: Case, result: dict, failures_dir: Path) -> None:
        with self.lock:
            self.counts[case.fmt][result["outcome"]] += 1
            if result["seconds"] > self.slowest[0]:
                self.slowest = (result["seconds"], f"case {case.index} ({case.seed}, {case.mutator})")
            self.worker_peak_rss = max(self.worker_peak_rss, result.get("peak_rss", 0))
            if result["outcome"] not in GOOD:
                keep = failures_dir / f"{case.index:06d}"
                keep.mkdir(parents=True, exist_ok=True)
                if case.model.is_file():
                    shutil.copy(case.model, keep / f"model{case.model.suffix}")
                record = {"case": case.index, "format": case.fmt, "seed": case.seed, "mutator": case.mutator,
                          "via_cli": case.via_cli, "command": case.command(), **result}
                (keep / "case.json").write_text(json.dumps(record, indent=2, default=str))
                self.failures.append(record)


def _limit_memory():
    resource.setrlimit(resource.RLIMIT_DATA, (MEMORY_LIMIT, MEMORY_LIMIT))
    resource.setrlimit(resource.RLIMIT_CORE, (0, 0))


def _kill(proc: subprocess.Popen) -> None:
    try:
        os.killpg(proc.pid, signal.SIGKILL)
    except ProcessLookupError:
        pass
    proc.wait()


def _leftovers(case: Case, tmpdir: Path, outcome: str) -> str | None:
    """What a case left behind that it should not have: output or staging folders, reader temp dirs."""
    extra = [p.name for p in case.out.parent.iterdir() if p != case.model and p != case.out]
    if outcome != "converted" and os.path.lexists(case.out):
        extra.append(case.out.name)
    extra += [f"$TMPDIR/{p.name}" for p in tmpdir.iterdir()]
    return ", ".join(sorted(extra)) or None


class Slot:
    """One of the campaign's parallel lanes: a worker process for in-process cases, and its own
    TMPDIR (empty between cases, or a case left something behind)."""

    def __init__(self, work: Path, number: int):
        self.tmpdir = work / f"tmp{number}"
        self.tmpdir.mkdir(parents=True, exist_ok=True)
        self.env = {**os.environ, "TMPDIR": str(self.tmpdir), "TF_CPP_MIN_LOG_LEVEL": "3"}
        self.env.pop("TINYDEPLOY_DEBUG", None)
        self.worker = None

    def _start_worker(self):
        self.worker = subprocess.Popen([sys.executable, "-m", "tests.fuzz.worker"], cwd=REPO, env=self.env,
                                       stdin=subprocess.PIPE, stdout=subprocess.PIPE, stderr=subprocess.DEVNULL,
                                       start_new_session=True, text=True)

    def stop(self):
        if self.worker is not None:
            self.worker.stdin.close()
            try:
                self.worker.wait(timeout=30)
            except subprocess.TimeoutExpired:
                _kill(self.worker)

    def in_process(self, case: Case) -> dict:
        if self.worker is None or self.worker.poll() is not None:
            self._start_worker()
        request = {"model": str(case.model), "out": str(case.out), "calib": case.calib and str(case.calib),
                   "patch": case.patch, "input_shape": None}
        start = time.time()
        self.worker.stdin.write(json.dumps(request) + "\n")
        self.worker.stdin.flush()
        ready, _, _ = select.select([self.worker.stdout], [], [], TIME_LIMIT)
        line = self.worker.stdout.readline() if ready else ""
        if not line:
            hung = not ready
            _kill(self.worker)
            code = self.worker.returncode
            self.worker = None
            if hung:
                return {"outcome": "hang", "detail": f"no answer in {TIME_LIMIT} s", "seconds": time.time() - start}
            return {"outcome": "crash", "detail": f"worker died ({code})", "seconds": time.time() - start}
        return json.loads(line)

    def through_cli(self, case: Case) -> dict:
        start = time.time()
        proc = subprocess.Popen(case.command(), cwd=case.out.parent, env=self.env, stdin=subprocess.DEVNULL,
                                stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, errors="replace",
                                preexec_fn=_limit_memory, start_new_session=True)
        try:
            _, err = proc.communicate(timeout=TIME_LIMIT)
        except subprocess.TimeoutExpired:
            _kill(proc)
            return {"outcome": "hang", "detail": f"no exit in {TIME_LIMIT} s", "seconds": time.time() - start}
        lines = err.strip().splitlines()
        seconds = round(time.time() - start, 3)
        if "Traceback" in err:
            outcome = "traceback"
        elif "MemoryError" in err:
            outcome = "memory"
        elif proc.returncode == 0:
            outcome = "converted"
        elif proc.returncode == 2:
            outcome = "refused" if len(lines) == 1 and lines[0].startswith("error: ") else "multi_line"
        elif proc.returncode < 0:
            outcome = "crash"
        else:
            outcome = "internal_error"
        return {"outcome": outcome, "detail": f"exit {proc.returncode}: {err[-2000:]}", "seconds": seconds}

    def run(self, case: Case) -> dict:
        result = self.through_cli(case) if case.via_cli else self.in_process(case)
        if result["outcome"] in GOOD:
            left = _leftovers(case, self.tmpdir, result["outcome"])
            if left:
                result = {**result, "outcome": "leftover", "detail": left}
        if case.marker is not None and case.marker.exists():
            result = {**result, "outcome": "code_ran", "detail": f"{case.marker} was written"}
        for p in self.tmpdir.iterdir():
            shutil.rmtree(p, ignore_errors=True) if p.is_dir() else p.unlink()
        return result


class Campaign:
    def __init__(self, work: Path, seed: int, cli_share: float, formats: list[str] | None, keras: bool,
                 weights: dict[str, float] | None = None):
        self.work, self.seed, self.cli_share = work, seed, cli_share
        self.weights = {**FORMAT_WEIGHTS, **(weights or {})}
        self.seeds = defaultdict(list)
        for s in seed_corpus(work, keras=keras):
            self.seeds[s.fmt].append(s)
        self.formats = [f for f in self.weights if f in self.seeds and (not formats or f in formats)]
        self.data = {}
        self.keras = keras

    def case(self, index: int) -> Case:
        rng = random.Random(f"{self.seed}:{index}")
        fmt = rng.choices(self.formats, [self.weights[f] for f in self.formats])[0]
        seed = rng.choice(self.seeds[fmt])
        if seed.path not in self.data:
            self.data[seed.path] = seed.path.read_bytes()
        mutator, data = mutate(fmt, self.data[seed.path], rng)
        case_dir = self.work / "cases" / f"{index:06d}"
        case_dir.mkdir(parents=True, exist_ok=True)
        name = HOSTILE_NAME if rng.random() < 0.05 else "model"
        model = case_dir / f"{name}{seed.suffix}"
        model.write_bytes(data)
        return Case(index, fmt, seed.name, mutator, model, case_dir / "out", seed.patch, seed.calib,
                    rng.random() < self.cli_share)

    def attack_cases(self) -> list[Case]:
        found = []
        for k, a in enumerate(attacks(self.work / "attacks", keras=self.keras)):
            case_dir = self.work / "cases" / f"attack{k}"
            case_dir.mkdir(parents=True, exist_ok=True)
            found.append(Case(-1 - k, a.fmt, "attack", a.name, a.path, case_dir / "out", "none", None, True,
                              a.args, a.marker))
        return found


def run_campaign(work: Path, minutes: float | None = None, cases: int | None = None, seed: int = 0,
                 jobs: int = 2, cli_share: float = 0.1, formats: list[str] | None = None, keras: bool = True,
                 with_attacks: bool = True, progress=print, weights: dict[str, float] | None = None) -> dict:
    work.mkdir(parents=True, exist_ok=True)
    campaign = Campaign(work, seed, cli_share, formats, keras, weights)
    results, failures_dir = Results(), work / "failures"
    deadline = time.time() + minutes * 60 if minutes else None
    queue = campaign.attack_cases() if with_attacks else []
    counter = {"next": 0, "done": 0}
    lock = threading.Lock()
    start = time.time()

    def next_case() -> Case | None:
        with lock:
            if queue:
                return queue.pop(0)
            if (cases is not None and counter["next"] >= cases) or (deadline and time.time() > deadline):
                return None
            counter["next"] += 1
            index = counter["next"] - 1
        return campaign.case(index)

    def lane(number: int):
        slot = Slot(work, number)
        try:
            while (case := next_case()) is not None:
                result = slot.run(case)
                results.add(case, result, failures_dir)
                if result["outcome"] in GOOD:
                    shutil.rmtree(case.out.parent, ignore_errors=True)
                with lock:
                    counter["done"] += 1
                    done = counter["done"]
                if progress and done % 100 == 0:
                    progress(f"{done} cases, {len(results.failures)} failing, {time.time() - start:.0f} s")
        finally:
            slot.stop()

    threads = [threading.Thread(target=lane, args=(n,)) for n in range(jobs)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    largest = resource.getrusage(resource.RUSAGE_CHILDREN).ru_maxrss * 1024
    return {"seed": seed, "cases": sum(sum(c.values()) for c in results.counts.values()),
            "seconds": round(time.time() - start, 1),
            "counts": {fmt: dict(c) for fmt, c in sorted(results.counts.items())},
            "failures": results.failures, "slowest": results.slowest,
            "largest_resident_bytes": max(largest, results.worker_peak_rss)}


def summary_table(summary: dict) -> str:
    outcomes = sorted({o for c in summary["counts"].values() for o in c}, key=lambda o: (o not in GOOD, o))
    rows = ["| format | " + " | ".join(outcomes) + " | total |", "|---" * (len(outcomes) + 2) + "|"]
    for fmt, c in summary["counts"].items():
        rows.append(f"| {fmt} | " + " | ".join(f"{c.get(o, 0):,}" for o in outcomes) + f" | {sum(c.values()):,} |")
    totals = Counter()
    for c in summary["counts"].values():
        totals.update(c)
    rows.append("| all | " + " | ".join(f"{totals.get(o, 0):,}" for o in outcomes) + f" | {sum(totals.values()):,} |")
    return "\n".join(rows)
