"""Faults the daemon survives, each provoked for real: a silent stall, a full disk, SIGHUP."""

from __future__ import annotations

import contextlib
import json
import resource
import shutil
import signal
import socket
import subprocess
import threading
import time
from pathlib import Path

import pytest
from conftest import WHALED
from helpers import CentreBandModel, calls_recording
from prometheus_client import CollectorRegistry

from detector.core.config import Settings
from detector.live.notify import Watchdog
from detector.model.artifact import ModelMetadata, load_model, save_model
from detector.outputs.metrics import Metrics
from detector.outputs.sinks import JSONL_NAME, HoldsNothing, JsonlSink, LogSink, Record
from detector.sources.replay import FileSource, SyntheticSource
from detector.stream.blocks import Block, Item
from detector.stream.events import Detection, Thresholds
from detector.stream.pipeline import Pipeline
from detector.stream.run_summary import Status

RATE_HZ = 2000
STALL_TIMEOUT_SECONDS = 0.5
LOOP_PERIOD_SECONDS = 0.2  # the main loop looks up at least this often when no audio comes
LOAD_MARGIN_SECONDS = 0.5  # scheduling delay allowed on a loaded 2-core machine


class StallingSource:
    """Live synthetic audio that stops after ``stall_after_seconds``: callbacks just end."""

    def __init__(self, stall_after_seconds: float) -> None:
        self.inner = SyntheticSource(rate_hz=RATE_HZ, block_frames=100, speed=1.0)
        self.info = self.inner.info
        self.limit = round(stall_after_seconds * RATE_HZ)
        self.stalled_at = 0.0  # monotonic arrival time of the last block delivered

    def read(self, timeout_seconds: float) -> list[Item]:
        if self.stalled_at:
            time.sleep(timeout_seconds)
            return []
        items = self.inner.read(timeout_seconds)
        last = [i for i in items if isinstance(i, Block) and i.end_sample >= self.limit]
        if last:
            self.stalled_at = last[0].arrival_monotonic  # when the audio stopped coming
        return items

    def close(self) -> None:
        self.inner.close()


def value(metrics: Metrics, name: str, **labels: str) -> float:
    return metrics.registry.get_sample_value(name, labels) or 0.0


def test_a_silent_stall_is_noticed_counted_recorded_and_starves_the_watchdog(
        centre_model: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    address = tmp_path / "notify.sock"
    receiver = socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM)
    receiver.bind(str(address))
    receiver.settimeout(0.05)
    monkeypatch.setenv("NOTIFY_SOCKET", str(address))
    monkeypatch.setenv("WATCHDOG_USEC", "200000")  # WatchdogSec=0.2: a ping every 0.1 s
    settings = Settings(stall_timeout_seconds=STALL_TIMEOUT_SECONDS, evidence=False)
    source = StallingSource(stall_after_seconds=2.0)
    metrics = Metrics(CollectorRegistry(), (1,), ("upcall",))
    pipeline = Pipeline(source, load_model(centre_model), settings, [], metrics)
    watchdog = Watchdog()
    pipeline.hooks.append(lambda status: watchdog.tick(status.flowing, "test"))
    stop = threading.Event()
    result = {}
    thread = threading.Thread(target=lambda: result.update(summary=pipeline.run(stop)))
    thread.start()
    messages: list[tuple[float, str]] = []
    noticed = 0.0
    deadline = time.monotonic() + 4.0
    while time.monotonic() < deadline:
        with contextlib.suppress(TimeoutError):
            messages.append((time.monotonic(), receiver.recv(4096).decode()))
        if not noticed and value(metrics, "whaled_stalls_total"):
            noticed = time.monotonic()
    stop.set()
    thread.join(5)
    stopped = time.monotonic()
    receiver.close()

    assert source.stalled_at and noticed
    detection_seconds = noticed - source.stalled_at
    assert STALL_TIMEOUT_SECONDS <= detection_seconds <= STALL_TIMEOUT_SECONDS + \
        LOOP_PERIOD_SECONDS + LOAD_MARGIN_SECONDS, detection_seconds
    assert value(metrics, "whaled_stalls_total") == 1
    assert value(metrics, "whaled_audio_flowing") == 0
    assert messages[0][1].startswith("READY=1")
    pings = [t for t, text in messages if text == "WATCHDOG=1"]
    assert len(pings) >= 5  # 2 s of audio at a ping every 0.1 s, some passes late under load
    # withheld from the pass that noticed the stall on (pings already sent may be read late)
    assert not [t for t in pings if t > noticed + LOAD_MARGIN_SECONDS]
    gaps = result["summary"].gaps
    assert [g.reason for g in gaps] == ["stall"]
    lost_seconds = gaps[0].samples / RATE_HZ  # recorded at shutdown: stall to stop
    assert deadline - source.stalled_at - 0.1 <= lost_seconds <= stopped - source.stalled_at, \
        (lost_seconds, deadline - source.stalled_at, stopped - source.stalled_at)
    assert value(metrics, "whaled_gaps_total", reason="stall") == 1


