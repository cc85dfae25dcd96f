"""whaled detect on awkward archives: silent, unstamped, same-named, rerun, corrupt and short
recordings, and outputs that cannot be written (issue 9)."""

from __future__ import annotations

import json
import subprocess
from pathlib import Path

from conftest import WHALED
from helpers import calls_recording

from detector.sinks import JSONL_NAME


def run_detect(*args: str, timeout: float = 120) -> subprocess.CompletedProcess[str]:
    return subprocess.run([*WHALED, "detect", *args, "--no-progress"], capture_output=True,
                          text=True, timeout=timeout)


def records(out: Path, kind: str) -> list[dict[str, object]]:
    lines = (out / JSONL_NAME).read_text().splitlines()
    return [doc for doc in map(json.loads, lines) if doc["type"] == kind]


def test_silent_recording_first_in_a_fresh_out(tmp_path: Path, centre_model: Path) -> None:
    """No detections and no .partial folder yet: the table is still written, no traceback."""
    folder = tmp_path / "archive"
    folder.mkdir()
    calls_recording(folder / "quiet_20090329_121500.wav", 2000, 60, [])
    out = tmp_path / "out"
    run = run_detect(str(folder), "--model", str(centre_model), "--out", str(out))
    assert run.returncode == 0, run.stderr
    assert "Traceback" not in run.stderr
    [recording] = records(out, "recording")
    assert (recording["status"], recording["detections"]) == ("complete", 0)
    table = out / str(recording["raven_table"])
    assert table.read_text().splitlines()[0].startswith("Selection\tView\tChannel")
    assert len(table.read_text().splitlines()) == 1
