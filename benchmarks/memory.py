"""Peak resident memory of ``whaled train``, ``evaluate`` and ``detect`` on 96 kHz recordings
of two lengths, as JSON.

    python benchmarks/memory.py [--seconds 120 900] [--rate 96000]

A shared NOPP6 recording (2 kHz, 15 minutes, with its Raven table) is resampled up by
python-soxr, a block at a time, into 24-bit FLACs of each ``--seconds`` at ``--rate`` in a
temporary folder, each beside its Raven table cut to the calls inside it. Each command runs
as its own process, one after another, and its peak resident size is the child's
``ru_maxrss``; ``python -c "import torch"`` gives the floor every command stands on. Train is
a tiny recipe (1 epoch, width 4, batches of 8); evaluate and detect use the shipped model.
Target: at most 800 MB each, the same for every length (flat in file length and rate).
"""

from __future__ import annotations

import argparse
import json
import os
import sys
import tempfile
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
from child import run_child
from machine import REPO, SHIPPED_MODEL, machine

DATA = (REPO.parent / "shared" / "data").resolve()
SOURCE = DATA / "dclde2013" / "NOPP6_EST_20090329_121500.wav"
TABLE = DATA / "dclde2013" / "NOPP6_EST_20090329_121500.Table.1.selections.txt"
TARGET_PEAK_MIB = 800 * 1e6 / 2**20  # 800 MB
BLOCK_FRAMES = 65536


def make_recording(folder: Path, seconds: float, rate_hz: int) -> Path:
    """SOURCE's first ``seconds`` at ``rate_hz`` (24-bit FLAC) and its table's calls in them,
    written a block at a time so this process stays small (see child.py)."""
    import soundfile
    import soxr

    folder.mkdir(parents=True)
    path = folder / (SOURCE.stem + ".flac")
    with soundfile.SoundFile(str(SOURCE)) as source, soundfile.SoundFile(
            str(path), "w", rate_hz, 1, subtype="PCM_24") as out:
        stream = soxr.ResampleStream(source.samplerate, rate_hz, 1, dtype="float32")
        left = int(seconds * source.samplerate)
        while left > 0:
            block = source.read(min(BLOCK_FRAMES, left), dtype="float32")
            left -= len(block)
            out.write(stream.resample_chunk(block, last=left <= 0 or len(block) == 0))
            if len(block) == 0:
                break
    lines = TABLE.read_text().splitlines()
    end = lines[0].split("\t").index("End Time (s)")
    kept = [line for line in lines[1:] if float(line.split("\t")[end]) <= seconds]
    (folder / TABLE.name).write_text("\n".join([lines[0], *kept]) + "\n")
    return path


def commands(recording: Path, scratch: Path) -> dict[str, list[str]]:
    whaled = [sys.executable, "-m", "detector.cli"]
    return {
        "import_torch": [sys.executable, "-c", "import torch"],
        "train": [*whaled, "train", str(recording.parent), "--out", str(scratch / "m.pt"),
                  "--epochs", "1", "--batch-size", "8", "--width", "4", "--no-progress",
                  "--torch-device", "cpu", "--force"],
        "evaluate": [*whaled, "evaluate", str(SHIPPED_MODEL), str(recording), "--json",
                     "--no-progress"],
        "detect": [*whaled, "detect", str(recording), "--out", str(scratch / "detect"),
                   "--no-progress"],
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--seconds", type=float, nargs="+", default=[120.0, 900.0])
    parser.add_argument("--rate", type=int, default=96000)
    args = parser.parse_args()
    if not (SOURCE.is_file() and TABLE.is_file() and SHIPPED_MODEL.is_file()):
        print(f"skipped: needs {SOURCE}, its table and {SHIPPED_MODEL}")
        return
    env = dict(os.environ, PYTHONPATH=str(REPO))
    report: dict[str, object] = {"rate_hz": args.rate, "load_average_1min_before":
                                 round(os.getloadavg()[0], 2)}
    peaks: dict[str, dict[str, float]] = {}
    with tempfile.TemporaryDirectory() as scratch_name:
        for seconds in args.seconds:
            scratch = Path(scratch_name) / f"s{seconds:g}"
            recording = make_recording(scratch / "data", seconds, args.rate)
            for name, command in commands(recording, scratch).items():
                run = run_child(command, cwd=REPO, env=env)
                peaks.setdefault(name, {})[f"{seconds:g}_s"] = round(run.peak_rss_mib, 1)
                peaks[name][f"{seconds:g}_s_wall_seconds"] = round(run.wall_seconds, 1)
    report["peak_rss_mib"] = peaks
    report["target_peak_mib"] = round(TARGET_PEAK_MIB, 1)
    report["machine"] = machine()  # imports torch: after the children
    print(json.dumps(report, indent=2))


if __name__ == "__main__":
    main()