class PausingSource:
    """Live synthetic audio whose blocks stop for ``pause_seconds`` and then arrive late, all
    of them: a busy machine or a buffering sound server, no audio lost."""

    def __init__(self, pause_after_seconds: float, pause_seconds: float) -> None:
        self.inner = SyntheticSource(rate_hz=RATE_HZ, block_frames=100, speed=1.0)
        self.info = self.inner.info
        self.pause_at = round(pause_after_seconds * RATE_HZ)
        self.pause_seconds = pause_seconds
        self.resume_at = 0.0  # monotonic time blocks flow again; 0: not paused yet

    def read(self, timeout_seconds: float) -> list[Item]:
        if self.resume_at and time.monotonic() < self.resume_at:
            time.sleep(timeout_seconds)
            return []
        items = self.inner.read(timeout_seconds)
        if not self.resume_at and any(isinstance(i, Block) and i.end_sample >= self.pause_at
                                      for i in items):
            self.resume_at = time.monotonic() + self.pause_seconds
        return items

    def close(self) -> None:
        self.inner.close()


def test_audio_that_comes_late_after_a_short_stall_timeout_is_analysed_not_gapped(
        centre_model: Path) -> None:
    """A stall_timeout_seconds below capture's old fixed 5 s: the stall is noticed and
    counted, but the audio that then arrives is analysed, so no gap may be written over it."""
    settings = Settings(stall_timeout_seconds=STALL_TIMEOUT_SECONDS, evidence=False,
                        duration_seconds=3.0)
    source = PausingSource(pause_after_seconds=1.0, pause_seconds=STALL_TIMEOUT_SECONDS * 3)
    metrics = Metrics(CollectorRegistry(), (1,), ("upcall",))
    pipeline = Pipeline(source, load_model(centre_model), settings, [], metrics)
    summary = pipeline.run(threading.Event())
    assert value(metrics, "whaled_stalls_total") == 1
    assert summary.samples == 3 * RATE_HZ  # every sample analysed, none skipped
    assert summary.gaps == []
    assert value(metrics, "whaled_gaps_total", reason="stall") == 0


def test_a_full_disk_loses_no_detection_and_writing_resumes(
        centre_model: Path, tmp_path: Path, caplog: pytest.LogCaptureFixture) -> None:
    """RLIMIT_FSIZE makes the kernel refuse the append (EFBIG), as a full disk would."""
    wav = calls_recording(tmp_path / "calls.wav", RATE_HZ, 24.0, [(4, 1), (12, 1), (20, 1)])
    out = tmp_path / "out"
    source = FileSource(wav, block_frames=200, speed=0.0)
    metrics = Metrics(CollectorRegistry(), (1,), ("upcall",))
    limit = resource.getrlimit(resource.RLIMIT_FSIZE)
    seen: dict[str, int] = {}

    class Disk(HoldsNothing):
        """Before the JSONL sink: the disk fills at the 2nd detection and is back at the 3rd."""
        name = "disk"

        def write(self, record: Record) -> None:
            if not isinstance(record, Detection):
                return
            seen["n"] = n = seen.get("n", 0) + 1
            if n == 2:
                resource.setrlimit(resource.RLIMIT_FSIZE,
                                   ((out / JSONL_NAME).stat().st_size, limit[1]))
            elif n == 3:
                seen["errors_while_full"] = int(value(metrics, "whaled_sink_errors_total",
                                                      sink="jsonl"))
                seen["lines_while_full"] = len((out / JSONL_NAME).read_text().splitlines())
                resource.setrlimit(resource.RLIMIT_FSIZE, limit)

    class Probe(HoldsNothing):
        """After the JSONL sink: what the file holds once the 3rd detection is written."""
        name = "probe"

        def write(self, record: Record) -> None:
            if seen.get("n") == 3 and "after" not in seen:
                seen["after"] = len((out / JSONL_NAME).read_text().splitlines())

    pipeline = Pipeline(source, load_model(centre_model), Settings(),
                        [LogSink(), Disk(), JsonlSink(out), Probe()], metrics)
    caplog.set_level("INFO")
    try:
        summary = pipeline.run(threading.Event())
    finally:
        resource.setrlimit(resource.RLIMIT_FSIZE, limit)
        source.close()
    assert len(summary.detections) == 3
    assert seen["errors_while_full"] >= 1 and seen["lines_while_full"] == 1
    assert seen["after"] == 3  # the detection held during the outage, then the new one
    assert value(metrics, "whaled_detections_total", label="upcall", channel="1") == 3
    logged = [r.getMessage() for r in caplog.records]
    assert sum(m.startswith("detection ") for m in logged) == 3
    assert any("cannot write jsonl output" in m and "File too large" in m for m in logged)
    records = [json.loads(line) for line in (out / JSONL_NAME).read_text().splitlines()]
    assert [r["start_seconds"] for r in records] == \
        [round(d.start_seconds, 3) for d in summary.detections]


