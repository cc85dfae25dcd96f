"""``whaled detect``: archives of recordings through the listen pipeline, resumable and sharded.

Each recording is a :class:`~detector.sources.FileSource` at speed 0 through the same
:class:`~detector.pipeline.Pipeline` as ``listen --device file:PATH --speed 0`` (same windows,
scores and event logic; only the block size differs, and events do not depend on it). Long
files are streamed in blocks, so memory stays flat with file length.

Outputs in ``--out``: one Raven selection table per recording, written whole when the
recording is done, and ``detections.jsonl`` for all of them. A recording's detections, gaps
and its ``"type": "recording"`` line (status, audio seconds, model, settings) go into the
JSONL file with one ``write``, so a rerun over the same output skips exactly the recordings
whose record says ``complete`` and redoes the rest. Unreadable recordings are reported,
recorded as ``failed`` and skipped; the run's exit status says whether any failed.

More than one machine: ``--shard K/N`` keeps the recordings whose name hashes to K (a
deterministic partition: N shards cover every recording exactly once), and an optional Dask
client fans recordings out over a cluster while this process writes the outputs.
"""

from __future__ import annotations

import functools
import hashlib
import json
import logging
import os
import threading
import time
import zlib
from collections.abc import Callable, Iterable, Iterator
from dataclasses import dataclass, field, replace
from datetime import datetime
from pathlib import Path
from typing import Any

from prometheus_client import CollectorRegistry

from detector.config import Settings
from detector.events import Detection
from detector.metrics import Metrics
from detector.model import LoadedModel
from detector.pipeline import Pipeline
from detector.progress import Progress
from detector.sinks import (
    JSONL_NAME,
    RAVEN_COLUMNS,
    AppendFile,
    RavenSink,
    Record,
    detection_fields,
    gap_fields,
    utc_text,
)
from detector.sources import AUDIO_SUFFIXES, FileSource, SourceError
from detector.stamps import parse_origin

log = logging.getLogger("whaled.detect")
DETECT_BLOCK_SECONDS = 8.0  # blocks read per pass: large, so per-block Python costs vanish
PARTIAL_DIR = ".partial"  # Raven tables being written; moved into --out when complete
FINGERPRINT_KEYS = ("hop_seconds", "on_threshold", "off_threshold", "min_duration_seconds",
                    "merge_gap_seconds", "max_duration_seconds", "channels",
                    "model_rate_hz", "window_seconds", "origin_utc",
                    "timestamp_pattern")  # settings that change detections or their times
UTC_KEYS = ("start_utc", "end_utc", "peak_utc")  # left empty when a recording's start is unknown


class DetectError(Exception):
    """A reason to start nothing; one line for the operator."""


@dataclass(frozen=True)
class Recording:
    path: Path
    key: str  # the path below the argument it was found under: stable across machines

    @property
    def audio_seconds(self) -> float:
        import soundfile

        try:
            info = soundfile.info(str(self.path))
            return float(info.frames / info.samplerate)
        except (RuntimeError, OSError, soundfile.LibsndfileError):
            return 0.0


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

    @property
    def detections(self) -> list[Detection]:
        return [r for r in self.records if isinstance(r, Detection)]


@dataclass
class DetectSummary:
    recordings: int = 0
    skipped: int = 0  # complete in an earlier run over the same output
    audio_seconds: float = 0.0
    wall_seconds: float = 0.0
    detections: int = 0
    failed: list[tuple[str, str]] = field(default_factory=list)  # (path, why)
    unstamped: list[str] = field(default_factory=list)  # scanned with no known start


def find_recordings(inputs: Iterable[Path]) -> tuple[list[Recording], list[tuple[str, str]]]:
    """Recordings named or found under folders, sorted; plus (path, why) for missing ones."""
    found: list[Recording] = []
    missing: list[tuple[str, str]] = []
    for given in inputs:
        given = Path(given)
        if given.is_dir():
            for path in sorted(p for p in given.rglob("*") if p.is_file()
                               and p.suffix.lower() in AUDIO_SUFFIXES):
                found.append(Recording(path, path.relative_to(given).as_posix()))
        elif given.is_file():
            found.append(Recording(given, given.name))
        else:
            missing.append((str(given), "not found"))
    return found, missing


def parse_shard(text: str) -> tuple[int, int]:
    """``K/N`` with 0 <= K < N (Slurm: $SLURM_ARRAY_TASK_ID/$SLURM_ARRAY_TASK_COUNT)."""
    try:
        k_text, n_text = text.split("/")
        k, n = int(k_text), int(n_text)
    except ValueError:
        raise ValueError(f"--shard {text!r} is not K/N") from None
    if not (n >= 1 and 0 <= k < n):
        raise ValueError(f"--shard {text!r}: need 0 <= K < N")
    return k, n


