"""``whaled detect``'s ``--out``: ``detections.jsonl``, one Raven table per recording, and
exactly one current result per recording.

A recording's detections, gaps and its ``"type": "recording"`` line go into the JSONL file
with one ``write``, so a file never holds half a recording. Every line names the recording by
its path below the folder it was found in (``"recording"``), and its Raven table mirrors that
path: ``north/day.wav`` -> ``north/day.selections.txt``, so same-named recordings in different
folders keep their own tables.

A rerun with another model or settings, or over a recording that changed, scans it again; its
earlier lines then move to ``detections.superseded.jsonl`` (the recording line stamped with
``superseded_utc``), so ``detections.jsonl`` always holds the latest result of each recording
once. The move happens when the run ends and again at the next start (after a crash). One
``whaled detect`` at a time may write an output folder (a lock file says who).
"""

from __future__ import annotations

import fcntl
import hashlib
import json
import logging
import os
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path, PurePosixPath
from typing import IO, Any

from detector.archive.saved_scores import SavedScores
from detector.core.config import Settings
from detector.core.durable import publish, sync_directory
from detector.core.errors import WhaledError
from detector.outputs.sinks import (
    JSONL_NAME,
    AppendFile,
    GapRecord,
    Record,
    detection_fields,
    gap_fields,
    raven_table,
    record_fields,
    utc_text,
)
from detector.stream.events import Detection

log = logging.getLogger("whaled.detect")
PARTIAL_DIR = ".partial"  # Raven tables being written; moved into --out when complete
SUPERSEDED_NAME = "detections.superseded.jsonl"
LOCK_NAME = ".whaled-detect.lock"
UTC_KEYS = ("start_utc", "end_utc", "peak_utc")  # left empty when a recording's start is unknown
FINGERPRINT_KEYS = ("hop_seconds", "on_threshold", "off_threshold", "min_duration_seconds",
                    "merge_gap_seconds", "max_duration_seconds", "channels",
                    "model_rate_hz", "window_seconds", "origin_utc",
                    "timestamp_pattern")  # settings that change detections or their times


class DetectError(WhaledError):
    """A reason to start nothing; one line for the operator."""


@dataclass
class RecordingResult:
    """What scanning one recording produced; plain data, so a Dask worker can return it."""

    path: str
    records: list[Record] = field(default_factory=list)
    source: str = ""
    origin_utc: datetime | None = None
    origin_from: str = ""
    channels: tuple[int, ...] = ()
    audio_seconds: float = 0.0
    wall_seconds: float = 0.0
    error: str = ""
    key: str = ""  # the path below the folder it was found in
    scores: SavedScores | None = None  # every window's scores (detect --save-scores)

    @property
    def detections(self) -> list[Detection]:
        return [r for r in self.records if isinstance(r, Detection)]


def fingerprint_doc(settings: Settings) -> dict[str, Any]:
    return {key: getattr(settings, key) for key in FINGERPRINT_KEYS}


def settings_fingerprint(settings: Settings) -> str:
    """What, besides the model and the file, makes a result "complete" for a rerun."""
    doc = fingerprint_doc(settings)
    return hashlib.sha256(json.dumps(doc, sort_keys=True).encode()).hexdigest()[:12]


def table_name(key: str) -> str:
    """``north/day_20090329_120000.wav`` -> ``north/day_20090329_120000.selections.txt``."""
    return PurePosixPath(key).with_suffix(".selections.txt").as_posix()


def identity(path: Path) -> tuple[str, int, int]:
    stat = path.stat()
    return str(path.resolve()), stat.st_size, stat.st_mtime_ns


