"""``whaled detect``: archives of recordings through the listen pipeline, resumable and sharded.

Each recording is a :class:`~detector.sources.FileSource` at speed 0 through the same
:class:`~detector.pipeline.Pipeline` as ``listen --device file:PATH --speed 0`` (same windows,
scores and event logic; only the block size differs, and events do not depend on it). Long
files are streamed in blocks, so memory stays flat with file length.

Outputs in ``--out`` (:mod:`detector.archive_output`): one Raven selection table per
recording and ``detections.jsonl`` for all of them, one current result per recording. A rerun
over the same output skips exactly the recordings whose current result says ``complete`` with
the same model, settings and file, and redoes the rest. Unreadable recordings are reported,
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
from collections import Counter
from collections.abc import Callable, Iterable, Iterator
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Any

from prometheus_client import CollectorRegistry

from detector.archive_output import (
    SUPERSEDED_NAME,
    ArchiveOutput,
    DetectError,
    RecordingResult,
    table_name,
)
from detector.config import Settings
from detector.metrics import Metrics
from detector.model import LoadedModel
from detector.pipeline import Pipeline, RunSummary
from detector.presence import Totals, totals_lines, write_season
from detector.progress import Progress
from detector.saved_scores import ScoreRecorder, scores_name, write_scores
from detector.sinks import Record, Sink, unwritable
from detector.sources import AUDIO_SUFFIXES, FileSource, SourceError
from detector.stamps import parse_origin

log = logging.getLogger("whaled.detect")
DETECT_BLOCK_SECONDS = 8.0  # blocks read per pass: large, so per-block Python costs vanish
FINGERPRINT_KEYS = ("hop_seconds", "on_threshold", "off_threshold", "min_duration_seconds",
                    "merge_gap_seconds", "max_duration_seconds", "channels",
                    "model_rate_hz", "window_seconds", "origin_utc",
                    "timestamp_pattern")  # settings that change detections or their times


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
class DetectSummary:
    recordings: int = 0
    skipped: int = 0  # complete in an earlier run over the same output
    audio_seconds: float = 0.0
    wall_seconds: float = 0.0
    detections: int = 0
    failed: list[tuple[str, str]] = field(default_factory=list)  # (path, why)
    unstamped: list[str] = field(default_factory=list)  # scanned with no known start
    totals: Totals | None = None  # the whole output folder, over every run that wrote it
    evidence_clips: int = 0  # written by --evidence
    unwritten: tuple[int, int] = (0, 0)  # (results, JSONL lines) the disk would not take
    write_error: str = ""


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


def fingerprint_doc(settings: Settings) -> dict[str, Any]:
    return {key: getattr(settings, key) for key in FINGERPRINT_KEYS}


def settings_fingerprint(settings: Settings) -> str:
    doc = fingerprint_doc(settings)
    return hashlib.sha256(json.dumps(doc, sort_keys=True).encode()).hexdigest()[:12]


def scan_recording(path: Path, loaded: LoadedModel, settings: Settings,
                   on_progress: Callable[[float], None] | None = None,
                   save_scores: bool = False) -> RecordingResult:
    """One recording through the listen pipeline; errors are returned, never raised.
    ``save_scores``: keep every window's scores in ``result.scores``."""
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
        text = str(error).strip().splitlines()[0] if str(error).strip() else repr(error)
        result.error = text.removeprefix(f"{path}: ")
        return result
    collect = CollectSink()
    recorder = ScoreRecorder() if save_scores else None
    sinks: list[Sink] = [collect, *([recorder] if recorder else [])]
    try:
        info, expected = source.info, source.frames
        result.source, result.origin_utc = info.name, info.origin_utc
        result.origin_from, result.channels = info.origin_from, info.channels
        metrics = Metrics(CollectorRegistry(), info.channels, loaded.metadata.labels)
        pipeline = Pipeline(source, loaded, settings, sinks, metrics)
        if recorder is not None:
            pipeline.score_taps.append(recorder.tap)
        if on_progress is not None:
            pipeline.hooks.append(lambda p: on_progress(p.summary.samples / info.rate_hz))
        summary = pipeline.run(threading.Event())
        result.records = collect.records
        result.audio_seconds = summary.samples / info.rate_hz
        if recorder is not None:
            result.scores = recorder.saved(pipeline, fingerprint_doc(settings),
                                           result.audio_seconds)
        result.error = unanalysed(summary, expected, source.declared_frames, info.rate_hz,
                                  settings.window_seconds)
    except (RuntimeError, OSError, ValueError) as error:
        result.error = f"{type(error).__name__}: {str(error).strip().splitlines()[0]}"
    finally:
        for sink in sinks:
            sink.close()
        source.close()
        result.wall_seconds = time.perf_counter() - started
    return result


