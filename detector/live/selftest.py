"""Is the detector able to detect? A periodic self-test on live audio.

Audio can flow, levels look right and still nothing can be detected (a model that outputs
zeros, a broken front end, thresholds set out of reach). Every ``selftest_interval_seconds``
the daemon takes a copy of the most recent live audio of the first channel, mixes in
``SELFTEST_PLACES`` copies of a reference upcall (synthetic,
:func:`detector.sources.synthetic.upcall`,
at a signal-to-noise ratio over the audio's RMS in the 50-250 Hz band), apart from each other,
and runs it through the same resampler, windows, model, thresholds and event tracker as the
live path, in a side path whose events never reach the detection outputs. It passes when an
event covers one of the calls: the detector can detect (one call masked by a passing ship
does not fail a healthy station).

Which reference call, and how loud, is the model's to say: at start-up (and on a reload)
:func:`choose_reference` scores each of ``REFERENCE_CALLS`` at each of ``REFERENCE_SNRS_DB``
on ``CALIBRATION_BACKGROUNDS`` seeded stretches of clean ocean noise and keeps the one whose
worst score is highest. It must clear the operating threshold by ``SELFTEST_MARGIN_LOGIT``
(in log-odds, so the margin means the same at on=0.5 and on=0.99); a model that cannot is
named in a start-up warning, since its self-tests would fail on a healthy station.
"""

from __future__ import annotations

import logging
import math
import time
from dataclasses import dataclass, replace
from typing import TYPE_CHECKING

import numpy as np

from detector.core.band import band_rms
from detector.model.scoring import Scorer
from detector.sources.synthetic import ocean_noise, upcall
from detector.stream.detector_stage import tracker_settings
from detector.stream.events import EventTracker
from detector.stream.resample import resample_signal
from detector.stream.windows import RingBuffer, Windower

if TYPE_CHECKING:
    from detector.outputs.metrics import Metrics
    from detector.stream.run_summary import Status

log = logging.getLogger("whaled.selftest")
SELFTEST_AUDIO_SECONDS = 12.0  # recent live audio the reference calls are mixed into
SELFTEST_PLACES = 3  # reference calls per self-test, evenly apart; one detected passes
REFERENCE_CALLS = ((1.0, 80.0, 180.0), (1.3, 60.0, 180.0), (1.3, 80.0, 220.0),
                   (1.3, 100.0, 220.0))  # duration s, start Hz, end Hz of candidate upcalls
REFERENCE_SNRS_DB = (9.0, 12.0, 15.0)  # call RMS over the audio's 50-250 Hz band RMS
SELFTEST_MARGIN_LOGIT = 0.5  # the reference's worst score over `on`, in log-odds, required
CALIBRATION_BACKGROUNDS = 4  # seeded ocean-noise stretches each candidate is scored on
CALIBRATION_SECONDS = 4.0  # each stretch, the call in its middle
SELFTEST_SEED = 20090329


def logit(probability: float) -> float:
    """Log-odds, clipped so a score of exactly 0 or 1 stays finite."""
    p = min(max(probability, 1e-9), 1 - 1e-9)
    return math.log(p / (1 - p))


@dataclass(frozen=True)
class Reference:
    """The reference upcall a model is self-tested with, and how it scored at start-up."""

    duration_seconds: float
    start_hz: float
    end_hz: float
    snr_db: float
    worst_score: float = 1.0  # lowest peak over the calibration backgrounds
    on: float = 0.5  # the operating threshold it was checked against

    @property
    def margin_logit(self) -> float:
        return logit(self.worst_score) - logit(self.on)

    @property
    def passes(self) -> bool:
        return self.margin_logit >= SELFTEST_MARGIN_LOGIT

    def wave(self, rate_hz: int) -> np.ndarray:
        return upcall(rate_hz, np.random.default_rng(SELFTEST_SEED), self.duration_seconds,
                      self.start_hz, self.end_hz)

    def describe(self) -> str:
        return (f"{self.duration_seconds:g} s {self.start_hz:g}-{self.end_hz:g} Hz upcall at "
                f"{self.snr_db:g} dB SNR")


def choose_reference(status: Status, scorer: Scorer | None = None) -> Reference:
    """The candidate reference this model scores best in its worst clean background."""
    meta = status.loaded.metadata
    rate = meta.sample_rate_hz
    scorer = scorer or Scorer(status.loaded, status.settings.max_batch_windows,
                              status.hop_samples, 1)
    backgrounds = [ocean_noise(int(CALIBRATION_SECONDS * rate), rate,
                               np.random.default_rng([SELFTEST_SEED, k]))
                   for k in range(CALIBRATION_BACKGROUNDS)]
    candidates = [Reference(duration, start_hz, end_hz, snr_db)
                  for duration, start_hz, end_hz in REFERENCE_CALLS
                  for snr_db in REFERENCE_SNRS_DB]
    windower_args = (meta.window_samples, status.hop_samples, 1)
    cut, spans = [], []  # every candidate in every background, scored in one go
    for candidate in candidates:
        for background in backgrounds:
            mixed, (at,) = mix(background, rate, candidate, 1)
            starts, windows = Windower(*windower_args).push(mixed[:, None])
            centres = (starts + meta.window_samples / 2) / rate
            over = (centres >= at / rate) & (centres <= at / rate + candidate.duration_seconds)
            cut.append(windows[over, 0, :])
            spans.append(int(over.sum()))
    scores = scorer.score(np.concatenate(cut))[:, 0]
    peaks_by_mix = [float(part.max(initial=0.0))
                    for part in np.split(scores, np.cumsum(spans)[:-1])]
    per_candidate = len(backgrounds)
    worst = [min(peaks_by_mix[k * per_candidate:(k + 1) * per_candidate])
             for k in range(len(candidates))]
    best = int(np.argmax(worst))
    return replace(candidates[best], worst_score=worst[best], on=status.thresholds.on)


