"""whaled detect on awkward archives: silent, unstamped, same-named, rerun, corrupt and short
recordings, and outputs that cannot be written (issue 9)."""

from __future__ import annotations

import json
import os
import re
import resource
import subprocess
import time
from collections import Counter
from collections.abc import Callable
from datetime import UTC, datetime
from pathlib import Path

import numpy as np
import pytest
import soundfile
from conftest import WHALED
from helpers import calls_recording

from detector.core.config import Settings
from detector.core.stamps import (
    StampError,
    compile_pattern,
    origin_from_name,
    origin_from_pattern,
    parse_origin,
)
from detector.outputs.sinks import JSONL_NAME
from detector.stream.blocks import Block


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


# --- 5, 6: start times from --origin and name stamps, never from the modification time ---

@pytest.mark.parametrize(("name", "expected"), [
    ("NOPP6_EST_20090329_121500.wav", datetime(2009, 3, 29, 12, 15, tzinfo=UTC)),
    ("site_20090329-121500.flac", datetime(2009, 3, 29, 12, 15, tzinfo=UTC)),
    ("buoy3_2009-03-29_12-15-00.wav", datetime(2009, 3, 29, 12, 15, tzinfo=UTC)),
    ("5863.180914120000.wav", datetime(2018, 9, 14, 12, 0, tzinfo=UTC)),
    ("glider_2009-03-29T12:15:00Z.wav", datetime(2009, 3, 29, 12, 15, tzinfo=UTC)),
    ("glider_2009-03-29T14:15:00.5+02:00.wav",
     datetime(2009, 3, 29, 12, 15, 0, 500000, tzinfo=UTC)),
    ("g_20090329T131500+0100.aif", datetime(2009, 3, 29, 12, 15, tzinfo=UTC)),
    ("take_20091329_121500.wav", None),  # month 13: not a stamp
    ("recording.wav", None),
])
def test_name_stamps(name: str, expected: datetime | None) -> None:
    assert origin_from_name(Path("/x") / name) == expected


def test_timestamp_pattern_and_origin_offsets() -> None:
    assert origin_from_pattern(Path("/d/AMAR173.1.20090329T121500.123Z.wav"),
                               "%Y%m%dT%H%M%S.%f") == datetime(2009, 3, 29, 12, 15, 0, 123000,
                                                               tzinfo=UTC)
    assert origin_from_pattern(Path("/d/2009/088/st1_121500.wav"), "%Y/%j/st1_%H%M%S") == \
        datetime(2009, 3, 29, 12, 15, tzinfo=UTC)
    assert origin_from_pattern(Path("/d/other.wav"), "%Y%m%d") is None
    with pytest.raises(StampError, match="needs a year"):
        compile_pattern("%H%M%S")
    with pytest.raises(StampError, match="%b is not supported"):
        compile_pattern("%d%b%Y")
    assert parse_origin("2020-01-01T00:00:00+05:00") == datetime(2019, 12, 31, 19, tzinfo=UTC)
    assert parse_origin("2020-01-01T00:00:00") == datetime(2020, 1, 1, tzinfo=UTC)


def test_origin_with_an_offset_is_converted_to_utc(tmp_path: Path, centre_model: Path) -> None:
    """listen --origin and detect --origin: +05:00 means five hours earlier in UTC."""
    rec = calls_recording(tmp_path / "plain.wav", 2000, 30, [(12.0, 1.0)])
    out = tmp_path / "listen"
    run = subprocess.run([*WHALED, "listen", "--device", f"file:{rec}", "--speed", "0",
                          "--model", str(centre_model), "--out", str(out), "--metrics-port",
                          "0", "--origin", "2020-01-01T00:00:00+05:00"],
                         capture_output=True, text=True, timeout=120)
    assert run.returncode == 0, run.stderr
    [detection] = records(out, "detection")
    assert str(detection["start_utc"]).startswith("2019-12-31T19:00:1")
    run = run_detect(str(rec), "--model", str(centre_model), "--out", str(tmp_path / "d"),
                     "--origin", "2020-01-01T00:00:00+05:00")
    assert run.returncode == 0, run.stderr
    [detection] = records(tmp_path / "d", "detection")
    assert str(detection["start_utc"]).startswith("2019-12-31T19:00:1")
    [recording] = records(tmp_path / "d", "recording")
    assert (recording["origin_utc"], recording["origin_from"]) == (
        "2019-12-31T19:00:00.000Z", "flag")