def unanalysed(summary: RunSummary, frames: int, declared_frames: int, rate_hz: int,
               window_seconds: float) -> str:
    """Why a recording that was read is not "complete", or "" when it is."""
    read = summary.samples + summary.nonfinite_samples
    if frames == 0:
        return "empty: no audio samples"
    if read < frames:
        return f"read error after {read / rate_hz:.1f} s of {frames / rate_hz:.1f} s"
    if summary.samples == 0:
        return f"no finite audio: all {read / rate_hz:.1f} s are NaN or Inf"
    if summary.windows == 0:
        return (f"too short: {summary.samples / rate_hz:.1f} s of audio, one window is "
                f"{window_seconds:g} s")
    if declared_frames > frames:
        return (f"truncated: the header promises {declared_frames / rate_hz:.1f} s, the file "
                f"holds {frames / rate_hz:.1f} s (scanned)")
    return ""


class CollectSink:
    name = "collect"

    def __init__(self) -> None:
        self.records: list[Record] = []

    def write(self, record: Record) -> None:
        self.records.append(record)

    def close(self) -> None:
        """Nothing to release: the records stay for the caller."""


Executor = Callable[[list[Recording]], Iterator[RecordingResult]]


def local_executor(loaded: LoadedModel, settings: Settings, progress: Progress,
                   save_scores: bool = False) -> Executor:
    def run(recordings: list[Recording]) -> Iterator[RecordingResult]:
        for recording in recordings:
            progress.start_file(recording.key)
            yield scan_recording(recording.path, loaded, settings, progress.within_file,
                                 save_scores)
    return run


def dask_executor(client: Any, model_path: Path, settings: Settings,
                  save_scores: bool = False) -> Executor:
    """Fan recordings out over a Dask cluster; results come back here to be written."""
    from dask.distributed import as_completed

    def run(recordings: list[Recording]) -> Iterator[RecordingResult]:
        futures = client.map(scan_on_worker, [str(r.path) for r in recordings],
                             model_path=str(model_path), settings=settings,
                             save_scores=save_scores, pure=False)
        for future in as_completed(futures):
            yield future.result()
    return run


@functools.lru_cache(maxsize=2)
def _worker_model(model_path: str, device: str) -> LoadedModel:
    from detector.model import load_model

    return load_model(Path(model_path), device)


def scan_on_worker(path: str, model_path: str, settings: Settings,
                   save_scores: bool = False) -> RecordingResult:
    """A Dask task: the model is loaded once per worker process."""
    import torch

    from detector.model import pick_torch_device

    if settings.torch_threads:
        torch.set_num_threads(settings.torch_threads)
    loaded = _worker_model(model_path, str(pick_torch_device(settings.torch_device)))
    return scan_recording(Path(path), loaded, settings, save_scores=save_scores)


@dataclass(frozen=True)
class Plan:
    """This shard's recordings, found and checked before anything is loaded."""

    recordings: tuple[Recording, ...]
    missing: tuple[tuple[str, str], ...]  # (argument, why)


