"""whaled detect: the listen pipeline over archives, resumable, sharded, and on Dask."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
from collections import Counter
from dataclasses import replace
from pathlib import Path

import pytest
from conftest import WHALED
from helpers import calls_recording

from detector.archive import executors
from detector.archive.outputs import DetectError
from detector.archive.plan import find_recordings, in_shard, parse_shard
from detector.archive.run import detect
from detector.archive.scan import scan_recording
from detector.core.config import Settings
from detector.model.artifact import load_model
from detector.outputs.sinks import JSONL_NAME
from detector.stream.blocks import SCAN_BLOCK_SECONDS

CALLS = [(12.0, 1.0), (41.0, 1.2)]


def detect_settings(model: Path, **changes: object) -> Settings:
    return replace(Settings(model=str(model), speed=0.0, block_seconds=SCAN_BLOCK_SECONDS,
                            evidence=False, metrics_port=0), **changes)


def lines_of(out: Path, kind: str) -> list[str]:
    text = (out / JSONL_NAME).read_text().splitlines()
    return [line for line in text if json.loads(line)["type"] == kind]


@pytest.fixture
def archive(tmp_path: Path) -> Path:
    """Five short recordings at several rates, one in a sub-folder, plus a non-audio file."""
    folder = tmp_path / "archive"
    (folder / "deep").mkdir(parents=True)
    for i, rate in enumerate((2000, 4000, 2000, 8000)):
        calls_recording(folder / f"site{i}_2009032{i}_120000.wav", rate, 50,
                        [(5.0 + 7 * i, 1.0), (30.0, 1.0)], seed=i)
    calls_recording(folder / "deep" / "glider.flac", 2000, 60, CALLS, seed=9)
    (folder / "notes.txt").write_text("not audio")
    return folder


def test_detect_equals_listen_replay(tmp_path: Path, centre_model: Path) -> None:
    import soundfile

    from detector.live import daemon

    mono = calls_recording(tmp_path / "a.wav", 8000, 60, CALLS, seed=1)
    other = calls_recording(tmp_path / "b.wav", 8000, 60, [(25.0, 1.0)], seed=2)
    stereo = tmp_path / "pair_20090329_121500.wav"
    a, rate = soundfile.read(str(mono), dtype="float32")
    b, _ = soundfile.read(str(other), dtype="float32")
    soundfile.write(str(stereo), __import__("numpy").stack([a, b], axis=1), rate)

    listen_out = tmp_path / "listen"
    handlers = {s: signal.getsignal(s) for s in (signal.SIGINT, signal.SIGTERM, signal.SIGHUP)}
    try:
        replay = daemon.listen(replace(Settings(), device=f"file:{stereo}", speed=0.0,
                                       model=str(centre_model), out=str(listen_out),
                                       metrics_port=0, evidence=False))
    finally:
        for sig, handler in handlers.items():
            signal.signal(sig, handler)

    settings = detect_settings(centre_model)
    loaded = load_model(centre_model)
    result = scan_recording(stereo, loaded, settings)
    assert result.detections == replay.detections
    assert {d.channel for d in result.detections} == {1, 2}
    detect(tmp_path.glob("pair_*.wav"), loaded, settings, tmp_path / "detect")
    detected = [json.loads(line) for line in lines_of(tmp_path / "detect", "detection")]
    assert {d.pop("recording") for d in detected} == {stereo.name}  # detect names the file
    assert detected == [json.loads(line) for line in lines_of(listen_out, "detection")]
    table = "pair_20090329_121500.selections.txt"  # listen names a file's table as detect does
    assert (tmp_path / "detect" / "pair_20090329_121500.selections.txt").read_text() == \
        (listen_out / table).read_text()


def test_decoding_ahead_gives_the_serial_detections(tmp_path: Path, centre_model: Path,
                                                   monkeypatch: pytest.MonkeyPatch) -> None:
    """The read-ahead thread decodes (more blocks than its queue holds) while the pipeline
    scores; what comes out equals the serial scan's: every window's scores and every event."""
    import numpy as np

    from detector.sources.replay import FileSource

    path = calls_recording(tmp_path / "r_20090329_121500.wav", 48000, 60, CALLS, seed=3)
    settings = detect_settings(centre_model, block_seconds=0.7)  # 86 reads
    loaded = load_model(centre_model)
    decoded_in: set[str] = set()
    read = FileSource.read

    def noted(self: FileSource, timeout_seconds: float) -> list[object]:
        decoded_in.add(__import__("threading").current_thread().name)
        return read(self, timeout_seconds)

    monkeypatch.setattr(FileSource, "read", noted)
    ahead = scan_recording(path, loaded, settings, save_scores=True)
    assert decoded_in == {"whaled-read-ahead"}
    decoded_in.clear()
    serial = scan_recording(path, loaded, settings, save_scores=True, read_ahead=False)
    assert decoded_in == {"MainThread"}
    assert ahead.error == serial.error == ""
    assert len(ahead.detections) == 2
    assert ahead.records == serial.records
    assert ahead.scores is not None and serial.scores is not None
    assert np.array_equal(ahead.scores.scores, serial.scores.scores)
    assert np.array_equal(ahead.scores.centre_seconds, serial.scores.centre_seconds)


def test_finding_reading_and_resampling_import_no_scipy_or_matplotlib() -> None:
    """detect's start-up pays for torch, not for scipy.signal (a second) or matplotlib, which
    only simulating audio or drawing a figure needs."""
    probe = ("import sys, detector.archive.plan, detector.sources.replay, "
             "detector.stream.resample, detector.sources.capture; "
             "print(sorted({m.split('.')[0] for m in sys.modules} & "
             "{'scipy', 'matplotlib', 'torch'}))")
    done = subprocess.run([sys.executable, "-c", probe], capture_output=True, text=True,
                          timeout=60, check=True)
    assert done.stdout.strip() == "[]"


def test_detect_without_the_figure_imports_no_matplotlib_rich_or_scipy(
        tmp_path: Path, centre_model: Path) -> None:
    """--no-figure: the presence tables are written, the chart is not, and the process never
    imports matplotlib (a second with its first draw), typer's rich help or scipy."""
    wav = calls_recording(tmp_path / "a_20090329_120000.wav", 2000, 30, CALLS[:1], seed=3)
    out = tmp_path / "out"
    run = subprocess.run([sys.executable, "-X", "importtime", *WHALED[1:], "detect", str(wav),
                          "--model", str(centre_model), "--out", str(out), "--no-progress",
                          "--no-figure"], capture_output=True, text=True, timeout=120)
    assert run.returncode == 0, run.stderr[-2000:]
    imported = {line.rsplit("|", 1)[-1].strip().split(".")[0]
                for line in run.stderr.splitlines() if line.startswith("import time:")}
    assert {"torch", "soundfile"} <= imported  # the probe sees what detect does import
    assert imported & {"matplotlib", "rich", "scipy"} == set()
    assert (out / "presence_daily.csv").is_file()
    assert not (out / "presence_daily.png").exists()


