"""whaled detect: the listen pipeline over archives, resumable, sharded, and on Dask."""

from __future__ import annotations

import json
import signal
import subprocess
import tracemalloc
from collections import Counter
from dataclasses import replace
from pathlib import Path

import pytest
from conftest import WHALED
from helpers import calls_recording

from detector.archive import (
    DETECT_BLOCK_SECONDS,
    dask_executor,
    detect,
    find_recordings,
    in_shard,
    parse_shard,
    scan_recording,
)
from detector.config import Settings
from detector.model import load_model
from detector.sinks import JSONL_NAME

CALLS = [(12.0, 1.0), (41.0, 1.2)]


def detect_settings(model: Path, **changes: object) -> Settings:
    return replace(Settings(model=str(model), speed=0.0, block_seconds=DETECT_BLOCK_SECONDS,
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

    from detector import daemon

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
    table = "file_pair_20090329_121500_wav_20090329_121500.selections.txt"
    assert (tmp_path / "detect" / "pair_20090329_121500.selections.txt").read_text() == \
        (listen_out / table).read_text()


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
    assert tables == ["deep/glider.selections.txt"] + [
        f"site{i}_2009032{i}_120000.selections.txt" for i in range(4)]
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
    recordings, _ = find_recordings([archive])
    n = 3
    owners = [[k for k in range(n) if in_shard(r, k, n)] for r in recordings]
    assert all(len(o) == 1 for o in owners)
    assert parse_shard("2/3") == (2, 3)
    with pytest.raises(ValueError):
        parse_shard("3/3")
    detect([archive], loaded, settings, tmp_path / "all")
    union: Counter[str] = Counter()
    for k in range(n):
        detect([archive], loaded, settings, tmp_path / f"shard{k}", shard=(k, n))
        union.update(lines_of(tmp_path / f"shard{k}", "detection"))
    assert union == Counter(lines_of(tmp_path / "all", "detection"))


def test_dask_local_cluster_gives_the_same_detections(
        tmp_path: Path, archive: Path, centre_model: Path) -> None:
    distributed = pytest.importorskip(
        "dask.distributed", reason="dask is not installed (pip install 'whaled[dask]')")
    loaded, settings = load_model(centre_model), detect_settings(centre_model)
    detect([archive], loaded, settings, tmp_path / "plain")
    cluster = distributed.LocalCluster(n_workers=2, threads_per_worker=1, processes=False,
                                       dashboard_address=None)
    with cluster, distributed.Client(cluster) as client:
        summary = detect([archive], loaded, settings, tmp_path / "dask",
                         executor=dask_executor(client, centre_model, settings))
    assert summary.failed == [] and summary.recordings == 5
    assert Counter(lines_of(tmp_path / "dask", "detection")) == \
        Counter(lines_of(tmp_path / "plain", "detection"))


def test_memory_stays_flat_with_file_length(tmp_path: Path, centre_model: Path) -> None:
    loaded = load_model(centre_model)
    settings = detect_settings(centre_model)  # holds at most max_batch_windows * hop of audio
    peaks = []
    for minutes in (4, 16):
        path = calls_recording(tmp_path / f"long{minutes}.wav", 4000, minutes * 60, [])
        tracemalloc.start()
        result = scan_recording(path, loaded, settings)
        peaks.append(tracemalloc.get_traced_memory()[1])
        tracemalloc.stop()
        assert result.error == "" and result.audio_seconds == minutes * 60
    assert peaks[1] < peaks[0] * 1.2 + 1_000_000, peaks  # 4x the audio, the same peak