class ArchiveOutput:
    """``--out`` while one run writes it: the lock, the current results, the JSONL file."""

    def __init__(self, out_dir: Path, model_hash: str, fingerprint: str) -> None:
        self.out_dir, self.model_hash, self.fingerprint = out_dir, model_hash, fingerprint
        out_dir.mkdir(parents=True, exist_ok=True)
        self._lock = take_lock(out_dir)
        self._compact()  # an earlier run that stopped before it could
        self.current = read_current(out_dir)  # resolved path -> its latest recording line
        self.jsonl = AppendFile(out_dir / JSONL_NAME)
        self.superseded = 0
        self._waiting: list[RecordingResult] = []  # results whose table could not be written
        self.last_error = ""

    def is_complete(self, path: Path) -> bool:
        try:
            resolved, size, mtime_ns = identity(path)
        except OSError:
            return False
        doc = self.current.get(resolved)
        return doc is not None and (
            doc.get("status"), doc.get("model"), doc.get("settings"), doc.get("size_bytes"),
            doc.get("mtime_ns")) == ("complete", self.model_hash, self.fingerprint, size,
                                     mtime_ns)

    def replaces(self, path: Path) -> bool:
        """True when a complete earlier result of this recording will be superseded."""
        doc = self.current.get(str(path.resolve()))
        return doc is not None and doc.get("status") == "complete"

    def check_tables(self, paths_and_keys: list[tuple[Path, str]]) -> None:
        """Refuse a table name that another recording's current result already uses."""
        owners = {doc.get("raven_table"): path for path, doc in self.current.items()}
        for path, key in paths_and_keys:
            owner = owners.get(table_name(key))
            if owner is not None and owner != str(path.resolve()):
                raise DetectError(f"{self.out_dir} already holds {table_name(key)} for {owner}, "
                                  f"so {path} would overwrite it: use another --out")

    def write(self, result: RecordingResult) -> bool:
        """Write this result and any earlier ones that failed (disk full); False when some
        still wait. Their order is kept, and a result is in the JSONL only with its table."""
        self._waiting.append(result)
        if self.write_waiting():
            return True
        results, lines = self.unwritten()
        log.error("cannot write to %s (%s): %d results (%d lines) wait for the next try",
                  self.out_dir, self.last_error, results, lines)
        return False

    def write_waiting(self) -> bool:
        try:
            self.jsonl.retry()
            while self._waiting:
                self._write_one(self._waiting[0])
        except OSError as error:
            self.last_error = error.strerror or str(error)
            return False
        return True

    def unwritten(self) -> tuple[int, int]:
        """(results, JSONL lines) not yet on disk."""
        pending = [line for chunk in self.jsonl.pending() for line in chunk.splitlines()]
        results = len(self._waiting) + sum('"type":"recording"' in line for line in pending)
        return results, len(pending) + sum(len(r.records) + 1 for r in self._waiting)

    def _write_one(self, result: RecordingResult) -> None:
        path = Path(result.path)
        table = self._write_raven(result) if result.origin_utc is not None else ""
        self._waiting.pop(0)  # from here its lines are the JSONL file's to keep and retry
        if not table:  # no table this time: an older one would speak for a result it is not
            (self.out_dir / table_name(result.key or path.name)).unlink(missing_ok=True)
        try:
            resolved, size, mtime_ns = identity(path)
        except OSError:
            resolved, size, mtime_ns = str(path), -1, -1
        lines = [json.dumps(self._fields(record, result), separators=(",", ":"))
                 for record in result.records]
        status = "failed" if result.error else "complete"
        known = result.origin_utc is not None and result.origin_from != "none"
        doc = {
            "type": "recording", "recording": result.key, "path": resolved, "status": status,
            "error": result.error, "source": result.source, "size_bytes": size,
            "mtime_ns": mtime_ns,
            "origin_utc": utc_text(result.origin_utc) if known and result.origin_utc else None,
            "origin_from": result.origin_from, "channels": list(result.channels),
            "audio_seconds": round(result.audio_seconds, 3),
            "detections": len(result.detections), "raven_table": table,
            "model": self.model_hash, "settings": self.fingerprint}
        lines.append(json.dumps(doc, separators=(",", ":")))
        self.jsonl.append("".join(line + "\n" for line in lines))  # one write: all or nothing
        self.current[resolved] = doc

    @staticmethod
    def _fields(record: Record, result: RecordingResult) -> dict[str, object]:
        """A JSONL line: gaps get seconds from the file's start; no UTC when it is unknown."""
        if isinstance(record, Detection):
            fields = detection_fields(record)
        elif not isinstance(record, GapRecord):  # a clock step: live capture only
            fields = record_fields(record)
        else:
            fields = gap_fields(record)
            if result.origin_utc is not None:
                start = (record.start_utc - result.origin_utc).total_seconds()
                fields["start_seconds"] = round(start, 3)
                fields["end_seconds"] = round(start + record.seconds, 3)
        if result.origin_from == "none":
            fields.update({key: None for key in UTC_KEYS if key in fields})
        fields["recording"] = result.key
        return fields

    def _write_raven(self, result: RecordingResult) -> str:
        """The whole table staged in ``.partial`` then renamed: never half a table."""
        name = table_name(result.key or Path(result.path).name)
        staged, final = self.out_dir / PARTIAL_DIR / name, self.out_dir / name
        staged.parent.mkdir(parents=True, exist_ok=True)
        staged.write_text(raven_table(result.detections, result.origin_from != "none"))
        final.parent.mkdir(parents=True, exist_ok=True)
        publish(staged, final)
        return name

    def close(self) -> None:
        self.write_waiting()  # the last try
        self.jsonl.close()
        try:
            self.superseded = self._compact()
        finally:
            self._lock.close()

    def _compact(self) -> int:
        try:
            return compact(self.out_dir)
        except OSError as error:  # a full disk: the earlier results stay until the next run
            (self.out_dir / (JSONL_NAME + ".tmp")).unlink(missing_ok=True)
            log.error("could not move superseded results out of %s (%s); the next run will",
                      self.out_dir / JSONL_NAME, error.strerror or error)
            return 0