def test_output_directory_replaced_by_a_file_then_restored(
        centre_model: Path, tmp_path: Path, caplog: pytest.LogCaptureFixture) -> None:
    """Root ignores permissions, so the directory is made unusable by putting a file there."""
    wav = calls_recording(tmp_path / "calls.wav", RATE_HZ, 24.0, [(4, 1), (12, 1), (20, 1)])
    out = tmp_path / "out"
    source = FileSource(wav, block_frames=200, speed=0.0)
    metrics = Metrics(CollectorRegistry(), (1,), ("upcall",))
    seen: dict[str, int] = {}

    class Operator(HoldsNothing):
        """Before the JSONL sink: at the 2nd detection the directory is gone, a file in its
        place; at the 3rd it is a directory again."""
        name = "operator"

        def write(self, record: Record) -> None:
            if not isinstance(record, Detection):
                return
            seen["n"] = n = seen.get("n", 0) + 1
            if n == 2:
                shutil.rmtree(out)
                out.write_text("not a directory\n")
            elif n == 3:
                seen["errors"] = int(value(metrics, "whaled_sink_errors_total", sink="jsonl"))
                out.unlink()
                out.mkdir()

    pipeline = Pipeline(source, load_model(centre_model), Settings(),
                        [LogSink(), Operator(), JsonlSink(out)], metrics)
    caplog.set_level("INFO")
    try:
        summary = pipeline.run(threading.Event())
    finally:
        source.close()
    assert len(summary.detections) == 3 and seen["errors"] >= 1
    assert any("cannot write jsonl output" in r.getMessage() for r in caplog.records)
    records = [json.loads(x) for x in (out / JSONL_NAME).read_text().splitlines()]
    assert [r["start_seconds"] for r in records] == \
        [round(d.start_seconds, 3) for d in summary.detections[1:]]  # the 1st went with rm -rf


def save_variant(path: Path, version: str) -> Path:
    meta = ModelMetadata(sample_rate_hz=RATE_HZ, window_samples=4000, labels=("upcall",),
                         thresholds=Thresholds(on=0.5, off=0.5), version=version)
    save_model(CentreBandModel(offset_db=9.0), meta, path)
    return path


