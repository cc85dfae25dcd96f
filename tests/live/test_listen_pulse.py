"""``whaled listen --device pulse`` end to end: real PortAudio capture of a played recording.

A private PulseAudio null sink (``pulse.py``) plays a recording with loud synthetic upcalls at
known offsets while the daemon, a subprocess, captures the sink's monitor. Each call must be
detected once, at the UTC time the same model gives it when the same file is replayed with
``--device file: --speed 0 --origin <when paplay started>``, within one hop: the live window
grid sits at an arbitrary phase against the file, which moves an event's edges by less than a
hop. Run at 2 kHz (the model's rate) and at 48 kHz (the daemon resamples).
"""

from __future__ import annotations

import json
import os
import signal
import subprocess
import threading
import time
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest
from conftest import WHALED
from helpers import calls_recording
from pulse import PulseServer, needs_pulseaudio, private_pulse

pytestmark = [pytest.mark.pulse, pytest.mark.slow, needs_pulseaudio]

RECORDING_SECONDS = 8.0
CALLS = [(2.0, 1.0), (5.0, 1.2)]  # (start, duration) seconds into the recording
HOP_SECONDS = 0.25  # the daemon's default hop
CENTRE_SECONDS = 0.25  # the test model listens to a window's middle +-0.25 s
PLAY_LATENCY_SECONDS = 0.05  # paplay start to its first sample in the stream (measured ~0)
TAIL_SECONDS = 2.5  # after the file ends: one window past the last call, and the merge gap
START_TIMEOUT_SECONDS = 60.0  # daemon start-up: torch import and model load on a busy CPU
STOP_TIMEOUT_SECONDS = 30.0
BACKSTOP_DURATION_SECONDS = 90  # --duration, in case the test dies before it stops the daemon


class Daemon:
    """``whaled listen`` as a subprocess, its stderr lines stamped with their arrival time."""

    def __init__(self, args: list[str]) -> None:
        self.lines: list[tuple[float, str]] = []
        self.ready = threading.Event()
        self.process = subprocess.Popen([*WHALED, "listen", *args], stderr=subprocess.PIPE,
                                        text=True, env={**os.environ, "PYTHONUNBUFFERED": "1"})
        self._pump = threading.Thread(target=self._read, daemon=True)
        self._pump.start()

    def _read(self) -> None:
        assert self.process.stderr is not None
        for line in self.process.stderr:
            self.lines.append((time.time(), line.rstrip("\n")))
            if " listening " in line:
                self.ready.set()

    def stop(self) -> int:
        if self.process.poll() is None:
            self.process.send_signal(signal.SIGINT)
        try:
            code = self.process.wait(STOP_TIMEOUT_SECONDS)
        finally:
            if self.process.poll() is None:
                self.process.kill()
                self.process.wait()
        self._pump.join(STOP_TIMEOUT_SECONDS)
        if self.process.stderr is not None:
            self.process.stderr.close()
        return code

    @property
    def stderr(self) -> str:
        return "\n".join(line for _, line in self.lines)


def records(out: Path) -> list[dict[str, object]]:
    lines = (out / "detections.jsonl").read_text().splitlines()
    return [r for r in map(json.loads, lines) if r["type"] != "run"]  # detections and gaps


def utc(text: object) -> datetime:
    return datetime.fromisoformat(str(text).replace("Z", "+00:00"))


def listen_live(server: PulseServer, recording: Path, model: Path, out: Path,
                rate_hz: int) -> tuple[datetime, Daemon]:
    """Play ``recording`` into the sink while the daemon listens; when paplay started."""
    daemon = Daemon(["--device", "pulse", "--rate", str(rate_hz), "--model", str(model),
                     "--out", str(out), "--metrics-port", "0",
                     "--duration", str(BACKSTOP_DURATION_SECONDS)])
    try:
        assert daemon.ready.wait(START_TIMEOUT_SECONDS), daemon.stderr
        played_at = datetime.now(UTC)
        player = server.play(recording)
        assert player.wait(RECORDING_SECONDS + STOP_TIMEOUT_SECONDS) == 0
        time.sleep(TAIL_SECONDS)
    finally:
        code = daemon.stop()
    assert code == 0, daemon.stderr
    assert "source=device:pulse" in daemon.stderr and f"rate_hz={rate_hz}" in daemon.stderr
    return played_at, daemon


def replay(recording: Path, model: Path, out: Path, origin: datetime) -> list[dict[str, object]]:
    run = subprocess.run([*WHALED, "listen", "--device", f"file:{recording}", "--speed", "0",
                          "--origin", origin.isoformat(), "--model", str(model),
                          "--out", str(out), "--metrics-port", "0"],
                         capture_output=True, text=True, timeout=120)
    assert run.returncode == 0, run.stderr
    return records(out)


