"""The main loop: source -> resample -> windows -> model -> event trackers -> sinks.

Built once at start-up by :mod:`detector.daemon` (which fails with one line for anything
external), then :meth:`Pipeline.run` until the source ends or the stop flag is set. Every time comes
from sample indices; a backlog goes through the model as one batch; a gap closes open events
and starts a new segment so no window spans it.
"""

from __future__ import annotations

import itertools
import logging
import threading
import time
from collections import deque
from collections.abc import Callable
from datetime import datetime, timedelta
from pathlib import Path
from typing import Protocol

import numpy as np

from detector.blocks import Block, ClockStep, EndOfStream, Gap
from detector.config import Settings
from detector.events import Detection, Event, EventTracker, Thresholds, TrackerSettings
from detector.health import FlowWatch, RateMeter
from detector.metrics import Metrics
from detector.model import LoadedModel
from detector.resample import Resampler
from detector.scoring import Scorer
from detector.sinks import AppendFile, ClockRecord, GapRecord, Record, Sink
from detector.sources import FileSource, Source
from detector.windows import Windower

ScoreTap = Callable[[np.ndarray, np.ndarray], None]  # (centres s, scores (n, channels, labels))
Hook = Callable[["Pipeline"], None]  # called on every pass of the main loop (watchdog, reload)

log = logging.getLogger("whaled.pipeline")
READ_TIMEOUT_SECONDS = 0.2  # how often the loop looks at the stop flag when no audio comes
CLIP_LEVEL = 0.999  # |sample| at or above this counts as clipped
LEVEL_FLOOR_DBFS = -200.0
NONFINITE_GAP_MAX_SECONDS = 60.0  # a longer run of NaN/Inf is recorded a minute at a time
RETRY_SECONDS = 5.0  # how often outputs that failed to write are tried again


class AudioTap(Protocol):
    def push(self, first_sample: int, samples: np.ndarray) -> None: ...


class RunSummary:
    """Counts for the whole run, and the records themselves: all of them for one recording
    (``kept=None``), only the latest ``kept`` for a daemon that runs for years (every record
    is in the sinks)."""

    def __init__(self, kept: int | None = None) -> None:
        self.samples = 0  # analysed
        self.unwritten: list[tuple[str, int]] = []  # (file, lines) never written, at the end
        self.nonfinite_samples = 0  # received, but NaN or Inf: recorded as "nonfinite" gaps
        self.windows = 0
        self.detection_count = 0
        self.gap_count = 0
        self._detections: deque[Detection] = deque(maxlen=kept)
        self._gaps: deque[Gap] = deque(maxlen=kept)

    @property
    def detections(self) -> list[Detection]:
        return list(self._detections)

    @property
    def gaps(self) -> list[Gap]:
        return list(self._gaps)

    def add_detection(self, detection: Detection) -> None:
        self.detection_count += 1
        self._detections.append(detection)

    def add_gap(self, gap: Gap) -> None:
        self.gap_count += 1
        self._gaps.append(gap)


def longest_emission_delay_seconds(settings: Settings) -> float:
    """Stream time by which a detection's emission can trail its last audio sample.

    A backlog (start-up, a slow batch, ``--speed 0`` replay) fills a whole batch of windows,
    plus what one block adds, before the model runs; then the event waits out the merge gap
    and the window that closes it. Taps holding audio for detections keep at least this much.
    """
    return ((settings.max_batch_windows + 1) * settings.hop_seconds + settings.block_seconds
            + 2 * settings.window_seconds + settings.merge_gap_seconds)


def thresholds_for(settings: Settings, loaded: LoadedModel) -> Thresholds:
    default = loaded.metadata.thresholds
    on = settings.on_threshold if settings.on_threshold >= 0 else default.on
    off = settings.off_threshold if settings.off_threshold >= 0 else min(default.off, on)
    return Thresholds(on=on, off=min(off, on))


