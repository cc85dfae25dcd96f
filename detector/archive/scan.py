"""One recording through the listen pipeline: what ``whaled detect`` does to each file.

A recording is a :class:`~detector.sources.replay.FileSource` at speed 0 through the same
:class:`~detector.stream.pipeline.Pipeline` as ``listen --device file:PATH --speed 0`` (same
windows,
scores and event logic; only the block size differs, and events do not depend on it). The
file is streamed in blocks, so memory stays flat with its length, and decoded a few blocks
ahead in a thread (:class:`ReadAhead`: libsndfile and numpy release the GIL), so decoding the
next blocks overlaps resampling and scoring this one. Errors come back in the
:class:`~detector.archive.outputs.RecordingResult`, never raised, so one bad file stops nothing.
"""

from __future__ import annotations

import queue
import threading
import time
from collections.abc import Callable
from pathlib import Path

from detector.archive.outputs import RecordingResult, fingerprint_doc
from detector.archive.saved_scores import ScoreRecorder
from detector.core.config import Settings
from detector.core.stamps import parse_origin
from detector.model.artifact import LoadedModel
from detector.outputs.sinks import HoldsNothing, Record, Sink
from detector.sources.replay import FileSource, Source, SourceError, one_line
from detector.stream.blocks import EndOfStream, Item, StreamInfo, frames_per_block
from detector.stream.events import Detection
from detector.stream.pipeline import offline_pipeline
from detector.stream.run_summary import RunSummary

READ_AHEAD_BLOCKS = 4  # decoded blocks waiting for the pipeline (detect's 8 s each)


class ReadAhead:
    """A recording's reads done ``blocks`` ahead by a thread, handed over in the same order
    and grouping as the source's own reads: the pipeline sees exactly what it would have
    read itself (so the same batches, scores and events), only sooner. ``read`` waits for the
    next read whatever its timeout: an unpaced file always has one coming."""

    def __init__(self, source: Source, blocks: int = READ_AHEAD_BLOCKS) -> None:
        self.info: StreamInfo = source.info
        self._source = source
        self._reads: queue.Queue[list[Item] | BaseException] = queue.Queue(maxsize=blocks)
        self._stop = threading.Event()
        self._ended: list[Item] = []  # the last read (holding EndOfStream), once handed over
        self._thread = threading.Thread(target=self._decode, name="whaled-read-ahead",
                                        daemon=True)
        self._thread.start()

    def _decode(self) -> None:
        try:
            while not self._stop.is_set():
                items = self._source.read(0.0)
                self._hand_over(items)
                if any(isinstance(item, EndOfStream) for item in items):
                    return
        except BaseException as error:  # raised again in the reading thread
            self._hand_over(error)

    def _hand_over(self, reads: list[Item] | BaseException) -> None:
        while not self._stop.is_set():
            try:
                self._reads.put(reads, timeout=0.1)
                return
            except queue.Full:
                continue

    def read(self, timeout_seconds: float) -> list[Item]:
        if self._ended:
            return self._ended
        reads = self._reads.get()
        if isinstance(reads, BaseException):
            raise reads
        if any(isinstance(item, EndOfStream) for item in reads):
            self._ended = [item for item in reads if isinstance(item, EndOfStream)]
        return reads

    def close(self) -> None:
        self._stop.set()
        self._thread.join()
        self._source.close()


def scan_recording(path: Path, loaded: LoadedModel, settings: Settings,
                   on_progress: Callable[[float], None] | None = None,
                   save_scores: bool = False, stop: threading.Event | None = None,
                   read_ahead: bool = True) -> RecordingResult:
    """One recording through the listen pipeline; errors are returned, never raised.
    ``save_scores``: keep every window's scores in ``result.scores``. ``stop``: set, the scan
    ends at the next block and the result says "interrupted". ``read_ahead``: decode in a
    thread (:class:`ReadAhead`), else in the pipeline's own."""
    started = time.perf_counter()
    result = RecordingResult(str(path))
    import soundfile

    try:
        block_frames = _block_frames(settings, path)
        origin = parse_origin(settings.origin_utc) if settings.origin_utc else None
        file = FileSource(Path(path), block_frames=block_frames, speed=0.0,
                          channels=settings.channels, origin=origin,
                          timestamp_pattern=settings.timestamp_pattern)
    except (SourceError, RuntimeError, OSError, soundfile.LibsndfileError) as error:
        text = str(error).strip().splitlines()[0] if str(error).strip() else repr(error)
        result.error = text.removeprefix(f"{path}: ")
        return result
    collect = CollectSink()
    recorder = ScoreRecorder() if save_scores else None
    sinks: list[Sink] = [collect, *([recorder] if recorder else [])]
    source: Source = ReadAhead(file) if read_ahead else file
    try:
        info, expected = source.info, file.frames
        result.source, result.origin_utc = info.name, info.origin_utc
        result.origin_from, result.channels = info.origin_from, info.channels
        pipeline = offline_pipeline(source, loaded, settings, sinks)
        if recorder is not None:
            pipeline.score_taps.append(recorder.tap)
        if on_progress is not None:
            pipeline.hooks.append(lambda status: on_progress(status.analysed_seconds))
        summary = pipeline.run(stop or threading.Event())
        result.records = collect.records
        result.audio_seconds = summary.samples / info.rate_hz
        if recorder is not None:
            result.scores = recorder.saved(pipeline, fingerprint_doc(settings),
                                           result.audio_seconds)
        result.error = unanalysed(summary, expected, file.declared_frames, info.rate_hz,
                                  settings.window_seconds)
        if pipeline.end_reason == "stopped":
            result.error = f"interrupted after {result.audio_seconds:.1f} s"
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
                f"holds {frames / rate_hz:.1f} s, all of it scanned")
    return ""


class CollectSink(HoldsNothing):
    """The records of one recording, kept in memory for its result."""

    name = "collect"

    def __init__(self) -> None:
        self.records: list[Record] = []

    def write(self, record: Record) -> None:
        self.records.append(record)


def detect_recording(path: Path, loaded: LoadedModel, settings: Settings,
                     sinks: list[Sink] | None = None) -> list[Detection]:
    """The ``listen --device file:PATH --speed 0`` path, for evaluation and batch scans."""
    source = FileSource(Path(path), block_frames=_block_frames(settings, path),
                        speed=0.0, channels=settings.channels)
    try:
        pipeline = offline_pipeline(source, loaded, settings, list(sinks or []))
        return pipeline.run(threading.Event()).detections
    finally:
        source.close()


def _block_frames(settings: Settings, path: Path) -> int:
    import soundfile

    try:
        rate = soundfile.info(str(path)).samplerate
    except (RuntimeError, OSError, soundfile.LibsndfileError) as error:  # as FileSource says it
        raise SourceError(f"cannot read {path}: {one_line(error)}") from None
    return frames_per_block(settings.block_seconds, rate)
