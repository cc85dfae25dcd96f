"""Is the detector able to detect? A periodic self-test on live audio.

Audio can flow, levels look right and still nothing can be detected (a model that outputs
zeros, a broken front end, thresholds set out of reach). Every ``selftest_interval_seconds``
the daemon takes a copy of the most recent live audio of the first channel, mixes in a
reference upcall (synthetic, :func:`detector.synthetic.upcall`, fixed shape, at
``SELFTEST_SNR_DB`` over the audio's RMS in the 50-250 Hz band) and runs it through the same
resampler, windows, model, thresholds and event tracker as the live path, in a side path
whose events never reach the detection outputs. It passes when an event covers the call.
"""

from __future__ import annotations

import logging
import time
from typing import TYPE_CHECKING

import numpy as np

from detector.detector import tracker_settings
from detector.events import EventTracker
from detector.resample import resample_signal
from detector.scoring import Scorer
from detector.synthetic import upcall
from detector.upcall import band_rms
from detector.windows import RingBuffer, Windower

if TYPE_CHECKING:
    from detector.metrics import Metrics
    from detector.summary import Status

log = logging.getLogger("whaled.selftest")
SELFTEST_AUDIO_SECONDS = 12.0  # recent live audio the reference call is mixed into
SELFTEST_SNR_DB = 12.0  # reference call RMS over the audio's 50-250 Hz band RMS
SELFTEST_CALL = (1.0, 80.0, 180.0)  # duration s, start Hz, end Hz of the reference upcall
SELFTEST_SEED = 20090329


class SelfTest:
    """An audio tap (keeps the recent audio) and a main-loop hook (runs the test when due)."""

    def __init__(self, metrics: Metrics, interval_seconds: float, rate_hz: int) -> None:
        self.metrics = metrics
        metrics.selftest_interval.set(interval_seconds)
        self.interval_seconds = interval_seconds
        self.rate_hz = rate_hz
        self._capacity = int(SELFTEST_AUDIO_SECONDS * rate_hz)
        self._ring = RingBuffer(self._capacity, 1)  # the recent audio, no copy per block
        self._expected: int | None = None
        self._next_monotonic = time.monotonic() + interval_seconds
        self._scorer: Scorer | None = None
        self.last_passed: bool | None = None

    def push(self, first_sample: int, samples: np.ndarray) -> None:
        """Capture-rate audio as it arrives; a discontinuity starts the copy afresh."""
        if self._expected is not None and first_sample != self._expected:
            self._ring.clear()
        self._expected = first_sample + len(samples)
        self._ring.write(samples[-self._capacity:, :1])

    def held_audio(self) -> np.ndarray:
        """The latest contiguous audio, at most ``SELFTEST_AUDIO_SECONDS`` of it (a copy)."""
        held = min(self._ring.end, self._capacity)
        return self._ring.read(self._ring.end - held, held)[:, 0].copy()

    def __call__(self, status: Status) -> None:
        if not self.interval_seconds or time.monotonic() < self._next_monotonic:
            return
        if self._ring.end < self._capacity:
            return  # not enough audio yet (start-up, after a gap): try on the next pass
        self._next_monotonic = time.monotonic() + self.interval_seconds
        self.run(status)

    def run(self, status: Status) -> bool:
        """One self-test on the audio held now; the metrics and log say how it went."""
        if self._scorer is None or self._scorer.loaded is not status.loaded:  # SIGHUP
            self._scorer = Scorer(status.loaded, status.settings.max_batch_windows,
                                  status.hop_samples, 1)
        passed, score = run_selftest(status, self.held_audio(), self.rate_hz, self._scorer)
        self.metrics.selftest_runs.inc()
        self.metrics.selftest_score.set(score)
        self.last_passed = passed
        if passed:
            self.metrics.selftest_last_success.set(time.time())
            log.info("self-test passed: reference upcall at %g dB SNR scored %.3f (on=%.3f)",
                     SELFTEST_SNR_DB, score, status.thresholds.on)
        else:
            self.metrics.selftest_failures.inc()
            log.error("self-test FAILED: reference upcall at %g dB SNR scored %.3f (on=%.3f), "
                      "not detected: audio flows but the detector cannot detect "
                      "(docs/operations.md#self-test-failing)", SELFTEST_SNR_DB, score,
                      status.thresholds.on)
        return passed


def run_selftest(status: Status, audio: np.ndarray, rate_hz: int,
                 scorer: Scorer | None = None) -> tuple[bool, float]:
    """(passed, peak score over the call): ``audio`` (capture rate, one channel) with the
    reference call mixed into its middle, through the pipeline's current model and settings
    (as its ``status`` says)."""
    loaded, settings = status.loaded, status.settings
    meta = loaded.metadata
    model_rate = meta.sample_rate_hz
    mono = resample_signal(audio, rate_hz, model_rate)
    duration, start_hz, end_hz = SELFTEST_CALL
    call = upcall(model_rate, np.random.default_rng(SELFTEST_SEED), duration, start_hz, end_hz)
    level = band_rms(mono, model_rate) or 1e-4  # digital silence: a call at -80 dBFS
    at = (len(mono) - len(call)) // 2
    mixed = mono.copy()
    mixed[at:at + len(call)] += call * level * 10 ** (SELFTEST_SNR_DB / 20)
    hop = status.hop_samples
    starts, windows = Windower(meta.window_samples, hop, 1).push(mixed[:, None])
    if not len(starts):
        return False, 0.0
    scorer = scorer or Scorer(loaded, settings.max_batch_windows, hop, 1)
    scores = scorer.score(windows[:, 0, :])
    label = 0  # the model's first label: the upcall
    centres = (starts + meta.window_samples / 2) / model_rate
    tracker = EventTracker(tracker_settings(settings, status.thresholds, hop / model_rate), 0,
                           meta.labels[label])
    events = []
    for centre, score in zip(centres, scores[:, label], strict=True):
        events += tracker.update(float(centre), float(score))
    events += tracker.flush()
    call_start, call_end = at / model_rate, (at + len(call)) / model_rate
    over = (centres >= call_start) & (centres <= call_end)
    peak = float(np.max(scores[over, label])) if over.any() else 0.0
    passed = any(e.start_seconds <= call_end and e.end_seconds >= call_start for e in events)
    return passed, peak
