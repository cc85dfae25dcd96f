import csv
import json
import logging
import os
import re
from dataclasses import replace
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest

from detector.outputs.sinks import (
    RAVEN_COLUMNS,
    GapRecord,
    JsonlSink,
    LogSink,
    RavenSink,
    raven_row,
    raven_table,
)
from detector.stream.events import Detection

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


AWKWARD = 'file:/data/a b=c"d\\e\tf\ng\rh.wav'  # every character logfmt and TSV must escape
SPACELESS = "file:/data/a\tb\nc.wav"  # no space to trigger quoting


def logfmt_pairs(line: str) -> dict[str, str]:
    """A strict logfmt reader: bare values end at a space, quoted ones are JSON strings."""
    pairs = {}
    for match in re.finditer(r'(\w+)=("(?:[^"\\]|\\.)*"|[^\s"=\\]*)(?: |$)', line):
        key, raw = match.groups()
        pairs[key] = json.loads(raw) if raw.startswith('"') else raw
    consumed = sum(len(m.group(0)) for m in re.finditer(
        r'(\w+)=("(?:[^"\\]|\\.)*"|[^\s"=\\]*)(?: |$)', line))
    assert consumed == len(line), f"not logfmt: {line!r}"
    return pairs


def test_raven_rows_survive_tabs_and_newlines_in_their_fields(tmp_path: Path) -> None:
    raven = RavenSink(tmp_path, "file:x.wav", ORIGIN)
    odd = replace(detection(82.313, 83.791), label="up\tcall\nsweep", model_hash='ab"c\\d')
    raven.write(odd)
    raven.write(detection(102.29, 103.8, 0.61))
    path = tmp_path / "file_x_wav_20090329_121500.selections.txt"
    with path.open(newline="") as handle:
        rows = list(csv.DictReader(handle, dialect="excel-tab"))
    assert [r["Selection"] for r in rows] == ["1", "2"]
    assert rows[0]["Annotation"] == "up\tcall\nsweep" and rows[0]["Model"] == 'ab"c\\d'
    assert rows[1]["Annotation"] == "upcall" and rows[1]["Begin Time (s)"] == "102.290"
    RavenSink(tmp_path, "file:x.wav", ORIGIN).write(detection(200.0, 201.0))
    with path.open(newline="") as handle:
        rows = list(csv.DictReader(handle, dialect="excel-tab"))
    assert [r["Selection"] for r in rows] == ["1", "2", "3"]  # counted as rows, not lines


def test_log_line_quotes_what_logfmt_must(caplog: pytest.LogCaptureFixture) -> None:
    caplog.set_level(logging.INFO, logger="whaled.detections")
    odd = replace(detection(82.313, 83.791), source=AWKWARD, label="")
    LogSink().write(odd)
    LogSink().write(replace(odd, source=SPACELESS))
    LogSink().write(GapRecord(ORIGIN, ORIGIN, 0.0, "stall", "ünïcode=1"))
    first, spaceless, second = (r.getMessage() for r in caplog.records)
    for line in (first, spaceless, second):
        assert "\n" not in line and "\t" not in line and "\r" not in line
    pairs = logfmt_pairs(first.removeprefix("detection "))
    assert pairs["source"] == AWKWARD and pairs["label"] == "" and pairs["channel"] == "1"
    assert logfmt_pairs(spaceless.removeprefix("detection "))["source"] == SPACELESS
    assert logfmt_pairs(second.removeprefix("gap "))["source"] == "ünïcode=1"
    assert "ünïcode" in second  # readable, not \u escapes


def test_raven_row_is_the_one_rule_for_a_row() -> None:
    d = detection(82.313, 83.791)
    assert raven_row(3, d) == (
        "3\tSpectrogram 1\t1\t82.313\t83.791\t50.0\t250.0\tupcall\t0.9000\t"
        "2009-03-29T12:16:22.313Z\t2009-03-29T12:16:23.791Z\t2009-03-29T12:16:23.052Z\t"
        "abc123\n")
    # a recording of unknown start: seconds from the file's start, no UTC
    assert raven_row(1, d, absolute_times=False) == (
        "1\tSpectrogram 1\t1\t82.313\t83.791\t50.0\t250.0\tupcall\t0.9000\t\t\t\tabc123\n")
    assert raven_table([]) == "\t".join(RAVEN_COLUMNS) + "\n"  # analysed, nothing found


def test_raven_sink_and_a_whole_table_write_the_same_bytes(tmp_path: Path) -> None:
    """listen's RavenSink (row by row) and detect's archive table (all at once) agree."""
    found = [detection(82.313, 83.791), detection(102.29, 103.8, 0.61)]
    sink = RavenSink(tmp_path, "file:x.wav", ORIGIN)
    for d in found:
        sink.write(d)
    sink.close()
    written = (tmp_path / "file_x_wav_20090329_121500.selections.txt").read_text()
    assert written == raven_table(found)
    assert written.splitlines()[2].split("\t")[:2] == ["2", "Spectrogram 1"]


def open_descriptors() -> int:
    return len(os.listdir("/proc/self/fd"))


@pytest.mark.skipif(not Path("/proc/self/fd").is_dir(), reason="needs /proc (Linux)")
def test_close_releases_each_file_and_a_later_write_reopens(tmp_path: Path) -> None:
    before = open_descriptors()
    jsonl, raven, log_sink = JsonlSink(tmp_path), RavenSink(tmp_path, "x", ORIGIN), LogSink()
    for sink in (jsonl, raven, log_sink):
        sink.write(detection(1.0, 2.0))
    assert open_descriptors() == before + 2  # one O_APPEND descriptor per file sink
    for sink in (jsonl, raven, log_sink):
        sink.close()
        sink.close()  # twice is harmless (a finally after an error path)
    assert open_descriptors() == before
    raven.write(detection(3.0, 4.0))  # reopened: the table continues, numbered on
    raven.close()
    rows = (tmp_path / "x_20090329_121500.selections.txt").read_text().splitlines()
    assert [r.split("\t")[0] for r in rows] == ["Selection", "1", "2"]
    assert len((tmp_path / "detections.jsonl").read_text().splitlines()) == 1
    assert open_descriptors() == before
