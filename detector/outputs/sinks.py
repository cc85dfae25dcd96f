"""Where detections go: a log line, a JSON Lines file and a Raven selection table.

A sink writes records, ``write(record)``, and is closed once at the end, in a ``finally``
(``close()``: files closed, anything held saved). Files are appended with one ``write`` of
whole lines on an ``O_APPEND`` descriptor, so a crash or ``kill -9`` loses nothing already
reported and never leaves a partial line. A write that fails (disk full, directory gone)
keeps its lines pending and retries them with the next record: nothing detected is dropped
while the process lives. Failures are counted by the caller and logged here.
"""

from __future__ import annotations

import json
import logging
import os
import tempfile
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import datetime
from pathlib import Path
from typing import Protocol

from detector.core.band import UPCALL_HIGH_HZ, UPCALL_LOW_HZ
from detector.core.durable import make_directory, sync_directory
from detector.outputs import raven
from detector.stream.events import Detection

log = logging.getLogger("whaled.detections")
JSONL_NAME = "detections.jsonl"
RAVEN_COLUMNS = (*raven.COLUMNS, "Annotation", "Score", "Begin UTC", "End UTC", "Peak UTC",
                 "Model")


@dataclass(frozen=True)
class GapRecord:
    """Audio the detector never heard, so "no detections" there means "not listening"."""

    start_utc: datetime
    end_utc: datetime
    seconds: float
    reason: str
    source: str


@dataclass(frozen=True)
class ClockRecord:
    """The sample-to-UTC mapping moved: every time after ``utc`` is ``step_seconds`` earlier
    than the stream's sample count alone would say (negative: later). See ``ClockStep``."""

    utc: datetime  # of the first sample the new mapping applies to
    stream_seconds: float  # that sample, in seconds since the stream's origin
    step_seconds: float
    correction_seconds: float  # the total so far
    reason: str  # "drift", "overflow", "device_lost", "stall"
    source: str


@dataclass(frozen=True)
class RunRecord:
    """A ``listen`` process starting or stopping: the time between one's stop (or its last
    line, when it was killed) and the next one's start is time nobody listened."""

    event: str  # "start" or "stop"
    utc: datetime  # wall clock
    pid: int
    source: str
    origin_utc: datetime
    model_hash: str
    version: str  # of whaled
    reason: str = ""  # stop: "signal SIGTERM", "end of stream", "duration reached", "error: ..."
    audio_seconds: float = 0.0  # stop: analysed by this process
    detections: int = 0  # stop: emitted by this process
    gaps: int = 0  # stop: recorded by this process


Record = Detection | GapRecord | ClockRecord  # what the stream yields, for every sink


class Sink(Protocol):
    """Where a stream's records go. ``write`` raises OSError when a line could not be written
    (it stays pending); ``retry`` writes what is pending; ``unwritten`` says what still is, per
    file; ``close`` ends the sink (files closed, anything held saved). ``name`` labels its
    errors in the metrics and the log."""

    name: str

    def write(self, record: Record) -> None: ...

    def retry(self) -> None: ...

    def unwritten(self) -> list[tuple[Path, list[str]]]: ...

    def close(self) -> None: ...


class HoldsNothing:
    """For sinks that keep nothing pending on disk: nothing to retry, nothing unwritten."""

    def retry(self) -> None:
        """Nothing failed to write."""

    def unwritten(self) -> list[tuple[Path, list[str]]]:
        return []

    def close(self) -> None:
        """Nothing held open; what the sink keeps stays for its owner to read."""


def utc_text(when: datetime) -> str:
    """ISO 8601 UTC with milliseconds: 2009-03-29T12:16:22.313Z."""
    return when.strftime("%Y-%m-%dT%H:%M:%S.") + f"{when.microsecond // 1000:03d}Z"