def test_a_run_over_many_recordings_freezes_the_model_once(
        tmp_path: Path, archive: Path, centre_model: Path,
        monkeypatch: pytest.MonkeyPatch) -> None:
    from detector.model import scoring

    frozen: list[int] = []
    freeze = scoring._freeze
    monkeypatch.setattr(scoring, "_freeze", lambda loaded, hop: (frozen.append(hop),
                                                                 freeze(loaded, hop))[1])
    summary = detect([archive], load_model(centre_model), detect_settings(centre_model),
                     tmp_path / "out", figure=False)
    assert summary.completed == 5
    assert len(frozen) == 1


def test_folders_unreadable_files_exit_status_and_resume(
        tmp_path: Path, archive: Path, centre_model: Path) -> None:
    (archive / "broken.wav").write_bytes(b"RIFF\x00\x00not a wave file")
    out = tmp_path / "out"
    run = subprocess.run([*WHALED, "detect", str(archive), "--model", str(centre_model),
                          "--out", str(out), "--no-progress"],
                         capture_output=True, text=True, timeout=120)
    assert run.returncode == 1, run.stderr
    assert "1 failed" in run.stderr and "failed: " in run.stderr and "broken.wav" in run.stderr
    records = [json.loads(line) for line in lines_of(out, "recording")]
    assert Counter(r["status"] for r in records) == {"complete": 5, "failed": 1}
    tables = sorted(p.relative_to(out).as_posix() for p in out.rglob("*.selections.txt"))
    assert tables == ["deep/glider.selections.txt", "season.selections.txt"] + [
        f"site{i}_2009032{i}_120000.selections.txt" for i in range(4)]  # and the season's
    first = lines_of(out, "detection")
    assert len(first) >= 10
    starts = {(json.loads(line)["start_utc"] or "")[:16] for line in first}
    assert "2009-03-20T12:00" in starts  # absolute UTC from the file name's stamp
    assert "" in starts  # deep/glider.flac has no stamp: no UTC, never its modification time

    (archive / "broken.wav").unlink()
    summary = detect([archive], load_model(centre_model), detect_settings(centre_model), out)
    assert (summary.recordings, summary.skipped, summary.failed) == (5, 5, [])
    assert lines_of(out, "detection") == first  # nothing scanned twice