def mix(audio: np.ndarray, rate_hz: int, reference: Reference, places: int
        ) -> tuple[np.ndarray, list[int]]:
    """``audio`` (model rate, mono) with ``places`` reference calls evenly apart, and where
    each starts (samples)."""
    call = reference.wave(rate_hz)
    level = band_rms(audio, rate_hz) or 1e-4  # digital silence: a call at -80 dBFS
    mixed = audio.copy()
    starts = [int((k + 0.5) * len(audio) / places - len(call) / 2) for k in range(places)]
    for at in starts:
        mixed[at:at + len(call)] += call * level * 10 ** (reference.snr_db / 20)
    return mixed, starts


def peaks(status: Status, mixed: np.ndarray, call_starts: list[int], reference: Reference,
          scorer: Scorer) -> tuple[int, list[float]]:
    """(calls an event covers, peak score over each call) for ``mixed`` at the model's rate
    through the model, thresholds and event rules ``status`` says."""
    meta, settings = status.loaded.metadata, status.settings
    rate_hz, hop = meta.sample_rate_hz, status.hop_samples
    starts, windows = Windower(meta.window_samples, hop, 1).push(mixed[:, None])
    if not len(starts):
        return 0, [0.0] * len(call_starts)
    label = 0  # the model's first label: the upcall
    scores = scorer.score(windows[:, 0, :])[:, label]
    centres = (starts + meta.window_samples / 2) / rate_hz
    tracker = EventTracker(tracker_settings(settings, status.thresholds, hop / rate_hz), 0,
                           meta.labels[label])
    events = []
    for centre, score in zip(centres, scores, strict=True):
        events += tracker.update(float(centre), float(score))
    events += tracker.flush()
    covered, call_peaks = 0, []
    length = reference.duration_seconds
    for at in call_starts:
        call_start = at / rate_hz
        call_end = call_start + length
        over = (centres >= call_start) & (centres <= call_end)
        call_peaks.append(float(np.max(scores[over])) if over.any() else 0.0)
        covered += any(e.start_seconds <= call_end and e.end_seconds >= call_start
                       for e in events)
    return covered, call_peaks


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
        self.reference: Reference | None = None
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

    def calibrate(self, status: Status) -> Reference:
        """Choose the reference for the model and thresholds ``status`` holds (at start-up
        and after a reload); a warning when even the best cannot pass with margin."""
        self._scorer = Scorer(status.loaded, status.settings.max_batch_windows,
                              status.hop_samples, 1)
        self.reference = reference = choose_reference(status, self._scorer)
        if reference.passes:
            log.info("self-test reference: %s, worst clean score %.4f (on=%.3f, margin %.2f "
                     "log-odds)", reference.describe(), reference.worst_score, reference.on,
                     reference.margin_logit)
        else:
            self.metrics.selftest_reference_unfit.inc()
            log.warning("self-test: model %s cannot pass its own reference call with margin: "
                        "the best, a %s, scores %.4f in clean noise against on=%.3f (margin "
                        "%.2f log-odds, %.2f needed); expect self-test failures on a healthy "
                        "station (docs/operations.md#self-test-failing)", status.loaded.path,
                        reference.describe(), reference.worst_score, reference.on,
                        reference.margin_logit, SELFTEST_MARGIN_LOGIT)
        return reference

    def run(self, status: Status) -> bool:
        """One self-test on the audio held now; the metrics and log say how it went."""
        if (self._scorer is None or self.reference is None
                or self._scorer.loaded is not status.loaded
                or self.reference.on != status.thresholds.on):  # SIGHUP
            self.calibrate(status)
        assert self._scorer is not None and self.reference is not None
        covered, score = run_selftest(status, self.held_audio(), self.rate_hz,
                                      self.reference, self._scorer)
        passed = covered > 0
        self.metrics.selftest_runs.inc()
        self.metrics.selftest_score.set(score)
        self.last_passed = passed
        if passed:
            self.metrics.selftest_last_success.set(time.time())
            log.info("self-test passed: %d of %d reference calls (%s) detected, peak %.3f "
                     "(on=%.3f)", covered, SELFTEST_PLACES, self.reference.describe(), score,
                     status.thresholds.on)
        else:
            self.metrics.selftest_failures.inc()
            log.error("self-test FAILED: none of %d reference calls (%s) detected, peak %.3f "
                      "(on=%.3f): audio flows but the detector cannot detect "
                      "(docs/operations.md#self-test-failing)", SELFTEST_PLACES,
                      self.reference.describe(), score, status.thresholds.on)
        return passed


def run_selftest(status: Status, audio: np.ndarray, rate_hz: int, reference: Reference,
                 scorer: Scorer) -> tuple[int, float]:
    """(reference calls detected, peak score over them): ``audio`` (capture rate, one
    channel) with ``SELFTEST_PLACES`` reference calls mixed in, through the pipeline's
    current model and settings (as its ``status`` says)."""
    model_rate = status.loaded.metadata.sample_rate_hz
    mono = resample_signal(audio, rate_hz, model_rate)
    covered, call_peaks = peaks(status, *mix(mono, model_rate, reference, SELFTEST_PLACES),
                                reference, scorer)
    return covered, max(call_peaks)
