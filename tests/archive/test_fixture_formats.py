"""The committed fixtures through ``whaled detect``, as a user's folder of odd recordings would
go: stereo FLAC, 24-bit WAV, a rate too slow for the model, a file shorter than one window and
an empty one. Nothing here needs ../shared, so these format checks never skip."""

from __future__ import annotations

import json
import subprocess
from pathlib import Path

from conftest import WHALED

FIXTURES = Path(__file__).resolve().parents[1] / "fixtures"


def test_a_folder_of_odd_recordings_gives_each_its_answer(tmp_path: Path) -> None:
    out = tmp_path / "out"
    run = subprocess.run([*WHALED, "detect", str(FIXTURES), "--out", str(out), "--no-figure",
                          "--no-progress"], capture_output=True, text=True, timeout=300)
    assert run.returncode == 1, run.stderr  # three recordings failed, the rest scanned
    found = [json.loads(line) for line in (out / "detections.jsonl").read_text().splitlines()]
    calls = sorted((d["recording"], d["channel"], d["start_seconds"])
                   for d in found if d.get("type") == "detection")
    assert [(name, channel) for name, channel, _ in calls] == [
        ("pcm24_2khz_call.wav", 1), ("stereo_2khz_call_on_2.flac", 2)]
    starts = {name: start for name, _, start in calls}
    assert 0.0 <= starts["pcm24_2khz_call.wav"] <= 1.2  # the call lies at 0.7-1.7 s
    assert 1.0 <= starts["stereo_2khz_call_on_2.flac"] <= 2.0  # 1.5-2.5 s, on channel 2 only
    failed = [line for line in run.stderr.splitlines() if line.startswith("failed: ")]
    assert len(failed) == 3
    reasons = {Path(line.split(": ")[1]).name: line for line in failed}
    assert "at least 1047 Hz is needed" in reasons["pcm24_1khz_call.wav"]
    assert "too short: 0.5 s of audio, one window is 2 s" in reasons["short_0.5s.wav"]
    assert "empty: no audio samples" in reasons["empty.wav"]
    assert "Traceback" not in run.stderr