def plan(inputs: Iterable[Path], settings: Settings, shard: tuple[int, int] = (0, 1)) -> Plan:
    """The recordings to scan; DetectError when the run cannot make sense of them."""
    inputs = list(inputs)
    found, missing = find_recordings(inputs)
    if not found:  # a typo or an empty folder: nothing would be scanned, say so at once
        if missing:
            raise DetectError(f"{missing[0][0]}: not found")
        raise DetectError(f"no recordings ({' '.join(AUDIO_SUFFIXES)}) in "
                          f"{', '.join(str(p) for p in inputs)}")
    recordings = tuple(r for r in found if in_shard(r, *shard))
    if settings.origin_utc and len(found) + len(missing) > 1:
        raise DetectError(f"--origin is the start of one recording, but {len(found)} were "
                          "found: name their starts with --timestamp-pattern")
    tables = Counter(table_name(r.key) for r in found)
    for name, n in tables.items():
        if n > 1:
            clash = [str(r.path) for r in found if table_name(r.key) == name]
            raise DetectError(f"two recordings would share the table {name} ("
                              f"{' and '.join(clash[:2])}): give their common parent folder")
    return Plan(recordings, tuple(missing))


def detect(inputs: Iterable[Path] | Plan, loaded: LoadedModel, settings: Settings,
           out_dir: Path, shard: tuple[int, int] = (0, 1), executor: Executor | None = None,
           progress: Progress | None = None, save_scores: bool = False,
           evidence: int = 0) -> DetectSummary:
    """Scan every recording not already complete in ``out_dir``; write outputs as each ends.
    ``save_scores``: also every window's scores, and a complete recording without them is
    scanned again. ``evidence``: clips of the top N detections per recording and N more
    drawn from the rest."""
    started = time.perf_counter()
    planned = inputs if isinstance(inputs, Plan) else plan(inputs, settings, shard)
    recordings, missing = list(planned.recordings), planned.missing
    output = ArchiveOutput(out_dir, loaded.content_hash, settings_fingerprint(settings))
    summary = DetectSummary(recordings=len(recordings), failed=list(missing))
    progress = progress or Progress(0.0, enabled=False)
    try:
        output.check_tables([(r.path, r.key) for r in recordings])
        todo = [r for r in recordings if not output.is_complete(r.path) or (
            save_scores and not (out_dir / scores_name(r.key)).is_file())]
        summary.skipped = len(recordings) - len(todo)
        replaced = sum(output.replaces(r.path) for r in todo)
        if replaced:
            log.warning("%d recordings in %s were scanned before with another model or "
                        "settings, or have changed since: their earlier results are superseded "
                        "(moved to %s when this run ends)", replaced, out_dir, SUPERSEDED_NAME)
        progress.total = sum(r.audio_seconds for r in todo)
        keys = {str(r.path): r.key for r in todo}
        run = executor or local_executor(loaded, settings, progress, save_scores)
        for result in run(todo):
            result.key = keys.get(result.path, Path(result.path).name)
            if result.scores is not None:  # before the result: "complete" has its scores
                try:
                    write_scores(out_dir / scores_name(result.key), replace(
                        result.scores, recording=result.key, error=result.error,
                        path=str(Path(result.path).resolve())))
                except OSError as error:  # a full disk: not complete, so the next run redoes it
                    result.error = result.error or f"scores not written: {error.strerror}"
            output.write(result)
            summary.evidence_clips += evidence_for(result, out_dir, evidence, settings,
                                                   loaded.metadata.labels)
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
        summary.unwritten = output.unwritten()
        summary.write_error = output.last_error
    if output.superseded:
        log.info("%d earlier results moved to %s", output.superseded, out_dir / SUPERSEDED_NAME)
    try:
        summary.totals = write_season(out_dir)
    except OSError as error:
        log.error("could not write the CSV and presence tables in %s: %s", out_dir, error)
    summary.wall_seconds = time.perf_counter() - started
    return summary