def detection_fields(d: Detection) -> dict[str, object]:
    return {"type": "detection", "label": d.label, "channel": d.channel,
            "start_utc": utc_text(d.start_utc), "end_utc": utc_text(d.end_utc),
            "peak_utc": utc_text(d.peak_utc), "start_seconds": round(d.start_seconds, 3),
            "end_seconds": round(d.end_seconds, 3), "peak_score": round(d.peak_score, 4),
            "model": d.model_hash, "on_threshold": round(d.on_threshold, 4),
            "off_threshold": round(d.off_threshold, 4), "source": d.source}


def gap_fields(g: GapRecord) -> dict[str, object]:
    return {"type": "gap", "start_utc": utc_text(g.start_utc), "end_utc": utc_text(g.end_utc),
            "seconds": round(g.seconds, 3), "reason": g.reason, "source": g.source}


def clock_fields(c: ClockRecord) -> dict[str, object]:
    return {"type": "clock", "utc": utc_text(c.utc), "stream_seconds": round(c.stream_seconds, 3),
            "step_seconds": round(c.step_seconds, 4),
            "correction_seconds": round(c.correction_seconds, 4), "reason": c.reason,
            "source": c.source}


def run_fields(r: RunRecord) -> dict[str, object]:
    fields: dict[str, object] = {
        "type": "run", "event": r.event, "utc": utc_text(r.utc), "pid": r.pid,
        "source": r.source, "origin_utc": utc_text(r.origin_utc), "model": r.model_hash,
        "version": r.version}
    if r.event == "stop":
        fields.update(reason=r.reason, audio_seconds=round(r.audio_seconds, 3),
                      detections=r.detections, gaps=r.gaps)
    return fields


def record_fields(record: Record | RunRecord) -> dict[str, object]:
    if isinstance(record, Detection):
        return detection_fields(record)
    if isinstance(record, GapRecord):
        return gap_fields(record)
    if isinstance(record, ClockRecord):
        return clock_fields(record)
    return run_fields(record)


class AppendFile:
    """Whole lines appended with one write each; failed lines wait for the next try."""

    def __init__(self, path: Path, header: str = "") -> None:
        self.path = path
        self.header = header
        self._pending: list[str] = []
        self._fd: int | None = None

    def _open(self) -> int:
        if self._fd is not None and os.fstat(self._fd).st_nlink == 0:
            self.close()  # deleted under us (the output directory removed): start a new file
        if self._fd is None:
            make_directory(self.path.parent)
            created = not self.path.exists()
            fd = os.open(self.path, os.O_WRONLY | os.O_APPEND | os.O_CREAT, 0o644)
            if self.header and os.fstat(fd).st_size == 0:
                os.write(fd, self.header.encode())
            if created:  # the new name, not only the data, must survive a power cut
                os.fdatasync(fd)
                sync_directory(self.path.parent)
            self._fd = fd
        return self._fd

    def append(self, line: str) -> None:
        """Raises OSError when the lines could not be written; they stay pending."""
        self._pending.append(line)
        self.retry()

    def retry(self) -> None:
        """Write what is pending; a short write (disk full) is cut back so no line is torn."""
        if not self._pending:
            return
        try:
            fd = self._open()
            data = "".join(self._pending).encode()
            size = os.fstat(fd).st_size
            written = os.write(fd, data)
            if written != len(data):
                os.ftruncate(fd, size)
                raise OSError(f"short write to {self.path} ({written} of {len(data)} bytes)")
            self._pending.clear()  # written: a failed sync below must not write them twice
            os.fdatasync(fd)  # on the disk before the caller says "reported"
        except OSError:
            self.close()
            raise

    @property
    def pending_lines(self) -> int:
        return len(self._pending)

    def pending(self) -> list[str]:
        return list(self._pending)

    def close(self) -> None:
        if self._fd is not None:
            try:
                os.close(self._fd)
            finally:
                self._fd = None


class FileSink:
    """A sink that appends lines to one :class:`AppendFile`: what failed waits there."""

    file: AppendFile

    def retry(self) -> None:
        self.file.retry()

    def unwritten(self) -> list[tuple[Path, list[str]]]:
        return [(self.file.path, self.file.pending())] if self.file.pending_lines else []

    def close(self) -> None:
        self.file.close()


