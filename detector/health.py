"""Is the detector really listening? Audio flow (stalls) and the sample rate actually delivered;
and getting a lost device back.

A device can stop calling back while it still reports itself active (PulseAudio does, when
its source disappears), and a sound card's clock can run off its nominal rate. Neither shows
in the audio itself, so both are measured here from when blocks arrive.
"""

from __future__ import annotations

import logging
import time
from typing import TYPE_CHECKING

from detector.sources import SourceError

if TYPE_CHECKING:
    from detector.metrics import Metrics
    from detector.pipeline import Pipeline

log = logging.getLogger("whaled.health")
RATE_PERIOD_SECONDS = 10.0  # the measured rate is updated once per this much wall time


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


class DeviceCounters:
    """A main-loop hook: carries a capture source's own drop and overflow counts into metrics.

    One gap can hold many dropped blocks, and an overflow the clock cannot see leaves no gap,
    so the exact counts are the callback's, read here by difference.
    """

    def __init__(self, metrics: Metrics) -> None:
        self.metrics = metrics
        self.seen_dropped = self.seen_overflows = 0

    def __call__(self, pipeline: Pipeline) -> None:
        dropped = int(getattr(pipeline.source, "blocks_dropped", 0))
        overflows = int(getattr(pipeline.source, "overflows", 0))
        skew = getattr(pipeline.source, "skew_seconds", None)
        if skew is not None:
            self.metrics.clock_skew.set(float(skew))
        self.metrics.dropped_blocks.inc(max(0, dropped - self.seen_dropped))
        self.metrics.overflows.inc(max(0, overflows - self.seen_overflows))
        self.seen_dropped, self.seen_overflows = max(dropped, self.seen_dropped), max(
            overflows, self.seen_overflows)


class Reconnector:
    """A main-loop hook: reopens a lost or stalled device with exponential backoff.

    Sources that can (``PortAudioSource``) say ``lost`` and offer ``reopen()``; the process
    keeps running, serving metrics, while it retries. Others are left alone.
    """

    def __init__(self, metrics: Metrics, min_seconds: float, max_seconds: float) -> None:
        self.metrics = metrics
        self.min_seconds, self.max_seconds = min_seconds, max_seconds
        self.wait_seconds = min_seconds
        self.next_try_monotonic = 0.0  # 0: the device is fine
        self.attempts = 0

    def __call__(self, pipeline: Pipeline) -> None:
        source = pipeline.source
        reopen = getattr(source, "reopen", None)
        if reopen is None:
            return
        if not (getattr(source, "lost", False) or pipeline.flow.stalled):
            self.wait_seconds, self.next_try_monotonic, self.attempts = self.min_seconds, 0.0, 0
            return
        now = time.monotonic()
        if not self.next_try_monotonic:
            self.metrics.device_losses.inc()
            log.warning("input %s lost: reopening in %g s", source.info.name, self.wait_seconds)
            self.next_try_monotonic = now + self.wait_seconds
        if now < self.next_try_monotonic:
            return
        self.attempts += 1
        try:
            reopen()
        except SourceError as error:
            self.metrics.reconnects.labels("failed").inc()
            self.wait_seconds = min(self.wait_seconds * 2, self.max_seconds)
            self.next_try_monotonic = now + self.wait_seconds
            log.warning("reopen attempt %d failed (%s); next in %g s", self.attempts, error,
                        self.wait_seconds)
            return
        self.metrics.reconnects.labels("ok").inc()
        log.info("input %s reopened after %d attempt(s)", source.info.name, self.attempts)
        self.next_try_monotonic = now + self.wait_seconds  # again if audio still doesn't come
