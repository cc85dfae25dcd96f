"""Digests of everything whaled writes on the shared recordings, to prove a change kept behaviour.

    python benchmarks/detections.py [--save BASELINE.json] [--compare BASELINE.json]

Runs, each in a fresh process with the shipped model on the CPU:

- ``whaled detect ../shared/data --save-scores`` (every recording, every output file);
- ``whaled listen --device file:...`` at full speed on each annotated recording, and the
  built-in synthetic hydrophone for 600 s of audio (detections.jsonl and Raven tables);
- ``whaled evaluate`` on both annotated days (``--json`` and ``--review-dir`` files);
- ``whaled events`` at another threshold from the saved scores.

Prints JSON: the machine and, per output file, a SHA-256 of its content with the parts that
change from run to run taken out (wall-clock stamps, run ids, process ids, the output folder,
PNG bytes). ``--compare`` names each file whose digest differs from a saved baseline and exits 1
when any does: "byte for byte" for a refactor means this prints ``"differs": []``.
Skips (exit 0, one line) when ``../shared/data`` is absent.
"""

from __future__ import annotations

import argparse
import hashlib
import json
import os
import re
import subprocess
import sys
import tempfile
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
from machine import REPO, machine

DATA = (REPO.parent / "shared" / "data").resolve()  # one name from a worktree or a checkout
ANNOTATED_DAYS = ("dclde2013", "dclde2013-20090328")
SYNTHETIC_SECONDS = 600.0
EVENTS_ON_THRESHOLD = 0.95
# Stamps in names and contents of the synthetic run, which starts at the wall clock.
WALL_STAMP = r"\d{4}-?\d\d-?\d\d[T_ ]\d\d:?\d\d:?\d\d(\.?\d+)?Z?"
# Fields whose values are wall-clock, per-run or per-process: removed before hashing.
VOLATILE_KEYS = {
    "run", "run_id", "pid", "started_utc", "stopped_utc", "wall_utc", "written_utc", "host",
    "wall_seconds", "elapsed_seconds", "wall_s", "mtime_ns", "time_utc", "created_utc",
    "detected_utc", "emitted_utc", "boot_id", "uptime_seconds", "real_time_factor",
    "processed_utc", "finished_utc", "logged_utc", "at_utc",
}


def whaled(*args: str) -> subprocess.CompletedProcess[str]:
    command = [sys.executable, "-m", "detector.cli", *args]
    env = dict(os.environ, PYTHONPATH=str(REPO))
    return subprocess.run(command, cwd=REPO, env=env, capture_output=True, text=True, timeout=1800)


def scrub(value: object) -> object:
    if isinstance(value, dict):
        volatile = VOLATILE_KEYS | ({"utc"} if value.get("type") == "run" else set())
        return {k: scrub(v) for k, v in sorted(value.items()) if k not in volatile}
    if isinstance(value, list):
        return [scrub(v) for v in value]
    return value


def digest(path: Path, out: Path, wall_clock: bool) -> str:
    data = path.read_bytes()
    if path.suffix == ".png":
        return f"png:{len(data) > 0}"
    if path.suffix == ".wav" or path.suffix == ".npz":
        return hashlib.sha256(data).hexdigest()[:16]
    text = data.decode("utf-8", errors="replace").replace(str(out), "OUT")
    if wall_clock:  # the synthetic hydrophone starts at the wall clock: keep only offsets
        text = re.sub(WALL_STAMP, "STAMP", text)
    if path.suffix == ".json" and text.lstrip().startswith("{") and "\n" in text.strip():
        text = json.dumps(scrub(json.loads(text)), sort_keys=True)
    elif path.suffix in (".jsonl", ".json"):
        lines = []
        for line in text.splitlines():
            try:
                lines.append(json.dumps(scrub(json.loads(line)), sort_keys=True))
            except json.JSONDecodeError:
                lines.append(line)
        text = "\n".join(lines)
    text = re.sub(r"\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d(\.\d+)?Z? \(wall\)", "WALL", text)
    return hashlib.sha256(text.encode()).hexdigest()[:16]


def run_all(work: Path) -> dict[str, object]:
    steps: dict[str, list[str]] = {
        "detect": ["detect", str(DATA), "--out", str(work / "detect"), "--no-progress",
                   "--save-scores", "--torch-device", "cpu"],
        "events": ["events", str(work / "detect"), "--on-threshold", str(EVENTS_ON_THRESHOLD),
                   "--out", str(work / "events")],
        "evaluate": ["evaluate", "models/upcall.pt", *(str(DATA / d) for d in ANNOTATED_DAYS),
                     "--json", "--no-progress", "--review-dir", str(work / "evaluate")],
        "listen-synthetic": ["listen", "--device", "synthetic", "--speed", "0", "--duration",
                             str(SYNTHETIC_SECONDS), "--metrics-port", "0",
                             "--out", str(work / "listen-synthetic"), "--torch-device", "cpu"],
    }
    for day in ANNOTATED_DAYS:
        for wav in sorted((DATA / day).glob("*.wav")):
            steps[f"listen-{wav.stem}"] = [
                "listen", "--device", f"file:{wav}", "--speed", "0", "--metrics-port", "0",
                "--out", str(work / f"listen-{wav.stem}"), "--torch-device", "cpu"]
    digests: dict[str, str] = {}
    failures: dict[str, str] = {}
    for name, args in steps.items():
        done = whaled(*args)
        if done.returncode != 0:
            failures[name] = (done.stderr.strip().splitlines() or ["(no stderr)"])[-1]
        if name == "evaluate":
            (work / "evaluate").mkdir(exist_ok=True)
            (work / "evaluate" / "stdout.json").write_text(done.stdout)
    for path in sorted(p for p in work.rglob("*") if p.is_file() and not p.name.startswith(".")):
        if path.suffix == ".log":
            continue
        name = str(path.relative_to(work))
        wall_clock = name.startswith("listen-synthetic/")
        if wall_clock:
            name = re.sub(WALL_STAMP, "STAMP", name)
            name = f"{name}#{sum(1 for k in digests if k.startswith(name))}"
        digests[name] = digest(path, work, wall_clock)
    return {"files": digests, "failures": failures}


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--save", type=Path, help="write the digests here as a baseline")
    parser.add_argument("--compare", type=Path, help="baseline to compare against")
    args = parser.parse_args()
    if not DATA.is_dir():
        print(f"skipped: {DATA} is absent (the shared recordings sit beside the repository)")
        return 0
    with tempfile.TemporaryDirectory(prefix="whaled-digests-") as tmp:
        result = run_all(Path(tmp))
    report: dict[str, object] = {"machine": machine(), **result}
    status = 0
    if args.compare:
        baseline = json.loads(args.compare.read_text())["files"]
        files = result["files"]
        assert isinstance(files, dict)
        differs = sorted(k for k in set(baseline) | set(files) if baseline.get(k) != files.get(k))
        report["differs"] = differs
        status = 1 if differs or result["failures"] else 0
    if args.save:
        args.save.write_text(json.dumps(report, indent=1, sort_keys=True) + "\n")
    print(json.dumps(report, indent=1, sort_keys=True))
    return status


if __name__ == "__main__":
    raise SystemExit(main())
