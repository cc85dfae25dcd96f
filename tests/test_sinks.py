import json
import logging
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest

from detector.events import Detection
from detector.sinks import GapRecord, JsonlSink, LogSink, RavenSink

ORIGIN = datetime(2009, 3, 29, 12, 15, tzinfo=UTC)


def detection(start: float, end: float, score: float = 0.9) -> Detection:
    return Detection(ORIGIN + timedelta(seconds=start), ORIGIN + timedelta(seconds=end),
                     ORIGIN + timedelta(seconds=(start + end) / 2), start, end, score, 1,
                     "upcall", "abc123", 0.5, 0.35, "file:x.wav")


def test_jsonl_and_raven_agree(tmp_path: Path) -> None:
    jsonl, raven = JsonlSink(tmp_path), RavenSink(tmp_path, "file:x.wav", ORIGIN)
    for d in (detection(82.313, 83.791), detection(102.29, 103.8, 0.61)):
        jsonl.write(d)
        raven.write(d)
    jsonl.write(GapRecord(ORIGIN, ORIGIN + timedelta(seconds=2), 2.0, "overflow", "x"))
    lines = [json.loads(s) for s in (tmp_path / "detections.jsonl").read_text().splitlines()]
    assert lines[0]["start_utc"] == "2009-03-29T12:16:22.313Z"
    assert lines[0]["end_utc"] == "2009-03-29T12:16:23.791Z"
    assert lines[2] == {"type": "gap", "start_utc": "2009-03-29T12:15:00.000Z",
                        "end_utc": "2009-03-29T12:15:02.000Z", "seconds": 2.0,
                        "reason": "overflow", "source": "x"}
    table = (tmp_path / "file_x_wav_20090329_121500.selections.txt").read_text().splitlines()
    header = table[0].split("\t")
    rows = [dict(zip(header, row.split("\t"), strict=True)) for row in table[1:]]
    assert [r["Selection"] for r in rows] == ["1", "2"]
    assert rows[0]["Begin Time (s)"] == "82.313" and rows[0]["Begin UTC"] == lines[0][
        "start_utc"]
    assert rows[1]["Score"] == "0.6100"
    # a second run appends and continues the selection numbers
    RavenSink(tmp_path, "file:x.wav", ORIGIN).write(detection(200.0, 201.0))
    table = (tmp_path / "file_x_wav_20090329_121500.selections.txt").read_text().splitlines()
    assert table[-1].split("\t")[0] == "3" and len(table) == 4


def test_failed_writes_are_kept_and_retried(tmp_path: Path) -> None:
    out = tmp_path / "out"
    sink = JsonlSink(out)
    out.write_text("not a directory")  # the directory is gone: writing must fail
    with pytest.raises(OSError):
        sink.write(detection(1.0, 2.0))
    with pytest.raises(OSError):
        sink.write(detection(3.0, 4.0))
    assert sink.file.pending_lines == 2
    out.unlink()  # the disk is back
    sink.write(detection(5.0, 6.0))
    starts = [json.loads(s)["start_seconds"] for s in (out / "detections.jsonl").read_text()
              .splitlines()]
    assert starts == [1.0, 3.0, 5.0]


def test_log_line_is_logfmt(caplog: pytest.LogCaptureFixture) -> None:
    caplog.set_level(logging.INFO, logger="whaled.detections")
    LogSink().write(detection(82.313, 83.791))
    message = caplog.records[0].getMessage()
    assert message.startswith("detection label=upcall channel=1 start_utc=2009-03-29T12:16:22.313Z")
    pairs = dict(p.split("=", 1) for p in message.split()[1:])
    assert pairs["peak_score"] == "0.9" and pairs["model"] == "abc123"