class Pipeline:
    def __init__(self, source: Source, loaded: LoadedModel, settings: Settings,
                 sinks: list[Sink], metrics: Metrics, records_kept: int | None = None) -> None:
        """``records_kept``: how many of the latest detections and gaps the summary holds
        (None: all, for one recording; a daemon bounds it)."""
        info, meta = source.info, loaded.metadata
        self.source, self.loaded, self.settings = source, loaded, settings
        self.sinks, self.metrics = sinks, metrics
        self.thresholds = thresholds_for(settings, loaded)
        self.resampler = Resampler(info.rate_hz, meta.sample_rate_hz, len(info.channels))
        self.hop_samples = max(1, round(settings.hop_seconds * meta.sample_rate_hz))
        self.windower = Windower(meta.window_samples, self.hop_samples, len(info.channels))
        self.scorer = Scorer(loaded, settings.max_batch_windows, self.hop_samples,
                             len(self.source.info.channels))
        self.trackers = self._make_trackers()
        self.limit_samples = (int(settings.duration_seconds * info.rate_hz)
                              if settings.duration_seconds > 0 else None)  # --duration
        self._received = 0  # frames of audio received, gaps not counted: what --duration counts
        self.summary = RunSummary(records_kept)
        self.end_reason = ""  # why run() returned: end of stream, duration reached, stopped
        self.clock_correction_seconds = 0.0  # subtracted from origin + index / rate (ClockStep)
        self._first: int | None = None  # first sample index of the stream
        self._expected: int | None = None  # index the next block should start at
        self._segment_seconds = 0.0  # stream time of the current segment's first sample
        self._pending: list[tuple[np.ndarray, np.ndarray]] = []  # (centres, windows)
        self._pending_count = 0
        self._open_nonfinite: tuple[int, int] | None = None  # [first, end) of NaN/Inf held
        self._batches = 0  # batches scored so far
        self._last_arrival = 0.0
        self.hooks: list[Hook] = []
        self.taps: list[AudioTap] = []  # see capture-rate audio as it arrives (evidence clips)
        self.score_taps: list[ScoreTap] = []  # see every window's centre and scores (evaluate)
        self.flow = FlowWatch(settings.stall_timeout_seconds if self._live() else 0.0)
        self.rate_meter = RateMeter()
        self._started_monotonic = time.monotonic()
        self._source_gap_in_stall = False
        self._last_retry = self._started_monotonic
        metrics.started.set(time.time())
        metrics.nominal_rate.set(info.rate_hz)

    def _make_trackers(self) -> list[list[EventTracker]]:
        meta, s = self.loaded.metadata, self.settings
        tracker_settings = TrackerSettings(
            self.thresholds, self.hop_samples / meta.sample_rate_hz, s.min_duration_seconds,
            s.merge_gap_seconds, s.max_duration_seconds)
        return [[EventTracker(tracker_settings, ch, label) for label in meta.labels]
                for ch in self.source.info.channels]

    def run(self, stop: threading.Event) -> RunSummary:
        """Process audio until the source ends, --duration is reached, or ``stop`` is set;
        ``end_reason`` says which."""
        while not stop.is_set():
            items = self.source.read(READ_TIMEOUT_SECONDS)
            batches = self._batches
            while items:  # drain a backlog into one batch, a read at a time (flat memory)
                if self._consume(items):
                    self.end_reason = ("duration reached" if self._reached_limit()
                                       else "end of stream")
                    return self.finish()
                if (self._pending_count >= self.settings.max_batch_windows
                        or self._batches != batches):
                    break  # a batch was scored: tick (progress, retries, watchdog) between
                items = self.source.read(0.0)
            if self._pending_count and (not items or self._pending_count >=
                                        self.settings.max_batch_windows or self._live()):
                self.score_pending()
            self.tick()
        self.end_reason = "stopped"
        return self.finish()

    def _consume(self, items: list[Block | Gap | ClockStep | EndOfStream]) -> bool:
        """Blocks and gaps into the windower; True at the end of the stream or --duration."""
        for item in items:
            if isinstance(item, EndOfStream):
                return True
            if isinstance(item, Gap):
                self.on_gap(item)
            elif isinstance(item, ClockStep):
                self.on_clock_step(item)
            else:
                self.on_block(item)
                if self._reached_limit():
                    return True
        return False

    def _live(self) -> bool:
        return self.settings.speed > 0 or not isinstance(self.source, FileSource)

    def _reached_limit(self) -> bool:
        """--duration counts audio received: a gap in the stream does not use it up."""
        return self.limit_samples is not None and self._received >= self.limit_samples

    def tick(self) -> None:
        """Between reads: notice a stall, update coverage, run the hooks."""
        now = time.monotonic()
        if self.flow.check(now):
            self.metrics.stalls.inc()
            self.metrics.audio_flowing.set(0)
            log.warning("no audio for %.1f s: capture stalled (stall_timeout_seconds = %g)",
                        self.flow.silent_seconds(now), self.flow.timeout_seconds)
        elapsed = now - self._started_monotonic
        self.metrics.elapsed.set(elapsed)
        if elapsed > 0:
            self.metrics.coverage.set(self.summary.samples / self.source.info.rate_hz / elapsed)
        if now - self._last_retry >= RETRY_SECONDS:
            self._last_retry = now
            self.retry_sinks()
        for hook in self.hooks:
            hook(self)

    def unwritten(self) -> list[tuple[Path, list[str]]]:
        """Lines that every retry so far failed to write (disk full), per file."""
        files = [getattr(sink, "file", None) for sink in self.sinks]
        return [(f.path, f.pending()) for f in files
                if isinstance(f, AppendFile) and f.pending_lines]

    def retry_sinks(self) -> None:
        """Write what failed before (disk full, directory gone) without waiting for a record."""
        for sink in self.sinks:
            retry = getattr(sink, "retry", None)
            if retry is None:
                continue
            try:
                retry()
            except OSError as error:
                self.metrics.sink_errors.labels(getattr(sink, "name", "?")).inc()
                log.debug("retry of %s output failed: %s", getattr(sink, "name", "?"), error)

    def _on_audio(self, block: Block) -> None:
        arrival = block.arrival_monotonic or time.monotonic()
        stalled_seconds = self.flow.audio(arrival)
        self.metrics.audio_flowing.set(1)
        if stalled_seconds is not None:
            # No gap of our own: the sample indexes say whether audio was lost. A capture
            # source re-anchors after the same stall_timeout_seconds behind a "stall" gap;
            # a block that continues the stream means the audio came late, and is analysed.
            log.info("audio flows again after %.1f s", stalled_seconds)
            self.rate_meter.reset()
        self._source_gap_in_stall = False
        rate = self.rate_meter.add(block.frames, block.arrival_monotonic)
        if rate is not None:
            self.metrics.measured_rate.set(rate)

    def _record_stall(self, seconds: float) -> None:
        info, first = self.source.info, self._expected or 0
        seconds = max(seconds, 0.0)
        gap = Gap(first, first + round(seconds * info.rate_hz), "stall")
        self.metrics.gaps.labels(gap.reason).inc()
        self.metrics.gap_seconds.labels(gap.reason).inc(seconds)
        self.summary.add_gap(gap)
        start = self.utc_at(first)
        self._emit(GapRecord(start, start + timedelta(seconds=seconds), seconds, gap.reason,
                             info.name))

    def utc_at(self, sample_index: float) -> datetime:
        """UTC of a sample: the stream's origin plus its index, less the clock correction."""
        return self.source.info.utc_at(sample_index) - timedelta(
            seconds=self.clock_correction_seconds)

    def on_clock_step(self, step: ClockStep) -> None:
        """The source moved the sample-to-UTC mapping: use it from here, and say so."""
        self.clock_correction_seconds = step.correction_seconds
        self.metrics.clock_steps.labels(step.reason).inc()
        self.metrics.clock_correction.set(step.correction_seconds)
        info = self.source.info
        log.warning("clock: times from %.3f s of stream moved %+.3f s (%s), %+.3f s in all",
                    step.first_sample / info.rate_hz, -step.step_seconds, step.reason,
                    -step.correction_seconds)
        self._emit(ClockRecord(self.utc_at(step.first_sample), step.first_sample / info.rate_hz,
                               step.step_seconds, step.correction_seconds, step.reason,
                               info.name))

    def on_block(self, block: Block) -> None:
        self._on_audio(block)
        rate = self.source.info.rate_hz
        if self._first is None:
            self._first = self._expected = block.first_sample
            self._segment_seconds = block.first_sample / rate
        if block.first_sample != self._expected:
            assert self._expected is not None
            self.on_gap(Gap(self._expected, block.first_sample, "discontinuity"))
        samples = block.samples
        if self.limit_samples is not None:
            samples = samples[:max(0, self.limit_samples - self._received)]
        self._received += len(samples)
        bad = ~np.isfinite(samples).all(axis=1)
        samples = self._observe_input(samples)
        if bad.any():
            self._split_nonfinite(block.first_sample, samples, bad, block.arrival_monotonic)
        else:
            self._analyse(block.first_sample, samples, block.arrival_monotonic)

    def _analyse(self, first_sample: int, samples: np.ndarray, arrival: float) -> None:
        self._close_nonfinite()
        self._expected = first_sample + len(samples)
        self.summary.samples += len(samples)
        self.metrics.samples.inc(len(samples))
        self.metrics.audio_seconds.inc(len(samples) / self.source.info.rate_hz)
        self._last_arrival = arrival
        for tap in self.taps:
            tap.push(first_sample, samples)
        self._add_windows(self.windower.push(self.resampler.push(samples)))

    def _split_nonfinite(self, first_sample: int, samples: np.ndarray, bad: np.ndarray,
                         arrival: float) -> None:
        """Frames with NaN or Inf on any channel are a "nonfinite" gap, never scored as zeros.

        Finite audio between two bad runs that is shorter than a window joins the gap: no
        window could be scored there anyway, and one gap record says so instead of many.
        """
        shortest = self.settings.window_seconds * self.source.info.rate_hz
        edges = [0, *(np.flatnonzero(np.diff(bad.astype(np.int8))) + 1).tolist(), len(bad)]
        spans = list(itertools.pairwise(edges))  # alternately bad and finite
        runs: list[tuple[int, int, bool]] = []
        for i, (start, end) in enumerate(spans):
            is_bad = bool(bad[start]) or (0 < i < len(spans) - 1 and end - start < shortest)
            if runs and runs[-1][2] and is_bad:
                runs[-1] = (runs[-1][0], end, True)
            else:
                runs.append((start, end, is_bad))
        for start, end, is_bad in runs:
            if is_bad:
                self._nonfinite(first_sample + start, first_sample + end)
            else:
                self._analyse(first_sample + start, samples[start:end], arrival)

    def _nonfinite(self, first_sample: int, end_sample: int) -> None:
        """Extend the open nonfinite gap (it spans blocks) or open one; it is recorded when
        finite audio or another gap comes, at the end, or when it reaches a minute."""
        held = self._open_nonfinite
        if held is not None and held[1] == first_sample:
            self._open_nonfinite = (held[0], end_sample)
        else:
            self._close_nonfinite()
            self._open_nonfinite = (first_sample, end_sample)
        self.summary.nonfinite_samples += end_sample - first_sample
        self._expected = end_sample
        start, end = self._open_nonfinite
        if end - start >= NONFINITE_GAP_MAX_SECONDS * self.source.info.rate_hz:
            self._close_nonfinite()

    def _close_nonfinite(self) -> None:
        if self._open_nonfinite is not None:
            start, end = self._open_nonfinite
            self._open_nonfinite = None
            self.on_gap(Gap(start, end, "nonfinite"))

    def _add_windows(self, cut: tuple[np.ndarray, np.ndarray]) -> None:
        starts, windows = cut
        if len(starts):
            meta = self.loaded.metadata
            centres = self._segment_seconds + (starts + meta.window_samples / 2) / \
                meta.sample_rate_hz
            self._pending.append((centres, windows))
            self._pending_count += len(starts)
            if self._pending_count >= self.settings.max_batch_windows:
                self.score_pending()

    def _observe_input(self, samples: np.ndarray) -> np.ndarray:
        """Level, clipping and non-finite counts per channel; NaN/Inf never reach the model."""
        finite = np.isfinite(samples)
        if not finite.all():
            samples = np.where(finite, samples, np.float32(0.0))
        for col, channel in enumerate(self.source.info.channels):
            c, x = str(channel), samples[:, col]
            bad = int(len(x) - np.count_nonzero(finite[:, col]))
            if bad:
                self.metrics.nonfinite.labels(c).inc(bad)
            if len(x):
                rms = float(np.sqrt(np.mean(np.square(x, dtype=np.float64))))
                peak = float(np.max(np.abs(x)))
                self.metrics.level.labels(c).set(_dbfs(rms))
                self.metrics.peak.labels(c).set(_dbfs(peak))
                clipped = int(np.count_nonzero(np.abs(x) >= CLIP_LEVEL))
                self.metrics.clipped.labels(c).inc(clipped)
                self.metrics.clipping.labels(c).set(clipped / len(x))
                self.metrics.dc_offset.labels(c).set(float(np.mean(x, dtype=np.float64)))
        return samples

    def on_gap(self, gap: Gap) -> None:
        """Close what was open, record the gap, and start a new segment after it."""
        self._close_nonfinite()
        self._add_windows(self.windower.push(self.resampler.flush()))
        self.score_pending()
        self._flush_trackers()
        self.rate_meter.reset()
        self._source_gap_in_stall = self.flow.stalled
        info = self.source.info
        seconds = gap.samples / info.rate_hz
        reason = gap.reason
        self.metrics.gaps.labels(reason).inc()
        self.metrics.gap_seconds.labels(reason).inc(max(seconds, 0.0))
        self.summary.add_gap(gap)
        self._emit(GapRecord(self.utc_at(gap.first_sample), self.utc_at(gap.end_sample),
                             seconds, reason, info.name))
        self.resampler.reset()
        self.windower.reset()
        self._expected = gap.end_sample
        self._segment_seconds = gap.end_sample / info.rate_hz

    def score_pending(self) -> None:
        if not self._pending:
            return
        self._batches += 1
        centres = np.concatenate([c for c, _ in self._pending])
        windows = np.concatenate([w for _, w in self._pending])
        self._pending.clear()
        self._pending_count = 0
        n, n_channels, length = windows.shape
        scores = self.scorer.score(windows.reshape(n * n_channels, length))
        scores = scores.reshape(n, n_channels, -1)
        for score_tap in self.score_taps:
            score_tap(centres, scores)
        self.metrics.inference.observe(self.scorer.last_seconds)
        self.summary.windows += n * n_channels
        for channel in self.source.info.channels:
            self.metrics.windows.labels(str(channel)).inc(n)
        for i in range(n):
            for col in range(n_channels):
                for j, tracker in enumerate(self.trackers[col]):
                    for event in tracker.update(float(centres[i]), float(scores[i, col, j])):
                        self._detect(event)
        self.metrics.stream_position.set(float(centres[-1]))
        if self._last_arrival:
            self.metrics.backlog.set(max(0.0, time.monotonic() - self._last_arrival))

    def _flush_trackers(self) -> None:
        for row in self.trackers:
            for tracker in row:
                for event in tracker.flush():
                    self._detect(event)

    def _detect(self, event: Event) -> None:
        info = self.source.info
        detection = Detection.from_event(event, self.utc_at(0), self.loaded.content_hash,
                                         self.thresholds, info.name)
        self.summary.add_detection(detection)
        self.metrics.detections.labels(event.label, str(event.channel)).inc()
        self.metrics.last_detection.labels(event.label).set(detection.peak_utc.timestamp())
        self._emit(detection)

    def _emit(self, record: Record) -> None:
        for sink in self.sinks:
            try:
                sink.write(record)
            except (OSError, RuntimeError) as error:  # RuntimeError: libsndfile's disk full
                name = getattr(sink, "name", type(sink).__name__)
                self.metrics.sink_errors.labels(name).inc()
                log.error("cannot write %s output (%s); kept for retry", name, error)

    def swap_model(self, loaded: LoadedModel, settings: Settings) -> None:
        """Reload: what is buffered is scored by the old model, then the new one takes over.

        The windower keeps its audio, so no sample is skipped; open events are closed.
        """
        self.score_pending()
        self._flush_trackers()
        self.loaded, self.settings = loaded, settings
        self.thresholds = thresholds_for(settings, loaded)
        self.scorer = Scorer(loaded, settings.max_batch_windows, self.hop_samples,
                             len(self.source.info.channels))
        self.trackers = self._make_trackers()

    def finish(self) -> RunSummary:
        if self.flow.stalled and not self._source_gap_in_stall:
            self._record_stall(self.flow.silent_seconds(time.monotonic()))
            self.flow.stalled = False
        self._close_nonfinite()
        self._add_windows(self.windower.push(self.resampler.flush()))
        self.score_pending()
        self._flush_trackers()
        self.retry_sinks()
        return self.summary


def _dbfs(amplitude: float) -> float:
    return 20 * float(np.log10(amplitude)) if amplitude > 0 else LEVEL_FLOOR_DBFS