def test_shards_partition_and_union_equals_one_run(
        tmp_path: Path, archive: Path, centre_model: Path) -> None:
    loaded, settings = load_model(centre_model), detect_settings(centre_model)
    recordings, _, _ = find_recordings([archive])
    n = 3
    owners = [[k for k in range(n) if in_shard(r, k, n)] for r in recordings]
    assert all(len(o) == 1 for o in owners)
    assert parse_shard("2/3") == (2, 3)
    with pytest.raises(DetectError, match="need 0 <= K < N"):
        parse_shard("3/3")
    detect([archive], loaded, settings, tmp_path / "all")
    union: Counter[str] = Counter()
    for k in range(n):
        detect([archive], loaded, settings, tmp_path / f"shard{k}", shard=(k, n))
        union.update(lines_of(tmp_path / f"shard{k}", "detection"))
    assert union == Counter(lines_of(tmp_path / "all", "detection"))


def test_dask_local_worker_processes_give_the_same_detections(
        tmp_path: Path, archive: Path, centre_model: Path) -> None:
    """``--dask local``'s cluster: worker processes, each loading the model once."""
    pytest.importorskip("dask.distributed",
                        reason="dask is not installed (pip install 'whaled[dask]')")
    loaded, settings = load_model(centre_model), detect_settings(centre_model)
    detect([archive], loaded, settings, tmp_path / "plain")
    on_workers = replace(settings, torch_threads=1)  # what detect does for --dask local
    client = executors.open_dask("local", workers=2)
    try:
        summary = detect([archive], loaded, on_workers, tmp_path / "dask",
                         executor=executors.dask_executor(client, centre_model, on_workers))
        pids = client.run(os.getpid)
        loads = client.run(executors.worker_model.cache_info)
    finally:
        client.close()
        client.cluster.close()
    assert summary.failed == [] and summary.recordings == 5
    assert Counter(lines_of(tmp_path / "dask", "detection")) == \
        Counter(lines_of(tmp_path / "plain", "detection"))
    assert len(set(pids.values())) == 2 and os.getpid() not in pids.values()
    misses = sorted(info.misses for info in loads.values())  # model loads per worker
    assert misses in ([0, 1], [1, 1]), loads  # one load per worker that ran a task, no more
    assert sum(info.hits + info.misses for info in loads.values()) == 5  # one per recording
    assert executors.worker_model.cache_info().misses == 0  # nothing scanned here


PEAK_RSS_OF_A_SCAN = """
import sys
from pathlib import Path

from detector.archive.scan import scan_recording
from detector.core.config import Settings
from detector.model.artifact import load_model

path, model, block_seconds = Path(sys.argv[1]), Path(sys.argv[2]), float(sys.argv[3])
loaded = load_model(model)
settings = Settings(model=str(model), speed=0.0, block_seconds=block_seconds, evidence=False,
                    metrics_port=0)
result = scan_recording(path, loaded, settings)
peak_kib = next(int(line.split()[1]) for line in open("/proc/self/status")
                if line.startswith("VmHWM:"))  # the resident set's high-water mark
print(peak_kib * 1024, len(result.detections), result.audio_seconds, repr(result.error))
"""


@pytest.mark.skipif(not Path("/proc/self/status").is_file(), reason="needs /proc (Linux)")
def test_resident_memory_stays_flat_with_file_length(tmp_path: Path,
                                                     centre_model: Path) -> None:
    """Peak RSS (torch's buffers included, which tracemalloc does not see) of a scan in a
    fresh process: 10x the audio, with a call every 30 s, and the same peak. (Reading
    the longer file whole would add 35 MB; runs vary by about 6 MB.)"""
    rate_hz, call_every_seconds = 4000, 30
    peaks, found = [], []
    for minutes in (4, 40):
        seconds = minutes * 60
        calls = [(float(t), 1.0) for t in range(10, seconds - 10, call_every_seconds)]
        path = calls_recording(tmp_path / f"long{minutes}.wav", rate_hz, seconds, calls)
        run = subprocess.run([sys.executable, "-c", PEAK_RSS_OF_A_SCAN, str(path),
                              str(centre_model), str(SCAN_BLOCK_SECONDS)],
                             capture_output=True, text=True, timeout=600, check=True)
        peak, detections, audio_seconds, error = run.stdout.split()
        assert (float(audio_seconds), error) == (seconds, "''")
        assert int(detections) == len(calls)  # the tracker and sinks worked all the way
        peaks.append(int(peak))
        found.append(int(detections))
    extra_audio_bytes = (40 - 4) * 60 * rate_hz * 4  # 34.6 MB more as float32 samples
    assert peaks[1] - peaks[0] < extra_audio_bytes / 2, (peaks, found)