def in_shard(recording: Recording, k: int, n: int) -> bool:
    return zlib.crc32(recording.key.encode()) % n == k


def settings_fingerprint(settings: Settings) -> str:
    doc = {key: getattr(settings, key) for key in FINGERPRINT_KEYS}
    return hashlib.sha256(json.dumps(doc, sort_keys=True).encode()).hexdigest()[:12]


def scan_recording(path: Path, loaded: LoadedModel, settings: Settings,
                   on_progress: Callable[[float], None] | None = None) -> RecordingResult:
    """One recording through the listen pipeline; errors are returned, never raised."""
    started = time.perf_counter()
    result = RecordingResult(str(path))
    import soundfile

    try:
        file_info = soundfile.info(str(path))
        block_frames = max(1, round(settings.block_seconds * file_info.samplerate))
        origin = parse_origin(settings.origin_utc) if settings.origin_utc else None
        source = FileSource(Path(path), block_frames=block_frames, speed=0.0,
                            channels=settings.channels, origin=origin,
                            timestamp_pattern=settings.timestamp_pattern)
    except (SourceError, RuntimeError, OSError, soundfile.LibsndfileError) as error:
        result.error = str(error).strip().splitlines()[0] if str(error).strip() else repr(error)
        return result
    try:
        info, expected = source.info, file_info.frames
        result.source, result.origin_utc = info.name, info.origin_utc
        result.origin_from, result.channels = info.origin_from, info.channels
        metrics = Metrics(CollectorRegistry(), info.channels, loaded.metadata.labels)
        collect = CollectSink()
        pipeline = Pipeline(source, loaded, settings, [collect], metrics)
        if on_progress is not None:
            pipeline.hooks.append(lambda p: on_progress(p.summary.samples / info.rate_hz))
        summary = pipeline.run(threading.Event())
        result.records = collect.records
        result.audio_seconds = summary.samples / info.rate_hz
        if summary.samples < expected:
            result.error = (f"read error after {result.audio_seconds:.1f} s of "
                            f"{expected / info.rate_hz:.1f} s")
    except (RuntimeError, OSError, ValueError) as error:
        result.error = f"{type(error).__name__}: {str(error).strip().splitlines()[0]}"
    finally:
        source.close()
        result.wall_seconds = time.perf_counter() - started
    return result


class CollectSink:
    name = "collect"

    def __init__(self) -> None:
        self.records: list[Record] = []

    def write(self, record: Record) -> None:
        self.records.append(record)


