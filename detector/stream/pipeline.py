"""The main loop: source -> resample -> windows -> detector -> sinks.

Built once at start-up by :mod:`detector.live.daemon` (which fails with one line for anything
external), then :meth:`Pipeline.run` until the source ends, ``--duration`` of audio has been
received, or the stop flag is set. The pipeline reads, hands blocks to the input monitor
(:mod:`detector.live.health`) and the windows to the
:class:`~detector.stream.detector_stage.Detector`, ticks
the hooks, and emits records. Every time comes from sample indices; a gap closes open events
and starts a new segment so no window spans it.
"""

from __future__ import annotations

import logging
import threading
import time
from collections.abc import Callable
from datetime import datetime, timedelta
from pathlib import Path
from typing import Protocol

import numpy as np

from detector.core.config import Settings
from detector.live.health import InputMonitor, nonfinite_runs
from detector.model.artifact import LoadedModel
from detector.outputs.metrics import Metrics
from detector.outputs.sinks import ClockRecord, GapRecord, Record, Sink
from detector.sources.replay import Source
from detector.stream.blocks import Block, ClockStep, EndOfStream, Gap
from detector.stream.detector_stage import Detector, ScoreTap
from detector.stream.events import Detection, Event, Thresholds
from detector.stream.resample import Resampler
from detector.stream.run_summary import RunSummary, Status
from detector.stream.windows import Windower

Hook = Callable[[Status], None]  # called on every pass of the main loop (watchdog, self-test)

log = logging.getLogger("whaled.pipeline")
READ_TIMEOUT_SECONDS = 0.2  # how often the loop looks at the stop flag when no audio comes
NONFINITE_GAP_MAX_SECONDS = 60.0  # a longer run of NaN/Inf is recorded a minute at a time
RETRY_SECONDS = 5.0  # how often outputs that failed to write are tried again


class AudioTap(Protocol):
    def push(self, first_sample: int, samples: np.ndarray) -> None: ...