def test_sighup_reloads_model_and_thresholds_without_dropping_audio_and_refuses_a_bad_one(
        centre_model: Path, tmp_path: Path, subprocess_env: dict[str, str]) -> None:
    new_model = save_variant(tmp_path / "new.pt", "test-centre-band-2")
    bad_model = tmp_path / "bad.pt"
    bad_model.write_bytes(b"not a model")
    config = tmp_path / "whaled.toml"
    config.write_text(f'model = "{centre_model}"\n')
    out = tmp_path / "out"
    seconds = 50
    lines = []
    with subprocess.Popen(
            [*WHALED, "listen", "--config", str(config), "--device", "synthetic", "--speed",
             "10", "--duration", str(seconds), "--metrics-port", "0", "--out", str(out)],
            stderr=subprocess.PIPE, text=True, env=subprocess_env) as process:
        assert process.stderr is not None
        step = 0
        for line in process.stderr:
            lines.append(line.rstrip())
            if step == 0 and "detection " in line:
                config.write_text(f'model = "{new_model}"\non_threshold = 0.9\n')
                process.send_signal(signal.SIGHUP)
                step = 1
            elif step == 1 and "reloaded" in line:
                config.write_text(f'model = "{bad_model}"\n')
                process.send_signal(signal.SIGHUP)
                step = 2
        assert process.wait(30) == 0, "\n".join(lines)
    refused = [x for x in lines if "reload refused" in x]
    assert len(refused) == 1 and str(bad_model) in refused[0], "\n".join(lines)
    assert f"samples={seconds * RATE_HZ} " in lines[-1] and "gaps=0" in lines[-1], lines[-1]
    detections = [r for r in map(json.loads, (out / JSONL_NAME).read_text().splitlines())
                  if r["type"] == "detection"]
    hashes = [d["model"] for d in detections]
    old, new = load_model(centre_model).content_hash, load_model(new_model).content_hash
    assert hashes[0] == old and hashes[-1] == new, hashes
    assert hashes == sorted(hashes, key=lambda h: h == new)  # old ones, then new ones only
    assert all(d["on_threshold"] == 0.9 for d in detections if d["model"] == new)
    refused_at = lines.index(refused[0])
    assert any("detection " in x and new in x for x in lines[refused_at:])  # still running


def test_a_long_run_keeps_counts_not_every_detection(
        centre_model: Path, tmp_path: Path) -> None:
    """A year at one false alarm per 10 s would be 1.2 GB of kept detections."""
    wav = calls_recording(tmp_path / "calls.wav", RATE_HZ, 24.0, [(4, 1), (12, 1), (20, 1)])
    source = FileSource(wav, block_frames=200, speed=0.0)
    pipeline = Pipeline(source, load_model(centre_model), Settings(), [],
                        Metrics(CollectorRegistry(), (1,), ("upcall",)), records_kept=2)
    try:
        summary = pipeline.run(threading.Event())
    finally:
        source.close()
    assert summary.detection_count == 3 and summary.gap_count == 0
    assert [round(d.start_seconds) for d in summary.detections] == [12, 20]  # the latest two


def test_the_daemon_keeps_only_the_latest_records_and_writes_every_one(
        centre_model: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """A daemon that runs for years holds the latest RECENT_RECORDS_KEPT detections in
    memory, not all of them; every one is still in detections.jsonl."""
    from detector.live import daemon

    monkeypatch.setattr(daemon, "RECENT_RECORDS_KEPT", 2)
    wav = calls_recording(tmp_path / "calls_20090329_120000.wav", RATE_HZ, 32.0,
                          [(4, 1), (12, 1), (20, 1), (28, 1)])
    out = tmp_path / "out"
    summary = daemon.listen(Settings(model=str(centre_model), device=f"file:{wav}", speed=0.0,
                                     metrics_port=0, out=str(out)))
    written = [r for r in map(json.loads, (out / JSONL_NAME).read_text().splitlines())
               if r["type"] == "detection"]
    assert summary.detection_count == len(written) == 4
    assert [round(d.start_seconds) for d in summary.detections] == [20, 28]  # the latest two
    assert [round(float(r["start_seconds"])) for r in written] == [4, 12, 20, 28]


def test_an_error_in_the_loop_still_closes_outputs_and_the_port(
        centre_model: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    from detector.live import daemon

    out = tmp_path / "out"

    def broken(status: Status) -> str:
        if (out / JSONL_NAME).exists():  # once an output file is open
            raise RuntimeError("a bug in the loop")
        return "ok"

    monkeypatch.setattr(daemon, "status_line", broken)
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        port = probe.getsockname()[1]
    settings = Settings(model=str(centre_model), device="synthetic", speed=20.0,
                        duration_seconds=600.0, metrics_port=port, out=str(out))
    with pytest.raises(RuntimeError, match="a bug in the loop"):
        daemon.listen(settings)
    last = json.loads((out / JSONL_NAME).read_text().splitlines()[-1])
    assert last["type"] == "run" and last["event"] == "stop"
    assert last["reason"] == "error: RuntimeError: a bug in the loop"
    fd_dir = Path("/proc/self/fd")
    open_files = {str(p.readlink()) for p in fd_dir.iterdir() if p.is_symlink()} \
        if fd_dir.is_dir() else set()
    assert not [f for f in open_files if f.startswith(str(out))], open_files
    with socket.socket() as again:  # the metrics server let go of its port
        again.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        again.bind(("127.0.0.1", port))
