"""whaled detect on what recorders write (96 kHz 24-bit FLAC) against sox on the same file, as JSON.

    python benchmarks/archive.py [--minutes 60] [--threads 1 2] [--repeats 3]
                                 [--compare-repo PATH]

The four NOPP6 recordings of ``../shared/data`` (2 kHz, 15 minutes each) are joined and
resampled up by sox to a ``--minutes`` long 96 kHz 24-bit FLAC in a temporary folder (never in
the repository), beside the same span as a 2 kHz WAV. In one run, on the same files:

- ``sox FLAC -r 2000 out.wav`` (decode and resample, one C process) and ``sox FLAC -n``
  (decode only), wall time;
- ``whaled detect FLAC`` as a whole process (start-up, model, scan, outputs) at each
  ``--threads``, wall time, and its ratio to sox's decode+resample (target: <= 1.5);
- the steady state of the ``detect`` path in this process (``scan_recording`` after a warm-up)
  on the FLAC and on the 2 kHz WAV, in x real time (target on 2 kHz: >= 3000 with the shipped
  model), at each ``--threads``;
- ``--compare-repo PATH``: the whole-process ``whaled detect`` again from another checkout
  (say, main before a change), for a before/after ratio on the same files and load.

The processes are timed in ``--repeats`` rounds, each round running every one of them once in
turn, and each figure is the fastest round (wall) beside its CPU seconds (user + system, which
load moves less): on a shared machine the load changes within a minute, so quote the ratios.
The machine and its load are printed with the figures. The FLAC holds nothing above 1 kHz (it
was made from 2 kHz audio), so it compresses, and decodes, faster than a real 96 kHz recording
would.
"""

from __future__ import annotations

import argparse
import json
import os
import resource
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
from machine import REPO, machine, model_path

DATA = (REPO.parent / "shared" / "data").resolve()
SOURCES = ("dclde2013-20090328/NOPP6_EST_20090328_000000.wav",
           "dclde2013-20090328/NOPP6_EST_20090328_001500.wav",
           "dclde2013-20090328/NOPP6_EST_20090328_003000.wav",
           "dclde2013/NOPP6_EST_20090329_121500.wav")
RECORDER_RATE_HZ = 96000
MODEL_RATE_HZ = 2000
TARGET_SOX_RATIO = 1.5
TARGET_2KHZ_REAL_TIME = 3000.0
WARM_UP_SECONDS = 60  # scanned once before the steady state is timed


def timed(command: list[str], env: dict[str, str] | None = None, cwd: Path = REPO
          ) -> tuple[float, float]:
    """(wall seconds, CPU seconds) of one child process."""
    before = resource.getrusage(resource.RUSAGE_CHILDREN)
    started = time.perf_counter()
    subprocess.run(command, check=True, capture_output=True, env=env, cwd=cwd, timeout=3600)
    wall = time.perf_counter() - started
    after = resource.getrusage(resource.RUSAGE_CHILDREN)
    return wall, after.ru_utime + after.ru_stime - before.ru_utime - before.ru_stime


def make_inputs(scratch: Path, minutes: float) -> tuple[Path, Path, Path]:
    """(96 kHz 24-bit FLAC, 2 kHz WAV of the same span, a one-minute warm-up FLAC)."""
    sources = [str(DATA / name) for name in SOURCES]
    flac = scratch / "NOPP6_EST_20090328_000000.flac"
    wav = scratch / "NOPP6_EST_20090328_000000.wav"
    warm = scratch / "warm_20090328_000000.flac"
    span = ["trim", "0", str(minutes * 60)]
    subprocess.run(["sox", *sources, "-b", "24", "-r", str(RECORDER_RATE_HZ), str(flac),
                    *span], check=True)
    subprocess.run(["sox", *sources, str(wav), *span], check=True)
    subprocess.run(["sox", str(flac), str(warm), "trim", "0", str(WARM_UP_SECONDS)], check=True)
    return flac, wav, warm


def whaled_detect(repo: Path, path: Path, out: Path, threads: int, model: Path
                  ) -> tuple[float, float]:
    env = dict(os.environ, PYTHONPATH=str(repo))
    shutil.rmtree(out, ignore_errors=True)  # a rerun over the same folder would skip the file
    return timed([sys.executable, "-m", "detector.cli", "detect", str(path), "--out", str(out),
                  "--no-progress", "--threads", str(threads), "--model", str(model)], env,
                 cwd=repo)  # -m puts the working directory first on sys.path