class Pipeline:
    def __init__(self, source: Source, loaded: LoadedModel, settings: Settings,
                 sinks: list[Sink], metrics: Metrics, records_kept: int | None = None) -> None:
        """``records_kept``: how many of the latest detections and gaps the summary holds
        (None: all, for one recording; a daemon bounds it)."""
        info, meta = source.info, loaded.metadata
        self.source, self.settings, self.sinks, self.metrics = source, settings, sinks, metrics
        self.resampler = Resampler(info.rate_hz, meta.sample_rate_hz, len(info.channels))
        self.hop_samples = max(1, round(settings.hop_seconds * meta.sample_rate_hz))
        self.windower = Windower(meta.window_samples, self.hop_samples, len(info.channels))
        self.score_taps: list[ScoreTap] = []  # see every window's centre and scores (evaluate)
        self.detector = Detector(loaded, settings, self.hop_samples, info.channels, metrics,
                                 self.score_taps)
        self.monitor = InputMonitor(info, metrics, settings.stall_timeout_seconds)
        self.limit_samples = (int(settings.duration_seconds * info.rate_hz)
                              if settings.duration_seconds > 0 else None)  # --duration
        self._received = 0  # frames of audio received, gaps not counted: what --duration counts
        self.summary = RunSummary(records_kept)
        self.end_reason = ""  # why run() returned: end of stream, duration reached, stopped
        self.clock_correction_seconds = 0.0  # subtracted from origin + index / rate (ClockStep)
        self._expected: int | None = None  # index the next block should start at
        self._segment_seconds = 0.0  # stream time of the current segment's first sample
        self._open_nonfinite: tuple[int, int] | None = None  # [first, end) of NaN/Inf held
        self._last_arrival = 0.0
        self._batches_seen = 0
        self.hooks: list[Hook] = []
        self.taps: list[AudioTap] = []  # see capture-rate audio as it arrives (evidence clips)
        self.reload_requested = threading.Event()  # SIGHUP: served at one point of the loop
        self.reload: Callable[[Pipeline], None] = lambda pipeline: None
        self._started_monotonic = time.monotonic()
        self._last_retry = self._started_monotonic
        metrics.started.set(time.time())

    @property
    def loaded(self) -> LoadedModel:
        return self.detector.loaded

    @property
    def thresholds(self) -> Thresholds:
        return self.detector.thresholds

    def run(self, stop: threading.Event) -> RunSummary:
        """Process audio until the source ends, --duration is reached, or ``stop`` is set;
        ``end_reason`` says which."""
        while not stop.is_set():
            items = self.source.read(READ_TIMEOUT_SECONDS)
            batches = self.detector.batches
            while items:  # drain a backlog into one batch, a read at a time (flat memory)
                if self._consume(items):
                    self.end_reason = ("duration reached" if self._reached_limit()
                                       else "end of stream")
                    return self.finish()
                if self.detector.batch_full or self.detector.batches != batches:
                    break  # a batch was scored: tick (progress, retries, watchdog) between
                items = self.source.read(0.0)
            if not items or self.detector.batch_full or self.source.info.live:
                self._detected(self.detector.score())
            if self.reload_requested.is_set():
                self.reload_requested.clear()
                self.reload(self)
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

    def _reached_limit(self) -> bool:
        """--duration counts audio received: a gap in the stream does not use it up."""
        return self.limit_samples is not None and self._received >= self.limit_samples

    def status(self) -> Status:
        now, flow, s = time.monotonic(), self.monitor.flow, self.summary
        return Status(now, flow.flowing, flow.stalled, flow.silent_seconds(now),
                      s.samples / self.source.info.rate_hz, s.detection_count, s.gap_count,
                      self.loaded, self.settings, self.thresholds, self.hop_samples)

    def tick(self) -> None:
        """Between reads: notice a stall, update coverage, retry outputs, run the hooks."""
        now = time.monotonic()
        self.monitor.check(now)
        elapsed = now - self._started_monotonic
        self.metrics.elapsed.set(elapsed)
        if elapsed > 0:
            self.metrics.coverage.set(self.summary.samples / self.source.info.rate_hz / elapsed)
        if now - self._last_retry >= RETRY_SECONDS:
            self._last_retry = now
            self.retry_sinks()
        if self.hooks:
            status = self.status()
            for hook in self.hooks:
                hook(status)

    def unwritten(self) -> list[tuple[Path, list[str]]]:
        """Lines that every retry so far failed to write (disk full), per file."""
        return [entry for sink in self.sinks for entry in sink.unwritten()]

    def retry_sinks(self) -> None:
        """Write what failed before (disk full, directory gone) without waiting for a record."""
        for sink in self.sinks:
            try:
                sink.retry()
            except OSError as error:
                self.metrics.sink_errors.labels(sink.name).inc()
                log.debug("retry of %s output failed: %s", sink.name, error)

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
        self.monitor.arrived(block)
        rate = self.source.info.rate_hz
        if self._expected is None:  # the stream's first block
            self._expected = block.first_sample
            self._segment_seconds = block.first_sample / rate
        if block.first_sample != self._expected:
            self.on_gap(Gap(self._expected, block.first_sample, "discontinuity"))
        samples = block.samples
        if self.limit_samples is not None:
            samples = samples[:max(0, self.limit_samples - self._received)]
        self._received += len(samples)
        finite = np.isfinite(samples)
        bad = ~finite.all(axis=1)
        samples = self.monitor.observe(samples, finite)
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
        """Frames with NaN or Inf on any channel are a "nonfinite" gap, never scored as zeros."""
        shortest = self.settings.window_seconds * self.source.info.rate_hz
        for start, end, is_bad in nonfinite_runs(bad, shortest):
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
            self._detected(self.detector.push(centres, windows))

    def on_gap(self, gap: Gap) -> None:
        """Close what was open, record the gap, and start a new segment after it."""
        self._close_nonfinite()
        self._add_windows(self.windower.push(self.resampler.flush()))
        self._detected(self.detector.flush())
        self.monitor.gap()
        info = self.source.info
        self._record_gap(gap, self.utc_at(gap.first_sample), self.utc_at(gap.end_sample),
                         gap.samples / info.rate_hz)
        self.resampler.reset()
        self.windower.reset()
        self._expected = gap.end_sample
        self._segment_seconds = gap.end_sample / info.rate_hz

    def _record_gap(self, gap: Gap, start: datetime, end: datetime, seconds: float) -> None:
        self.metrics.gaps.labels(gap.reason).inc()
        self.metrics.gap_seconds.labels(gap.reason).inc(max(seconds, 0.0))
        self.summary.add_gap(gap)
        self._emit(GapRecord(start, end, seconds, gap.reason, self.source.info.name))

    def _detected(self, events: list[Event]) -> None:
        """Events the detector closed: to the summary, the metrics and the sinks."""
        if self.detector.batches != self._batches_seen:
            self._batches_seen = self.detector.batches
            self.summary.windows = self.detector.windows
            if self._last_arrival:
                self.metrics.backlog.set(max(0.0, time.monotonic() - self._last_arrival))
        info = self.source.info
        for event in events:
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
                self.metrics.sink_errors.labels(sink.name).inc()
                log.error("cannot write %s output (%s); kept for retry", sink.name, error)

    def swap_model(self, loaded: LoadedModel, settings: Settings) -> None:
        """Reload: what is buffered is scored by the old model, then the new one takes over.

        The windower keeps its audio, so no sample is skipped; open events are closed.
        """
        self._detected(self.detector.flush())
        self.settings = settings
        self.detector.use(loaded, settings)

    def finish(self) -> RunSummary:
        now = time.monotonic()
        stall_seconds = self.monitor.unrecorded_stall_seconds(now)
        if stall_seconds is not None:  # a stall that no source gap recorded
            first = self._expected or 0
            start = self.utc_at(first)
            gap = Gap(first, first + round(stall_seconds * self.source.info.rate_hz), "stall")
            self._record_gap(gap, start, start + timedelta(seconds=stall_seconds),
                             stall_seconds)
        self._close_nonfinite()
        self._add_windows(self.windower.push(self.resampler.flush()))
        self._detected(self.detector.flush())
        self.retry_sinks()
        return self.summary


def offline_pipeline(source: Source, loaded: LoadedModel, settings: Settings,
                     sinks: list[Sink]) -> Pipeline:
    """A pipeline for a scan rather than a daemon: its metrics in a registry of its own,
    served nowhere (``detect``, ``evaluate`` and the Python API)."""
    from prometheus_client import CollectorRegistry

    metrics = Metrics(CollectorRegistry(), source.info.channels, loaded.metadata.labels)
    return Pipeline(source, loaded, settings, sinks, metrics)
