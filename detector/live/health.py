"""Is the detector really listening? The input monitor: level, peak, clipping, DC offset and
non-finite samples per channel, the sample rate actually delivered, and audio flow (stalls).

A device can stop calling back while it still reports itself active (PulseAudio does, when
its source disappears), and a sound card's clock can run off its nominal rate. Neither shows
in the audio itself, so both are measured here from when blocks arrive.
"""

from __future__ import annotations

import itertools
import logging
import time
from typing import TYPE_CHECKING

import numpy as np

from detector.stream.blocks import Block, StreamInfo

if TYPE_CHECKING:
    from detector.outputs.metrics import Metrics

log = logging.getLogger("whaled.health")
RATE_PERIOD_SECONDS = 10.0  # the measured rate is updated once per this much wall time
CLIP_LEVEL = 0.999  # |sample| at or above this counts as clipped
LEVEL_FLOOR_DBFS = -200.0  # the level of digital silence


class FlowWatch:
    """A stall starts when no block came for ``timeout_seconds`` after audio had flowed."""

    def __init__(self, timeout_seconds: float) -> None:
        self.timeout_seconds = timeout_seconds  # 0: never call it a stall
        self.last_audio_monotonic = 0.0  # 0: no audio yet
        self.stalled = False

    @property
    def flowing(self) -> bool:
        return self.last_audio_monotonic > 0 and not self.stalled

    def silent_seconds(self, now_monotonic: float) -> float:
        return now_monotonic - self.last_audio_monotonic if self.last_audio_monotonic else 0.0

    def audio(self, now_monotonic: float) -> float | None:
        """A block arrived; returns how long audio was absent when this ends a stall."""
        ended = self.silent_seconds(now_monotonic) if self.stalled else None
        self.last_audio_monotonic = now_monotonic
        self.stalled = False
        return ended

    def check(self, now_monotonic: float) -> bool:
        """True exactly once per stall, when it is first noticed."""
        if (self.stalled or not self.timeout_seconds or not self.last_audio_monotonic
                or self.silent_seconds(now_monotonic) < self.timeout_seconds):
            return False
        self.stalled = True
        return True


class RateMeter:
    """Frames delivered per wall second, measured over ``period_seconds`` of arrivals."""

    def __init__(self, period_seconds: float = RATE_PERIOD_SECONDS) -> None:
        self.period_seconds = period_seconds
        self._start = 0.0
        self._frames = 0

    def add(self, frames: int, arrival_monotonic: float) -> float | None:
        """Returns the measured rate in Hz when a period completes, else None."""
        if arrival_monotonic <= 0:
            return None
        if not self._start:
            self._start = arrival_monotonic  # this block's frames arrived before the period
            return None
        self._frames += frames
        elapsed = arrival_monotonic - self._start
        if elapsed < self.period_seconds:
            return None
        rate = self._frames / elapsed
        self._start, self._frames = arrival_monotonic, 0
        return rate

    def reset(self) -> None:
        """After a gap: arrivals across it say nothing about the clock."""
        self._start, self._frames = 0.0, 0


class InputMonitor:
    """What comes in, per block: level, clipping, non-finite samples, the delivered rate, and
    whether audio flows. A stall is ``stall_timeout_seconds`` without a block on a live
    stream: the configured timeout, the only one."""

    def __init__(self, info: StreamInfo, metrics: Metrics, stall_timeout_seconds: float) -> None:
        self.info, self.metrics = info, metrics
        self.flow = FlowWatch(stall_timeout_seconds if info.live else 0.0)
        self.rate_meter = RateMeter()
        self._gap_in_stall = False  # the source recorded what this stall lost, with a gap
        metrics.nominal_rate.set(info.rate_hz)

    def arrived(self, block: Block) -> None:
        arrival = block.arrival_monotonic or time.monotonic()
        stalled_seconds = self.flow.audio(arrival)
        self.metrics.audio_flowing.set(1)
        if stalled_seconds is not None:
            # No gap of our own: the sample indexes say whether audio was lost. A capture
            # source re-anchors after the same stall_timeout_seconds behind a "stall" gap;
            # a block that continues the stream means the audio came late, and is analysed.
            log.info("audio flows again after %.1f s", stalled_seconds)
            self.rate_meter.reset()
        self._gap_in_stall = False
        rate = self.rate_meter.add(block.frames, block.arrival_monotonic)
        if rate is not None:
            self.metrics.measured_rate.set(rate)

    def observe(self, samples: np.ndarray, finite: np.ndarray) -> np.ndarray:
        """Level, clipping and non-finite counts per channel; NaN/Inf come back as zeros.
        ``finite``: ``np.isfinite(samples)``, which the caller has already computed."""
        if not finite.all():
            samples = np.where(finite, samples, np.float32(0.0))
        for col, channel in enumerate(self.info.channels):
            c, x = str(channel), samples[:, col]
            bad = int(len(x) - np.count_nonzero(finite[:, col]))
            if bad:
                self.metrics.nonfinite.labels(c).inc(bad)
            if len(x):
                rms = float(np.sqrt(np.mean(np.square(x, dtype=np.float64))))
                peak = float(np.max(np.abs(x)))
                self.metrics.level.labels(c).set(dbfs(rms))
                self.metrics.peak.labels(c).set(dbfs(peak))
                clipped = int(np.count_nonzero(np.abs(x) >= CLIP_LEVEL))
                self.metrics.clipped.labels(c).inc(clipped)
                self.metrics.clipping.labels(c).set(clipped / len(x))
                self.metrics.dc_offset.labels(c).set(float(np.mean(x, dtype=np.float64)))
        return samples

    def gap(self) -> None:
        """The source said audio is missing: arrivals across it say nothing about the rate."""
        self.rate_meter.reset()
        self._gap_in_stall = self.flow.stalled

    def check(self, now_monotonic: float) -> None:
        """Between reads: notice a stall, once."""
        if self.flow.check(now_monotonic):
            self.metrics.stalls.inc()
            self.metrics.audio_flowing.set(0)
            log.warning("no audio for %.1f s: capture stalled (stall_timeout_seconds = %g)",
                        self.flow.silent_seconds(now_monotonic), self.flow.timeout_seconds)

    def unrecorded_stall_seconds(self, now_monotonic: float) -> float | None:
        """At the end: how long a stall lasted that no source gap recorded, or None."""
        if not self.flow.stalled or self._gap_in_stall:
            return None
        self.flow.stalled = False
        return max(self.flow.silent_seconds(now_monotonic), 0.0)


def nonfinite_runs(bad: np.ndarray, shortest_frames: float) -> list[tuple[int, int, bool]]:
    """[start, end, is_bad) runs of a block whose frames ``bad`` hold NaN or Inf.

    Finite audio between two bad runs that is shorter than ``shortest_frames`` (a window)
    joins the bad run: no window could be scored there anyway, and one gap record says so
    instead of many.
    """
    edges = [0, *(np.flatnonzero(np.diff(bad.astype(np.int8))) + 1).tolist(), len(bad)]
    spans = list(itertools.pairwise(edges))  # alternately bad and finite
    runs: list[tuple[int, int, bool]] = []
    for i, (start, end) in enumerate(spans):
        is_bad = bool(bad[start]) or (0 < i < len(spans) - 1 and end - start < shortest_frames)
        if runs and runs[-1][2] and is_bad:
            runs[-1] = (runs[-1][0], end, True)
        else:
            runs.append((start, end, is_bad))
    return runs


def dbfs(amplitude: float) -> float:
    return 20 * float(np.log10(amplitude)) if amplitude > 0 else LEVEL_FLOOR_DBFS