def steady_state(paths: dict[str, Path], warm: Path, model: Path, threads: int,
                 repeats: int) -> dict[str, float]:
    """x real time of scan_recording in this process after a warm-up scan, best of
    ``repeats``."""
    import soundfile
    import torch

    from detector.archive.scan import scan_recording
    from detector.core.config import Settings
    from detector.model.artifact import load_model
    from detector.stream.blocks import SCAN_BLOCK_SECONDS

    torch.set_num_threads(threads)
    loaded = load_model(model)
    settings = Settings(speed=0.0, block_seconds=SCAN_BLOCK_SECONDS, evidence=False,
                        metrics_port=0)
    scan_recording(warm, loaded, settings)
    rates = {}
    for name, path in paths.items():
        walls = []
        for _ in range(repeats):
            started = time.perf_counter()
            result = scan_recording(path, loaded, settings)
            walls.append(time.perf_counter() - started)
            assert not result.error, result.error
        rates[name] = round(soundfile.info(str(path)).duration / min(walls), 1)
    return rates


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--minutes", type=float, default=60.0)
    parser.add_argument("--threads", type=int, nargs="+", default=[1, 2])
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--compare-repo", type=Path)
    args = parser.parse_args()
    if not all((DATA / name).exists() for name in SOURCES):
        print(f"skipped: the NOPP6 recordings are not in {DATA}")
        return
    sys.path.insert(0, str(REPO))
    with tempfile.TemporaryDirectory() as scratch_name:
        scratch = Path(scratch_name)
        model, model_note = model_path(scratch)
        flac, wav, warm = make_inputs(scratch, args.minutes)
        runs: dict[str, list[str]] = {
            "sox_decode_resample": ["sox", str(flac), "-r", str(MODEL_RATE_HZ),
                                    str(scratch / "sox.wav")],
            "sox_decode_only": ["sox", str(flac), "-n"]}
        repos = {f"detect_flac_threads{t}": (REPO, t) for t in args.threads}
        if args.compare_repo:
            repos[f"compare_repo_detect_flac_threads{args.threads[-1]}"] = (
                args.compare_repo.resolve(), args.threads[-1])
        times: dict[str, list[tuple[float, float]]] = {name: [] for name in [*runs, *repos]}
        for _ in range(args.repeats):
            for name, command in runs.items():
                times[name].append(timed(command))
            for name, (repo, threads) in repos.items():
                times[name].append(whaled_detect(repo, flac, scratch / name, threads, model))
        best = {name: min(rounds) for name, rounds in times.items()}
        sox_wall, sox_cpu = best["sox_decode_resample"]
        report: dict[str, object] = {
            "machine": machine(), "model": model_note, "audio_minutes": args.minutes,
            "flac": f"{RECORDER_RATE_HZ} Hz 24-bit mono, {flac.stat().st_size / 2**20:.0f} MiB",
            "rounds": args.repeats, "target_ratio_to_sox": TARGET_SOX_RATIO}
        for name, (wall, cpu) in best.items():
            report[name] = {"seconds": round(wall, 2), "cpu_seconds": round(cpu, 2),
                            "x_real_time": round(args.minutes * 60 / wall, 1),
                            "ratio_to_sox": round(wall / sox_wall, 2),
                            "cpu_ratio_to_sox": round(cpu / sox_cpu, 2),
                            "all_rounds_seconds": [round(w, 2) for w, _ in times[name]]}
        if args.compare_repo:
            report["compare_repo"] = str(args.compare_repo)
        for threads in args.threads:
            rates = steady_state({"flac_96khz": flac, "wav_2khz": wav}, warm, model, threads,
                                 args.repeats)
            report[f"steady_state_threads{threads}_x_real_time"] = {
                **rates, "target_wav_2khz": TARGET_2KHZ_REAL_TIME}
        report["machine_after"] = {"load_average_1min": round(os.getloadavg()[0], 2)}
    print(json.dumps(report, indent=2))


if __name__ == "__main__":
    main()