def test_no_stamp_is_said_loudly_and_mtime_is_never_a_start(
        tmp_path: Path, centre_model: Path) -> None:
    folder = tmp_path / "archive"
    folder.mkdir()
    plain = calls_recording(folder / "take1.wav", 2000, 30, [(12.0, 1.0)])
    calls_recording(folder / "take2.wav", 2000, 30, [])
    os.utime(plain, (1_600_000_000, 1_600_000_000))
    out = tmp_path / "out"
    run = run_detect(str(folder), "--model", str(centre_model), "--out", str(out))
    assert run.returncode == 0, run.stderr
    assert "take1.wav: no start time in its name" in run.stderr
    assert "warning: 2 recordings without a start time in the name" in run.stderr
    [detection] = records(out, "detection")
    assert detection["start_utc"] is None and 11.5 < float(detection["start_seconds"]) < 12.5
    recording = records(out, "recording")[0]
    assert (recording["origin_utc"], recording["origin_from"]) == (None, "none")
    table = (out / str(recording["raven_table"])).read_text().splitlines()
    header, row = table[0].split("\t"), table[1].split("\t")
    assert row[header.index("Begin UTC")] == "" and float(row[header.index("Begin Time (s)")]) > 11
    # --origin names one recording's start; a folder of them needs a pattern
    run = run_detect(str(folder), "--model", str(centre_model), "--out", str(out),
                     "--origin", "2020-01-01T00:00:00Z")
    assert run.returncode == 2 and run.stderr.startswith("whaled: error: --origin")
    # a pattern that fits the names gives every recording its start
    for i, path in enumerate(sorted(folder.glob("*.wav"))):
        path.rename(folder / f"take{i + 1}-29.03.09-12h15.wav")
    run = run_detect(str(folder), "--model", str(centre_model), "--out", str(tmp_path / "p"),
                     "--timestamp-pattern", "%d.%m.%y-%Hh%M")
    assert run.returncode == 0 and "no start time" not in run.stderr, run.stderr
    [detection] = records(tmp_path / "p", "detection")
    assert str(detection["start_utc"]).startswith("2009-03-29T12:15:1")


def test_listen_refuses_a_recording_without_a_start(tmp_path: Path, centre_model: Path) -> None:
    rec = calls_recording(tmp_path / "plain.wav", 2000, 5, [])
    run = subprocess.run([*WHALED, "listen", "--device", f"file:{rec}", "--speed", "0",
                          "--model", str(centre_model), "--out", str(tmp_path / "o"),
                          "--metrics-port", "0"], capture_output=True, text=True, timeout=120)
    assert run.returncode == 2
    assert run.stderr.startswith("whaled: error: ") and "--origin" in run.stderr
    assert len(run.stderr.strip().splitlines()) == 1


# --- 7: same-named recordings in different folders ---

