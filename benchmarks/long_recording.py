"""Peak memory of ``whaled detect`` on one long recording (default 24 hours), as JSON.

The recording is written in one-minute chunks (PCM 16, 2 kHz, noise with an upcall every
97 s), then scanned by ``whaled detect`` in a child process whose own peak RSS is read from
the kernel (``RUSAGE_CHILDREN``), so the benchmark's bookkeeping is not counted.
"""

from __future__ import annotations

import argparse
import json
import resource
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import numpy as np
import soundfile

sys.path.insert(0, str(Path(__file__).resolve().parent))
from machine import SHIPPED_MODEL, machine

RATE_HZ = 2000
CHUNK_SECONDS = 60
CALL_EVERY_SECONDS = 97
NOISE_RMS = 0.01
CALL_GAIN = 0.1
MEMORY_TARGET_BYTES = 1.5e9


def write_recording(path: Path, hours: float, seed: int = 1) -> int:
    """Write the recording; return the number of upcalls placed in it."""
    from detector.sources.synthetic import upcall

    rng = np.random.default_rng(seed)
    seconds, placed = hours * 3600, 0
    with soundfile.SoundFile(str(path), "w", RATE_HZ, 1, "PCM_16") as out:
        for start in np.arange(0, seconds, CHUNK_SECONDS):
            chunk = rng.standard_normal(CHUNK_SECONDS * RATE_HZ).astype(np.float32) * NOISE_RMS
            for call in np.arange(start + 5, start + CHUNK_SECONDS - 3):
                if int(call) % CALL_EVERY_SECONDS == 0:
                    wave = upcall(RATE_HZ, rng, duration_seconds=1.0) * CALL_GAIN
                    at = int((call - start) * RATE_HZ)
                    chunk[at:at + len(wave)] += wave
                    placed += 1
            out.write(chunk)
    return placed


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--hours", type=float, default=24.0)
    parser.add_argument("--threads", type=int, default=0)
    args = parser.parse_args()
    with tempfile.TemporaryDirectory() as scratch:
        wav = Path(scratch) / "long_20240101_000000.wav"
        placed = write_recording(wav, args.hours)
        seconds = args.hours * 3600
        command = [sys.executable, "-m", "detector.cli", "detect", str(wav), "--out",
                   str(Path(scratch) / "out"), "--no-progress", "--model", str(SHIPPED_MODEL)]
        if args.threads:
            command += ["--threads", str(args.threads)]
        started = time.perf_counter()
        run = subprocess.run(command, capture_output=True, text=True)
        wall = time.perf_counter() - started
        lines = (Path(scratch) / "out" / "detections.jsonl").read_text().splitlines()
    peak = resource.getrusage(resource.RUSAGE_CHILDREN).ru_maxrss * 1024
    print(json.dumps({
        "benchmark": "long_recording", "machine": machine(), "audio_hours": args.hours,
        "exit_status": run.returncode, "wall_seconds": round(wall, 1),
        "real_time_factor_including_startup": round(seconds / wall, 1),
        "detections": sum('"type":"detection"' in line for line in lines),
        "calls_placed": placed,
        "peak_rss_bytes": peak, "memory_target_met": peak <= MEMORY_TARGET_BYTES,
    }, indent=2))


if __name__ == "__main__":
    main()