class JsonlSink(FileSink):
    """``detections.jsonl``: one JSON object a line, detections, gaps and run records."""

    name = "jsonl"

    def __init__(self, out_dir: Path) -> None:
        self.file = AppendFile(out_dir / JSONL_NAME)

    def write(self, record: Record | RunRecord) -> None:
        self.file.append(json.dumps(record_fields(record), separators=(",", ":")) + "\n")


class RavenSink(FileSink):
    """A Raven selection table per stream, named after the stream's origin.

    Raven's own columns (times in seconds since the stream's origin, which for a recording
    is its start) plus absolute UTC begin, end and peak.
    """

    name = "raven"

    def __init__(self, out_dir: Path, stream_name: str, origin_utc: datetime, *,
                 absolute_times: bool = True, path: Path | None = None) -> None:
        stem = "".join(ch if ch.isalnum() or ch in "-_" else "_" for ch in stream_name)
        path = path or out_dir / f"{stem}_{origin_utc:%Y%m%d_%H%M%S}.selections.txt"
        self.file = AppendFile(path, raven.tsv_line(RAVEN_COLUMNS))
        self.absolute_times = absolute_times  # False: a recording of unknown start, no UTC
        self._selection = raven.count_rows(path)

    def write(self, record: Record) -> None:
        if not isinstance(record, Detection):
            return
        self.file.append(raven_row(self._selection + 1, record, self.absolute_times))
        self._selection += 1


def raven_row(selection: int, d: Detection, absolute_times: bool = True) -> str:
    """Row ``selection`` (from 1) of a Raven table, newline included: times in seconds since
    the stream's origin, then UTC begin, end and peak (empty when ``absolute_times`` is
    False: a recording of unknown start)."""
    utc = ([utc_text(d.start_utc), utc_text(d.end_utc), utc_text(d.peak_utc)]
           if absolute_times else ["", "", ""])
    return raven.tsv_line((selection, raven.VIEW, d.channel, f"{d.start_seconds:.3f}",
                     f"{d.end_seconds:.3f}", UPCALL_LOW_HZ, UPCALL_HIGH_HZ, d.label,
                     f"{d.peak_score:.4f}", *utc, d.model_hash))


def raven_table(detections: Sequence[Detection], absolute_times: bool = True) -> str:
    """A whole Raven table: the header, then one row per detection (the header alone says
    "analysed, nothing found")."""
    return raven.tsv_line(RAVEN_COLUMNS) + "".join(
        raven_row(n, d, absolute_times) for n, d in enumerate(detections, start=1))


class LogSink(HoldsNothing):
    """One logfmt line per record on stderr: parseable, and journald keeps it whole."""

    name = "log"

    def write(self, record: Record) -> None:
        fields = record_fields(record)
        kind = fields.pop("type")
        text = " ".join(f"{k}={_logfmt(v)}" for k, v in fields.items())
        if kind == "gap":
            log.warning("gap %s", text)
        elif kind == "clock":
            log.warning("clock %s", text)
        else:
            log.info("detection %s", text)


def _logfmt(value: object) -> str:
    """Bare when safe; otherwise a double-quoted string with \\ \" \n \t escapes (JSON's)."""
    text = str(value)
    if text and not any(ch <= " " or ch in '="\\' or ch == "\x7f" for ch in text):
        return text
    return json.dumps(text, ensure_ascii=False)




def unwritable(folder: Path) -> str:
    """Why files cannot be written in ``folder`` (created when missing), or "" when they can."""
    try:
        folder.mkdir(parents=True, exist_ok=True)
        fd, probe = tempfile.mkstemp(prefix=".whaled-write-test-", dir=folder)
        try:
            os.write(fd, b"\n")
        finally:
            os.close(fd)
            os.unlink(probe)
    except OSError as error:
        return error.strerror or str(error)
    return ""