def test_same_names_in_different_folders_keep_their_own_tables(
        tmp_path: Path, centre_model: Path) -> None:
    root = tmp_path / "archive"
    for site, calls in (("north", [(10.0, 1.0)]), ("south", [(10.0, 1.0), (20.0, 1.0)])):
        (root / site).mkdir(parents=True)
        calls_recording(root / site / "day_20090329_120000.wav", 2000, 30, calls)
    out = tmp_path / "out"
    run = run_detect(str(root), "--model", str(centre_model), "--out", str(out))
    assert run.returncode == 0, run.stderr
    for site, n in (("north", 1), ("south", 2)):
        rows = (out / site / "day_20090329_120000.selections.txt").read_text().splitlines()
        assert len(rows) == 1 + n
    detections = records(out, "detection")
    assert Counter(d["recording"] for d in detections) == {
        "north/day_20090329_120000.wav": 1, "south/day_20090329_120000.wav": 2}
    assert {str(r["recording"]): r["raven_table"] for r in records(out, "recording")} == {
        "north/day_20090329_120000.wav": "north/day_20090329_120000.selections.txt",
        "south/day_20090329_120000.wav": "south/day_20090329_120000.selections.txt"}
    # two folders given that hold the same relative name would share a table: refused
    run = run_detect(str(root / "north"), str(root / "south"), "--model", str(centre_model),
                     "--out", str(tmp_path / "clash"))
    assert run.returncode == 2 and "Traceback" not in run.stderr
    assert run.stderr.strip().splitlines()[-1].startswith(
        "whaled: error: two recordings would share the table day_20090329_120000.selections.txt")
    # and a later run into the same --out from another root: refused, nothing overwritten
    run = run_detect(str(root / "south"), "--model", str(centre_model), "--out",
                     str(tmp_path / "clash"))
    assert run.returncode == 0, run.stderr
    run = run_detect(str(root / "north"), "--model", str(centre_model), "--out",
                     str(tmp_path / "clash"))
    assert run.returncode == 2
    assert "already holds day_20090329_120000.selections.txt" in run.stderr


# --- 8: a rerun with other settings or a touched file keeps one current result ---

def test_rerun_keeps_one_current_result_per_recording(
        tmp_path: Path, centre_model: Path) -> None:
    root = tmp_path / "archive"
    root.mkdir()
    for i in range(3):
        calls_recording(root / f"r{i}_20090329_12000{i}.wav", 2000, 40,
                        [(8.0, 1.0), (20.0, 0.6), (30.0, 1.2)], snr_db=12 + 6 * i, seed=i)
    out = tmp_path / "out"
    base = [str(root), "--model", str(centre_model), "--out", str(out)]
    assert run_detect(*base).returncode == 0
    first = records(out, "detection")
    strict = run_detect(*base, "--on-threshold", "0.99", "--off-threshold", "0.9")
    assert strict.returncode == 0, strict.stderr
    assert "3 recordings in" in strict.stderr and "superseded" in strict.stderr
    current = records(out, "detection")
    reported = re.search(r"(\d+) detections", strict.stderr)
    assert reported and 0 < len(current) == int(reported[1])  # not the first run's as well
    assert all(d["on_threshold"] == 0.99 for d in current)
    assert Counter(r["recording"] for r in records(out, "recording")) == {
        f"r{i}_20090329_12000{i}.wav": 1 for i in range(3)}
    old = [json.loads(line) for line in (out / "detections.superseded.jsonl").read_text()
           .splitlines()]
    assert [d for d in old if d["type"] == "detection"] == first
    assert all(r["superseded_utc"] for r in old if r["type"] == "recording")
    # a touched recording is scanned again; the others are skipped; still one result each
    os.utime(root / "r1_20090329_120001.wav")
    again = run_detect(*base, "--on-threshold", "0.99", "--off-threshold", "0.9")
    assert "3 recordings (2 already complete)" in again.stderr
    assert sorted(map(json.dumps, records(out, "detection"))) == \
        sorted(map(json.dumps, current))
    assert len(records(out, "recording")) == 3
    table = (out / "r1_20090329_120001.selections.txt").read_text().splitlines()
    assert len(table) == 1 + sum(d["recording"] == "r1_20090329_120001.wav" for d in current)


