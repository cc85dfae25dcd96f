"""Windows to events: the pending batch, the model's :class:`~detector.model.scoring.Scorer` and one
event tracker per channel and label.

:meth:`Detector.push` takes the windows cut from the stream with their centres (stream
seconds) and returns the events they close; windows wait in a batch until it is full, or
until the loop has nothing else to do (:meth:`Detector.score`), so a backlog goes through the
model at once. :meth:`Detector.flush` scores what waits and closes every open event (a gap,
the end). Scoring happens in one place, :meth:`Detector.score`.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence

import numpy as np

from detector.core.config import Settings
from detector.model.artifact import LoadedModel
from detector.model.scoring import Scorer
from detector.outputs.metrics import Metrics
from detector.stream.events import Event, EventTracker, Thresholds, TrackerSettings, hysteresis

ScoreTap = Callable[[np.ndarray, np.ndarray], None]  # (centres s, scores (n, channels, labels))


def thresholds_for(settings: Settings, loaded: LoadedModel) -> Thresholds:
    """The operating thresholds: the flags' (or config's), else the model's; an on-threshold
    alone gets its off-threshold by :func:`detector.stream.events.hysteresis`."""
    default = loaded.metadata.thresholds
    if settings.on_threshold < 0 and settings.off_threshold < 0:
        return default
    on = settings.on_threshold if settings.on_threshold >= 0 else default.on
    return hysteresis(on, default, settings.off_threshold if settings.off_threshold >= 0
                      else None)


def tracker_settings(settings: Settings, thresholds: Thresholds,
                     hop_seconds: float) -> TrackerSettings:
    """The event rules of ``settings`` at these thresholds, for windows ``hop_seconds`` apart."""
    return TrackerSettings(thresholds, hop_seconds, settings.min_duration_seconds,
                           settings.merge_gap_seconds, settings.max_duration_seconds)


def longest_emission_delay_seconds(settings: Settings) -> float:
    """Stream time by which a detection's emission can trail its last audio sample.

    A backlog (start-up, a slow batch, ``--speed 0`` replay) fills a whole batch of windows,
    plus what one block adds, before the model runs; then the event waits out the merge gap
    and the window that closes it. Taps holding audio for detections keep at least this much.
    """
    return ((settings.max_batch_windows + 1) * settings.hop_seconds + settings.block_seconds
            + 2 * settings.window_seconds + settings.merge_gap_seconds)


class Detector:
    """Scores windows in batches and runs the event trackers over the scores."""

    def __init__(self, loaded: LoadedModel, settings: Settings, hop_samples: int,
                 channels: Sequence[int], metrics: Metrics, score_taps: list[ScoreTap]) -> None:
        """``score_taps`` see every window's centre and scores (evaluation, saved scores)."""
        self.hop_samples, self.channels = hop_samples, tuple(channels)
        self.metrics, self.score_taps = metrics, score_taps
        self.batches = 0  # batches scored so far
        self.windows = 0  # windows x channels scored so far
        self._pending: list[tuple[np.ndarray, np.ndarray]] = []  # (centres, windows)
        self.pending_count = 0
        self.use(loaded, settings)

    def use(self, loaded: LoadedModel, settings: Settings) -> None:
        """This model and these thresholds from now on (start-up, SIGHUP): flush first."""
        self.loaded, self.settings = loaded, settings
        self.thresholds = thresholds_for(settings, loaded)
        self.scorer = Scorer(loaded, settings.max_batch_windows, self.hop_samples,
                             len(self.channels))
        rules = tracker_settings(settings, self.thresholds,
                                 self.hop_samples / loaded.metadata.sample_rate_hz)
        self.trackers = [[EventTracker(rules, channel, label)
                          for label in loaded.metadata.labels] for channel in self.channels]

    @property
    def batch_full(self) -> bool:
        return self.pending_count >= self.settings.max_batch_windows

    def push(self, centres: np.ndarray, windows: np.ndarray) -> list[Event]:
        """Windows (n, channels, samples) centred at ``centres`` (stream s); scored once the
        batch is full."""
        if len(centres):
            self._pending.append((centres, windows))
            self.pending_count += len(centres)
        return self.score() if self.batch_full else []

    def score(self) -> list[Event]:
        """Every waiting window through the model, the scores through the trackers."""
        if not self._pending:
            return []
        self.batches += 1
        centres = np.concatenate([c for c, _ in self._pending])
        windows = np.concatenate([w for _, w in self._pending])
        self._pending.clear()
        self.pending_count = 0
        n, n_channels, length = windows.shape
        scores = self.scorer.score(windows.reshape(n * n_channels, length))
        scores = scores.reshape(n, n_channels, -1)
        for score_tap in self.score_taps:
            score_tap(centres, scores)
        self.metrics.inference.observe(self.scorer.last_seconds)
        self.windows += n * n_channels
        for channel in self.channels:
            self.metrics.windows.labels(str(channel)).inc(n)
        events = [event for i in range(n) for col in range(n_channels)
                  for j, tracker in enumerate(self.trackers[col])
                  for event in tracker.update(float(centres[i]), float(scores[i, col, j]))]
        self.metrics.stream_position.set(float(centres[-1]))
        return events

    def flush(self) -> list[Event]:
        """Score what waits, then close every open event."""
        events = self.score()
        return events + [event for row in self.trackers for tracker in row
                         for event in tracker.flush()]
