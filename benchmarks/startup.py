"""What ``whaled detect`` costs beyond importing torch and scanning, as JSON.

    python benchmarks/startup.py [--rounds 5] [--recording ../shared/data/dclde2013/X.wav]

In each round, one after another in this process tree: ``python -c "import torch"``,
``whaled detect RECORDING`` (which redraws the presence figure at the end, as by default) and
``whaled detect RECORDING --no-figure``, each a fresh process into a fresh output folder. For
each detect, its own log says how long it scanned (plan, decode, resample, score, write, from
after the model is loaded) and how long the CSV, presence tables and figure took; the
start-up overhead is

    detect's wall - import torch's wall (same round) - detect's scan

that is: the interpreter, the command line, detect's imports beyond torch, the model's load
and check, the summary tables (and figure). Target: 0.5 s. The same in CPU seconds (the
children's user + system; the scan's from detect's log) is printed beside it: on a loaded
machine a process waits for a core and its wall says little. Every figure is the median of
the rounds (the machine is shared: its load moves within a minute), beside the machine and
its load.
"""

from __future__ import annotations

import argparse
import json
import os
import re
import sys
import tempfile
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
from child import Child, median, run_child
from machine import REPO, machine

DATA = (REPO.parent / "shared" / "data").resolve()
RECORDING = DATA / "dclde2013" / "NOPP6_EST_20090329_121500.wav"
TARGET_OVERHEAD_SECONDS = 0.5
TIMES_LINE = re.compile(r"scanned in ([0-9.]+) s \(([0-9.]+) CPU s\); .* written in ([0-9.]+) s")


def whaled_detect(recording: Path, out: Path, threads: int, *flags: str) -> Child:
    env = dict(os.environ, PYTHONPATH=str(REPO))
    return run_child([sys.executable, "-m", "detector.cli", "detect", str(recording), "--out",
                      str(out), "--no-progress", "--threads", str(threads), *flags],
                     cwd=REPO, env=env)


def detect_times(run: Child) -> tuple[float, float, float]:
    """(scan seconds, scan CPU seconds, tables and figure seconds) from detect's own log."""
    found = TIMES_LINE.search(run.stderr)
    if not found:
        raise RuntimeError(f"no timing line in detect's log:\n{run.stderr[-2000:]}")
    return float(found.group(1)), float(found.group(2)), float(found.group(3))


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--rounds", type=int, default=5)
    parser.add_argument("--recording", type=Path, default=RECORDING)
    parser.add_argument("--threads", type=int, default=os.cpu_count() or 1)
    args = parser.parse_args()
    if not args.recording.is_file():
        print(f"skipped: {args.recording} is not there")
        return
    load_before = os.getloadavg()[0]
    rows: dict[str, list[dict[str, float]]] = {"import_torch": [], "detect": [],
                                               "detect_no_figure": []}
    with tempfile.TemporaryDirectory() as scratch_name:
        scratch = Path(scratch_name)
        for round_number in range(args.rounds):
            torch_run = run_child([sys.executable, "-c", "import torch"], cwd=REPO)
            rows["import_torch"].append({"wall_seconds": torch_run.wall_seconds,
                                         "cpu_seconds": torch_run.cpu_seconds})
            for name, flags in (("detect", ()), ("detect_no_figure", ("--no-figure",))):
                run = whaled_detect(args.recording, scratch / f"{name}{round_number}",
                                    args.threads, *flags)
                scan, scan_cpu, tables = detect_times(run)
                rows[name].append({
                    "wall_seconds": run.wall_seconds, "cpu_seconds": run.cpu_seconds,
                    "scan_seconds": scan, "scan_cpu_seconds": scan_cpu,
                    "tables_and_figure_seconds": tables,
                    "overhead_seconds": run.wall_seconds - torch_run.wall_seconds - scan,
                    "overhead_cpu_seconds": (run.cpu_seconds - torch_run.cpu_seconds
                                             - scan_cpu)})
    report: dict[str, object] = {
        "recording": args.recording.name, "rounds": args.rounds, "threads": args.threads,
        "load_average_1min_before": round(load_before, 2)}
    for name, values in rows.items():
        report[name] = {key: round(median([v[key] for v in values]), 3) for key in values[0]}
        report[name]["all_rounds_wall_seconds"] = [round(v["wall_seconds"], 2)  # type: ignore[index]
                                                    for v in values]
    report["target_overhead_seconds"] = TARGET_OVERHEAD_SECONDS
    report["machine"] = machine()  # imports torch: after the children
    print(json.dumps(report, indent=2))


if __name__ == "__main__":
    main()