def test_a_second_detect_on_the_same_out_is_refused(tmp_path: Path, centre_model: Path) -> None:
    import fcntl

    rec = calls_recording(tmp_path / "a_20090329_120000.wav", 2000, 5, [])
    out = tmp_path / "out"
    out.mkdir()
    with (out / ".whaled-detect.lock").open("w") as held:
        fcntl.flock(held, fcntl.LOCK_EX | fcntl.LOCK_NB)
        run = run_detect(str(rec), "--model", str(centre_model), "--out", str(out))
    assert run.returncode == 2
    assert "another whaled detect is writing to" in run.stderr.strip().splitlines()[-1]


# --- 9: NaN and Inf are gaps; a file with no finite audio failed ---

def test_nonfinite_samples_are_gaps_and_all_nan_fails(tmp_path: Path, centre_model: Path) -> None:
    import soundfile

    folder = tmp_path / "archive"
    folder.mkdir()
    rec = calls_recording(folder / "bad_20090329_120000.wav", 2000, 40, [(25.0, 1.0)],
                          subtype="FLOAT")
    audio, rate = soundfile.read(str(rec), dtype="float32")
    audio[10 * rate:15 * rate] = np.nan
    audio[15 * rate + 1000:15 * rate + 1005] = np.inf  # 0.5 s after the NaN: one gap, not two
    audio[33 * rate] = -np.inf
    soundfile.write(str(rec), audio, rate, subtype="FLOAT")
    soundfile.write(str(folder / "nan_20090329_130000.wav"),
                    np.full(20 * rate, np.nan, np.float32), rate, subtype="FLOAT")
    out = tmp_path / "out"
    run = run_detect(str(folder), "--model", str(centre_model), "--out", str(out))
    assert run.returncode == 1, run.stderr
    gaps = [(g["recording"], g["reason"], g["start_seconds"], g["end_seconds"])
            for g in records(out, "gap")]  # seconds rounded to the millisecond
    assert gaps == [("bad_20090329_120000.wav", "nonfinite", 10.0, 15.503),
                    ("bad_20090329_120000.wav", "nonfinite", 33.0, 33.001),
                    ("nan_20090329_130000.wav", "nonfinite", 0.0, 20.0)]
    [detection] = records(out, "detection")
    assert 24.5 < float(detection["start_seconds"]) < 25.5
    status = {r["recording"]: (r["status"], r["error"]) for r in records(out, "recording")}
    assert status["bad_20090329_120000.wav"] == ("complete", "")
    assert status["nan_20090329_130000.wav"] == (
        "failed", "no finite audio: all 20.0 s are NaN or Inf")


# --- 10: inputs that cannot be analysed are refused or reported, never "complete" ---

