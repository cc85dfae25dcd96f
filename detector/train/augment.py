"""Training windows that look like the days a model has not heard.

A detector trained on one recording learns that recording's noise. Each training window is
drawn through these steps so that level, signal-to-noise ratio, pitch, duration and
interference vary far beyond one day's:

- positives: a real call (kept inside the window), or a synthetic upcall whose contour
  follows the annotated calls, laid into a real negative window;
- speed: the window resampled by 0.9-1.1 (time stretch and frequency shift together);
- noise: a real negative window from another recording mixed in, down to -6 dB SNR
  (the window's 50-250 Hz level over the added noise's), as the talk mixes positives into
  random negatives;
- hard negatives: negatives with a flat or slowly falling tone at 80-200 Hz, a sweep above
  200 Hz, a downsweep, an impulse or a ship tone laid in: the sounds the old model mistook
  for calls;
- colour: a random first-order tilt (up to about +-10 dB across the band), so one day's
  noise colour is not learned as part of a call;
- gain: the whole window scaled by +-20 dB.

The synthetic upcalls' ranges are the published ones (Parks & Tyack 2005; the simulated
hydrophone's, :mod:`detector.sources.synthetic`), widened to 40-290 Hz: never statistics of the
annotated recordings, so a cross-validation fold learns nothing of the day it holds out.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np
from scipy import signal

from detector.core.band import band_rms
from detector.model.network import SAMPLE_RATE_HZ, WINDOW_SAMPLES
from detector.sources import synthetic

UPCALL_MIN_SWEEP_HZ = 40.0  # a synthetic upcall rises at least this much


@dataclass(frozen=True)
class Augmentation:
    speed_probability: float = 0.5
    speed_range: tuple[float, float] = (0.9, 1.1)  # resampling factor (>1: higher, shorter)
    noise_probability: float = 0.5  # chance to mix another recording's noise in
    noise_snr_db: tuple[float, float] = (-6.0, 12.0)  # window band level over the added noise
    hard_negative_probability: float = 0.4  # chance that a negative gets an interfering sound
    hard_negative_snr_db: tuple[float, float] = (0.0, 24.0)  # that sound over the window
    synthetic_snr_db: tuple[float, float] = (-3.0, 15.0)  # synthetic calls over the noise
    gain_db: tuple[float, float] = (-20.0, 20.0)
    tilt_probability: float = 0.0  # chance of a colour tilt y[n] = x[n] - a x[n-1]
    tilt_coefficient: tuple[float, float] = (-0.7, 0.7)  # a: >0 tilts up, <0 tilts down
    simulated_probability: float = 0.0  # chance that a negative, or a synthetic call's
    # background, is the simulated hydrophone's ocean noise (its own draws, never the seeds
    # of a `listen --device synthetic` run) instead of a real recording's window
    upcall_seconds: tuple[float, float] = (0.7, 1.8)  # synthetic upcall duration
    upcall_start_hz: tuple[float, float] = (40.0, 100.0)  # its start frequency
    upcall_end_hz: tuple[float, float] = (150.0, 290.0)  # its end frequency


def crop(audio: np.ndarray, samples: int, call: tuple[int, int] | None,
         rng: np.random.Generator) -> np.ndarray:
    """``samples`` of ``audio``; a known call is kept inside (centred when longer)."""
    n = len(audio)
    samples = min(samples, n)
    lo, hi = 0, n - samples
    if call is not None:
        start, end = call
        lo, hi = max(0, end - samples), min(hi, start)
        if lo > hi:
            lo = hi = min(max(0, (start + end - samples) // 2), n - samples)
    offset = int(rng.integers(lo, hi + 1))
    return audio[offset:offset + samples]


def speed_window(audio: np.ndarray, call: tuple[int, int] | None, factor: float,
                 rng: np.random.Generator) -> np.ndarray:
    """One window played ``factor`` times faster: ``factor`` x the window's samples,
    resampled to a window (linear interpolation; the band of interest is far below Nyquist)."""
    need = int(np.ceil(WINDOW_SAMPLES * factor)) + 1
    if need > len(audio):
        factor = (len(audio) - 1) / WINDOW_SAMPLES
        need = len(audio)
    piece = crop(audio, need, call, rng)
    positions = np.arange(WINDOW_SAMPLES) * factor
    return np.interp(positions, np.arange(len(piece)), piece).astype(np.float32)


def window_from(audio: np.ndarray, call: tuple[int, int] | None, aug: Augmentation,
                rng: np.random.Generator) -> np.ndarray:
    if rng.random() < aug.speed_probability:
        return speed_window(audio, call, rng.uniform(*aug.speed_range), rng)
    return crop(audio, WINDOW_SAMPLES, call, rng).astype(np.float32)


def mix_at_snr(window: np.ndarray, other: np.ndarray, snr_db: float) -> np.ndarray:
    """``window`` + ``other`` scaled so that the window's band level is ``snr_db`` above it."""
    gain = ((band_rms(window, SAMPLE_RATE_HZ) + 1e-9) / (band_rms(other, SAMPLE_RATE_HZ) + 1e-9)
            * 10 ** (-snr_db / 20))
    return window + gain * other