def evidence_for(result: RecordingResult, out_dir: Path, n: int, settings: Settings,
                 labels: tuple[str, ...]) -> int:
    """``--evidence N`` for one result; a clip that cannot be cut is logged, not fatal."""
    if n <= 0:
        return 0
    import soundfile

    from detector.detect_evidence import save_evidence

    try:
        return save_evidence(result, out_dir, n, settings, labels)
    except (OSError, RuntimeError, soundfile.LibsndfileError) as error:
        log.error("%s: evidence clips not saved: %s", result.path, error)
        return 0


def summary_lines(summary: DetectSummary) -> list[str]:
    rtf = summary.audio_seconds / summary.wall_seconds if summary.wall_seconds else 0.0
    scanned = summary.recordings - summary.skipped
    lines = [f"detect: {summary.recordings} recordings ({summary.skipped} already complete), "
             f"{scanned} scanned, {summary.audio_seconds / 3600:.3f} h of audio in "
             f"{summary.wall_seconds:.1f} s ({rtf:.0f}x real time), {summary.detections} "
             f"detections, {len(summary.failed)} failed"]
    lines += totals_lines(summary.totals, scanned)
    if summary.evidence_clips:
        lines.append(f"evidence: {summary.evidence_clips} clips written")
    if summary.unstamped:
        lines.append(f"warning: {len(summary.unstamped)} recordings have no start time in "
                     "their names: their detections carry seconds from the file's start and no "
                     "UTC (give --timestamp-pattern, or --origin for one recording)")
    lines += [f"failed: {path}: {why}" for path, why in summary.failed]
    results, missing = summary.unwritten
    if results:
        lines.append(f"whaled: error: {results} recordings' results ({missing} lines) were never "
                     f"written to the output ({summary.write_error}); they were not marked "
                     "complete, so a rerun scans them again")
    return lines


def run_detect_command(paths: list[Path], settings: Settings, out_dir: Path, shard_text: str,
                       dask_address: str | None, show_progress: bool,
                       save_scores: bool = False, evidence: int = 0) -> int:
    """``whaled detect``: 0 when every recording was scanned, 1 when any failed, 2 at start."""
    import sys

    import torch

    from detector.errors import WhaledError
    from detector.model import check_model

    if settings.torch_threads:
        torch.set_num_threads(settings.torch_threads)
    try:
        if evidence < 0:
            raise ValueError(f"--evidence {evidence}: give 0 or more clips per recording")
        shard = parse_shard(shard_text)
        planned = plan(paths, settings, shard)
        problem = unwritable(out_dir)
        if problem:
            raise DetectError(f"output directory {out_dir} is not writable: {problem}")
        loaded = check_model(settings)
    except (WhaledError, ValueError, OSError) as error:
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
        executor = dask_executor(client, loaded.path, settings, save_scores)
    progress = Progress(0.0, enabled=show_progress)
    log.info("detect model=%s model_hash=%s torch_device=%s threads=%d hop_s=%.3f shard=%d/%d "
             "out=%s", loaded.path, loaded.content_hash, loaded.device, torch.get_num_threads(),
             settings.hop_seconds, *shard, out_dir)
    try:
        summary = detect(planned, loaded, settings, out_dir, shard, executor, progress,
                         save_scores, evidence)
    except DetectError as error:
        print(f"whaled: error: {error}", file=sys.stderr)
        return 2
    finally:
        if client is not None:
            client.close()
    for line in summary_lines(summary):
        print(line, file=sys.stderr)
    return 1 if summary.failed or summary.unwritten[0] else 0


def open_dask(address: str) -> Any:
    from dask.distributed import Client, LocalCluster

    if log.getEffectiveLevel() > logging.DEBUG:  # dask's INFO lines would bury whaled's own
        logging.getLogger("distributed").setLevel(logging.WARNING)
    if address == "local":
        cores = os.cpu_count() or 1
        return Client(LocalCluster(n_workers=cores, threads_per_worker=1, processes=True,
                                   silence_logs=logging.WARNING, dashboard_address=None))
    return Client(address)