def test_unanalysable_recordings_are_failed_with_the_reason(
        tmp_path: Path, centre_model: Path) -> None:
    import soundfile

    folder = tmp_path / "archive"
    folder.mkdir()
    calls_recording(folder / "slow_20090329_120000.wav", 400, 30, [])
    calls_recording(folder / "short_20090329_120000.wav", 2000, 1.5, [])
    soundfile.write(str(folder / "empty_20090329_120000.wav"), np.zeros(0, np.float32), 2000)
    whole = calls_recording(tmp_path / "whole.wav", 2000, 20, []).read_bytes()
    (folder / "cut_20090329_120000.wav").write_bytes(whole[:len(whole) // 2])
    out = tmp_path / "out"
    run = run_detect(str(folder), "--model", str(centre_model), "--out", str(out))
    assert run.returncode == 1 and "Traceback" not in run.stderr, run.stderr
    status = {r["recording"]: (r["status"], r["error"]) for r in records(out, "recording")}
    assert status == {
        "slow_20090329_120000.wav": ("failed", "sample rate 400 Hz cannot hold the 0-1000 Hz "
                                     "band the model listens to (at least 2000 Hz is needed)"),
        "short_20090329_120000.wav": ("failed", "too short: 1.5 s of audio, one window is 2 s"),
        "empty_20090329_120000.wav": ("failed", "empty: no audio samples"),
        "cut_20090329_120000.wav": ("failed", "truncated: the header promises 20.0 s, the file "
                                    "holds 10.0 s, all of it scanned"),
    }
    assert "4 failed" in run.stderr
    assert f"failed {folder / 'cut_20090329_120000.wav'}: truncated" in run.stderr
    assert "skipped" not in run.stderr  # "skipped" is for recordings already complete


@pytest.mark.parametrize(("flags", "message"), [
    (["--hop", "3"], "3.0 is invalid (at most window_seconds"),
    (["--channels", "1,1"], "(1, 1) is invalid (each channel once"),
])
def test_bad_hop_and_channels_are_one_line(flags: list[str], message: str,
                                           tmp_path: Path) -> None:
    out = ["--out", str(tmp_path / "out")]
    for command in (["detect", str(tmp_path), *out], ["listen", "--duration", "1", *out]):
        run = subprocess.run([*WHALED, *command, *flags], capture_output=True, text=True,
                             timeout=60)
        assert run.returncode == 2
        assert run.stderr.startswith("whaled: error: ") and message in run.stderr, run.stderr
        assert len(run.stderr.strip().splitlines()) == 1


def test_listen_refuses_a_rate_below_the_band(tmp_path: Path, centre_model: Path) -> None:
    rec = calls_recording(tmp_path / "slow_20090329_120000.wav", 400, 10, [])
    run = subprocess.run([*WHALED, "listen", "--device", f"file:{rec}", "--speed", "0",
                          "--model", str(centre_model), "--out", str(tmp_path / "o"),
                          "--metrics-port", "0"], capture_output=True, text=True, timeout=120)
    assert run.returncode == 2
    assert run.stderr.strip().splitlines() == [
        f"whaled: error: {rec}: sample rate 400 Hz cannot hold the 50-250 Hz band of an upcall "
        "(at least 500 Hz is needed)"]


@pytest.mark.parametrize(("seconds", "error"), [
    (0.0, "empty: no audio samples"),
    (1.5, "too short: 1.5 s of audio, one window is 2 s"),
])
def test_listen_on_a_file_too_short_to_analyse_fails_as_detect_does(
        tmp_path: Path, centre_model: Path, seconds: float, error: str) -> None:
    """Issue 17.13: exit 0 and no word, where detect marks the recording failed."""
    rec = tmp_path / "short_20090329_120000.wav"
    soundfile.write(str(rec), np.zeros(int(seconds * 2000), np.float32), 2000)
    run = subprocess.run([*WHALED, "listen", "--device", f"file:{rec}", "--speed", "0",
                          "--model", str(centre_model), "--out", str(tmp_path / "o"),
                          "--metrics-port", "0", "--log-level", "ERROR"],
                         capture_output=True, text=True, timeout=120)
    assert run.returncode == 1, run.stderr
    assert run.stderr.strip().splitlines() == [f"whaled: error: {rec}: {error}"]


def test_listen_refuses_a_rate_for_a_file(tmp_path: Path, centre_model: Path) -> None:
    """--rate was silently ignored for file: recordings."""
    rec = calls_recording(tmp_path / "rec_20090329_120000.wav", 2000, 3, [])
    run = subprocess.run([*WHALED, "listen", "--device", f"file:{rec}", "--rate", "48000",
                          "--model", str(centre_model), "--out", str(tmp_path / "o"),
                          "--metrics-port", "0"], capture_output=True, text=True, timeout=120)
    assert run.returncode == 2, run.stderr
    assert run.stderr.strip().splitlines() == [
        f"whaled: error: --rate 48000 (sample_rate_hz) cannot apply to {rec}: a recording is "
        "read at its own 2000 Hz and resampled for the model; drop --rate"]


def test_synthetic_channel_2_is_channel_2(tmp_path: Path) -> None:
    from detector.live.daemon import open_source
    from detector.sources.replay import SyntheticSource

    two = SyntheticSource(rate_hz=2000, block_frames=20000, speed=0, channels=2, seed=3)
    only, live = open_source(Settings(device="synthetic", channels=(2,), speed=0, seed=3,
                                      block_seconds=10.0, out=str(tmp_path)))
    assert live is None  # a simulated hydrophone is never lost
    assert only.info.channels == (2,)
    [both], [second] = two.read(1.0), only.read(1.0)
    only.close()
    assert isinstance(both, Block) and isinstance(second, Block)
    assert second.samples.shape == (20000, 1)
    np.testing.assert_array_equal(second.samples[:, 0], both.samples[:, 1])


# --- 14: outputs that cannot be written, a full disk, progress within a file ---

def file_size_limit(limit_bytes: int) -> Callable[[], None]:
    """A disk that fills: no file of the child may grow past ``limit_bytes`` (EFBIG)."""
    def apply() -> None:
        resource.setrlimit(resource.RLIMIT_FSIZE, (limit_bytes, limit_bytes))
    return apply


def test_unwritable_outputs_are_refused_before_any_work(
        tmp_path: Path, centre_model: Path) -> None:
    rec = calls_recording(tmp_path / "a_20090329_120000.wav", 2000, 10, [])
    blocker = tmp_path / "a-file"
    blocker.write_text("")
    (tmp_path / "empty").mkdir()
    runs = {
        "detect": subprocess.run(
            [*WHALED, "detect", str(rec), "--model", str(centre_model), "--out",
             str(tmp_path / "out"), "--no-progress"], capture_output=True, text=True,
            timeout=120, preexec_fn=file_size_limit(0)),
        "train": subprocess.run(
            [*WHALED, "train", str(tmp_path / "no-data"), "--out", str(blocker / "m.pt")],
            capture_output=True, text=True, timeout=120),
        "evaluate": subprocess.run(
            [*WHALED, "evaluate", str(centre_model), str(tmp_path / "empty"),
             "--plots", str(blocker / "plots")], capture_output=True, text=True, timeout=120),
    }
    for command, run in runs.items():
        assert run.returncode == 2, (command, run.stderr)
        last = run.stderr.strip().splitlines()[-1]
        assert last.startswith("whaled: error: ") and "not writable" in last, (command, last)
        assert "Traceback" not in run.stderr
    assert "detect model=" not in runs["detect"].stderr  # refused before the model is loaded


def test_full_disk_in_detect_is_retried_reported_and_resumed(
        tmp_path: Path, centre_model: Path) -> None:
    folder = tmp_path / "archive"
    folder.mkdir()
    for i in range(3):
        calls_recording(folder / f"r{i}_20090329_12000{i}.wav", 2000, 60,
                        [(5.0 + 5 * k, 1.0) for k in range(10)], seed=i)
    out = tmp_path / "out"
    full = subprocess.run([*WHALED, "detect", str(folder), "--model", str(centre_model),
                           "--out", str(out), "--no-progress"], capture_output=True, text=True,
                          timeout=120, preexec_fn=file_size_limit(6000))
    assert full.returncode == 1 and "Traceback" not in full.stderr, full.stderr
    assert "were never written" in full.stderr
    text = (out / JSONL_NAME).read_text()
    written = [r for r in records(out, "recording") if r["status"] == "complete"]
    assert text.endswith("\n") and 1 <= len(written) < 3  # whole results only
    again = run_detect(str(folder), "--model", str(centre_model), "--out", str(out))
    assert again.returncode == 0, again.stderr
    assert f"3 recordings ({len(written)} already complete)" in again.stderr
    assert len(records(out, "detection")) == 30


def test_full_disk_in_listen_with_evidence_off_exits_non_zero(
        tmp_path: Path, centre_model: Path) -> None:
    rec = calls_recording(tmp_path / "busy_20090329_120000.wav", 2000, 100,
                          [(2.0 + 3 * k, 1.0) for k in range(30)])
    config = tmp_path / "whaled.toml"
    config.write_text("evidence = false\n")
    out = tmp_path / "out"
    run = subprocess.run([*WHALED, "listen", "--config", str(config), "--device", f"file:{rec}",
                          "--speed", "0", "--model", str(centre_model), "--out", str(out),
                          "--metrics-port", "0"], capture_output=True, text=True, timeout=120,
                         preexec_fn=file_size_limit(3000))
    written = len((out / JSONL_NAME).read_text().splitlines())
    assert 0 < written < 30
    assert run.returncode == 1, run.stderr
    last = run.stderr.strip().splitlines()[-1]
    missing = re.match(r"whaled: error: (\d+) lines never reached \S+detections.jsonl", last)
    assert missing, last
    assert int(missing[1]) + written == 30 + 2  # the detections and the start and stop records
    assert run.stderr.count(f"never written to {out / JSONL_NAME}: ") == int(missing[1])


def test_detect_progress_moves_within_a_file(tmp_path: Path, centre_model: Path) -> None:
    from detector.archive.scan import scan_recording
    from detector.model.artifact import load_model

    rec = calls_recording(tmp_path / "long_20090329_120000.wav", 2000, 600, [])
    seen: list[float] = []
    settings = Settings(model=str(centre_model), speed=0.0, block_seconds=8.0, evidence=False,
                        metrics_port=0)
    result = scan_recording(rec, load_model(centre_model), settings, seen.append)
    assert result.error == ""
    within = [s for s in seen if 0 < s < 600]
    assert len(within) >= 5 and within == sorted(within), seen


def test_speed_0_replay_retries_failed_writes_while_it_runs(
        tmp_path: Path, centre_model: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """Before, a file replay never left the drain loop, so nothing ticked until the end."""
    import threading

    from prometheus_client import CollectorRegistry

    from detector.model.artifact import load_model
    from detector.outputs.metrics import Metrics
    from detector.outputs.sinks import HoldsNothing
    from detector.sources.replay import FileSource
    from detector.stream import pipeline as pipeline_module

    class Retried(HoldsNothing):
        name = "retried"

        def __init__(self) -> None:
            self.retries_at: list[int] = []

        def write(self, record: object) -> None:
            pass

        def retry(self) -> None:
            self.retries_at.append(run.summary.samples)

    monkeypatch.setattr(pipeline_module, "RETRY_SECONDS", 0.0)
    rec = calls_recording(tmp_path / "long_20090329_120000.wav", 2000, 600, [])
    source = FileSource(rec, block_frames=200)
    sink = Retried()
    run = pipeline_module.Pipeline(source, load_model(centre_model), Settings(speed=0.0),
                                   [sink], Metrics(CollectorRegistry(), (1,), ("upcall",)))
    run.run(threading.Event())
    during = [s for s in sink.retries_at if s < 600 * 2000]
    assert len(during) >= 5, sink.retries_at


def test_folder_scans_take_mp3_and_ogg_and_name_what_they_skip(
        tmp_path: Path, centre_model: Path, capfd: pytest.CaptureFixture[str]) -> None:
    """MP3 and Ogg decode here (libsndfile >= 1.1), so a folder scan takes them, with no
    libmpg123 line on stderr (fd 2, where it writes); an audio format nothing here reads is
    named, not passed by."""
    import soundfile

    from detector.cli.detect import run_detect_command
    from detector.stream.blocks import SCAN_BLOCK_SECONDS

    folder = tmp_path / "archive"
    folder.mkdir()
    wav = calls_recording(tmp_path / "a.wav", 8000, 30, [(5.0, 1.0), (18.0, 1.0)])
    audio, rate = soundfile.read(str(wav), dtype="float32")
    soundfile.write(str(folder / "a_20090329_120000.mp3"), audio, rate, format="MP3")
    soundfile.write(str(folder / "b_20090329_120000.ogg"), audio, rate, format="OGG")
    (folder / "c_20090329_120000.m4a").write_bytes(b"\0\0\0\x20ftypM4A " + bytes(100))
    (folder / "notes.txt").write_text("not audio: never named\n")
    out = tmp_path / "out"
    capfd.readouterr()
    status = run_detect_command([folder], Settings(
        model=str(centre_model), speed=0.0, block_seconds=SCAN_BLOCK_SECONDS,
        evidence=False, metrics_port=0), out, "0/1", None, False)
    stderr = capfd.readouterr().err
    assert status == 0, stderr
    assert "libmpg123" not in stderr and "[src/" not in stderr
    assert "2 recordings (0 already complete), 2 scanned" in stderr
    assert ("warning: 1 audio file skipped: no decoder here reads their format (whaled reads "
            ".wav .flac .aif .aiff .aifc .mp3 .ogg .oga .opus): "
            f"{folder / 'c_20090329_120000.m4a'}" in stderr.splitlines())
    done = {str(r["recording"]): r for r in records(out, "recording")}
    assert sorted(done) == ["a_20090329_120000.mp3", "b_20090329_120000.ogg"]
    for doc in done.values():
        assert doc["status"] == "complete"
        assert abs(float(doc["audio_seconds"]) - 30.0) < 0.1  # type: ignore[arg-type]


def default_sigint() -> None:
    """In the child: SIGINT as at a terminal, even when these tests run in a background job
    (which starts with SIGINT ignored, and detect keeps an ignored SIGINT ignored)."""
    import signal

    signal.signal(signal.SIGINT, signal.SIG_DFL)


def test_an_interrupted_detect_summarises_what_is_done(tmp_path: Path,
                                                       centre_model: Path) -> None:
    """A real SIGINT once the first recording is written: the one in progress is dropped, the
    CSV and presence tables are written for the finished ones, one line says a rerun resumes."""
    import signal

    from detector.season.presence import CSV_NAME, HOURLY_NAME

    folder = tmp_path / "archive"
    folder.mkdir()
    calls_recording(folder / "a_20090329_120000.wav", 2000, 60, [(20.0, 1.0)])
    for name in ("b_20090329_130000.wav", "c_20090329_140000.wav"):  # long: still scanning
        calls_recording(folder / name, 2000, 900, [])
    out = tmp_path / "out"
    jsonl = out / JSONL_NAME
    with subprocess.Popen([*WHALED, "detect", str(folder), "--model", str(centre_model),
                           "--out", str(out), "--no-progress"], stderr=subprocess.PIPE,
                          text=True, preexec_fn=default_sigint) as process:
        try:
            assert process.stderr is not None
            deadline = time.monotonic() + 120
            while not (jsonl.is_file() and '"type":"recording"' in jsonl.read_text()):
                assert process.poll() is None and time.monotonic() < deadline, "no result"
                time.sleep(0.05)  # polling for the event: the first recording's result
            process.send_signal(signal.SIGINT)
            stderr = process.stderr.read()
            status = process.wait(timeout=60)
        finally:
            process.kill()
    assert status == 130, stderr
    done = records(out, "recording")
    assert [r["status"] for r in done] == ["complete"] * len(done)
    assert 1 <= len(done) < 3
    assert stderr.splitlines()[-1] == (
        f"detect: interrupted by SIGINT: {len(done)} of 3 recordings complete ({len(done)} in "
        "this run), their detections.csv and presence tables written; run the same command "
        f"again to resume with the other {3 - len(done)}")
    assert "Traceback" not in stderr
    hours = (out / HOURLY_NAME).read_text().splitlines()[1:]
    assert hours[0].startswith("archive,1,2009-03-29T12:00Z,1.0,")
    assert len(hours) == len(done)
    assert (out / CSV_NAME).read_text().splitlines()[0].startswith("recording,path,site")
