"""A lost audio device comes back: the real PulseAudio server killed and started again.

The daemon keeps running through the loss: it logs and counts it, retries with backoff,
records the lost span as a "device_lost" gap, and detects calls again once capture resumes.
"""

from __future__ import annotations

import json
import os
import signal
import subprocess
import time
import urllib.request
from pathlib import Path

import pytest
from conftest import WHALED
from helpers import calls_recording
from pulse import needs_pulseaudio, private_pulse
from test_alerts import free_port, wait_for

pytestmark = [pytest.mark.pulse, pytest.mark.slow, needs_pulseaudio]
OUTAGE_SECONDS = 3.0  # how long the sound server stays dead
START_TIMEOUT_SECONDS = 60.0
DETECT_TIMEOUT_SECONDS = 20.0


def metric(port: int, name: str) -> float:
    with urllib.request.urlopen(f"http://127.0.0.1:{port}/metrics", timeout=5) as reply:
        for line in reply.read().decode().splitlines():
            if line.startswith(name + " "):
                return float(line.split()[-1])
    return 0.0


def records(out: Path) -> list[dict[str, object]]:
    path = out / "detections.jsonl"
    lines = path.read_text().splitlines() if path.exists() else []
    return [r for r in map(json.loads, lines) if r["type"] != "run"]  # detections and gaps


def test_device_lost_and_back_resumes_without_a_restart(centre_model: Path,
                                                         tmp_path: Path) -> None:
    out, port = tmp_path / "out", free_port()
    config = tmp_path / "whaled.toml"
    config.write_text("reconnect_min_seconds = 0.5\nreconnect_max_seconds = 2.0\n"
                      "evidence = false\n")
    wav = calls_recording(tmp_path / "call.wav", 2000, 3.0, [(1.0, 1.0)])
    log_path = tmp_path / "whaled.log"
    with private_pulse(rate_hz=2000) as server, log_path.open("w") as log:
        daemon = subprocess.Popen(
            [*WHALED, "listen", "--config", str(config), "--device", "pulse", "--rate", "2000",
             "--model", str(centre_model), "--metrics-port", str(port), "--out", str(out),
             "--duration", "300"], stderr=log, env={**os.environ, "PYTHONUNBUFFERED": "1"})
        try:
            wait_for("listening", lambda: " listening " in log_path.read_text(),
                     START_TIMEOUT_SECONDS)
            server.play(wav).wait()
            wait_for("first detection", lambda: len(records(out)) == 1, DETECT_TIMEOUT_SECONDS)
            server.kill()
            lost_at = time.monotonic()
            wait_for("loss noticed", lambda: "lost: reopening" in log_path.read_text(), 5)
            noticed = time.monotonic() - lost_at
            time.sleep(max(0.0, OUTAGE_SECONDS - noticed))
            server.start()
            reopened = wait_for("reopened", lambda: "reopened after" in log_path.read_text(),
                                DETECT_TIMEOUT_SECONDS) + OUTAGE_SECONDS
            server.play(wav).wait()
            wait_for("detection after the loss", lambda: sum(
                r["type"] == "detection" for r in records(out)) == 2, DETECT_TIMEOUT_SECONDS)
            losses = metric(port, "whaled_device_losses_total")
            failed = metric(port, 'whaled_reconnect_attempts_total{result="failed"}')
            ok = metric(port, 'whaled_reconnect_attempts_total{result="ok"}')
            lost = metric(port, 'whaled_gaps_total{reason="device_lost"}')
            assert daemon.poll() is None  # never restarted
        finally:
            daemon.send_signal(signal.SIGINT)
            status = daemon.wait(30)
    text = log_path.read_text()
    print(f"loss noticed after {noticed:.2f} s; capture back {reopened:.1f} s after the kill")
    assert status == 0, text
    assert noticed < 2.0
    assert losses == 1 and ok == 1 and failed >= 1 and lost == 1, (losses, ok, failed, lost)
    gaps = [r for r in records(out) if r["type"] == "gap"]
    assert [g["reason"] for g in gaps] == ["device_lost"]
    assert OUTAGE_SECONDS - 0.5 < float(gaps[0]["seconds"]) < reopened + 2.0, gaps  # type: ignore[arg-type]
    assert [r["type"] for r in records(out)] == ["detection", "gap", "detection"]