@pytest.mark.parametrize("rate_hz", [2000, 48000])
def test_live_capture_detects_each_call_at_its_utc_time(
        tmp_path: Path, centre_model: Path, rate_hz: int) -> None:
    recording = calls_recording(tmp_path / f"calls{rate_hz}.wav", rate_hz, RECORDING_SECONDS,
                                CALLS)
    with private_pulse(rate_hz=rate_hz, channels=1) as server:
        played_at, daemon = listen_live(server, recording, centre_model, tmp_path / "live",
                                        rate_hz)
    live = records(tmp_path / "live")
    assert [r for r in live if r["type"] == "gap"] == []
    live = [r for r in live if r["type"] == "detection"]
    assert len(live) == len(CALLS), daemon.stderr  # each call once, nothing else

    for record, (start, duration) in zip(live, CALLS, strict=True):
        # the model scores a call while it overlaps the window's middle: the peak is inside
        call_start = played_at + timedelta(seconds=start)
        call_end = call_start + timedelta(seconds=duration)
        margin = timedelta(seconds=CENTRE_SECONDS + HOP_SECONDS + PLAY_LATENCY_SECONDS)
        assert call_start - margin <= utc(record["start_utc"]) <= call_start + margin
        assert call_end - margin <= utc(record["end_utc"]) <= call_end + margin
        assert utc(record["start_utc"]) <= utc(record["peak_utc"]) <= utc(record["end_utc"])
        assert record["channel"] == 1 and record["source"] == "device:pulse"

    offline = [r for r in replay(recording, centre_model, tmp_path / "file", played_at)
               if r["type"] == "detection"]
    assert len(offline) == len(live)
    tolerance = HOP_SECONDS + PLAY_LATENCY_SECONDS
    for live_record, file_record in zip(live, offline, strict=True):
        for edge in ("start_utc", "end_utc"):
            shift = (utc(live_record[edge]) - utc(file_record[edge])).total_seconds()
            print(f"{rate_hz} Hz: live {edge} - file {edge} = {shift:+.3f} s")
            assert abs(shift) < tolerance, (edge, shift, live_record, file_record)

    # latency: the detection line reached the log this long after the call's end
    logged = [at for at, line in daemon.lines if "detection label=upcall" in line]
    assert len(logged) == len(CALLS)
    for at, record in zip(logged, live, strict=True):
        latency = at - utc(record["end_utc"]).timestamp()
        print(f"{rate_hz} Hz: detection logged {latency:.2f} s after its end_utc")
        assert 0 < latency < RECORDING_SECONDS


def test_a_killed_sound_server_is_a_gap_and_times_stay_right_after_reconnecting(
        tmp_path: Path, centre_model: Path) -> None:
    """Kill PulseAudio mid-stream: the daemon records a device_lost gap spanning the outage,
    reopens the device with backoff, and stamps later calls at their true UTC time."""
    rate_hz, call_start, call_seconds, outage_seconds = 2000, 1.5, 1.0, 1.5
    recording = calls_recording(tmp_path / "call.wav", rate_hz, 4.0, [(call_start, call_seconds)])
    out = tmp_path / "live"
    with private_pulse(rate_hz=rate_hz, channels=1) as server:
        daemon = Daemon(["--device", "pulse", "--rate", str(rate_hz), "--model",
                         str(centre_model), "--out", str(out), "--metrics-port", "0",
                         "--duration", str(BACKSTOP_DURATION_SECONDS)])
        try:
            assert daemon.ready.wait(START_TIMEOUT_SECONDS), daemon.stderr
            played = [datetime.now(UTC)]
            assert server.play(recording).wait(STOP_TIMEOUT_SECONDS) == 0
            time.sleep(TAIL_SECONDS)
            killed_at = datetime.now(UTC)
            server.kill()
            time.sleep(outage_seconds)
            server.start()
            deadline = time.monotonic() + START_TIMEOUT_SECONDS
            while not any(" reopened " in line for _, line in daemon.lines):
                assert time.monotonic() < deadline, daemon.stderr
                time.sleep(0.05)
            reopened_at = next(at for at, line in daemon.lines if " reopened " in line)
            time.sleep(0.5)  # audio flows again
            played.append(datetime.now(UTC))
            assert server.play(recording).wait(STOP_TIMEOUT_SECONDS) == 0
            time.sleep(TAIL_SECONDS)
        finally:
            code = daemon.stop()
    assert code == 0, daemon.stderr
    found = records(out)
    gaps = [r for r in found if r["type"] == "gap"]
    assert [g["reason"] for g in gaps] == ["device_lost"], daemon.stderr
    gap_start, gap_end = utc(gaps[0]["start_utc"]), utc(gaps[0]["end_utc"])
    print(f"gap {gap_start:%H:%M:%S.%f} - {gap_end:%H:%M:%S.%f}; killed at "
          f"{killed_at:%H:%M:%S.%f}, reopened at {datetime.fromtimestamp(reopened_at, UTC):%S.%f}")
    assert abs((gap_start - killed_at).total_seconds()) < 0.5
    assert abs(gap_end.timestamp() - reopened_at) < 0.5
    detections = [r for r in found if r["type"] == "detection"]
    assert len(detections) == 2, daemon.stderr
    margin = timedelta(seconds=CENTRE_SECONDS + HOP_SECONDS + PLAY_LATENCY_SECONDS)
    for record, started in zip(detections, played, strict=True):
        expected = started + timedelta(seconds=call_start)
        assert expected - margin <= utc(record["start_utc"]) <= expected + margin
