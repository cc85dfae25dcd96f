"""The README's demo, measured: ``whaled listen --device synthetic`` against the upcalls it
placed, at the model's own thresholds, over several seeds. Prints JSON.

    python benchmarks/synthetic_demo.py [--model models/upcall.pt] [--seconds 1800]
                                        [--seeds 1 2 3]

Each seed is one run of the simulated hydrophone (``--seed``; 1 is the README's default).
No training run draws from the simulator's seeds (training's randomness comes from its own
(seed, epoch) streams), so every seed here is audio the model never heard. Recall counts the
upcalls at or above 5 dB SNR (:data:`detector.evaluate.demo.DEMO_MIN_SNR_DB`) found one-to-one; a
false
alarm is a detection on no placed upcall.
"""

from __future__ import annotations

import argparse
import json
import subprocess
import sys
import tempfile
from pathlib import Path

from machine import SHIPPED_MODEL, machine

from detector.evaluate.demo import score_demo


def run_demo(model: Path, seconds: float, seed: int, out: Path) -> dict[str, object]:
    run = subprocess.run(
        [sys.executable, "-m", "detector.cli", "listen", "--device", "synthetic", "--speed",
         "0", "--duration", str(seconds), "--seed", str(seed), "--model", str(model),
         "--out", str(out), "--metrics-port", "0", "--origin", "2026-01-01T00:00:00Z"],
        capture_output=True, text=True, timeout=3600)
    if run.returncode != 0:
        raise SystemExit(f"listen failed: {run.stderr.strip().splitlines()[-1:]}")
    return {"seed": seed, **score_demo(out).as_dict()}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--model", type=Path, default=SHIPPED_MODEL)
    parser.add_argument("--seconds", type=float, default=1800.0)
    parser.add_argument("--seeds", type=int, nargs="+", default=[1, 2, 3])
    args = parser.parse_args()
    runs = []
    with tempfile.TemporaryDirectory() as tmp:
        for seed in args.seeds:
            runs.append(run_demo(args.model, args.seconds, seed, Path(tmp) / str(seed)))
    calls = sum(int(str(r["calls"])) for r in runs)
    found = sum(int(str(r["found"])) for r in runs)
    print(json.dumps({"model": str(args.model), "seconds_per_seed": args.seconds,
                      "runs": runs, "calls": calls, "found": found,
                      "recall": found / calls if calls else None,
                      "false_alarms": sum(int(str(r["false_alarms"])) for r in runs),
                      "machine": machine()}, indent=1))


if __name__ == "__main__":
    main()
