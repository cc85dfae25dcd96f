"""What detect says at the end: this run's counts, and the whole output over every run."""

from __future__ import annotations

import csv
import subprocess
from pathlib import Path

from conftest import WHALED
from helpers import calls_recording

from detector.season.presence import CSV_NAME, DAILY_NAME


def test_a_resumed_run_reports_itself_and_the_totals(tmp_path: Path, centre_model: Path) -> None:
    archive, out = tmp_path / "archive", tmp_path / "out"
    archive.mkdir()
    for i in range(2):
        calls_recording(archive / f"s_2009032{i}_120000.wav", 2000, 60, [(10.0, 1.0),
                                                                         (40.0, 1.0)], seed=i)

    def run() -> str:
        done = subprocess.run([*WHALED, "detect", str(archive), "--model", str(centre_model),
                               "--out", str(out), "--no-progress"], capture_output=True,
                              text=True, timeout=120)
        assert done.returncode in (0, 1), done.stderr
        return "\n".join(line for line in done.stderr.splitlines()
                         if not line.startswith(("INFO", "WARNING", "ERROR")))

    first = run()
    assert "detect: 2 recordings (0 already complete), 2 scanned, 0.033 h of audio" in first
    assert "4 detections, 0 failed" in first and "in all runs" not in first

    calls_recording(archive / "s_20090322_120000.wav", 2000, 60, [(20.0, 1.0)], seed=5)
    (archive / "broken.wav").write_bytes(b"RIFF\x00\x00not a wave file")
    second = run()
    assert "detect: 4 recordings (2 already complete), 2 scanned, 0.017 h of audio" in second
    assert "1 detection, 1 failed" in second  # one: no plural s
    assert "in all runs: 4 recordings (3 complete, 1 failed), 0.050 h of audio, 5 detections" \
        in second

    with (out / CSV_NAME).open(newline="") as handle:
        rows = list(csv.DictReader(handle))
    expected = [("s_20090320_120000.wav", 10.0), ("s_20090320_120000.wav", 40.0),
                ("s_20090321_120000.wav", 10.0), ("s_20090321_120000.wav", 40.0),
                ("s_20090322_120000.wav", 20.0)]
    assert [r["recording"] for r in rows] == [name for name, _ in expected]
    for row, (name, call_seconds) in zip(rows, expected, strict=True):
        start = float(row["start_seconds"])
        assert abs(start - call_seconds) < 1.0  # the detection starts at the call
        day = name[2:10]
        assert row["start_utc"] == (f"{day[:4]}-{day[4:6]}-{day[6:]}T12:00:"
                                    f"{int(start):02d}.{round(start % 1 * 1000):03d}Z")
        assert row["channel"] == "1" and float(row["peak_score"]) > 0.5
    with (out / DAILY_NAME).open(newline="") as handle:
        daily = [(r["date_utc"], r["audio_minutes"], r["detections"])
                 for r in csv.DictReader(handle)]
    assert daily == [("2009-03-20", "1.0", "2"), ("2009-03-21", "1.0", "2"),
                     ("2009-03-22", "1.0", "1")]


def test_one_of_a_thing_is_said_without_a_plural_s() -> None:
    from detector.archive.run import DetectSummary
    from detector.cli.detect import summary_lines

    lines = summary_lines(DetectSummary(recordings=1, audio_seconds=60.0, wall_seconds=1.0,
                                        detections=1, unstamped=["a.wav"], evidence_clips=1))
    assert lines[0].startswith("detect: 1 recording (0 already complete), 1 scanned")
    assert "1 detection, 0 failed" in lines[0]
    assert "evidence: 1 clip written" in lines
    assert lines[-1].startswith("warning: 1 recording without a start time in the name")
    two = summary_lines(DetectSummary(recordings=2, detections=0, unwritten=(2, 3)))
    assert "2 recordings (0 already complete)" in two[0] and "0 detections" in two[0]
    assert two[-1].startswith("whaled: error: the results of 2 recordings (3 lines) were")