def take_lock(out_dir: Path) -> IO[str]:
    handle = (out_dir / LOCK_NAME).open("a+")
    try:
        fcntl.flock(handle, fcntl.LOCK_EX | fcntl.LOCK_NB)
    except OSError:
        handle.seek(0)
        who = handle.read().strip() or "?"
        handle.close()
        raise DetectError(f"another whaled detect is writing to {out_dir} (pid {who}): give "
                          "each run its own --out, or wait for it") from None
    try:
        handle.seek(0)
        handle.truncate()
        handle.write(f"{os.getpid()}\n")
        handle.flush()
    except OSError:
        pass  # the pid is a courtesy; the lock holds without it
    return handle


def _recording_doc(line: str) -> dict[str, object] | None:
    if '"type":"recording"' not in line:
        return None
    try:
        doc = json.loads(line)
    except json.JSONDecodeError:
        return None
    return doc if isinstance(doc, dict) and "path" in doc else None


def read_current(out_dir: Path) -> dict[str, dict[str, object]]:
    """The latest recording line of each recording (by resolved path)."""
    current: dict[str, dict[str, object]] = {}
    try:
        with (out_dir / JSONL_NAME).open() as handle:
            for line in handle:
                doc = _recording_doc(line)
                if doc is not None:
                    current[str(doc["path"])] = doc
    except FileNotFoundError:
        pass
    return current


def compact(out_dir: Path) -> int:
    """Move every result but the latest of each recording to ``detections.superseded.jsonl``.

    A result is the lines a recording wrote with one write: its detections and gaps, then its
    recording line. Returns how many results moved.
    """
    path = out_dir / JSONL_NAME
    latest: dict[str, int] = {}
    count = 0
    try:
        with path.open() as handle:
            for line in handle:
                doc = _recording_doc(line)
                if doc is not None:
                    latest[str(doc["path"])] = count
                    count += 1
    except FileNotFoundError:
        return 0
    if len(latest) == count:
        return 0
    staged = path.with_name(path.name + ".tmp")
    now = utc_text(datetime.now(UTC))
    moved, index, group = 0, 0, []
    with path.open() as source, staged.open("w") as keep, \
            (out_dir / SUPERSEDED_NAME).open("a") as old:
        for line in source:
            group.append(line)
            doc = _recording_doc(line)
            if doc is None:
                continue
            if latest[str(doc["path"])] == index:
                keep.writelines(group)
            else:
                group[-1] = json.dumps({**doc, "superseded_utc": now},
                                       separators=(",", ":")) + "\n"
                old.writelines(group)
                moved += 1
            group, index = [], index + 1
        keep.writelines(group)  # lines after the last recording line stay where they were
        for handle in (keep, old):
            handle.flush()
            os.fsync(handle.fileno())
    os.replace(staged, path)
    sync_directory(out_dir)
    return moved