class ArchiveOutput:
    """``--out``: the combined JSONL file, the Raven tables and what is already complete."""

    def __init__(self, out_dir: Path, model_hash: str, fingerprint: str) -> None:
        self.out_dir, self.model_hash, self.fingerprint = out_dir, model_hash, fingerprint
        out_dir.mkdir(parents=True, exist_ok=True)
        self.jsonl = AppendFile(out_dir / JSONL_NAME)
        self.complete = self._read_complete()

    def _read_complete(self) -> set[tuple[str, int, int]]:
        done: set[tuple[str, int, int]] = set()
        try:
            with (self.out_dir / JSONL_NAME).open() as handle:
                for line in handle:
                    if '"type":"recording"' not in line:
                        continue
                    try:
                        doc = json.loads(line)
                    except json.JSONDecodeError:
                        continue
                    if (doc.get("status") == "complete" and doc.get("model") == self.model_hash
                            and doc.get("settings") == self.fingerprint):
                        done.add((doc["path"], doc["size_bytes"], doc["mtime_ns"]))
        except FileNotFoundError:
            pass
        return done

    @staticmethod
    def identity(path: Path) -> tuple[str, int, int]:
        stat = path.stat()
        return str(path.resolve()), stat.st_size, stat.st_mtime_ns

    def is_complete(self, path: Path) -> bool:
        try:
            return self.identity(path) in self.complete
        except OSError:
            return False

    def write(self, result: RecordingResult) -> None:
        path = Path(result.path)
        table = self._write_raven(result) if result.origin_utc is not None else ""
        try:
            resolved, size, mtime_ns = self.identity(path)
        except OSError:
            resolved, size, mtime_ns = str(path), -1, -1
        lines = [json.dumps(self._fields(record, result), separators=(",", ":"))
                 for record in result.records]
        status = "failed" if result.error else "complete"
        known = result.origin_utc is not None and result.origin_from != "none"
        lines.append(json.dumps({
            "type": "recording", "path": resolved, "status": status, "error": result.error,
            "source": result.source, "size_bytes": size, "mtime_ns": mtime_ns,
            "origin_utc": utc_text(result.origin_utc) if known and result.origin_utc else None,
            "origin_from": result.origin_from, "channels": list(result.channels),
            "audio_seconds": round(result.audio_seconds, 3),
            "detections": len(result.detections), "raven_table": table,
            "model": self.model_hash, "settings": self.fingerprint}, separators=(",", ":")))
        self.jsonl.append("".join(line + "\n" for line in lines))  # one write: all or nothing
        if status == "complete":
            self.complete.add((resolved, size, mtime_ns))

    @staticmethod
    def _fields(record: Record, result: RecordingResult) -> dict[str, object]:
        """A JSONL line: gaps get seconds from the file's start; no UTC when it is unknown."""
        if isinstance(record, Detection):
            fields = detection_fields(record)
        else:
            fields = gap_fields(record)
            if result.origin_utc is not None:
                start = (record.start_utc - result.origin_utc).total_seconds()
                fields["start_seconds"] = round(start, 3)
                fields["end_seconds"] = round(start + record.seconds, 3)
        if result.origin_from == "none":
            fields.update({key: None for key in UTC_KEYS if key in fields})
        return fields

    def _write_raven(self, result: RecordingResult) -> str:
        assert result.origin_utc is not None
        partial = self.out_dir / PARTIAL_DIR
        partial.mkdir(exist_ok=True)  # a silent recording first: no row ever created it
        sink = RavenSink(partial, result.source, result.origin_utc,
                         absolute_times=result.origin_from != "none")
        staged = sink.file.path
        staged.unlink(missing_ok=True)  # a leftover of an interrupted run
        sink._selection = 0
        for record in result.records:
            sink.write(record)
        sink.file.close()
        if not staged.exists():  # no detections: the table still says "analysed"
            staged.write_text("\t".join(RAVEN_COLUMNS) + "\n")
        final = self.out_dir / staged.name
        os.replace(staged, final)
        return final.name

    def close(self) -> None:
        self.jsonl.close()


Executor = Callable[[list[Recording]], Iterator[RecordingResult]]


def local_executor(loaded: LoadedModel, settings: Settings, progress: Progress) -> Executor:
    def run(recordings: list[Recording]) -> Iterator[RecordingResult]:
        for recording in recordings:
            progress.start_file(recording.path.name)
            yield scan_recording(recording.path, loaded, settings, progress.within_file)
    return run


def dask_executor(client: Any, model_path: Path, settings: Settings) -> Executor:
    """Fan recordings out over a Dask cluster; results come back here to be written."""
    from dask.distributed import as_completed

    def run(recordings: list[Recording]) -> Iterator[RecordingResult]:
        futures = client.map(scan_on_worker, [str(r.path) for r in recordings],
                             model_path=str(model_path), settings=settings, pure=False)
        for future in as_completed(futures):
            yield future.result()
    return run


@functools.lru_cache(maxsize=2)
def _worker_model(model_path: str, device: str) -> LoadedModel:
    from detector.model import load_model

    return load_model(Path(model_path), device)


def scan_on_worker(path: str, model_path: str, settings: Settings) -> RecordingResult:
    """A Dask task: the model is loaded once per worker process."""
    import torch

    from detector.model import pick_torch_device

    if settings.torch_threads:
        torch.set_num_threads(settings.torch_threads)
    loaded = _worker_model(model_path, str(pick_torch_device(settings.torch_device)))
    return scan_recording(Path(path), loaded, settings)


@dataclass(frozen=True)
class Plan:
    """This shard's recordings, found and checked before anything is loaded."""

    recordings: tuple[Recording, ...]
    missing: tuple[tuple[str, str], ...]  # (argument, why)


def plan(inputs: Iterable[Path], settings: Settings, shard: tuple[int, int] = (0, 1)) -> Plan:
    """The recordings to scan; DetectError when the run cannot make sense of them."""
    found, missing = find_recordings(inputs)
    recordings = tuple(r for r in found if in_shard(r, *shard))
    if settings.origin_utc and len(found) + len(missing) > 1:
        raise DetectError(f"--origin is the start of one recording, but {len(found)} were "
                          "found: name their starts with --timestamp-pattern")
    return Plan(recordings, tuple(missing))


