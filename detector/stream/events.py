"""From window scores to detections: one event per call.

A small state machine per (channel, label), in the manner of silero-vad's ``VADIterator``:
an event opens when a window's score reaches the on-threshold, stays open while scores stay at
or above the off-threshold (hysteresis), is dropped when shorter than the minimum duration,
merges with the next one when they are closer than the merge gap, and is cut at the maximum
duration. Events are returned only at transitions.

Times are stream seconds since the origin, taken from window positions, never from when a
window was processed. A window is represented by its centre: an event spans from half a hop
before its first window's centre to half a hop after its last.
"""

from __future__ import annotations

from dataclasses import dataclass, replace
from datetime import datetime, timedelta


@dataclass(frozen=True)
class Thresholds:
    """Event-tracker thresholds on the model's probability (hysteresis: on >= off)."""

    on: float = 0.5
    off: float = 0.35


OFF_THRESHOLD_FRACTION = 0.8  # a trained model's off-threshold: this x its on-threshold


def hysteresis(on: float, model: Thresholds, off: float | None = None) -> Thresholds:
    """The one rule for the off-threshold: given, it is used (never above ``on``); not given,
    it keeps the model's own ratio off/on (0.8 for every model whaled trains), so ``evaluate``,
    ``detect``, ``listen`` and ``events`` run the same tracker at any ``--on-threshold``."""
    if off is None:
        off = on * (model.off / model.on if model.on > 0 else OFF_THRESHOLD_FRACTION)
    return Thresholds(on=on, off=min(off, on))


@dataclass(frozen=True)
class TrackerSettings:
    thresholds: Thresholds
    hop_seconds: float
    min_duration_seconds: float = 0.0
    merge_gap_seconds: float = 0.5
    max_duration_seconds: float = 10.0


@dataclass(frozen=True)
class Event:
    """A detection in stream seconds since the origin."""

    channel: int  # device channel number, 1-based
    label: str
    start_seconds: float
    end_seconds: float
    peak_score: float
    peak_seconds: float

    @property
    def duration_seconds(self) -> float:
        return self.end_seconds - self.start_seconds


@dataclass(frozen=True)
class Detection:
    """An event placed in UTC with everything a reviewer needs to trust it."""

    start_utc: datetime
    end_utc: datetime
    peak_utc: datetime
    start_seconds: float  # since the stream's origin (Raven's Begin Time)
    end_seconds: float
    peak_score: float
    channel: int
    label: str
    model_hash: str
    on_threshold: float
    off_threshold: float
    source: str

    @property
    def duration_seconds(self) -> float:
        return self.end_seconds - self.start_seconds

    @classmethod
    def from_event(cls, event: Event, origin_utc: datetime, model_hash: str,
                   thresholds: Thresholds, source: str) -> Detection:
        def at(seconds: float) -> datetime:
            return origin_utc + timedelta(seconds=seconds)

        return cls(at(event.start_seconds), at(event.end_seconds), at(event.peak_seconds),
                   event.start_seconds, event.end_seconds, event.peak_score, event.channel,
                   event.label, model_hash, thresholds.on, thresholds.off, source)


class EventTracker:
    """Hysteresis, minimum duration, merge gap and maximum duration for one channel and label."""

    def __init__(self, settings: TrackerSettings, channel: int, label: str) -> None:
        self.settings = settings
        self.channel = channel
        self.label = label
        self._open: Event | None = None  # the event being extended by windows
        self._pending: Event | None = None  # closed, waiting out the merge gap

    def update(self, centre_seconds: float, score: float) -> list[Event]:
        """Feed one window (in stream order); return the events that became final."""
        s = self.settings
        half_hop = s.hop_seconds / 2
        done: list[Event] = []
        if self._pending and centre_seconds - half_hop - self._pending.end_seconds > \
                s.merge_gap_seconds:
            done += self._finish(self._pending)
            self._pending = None
        if self._open is not None:
            if score >= s.thresholds.off:
                self._open = self._extend(self._open, centre_seconds, score)
                if self._open.duration_seconds >= s.max_duration_seconds:
                    done += self._close()
                    done += self._flush_pending()
            else:
                done += self._close()
        elif score >= s.thresholds.on:
            fresh = Event(self.channel, self.label, centre_seconds - half_hop,
                          centre_seconds + half_hop, score, centre_seconds)
            if self._pending is not None:
                self._open = self._extend(self._pending, centre_seconds, score)
                self._pending = None
            else:
                self._open = fresh
        return done

    def flush(self) -> list[Event]:
        """End of stream or a gap: close everything now (no window spans a gap)."""
        done = self._close()
        return done + self._flush_pending()

    def _extend(self, event: Event, centre_seconds: float, score: float) -> Event:
        end = centre_seconds + self.settings.hop_seconds / 2
        if score > event.peak_score:
            return replace(event, end_seconds=end, peak_score=score, peak_seconds=centre_seconds)
        return replace(event, end_seconds=end)

    def _close(self) -> list[Event]:
        event, self._open = self._open, None
        if event is None:
            return []
        if event.duration_seconds >= self.settings.max_duration_seconds:
            return self._finish(event)  # cut at the maximum: never merged with what follows
        if self._pending is not None:  # cannot happen: a pending event absorbs the next one
            raise AssertionError("two closed events waiting")
        self._pending = event
        return []

    def _flush_pending(self) -> list[Event]:
        event, self._pending = self._pending, None
        return self._finish(event) if event else []

    def _finish(self, event: Event) -> list[Event]:
        if event.duration_seconds < self.settings.min_duration_seconds:
            return []
        return [event]
