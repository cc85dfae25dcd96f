"""Live inputs that can be lost and reopened: a sound card (:mod:`detector.sources.capture`) or a
network stream (:mod:`detector.sources.netstream`), and the main-loop hooks that watch them.

A :class:`LiveSource` says ``lost`` when its device or connection went away, reports its own
counts (:meth:`LiveSource.counters`) and can be opened again (:meth:`LiveSource.reopen`).
:class:`DeviceCounters` carries the counts into the metrics; :class:`Reconnector` reopens a
lost or stalled input with exponential backoff while the process keeps serving metrics.
"""

from __future__ import annotations

import logging
import time
from dataclasses import dataclass
from typing import TYPE_CHECKING, Protocol

from detector.sources.replay import Source, SourceError

if TYPE_CHECKING:
    from detector.outputs.metrics import Metrics
    from detector.stream.run_summary import Status

log = logging.getLogger("whaled.live")


@dataclass(frozen=True)
class LiveCounters:
    """A live source's own counts since it started (they only grow)."""

    blocks_dropped: int = 0  # blocks the capture queue had no room for
    overflows: int = 0  # input overflows the driver reported
    skew_seconds: float | None = None  # the card's clock minus the system's; None: not measured


class LiveSource(Source, Protocol):
    lost: bool  # the device or connection went away; True until reopen() works

    def counters(self) -> LiveCounters: ...

    def reopen(self) -> None:
        """Open the input again; raises SourceError while it cannot."""


class DeviceCounters:
    """A main-loop hook: carries a live source's own drop and overflow counts into metrics.

    One gap can hold many dropped blocks, and an overflow the clock cannot see leaves no gap,
    so the exact counts are the source's, read here by difference.
    """

    def __init__(self, source: LiveSource, metrics: Metrics) -> None:
        self.source, self.metrics = source, metrics
        self.seen_dropped = self.seen_overflows = 0

    def __call__(self, status: Status) -> None:
        counts = self.source.counters()
        if counts.skew_seconds is not None:
            self.metrics.clock_skew.set(counts.skew_seconds)
        self.metrics.dropped_blocks.inc(max(0, counts.blocks_dropped - self.seen_dropped))
        self.metrics.overflows.inc(max(0, counts.overflows - self.seen_overflows))
        self.seen_dropped = max(counts.blocks_dropped, self.seen_dropped)
        self.seen_overflows = max(counts.overflows, self.seen_overflows)


class Reconnector:
    """A main-loop hook: reopens a lost or stalled live source with exponential backoff."""

    def __init__(self, source: LiveSource, metrics: Metrics, min_seconds: float,
                 max_seconds: float) -> None:
        self.source, self.metrics = source, metrics
        self.min_seconds, self.max_seconds = min_seconds, max_seconds
        self.wait_seconds = min_seconds
        self.next_try_monotonic = 0.0  # 0: the device is fine
        self.attempts = 0

    def __call__(self, status: Status) -> None:
        source = self.source
        if not (source.lost or status.stalled):
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
            source.reopen()
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