def detect(inputs: Iterable[Path] | Plan, loaded: LoadedModel, settings: Settings,
           out_dir: Path, shard: tuple[int, int] = (0, 1), executor: Executor | None = None,
           progress: Progress | None = None) -> DetectSummary:
    """Scan every recording not already complete in ``out_dir``; write outputs as each ends."""
    started = time.perf_counter()
    planned = inputs if isinstance(inputs, Plan) else plan(inputs, settings, shard)
    recordings, missing = list(planned.recordings), planned.missing
    output = ArchiveOutput(out_dir, loaded.content_hash, settings_fingerprint(settings))
    summary = DetectSummary(recordings=len(recordings), failed=list(missing))
    todo = [r for r in recordings if not output.is_complete(r.path)]
    summary.skipped = len(recordings) - len(todo)
    progress = progress or Progress(0.0, enabled=False)
    progress.total = sum(r.audio_seconds for r in todo)
    run = executor or local_executor(loaded, settings, progress)
    try:
        for result in run(todo):
            output.write(result)
            summary.audio_seconds += result.audio_seconds
            summary.detections += len(result.detections)
            progress.end_file(result.audio_seconds)
            if result.origin_from == "none":
                log.warning("%s: no start time in its name: its times are seconds from the "
                            "file's start, UTC left empty (give --timestamp-pattern or --origin)",
                            result.path)
                summary.unstamped.append(result.path)
            if result.error:
                log.error("skipped %s: %s", result.path, result.error)
                summary.failed.append((result.path, result.error))
    finally:
        output.close()
        progress.close()
    summary.wall_seconds = time.perf_counter() - started
    return summary


def summary_lines(summary: DetectSummary) -> list[str]:
    rtf = summary.audio_seconds / summary.wall_seconds if summary.wall_seconds else 0.0
    lines = [f"detect: {summary.recordings} recordings ({summary.skipped} already complete), "
             f"{summary.audio_seconds / 3600:.3f} h of audio in {summary.wall_seconds:.1f} s "
             f"({rtf:.0f}x real time), {summary.detections} detections, "
             f"{len(summary.failed)} failed"]
    if summary.unstamped:
        lines.append(f"warning: {len(summary.unstamped)} recordings have no start time in "
                     "their names: their detections carry seconds from the file's start and no "
                     "UTC (give --timestamp-pattern, or --origin for one recording)")
    lines += [f"failed: {path}: {why}" for path, why in summary.failed]
    return lines


def run_detect_command(paths: list[Path], settings: Settings, out_dir: Path, shard_text: str,
                       dask_address: str | None, show_progress: bool) -> int:
    """``whaled detect``: 0 when every recording was scanned, 1 when any failed, 2 at start."""
    import sys

    import torch

    from detector.daemon import KNOWN_STARTUP_ERRORS, check_model

    if settings.torch_threads:
        torch.set_num_threads(settings.torch_threads)
    try:
        shard = parse_shard(shard_text)
        planned = plan(paths, settings, shard)
        loaded = check_model(settings)
        out_dir.mkdir(parents=True, exist_ok=True)
    except (*KNOWN_STARTUP_ERRORS, DetectError, ValueError, OSError) as error:
        print(f"whaled: error: {error}", file=sys.stderr)
        return 2
    client = None
    executor = None
    if dask_address:
        try:
            client = open_dask(dask_address)
        except ImportError:
            print("whaled: error: --dask needs the dask extra (pip install 'whaled[dask]')",
                  file=sys.stderr)
            return 2
        if dask_address == "local" and not settings.torch_threads:
            settings = replace(settings, torch_threads=1)  # one process per core already
        executor = dask_executor(client, loaded.path, settings)
    progress = Progress(0.0, enabled=show_progress)
    log.info("detect model=%s model_hash=%s torch_device=%s threads=%d hop_s=%.3f shard=%d/%d "
             "out=%s", loaded.path, loaded.content_hash, loaded.device, torch.get_num_threads(),
             settings.hop_seconds, *shard, out_dir)
    try:
        summary = detect(planned, loaded, settings, out_dir, shard, executor, progress)
    finally:
        if client is not None:
            client.close()
    for line in summary_lines(summary):
        print(line, file=sys.stderr)
    return 1 if summary.failed else 0


def open_dask(address: str) -> Any:
    from dask.distributed import Client, LocalCluster

    if address == "local":
        cores = os.cpu_count() or 1
        return Client(LocalCluster(n_workers=cores, threads_per_worker=1, processes=True))
    return Client(address)