def lay_in(window: np.ndarray, sound: np.ndarray, level: float,
           rng: np.random.Generator) -> np.ndarray:
    """``sound`` (unit RMS) at ``level`` RMS somewhere in ``window`` (clipped at the edges)."""
    out = window.copy()
    n = len(window)
    start = int(rng.integers(-len(sound) // 3, max(n - 2 * len(sound) // 3, 1)))
    lo, hi = max(start, 0), min(start + len(sound), n)
    if hi > lo:
        out[lo:hi] += level * sound[lo - start:hi - start]
    return out


def tone(rng: np.random.Generator) -> np.ndarray:
    """A flat or slowly falling tone at 80-200 Hz with harmonics, 0.5-4 s."""
    n = int(rng.uniform(0.5, 4.0) * SAMPLE_RATE_HZ)
    f0 = rng.uniform(80.0, 200.0)
    slope_hz_per_s = rng.uniform(-30.0, 0.0) if rng.random() < 0.6 else 0.0
    t = np.arange(n) / SAMPLE_RATE_HZ
    phase = 2 * np.pi * np.cumsum(f0 + slope_hz_per_s * t) / SAMPLE_RATE_HZ
    wave = np.sin(phase) + rng.uniform(0, 0.5) * np.sin(2 * phase)
    wave *= signal.windows.tukey(n, 0.2)
    return (wave / np.sqrt(np.mean(wave**2))).astype(np.float32)


def high_sweep(rng: np.random.Generator) -> np.ndarray:
    """A rising or falling sweep above 200 Hz (other species, not a right whale upcall)."""
    n = int(rng.uniform(0.3, 1.5) * SAMPLE_RATE_HZ)
    f0, f1 = rng.uniform(210.0, 450.0, size=2)
    u = np.arange(n) / n
    phase = 2 * np.pi * np.cumsum(f0 + (f1 - f0) * u) / SAMPLE_RATE_HZ
    wave = np.sin(phase) * signal.windows.tukey(n, 0.4)
    return (wave / np.sqrt(np.mean(wave**2))).astype(np.float32)


HARD_NEGATIVES = (tone, tone, high_sweep,
                  lambda rng: synthetic.downsweep(SAMPLE_RATE_HZ, rng),
                  lambda rng: synthetic.impulse(SAMPLE_RATE_HZ, rng),
                  lambda rng: synthetic.ship_tone(SAMPLE_RATE_HZ, rng))


def with_call(window: np.ndarray, call_wave: np.ndarray, level: float,
              rng: np.random.Generator) -> np.ndarray:
    """A copy of ``window`` with ``call_wave`` at ``level`` laid in wholly, at a random start."""
    start = int(rng.integers(0, WINDOW_SAMPLES - len(call_wave) + 1))
    out = window.copy()
    out[start:start + len(call_wave)] += level * call_wave
    return out


def with_synthetic_call(noise: np.ndarray, rng: np.random.Generator,
                        snr_db: tuple[float, float]) -> np.ndarray:
    """The plain recipe's positive: a default synthetic upcall in a real negative window at
    ``snr_db`` over the window's band level."""
    call_wave = synthetic.upcall(SAMPLE_RATE_HZ, rng)[:WINDOW_SAMPLES]
    level = max(band_rms(noise, SAMPLE_RATE_HZ), 1e-6) * 10 ** (rng.uniform(*snr_db) / 20)
    return with_call(noise, call_wave, level, rng)


def mixed_with(window: np.ndarray, other: np.ndarray, rng: np.random.Generator,
               level_db: tuple[float, float]) -> np.ndarray:
    """The plain recipe's mixing: ``other`` added at ``level_db`` of the window's RMS."""
    rms = float(np.sqrt(np.mean(window**2))) + 1e-9
    other_rms = float(np.sqrt(np.mean(other**2))) + 1e-9
    return window + other * (rms / other_rms) * 10 ** (rng.uniform(*level_db) / 20)


def synthetic_upcall(aug: Augmentation, rng: np.random.Generator) -> np.ndarray:
    start_hz = rng.uniform(*aug.upcall_start_hz)
    return synthetic.upcall(SAMPLE_RATE_HZ, rng, rng.uniform(*aug.upcall_seconds), start_hz,
                            max(rng.uniform(*aug.upcall_end_hz), start_hz + UPCALL_MIN_SWEEP_HZ))


def chance(probability: float, rng: np.random.Generator) -> bool:
    """True with ``probability``; draws nothing when it is 0, so a recipe that leaves a step
    out keeps the random stream (and the model) of the recipes before that step existed."""
    return probability > 0 and rng.random() < probability


def simulated_window(rng: np.random.Generator) -> np.ndarray:
    """One window of the simulated hydrophone's red-tilted ocean noise."""
    return synthetic.ocean_noise(WINDOW_SAMPLES, SAMPLE_RATE_HZ, rng)


def positive_window(audio: np.ndarray | None, call: tuple[int, int] | None,
                    noise: Sequence[np.ndarray], aug: Augmentation,
                    rng: np.random.Generator) -> np.ndarray:
    """A real call window (``audio`` given) or a synthetic call in a random noise window."""
    if audio is None:
        window = (simulated_window(rng) if chance(aug.simulated_probability, rng)
                  else window_from(noise[int(rng.integers(len(noise)))], None, aug, rng))
        call_wave = synthetic_upcall(aug, rng)
        level = band_rms(window, SAMPLE_RATE_HZ) * 10 ** (rng.uniform(*aug.synthetic_snr_db) / 20)
        window = with_call(window, call_wave, level, rng)
    else:
        window = window_from(audio, call, aug, rng)
    return finish(window, noise, aug, rng)


def negative_window(audio: np.ndarray, noise: Sequence[np.ndarray], aug: Augmentation,
                    rng: np.random.Generator) -> np.ndarray:
    window = (simulated_window(rng) if chance(aug.simulated_probability, rng)
              else window_from(audio, None, aug, rng))
    if rng.random() < aug.hard_negative_probability:
        make = HARD_NEGATIVES[int(rng.integers(len(HARD_NEGATIVES)))]
        snr_db = rng.uniform(*aug.hard_negative_snr_db)
        level = band_rms(window, SAMPLE_RATE_HZ) * 10 ** (snr_db / 20)
        window = lay_in(window, make(rng), level, rng)
    return finish(window, noise, aug, rng)


def finish(window: np.ndarray, noise: Sequence[np.ndarray], aug: Augmentation,
           rng: np.random.Generator) -> np.ndarray:
    if rng.random() < aug.noise_probability:
        other = crop(noise[int(rng.integers(len(noise)))], WINDOW_SAMPLES, None, rng)
        window = mix_at_snr(window, other, rng.uniform(*aug.noise_snr_db))
    if chance(aug.tilt_probability, rng):
        a = rng.uniform(*aug.tilt_coefficient)
        window = signal.lfilter([1.0, -a], [1.0], window)
    gain = 10 ** (rng.uniform(*aug.gain_db) / 20)
    return (window * gain).astype(np.float32)
