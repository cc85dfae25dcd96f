"""A simulated hydrophone: ocean-like noise, right whale upcalls at known times, and the
interference real stations hear (tonal ship noise, impulses, downsweeps of other species).

Shared by the ``synthetic`` source of ``whaled listen`` and by ``whaled train --synthetic``,
which mixes these calls into real noise.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np

# Right whale upcall shape (Parks & Tyack; DCLDE 2013 annotations last 0.9-1.7 s)
UPCALL_SECONDS = (0.5, 1.5)
UPCALL_START_HZ = (50.0, 120.0)
UPCALL_END_HZ = (120.0, 250.0)
UPCALL_MIN_SWEEP_HZ = 40.0
HARMONIC_GAINS = (1.0, 0.35, 0.12)  # fundamental, 2nd and 3rd harmonics (amplitude)
ENVELOPE_RAMP_FRACTION = 0.25  # of the call spent fading in and out
NOISE_LEVEL_DBFS = -40.0  # broadband ocean noise RMS
CALL_SNR_DB = (3.0, 18.0)  # call RMS over noise RMS in the call's 50-250 Hz band
CALL_INTERVAL_SECONDS = (12.0, 40.0)  # between synthetic upcalls
FIRST_CALL_SECONDS = 6.0
INTERFERENCE_INTERVAL_SECONDS = (6.0, 20.0)


def upcall(rate_hz: float, rng: np.random.Generator, duration_seconds: float | None = None,
           start_hz: float | None = None, end_hz: float | None = None) -> np.ndarray:
    """One upcall with unit RMS: a J-shaped rising sweep with harmonics and a smooth envelope."""
    duration = duration_seconds or rng.uniform(*UPCALL_SECONDS)
    f0 = start_hz or rng.uniform(*UPCALL_START_HZ)
    f1 = end_hz or max(rng.uniform(*UPCALL_END_HZ), f0 + UPCALL_MIN_SWEEP_HZ)
    n = max(int(duration * rate_hz), 8)
    u = np.arange(n) / n
    curve = rng.uniform(1.3, 2.2)  # J shape: slow start, steeper rise at the end
    dip_hz = rng.uniform(0.0, 8.0)  # a slight initial droop before the rise
    freq = f0 + (f1 - f0) * u**curve - dip_hz * np.sin(np.pi * np.minimum(u * 3, 1.0))
    phase = 2 * np.pi * np.cumsum(freq) / rate_hz
    wave = np.zeros(n)
    for k, gain in enumerate(HARMONIC_GAINS, start=1):
        if k * f1 < rate_hz / 2:
            wave += gain * np.sin(k * phase + rng.uniform(0, 2 * np.pi))
    wave *= tukey(n, 2 * ENVELOPE_RAMP_FRACTION)
    rms = float(np.sqrt(np.mean(wave**2)))
    return (wave / rms).astype(np.float32)


def downsweep(rate_hz: float, rng: np.random.Generator) -> np.ndarray:
    """A falling sweep (humpback or fin whale like): a negative that shares the band."""
    n = int(rng.uniform(0.4, 1.5) * rate_hz)
    f0, f1 = rng.uniform(150, 300), rng.uniform(50, 120)
    u = np.arange(n) / n
    phase = 2 * np.pi * np.cumsum(f0 + (f1 - f0) * u) / rate_hz
    wave = np.sin(phase) * tukey(n, 0.4)
    return (wave / np.sqrt(np.mean(wave**2))).astype(np.float32)


def impulse(rate_hz: float, rng: np.random.Generator) -> np.ndarray:
    """A short broadband click train (snapping shrimp, mooring knocks, airgun pulses)."""
    n = int(rng.uniform(0.02, 0.3) * rate_hz)
    wave = rng.standard_normal(n) * np.exp(-np.arange(n) / max(n / 5, 1))
    return (wave / np.sqrt(np.mean(wave**2))).astype(np.float32)


def ship_tone(rate_hz: float, rng: np.random.Generator) -> np.ndarray:
    """Tonal ship noise: a steady line with harmonics, lasting several seconds."""
    n = int(rng.uniform(3.0, 12.0) * rate_hz)
    f = rng.uniform(40, 180)
    t = np.arange(n) / rate_hz
    wave = sum(g * np.sin(2 * np.pi * k * f * t) for k, g in ((1, 1.0), (2, 0.5), (3, 0.3))
               if k * f < rate_hz / 2)
    wave = np.asarray(wave) * tukey(n, 0.3)
    return (wave / np.sqrt(np.mean(wave**2))).astype(np.float32)


INTERFERENCE = (downsweep, impulse, ship_tone)


def tukey(n: int, alpha: float) -> np.ndarray:
    """scipy's Tukey window, scipy imported on first use (a second of start-up that
    ``whaled detect`` and the capture sources, which import this module, do not need)."""
    from scipy.signal import windows

    return np.asarray(windows.tukey(n, alpha))


def ocean_noise(n_samples: int, rate_hz: float, rng: np.random.Generator,
                level_dbfs: float = NOISE_LEVEL_DBFS) -> np.ndarray:
    """Red-tilted broadband noise (more energy at low frequency, as in shallow water)."""
    white = rng.standard_normal(n_samples + 512)
    from scipy import signal  # here, not at import: the sources that never simulate skip it

    b, a = signal.butter(1, min(300.0 / (rate_hz / 2), 0.99), "low")
    red = signal.lfilter(b, a, white)[512:] + 0.3 * white[512:]
    red *= 10 ** (level_dbfs / 20) / np.sqrt(np.mean(red**2))
    return red.astype(np.float32)


@dataclass(frozen=True)
class PlacedSound:
    """A sound placed in the synthetic stream: [start_sample, start_sample + len(wave))."""

    start_sample: int
    wave: np.ndarray
    gain: float
    kind: str  # "upcall", "downsweep", "impulse", "ship_tone"

    @property
    def end_sample(self) -> int:
        return self.start_sample + len(self.wave)


def schedule(duration_seconds: float, rate_hz: float, seed: int) -> list[PlacedSound]:
    """Upcalls and interference at random but reproducible times over ``duration_seconds``."""
    rng = np.random.default_rng(seed)
    noise_rms = 10 ** (NOISE_LEVEL_DBFS / 20)
    sounds: list[PlacedSound] = []
    t = FIRST_CALL_SECONDS
    while t < duration_seconds - 2.0:
        wave = upcall(rate_hz, rng)
        gain = noise_rms * 10 ** (rng.uniform(*CALL_SNR_DB) / 20)
        sounds.append(PlacedSound(int(t * rate_hz), wave, gain, "upcall"))
        t += rng.uniform(*CALL_INTERVAL_SECONDS)
    t = rng.uniform(*INTERFERENCE_INTERVAL_SECONDS)
    while t < duration_seconds:
        make = INTERFERENCE[int(rng.integers(len(INTERFERENCE)))]
        wave = make(rate_hz, rng)
        gain = noise_rms * 10 ** (rng.uniform(0.0, 15.0) / 20)
        start = int(t * rate_hz)
        if not any(s.kind == "upcall" and start < s.end_sample + int(rate_hz)
                   and s.start_sample < start + len(wave) + int(rate_hz) for s in sounds):
            sounds.append(PlacedSound(start, wave, gain, make.__name__))
        t += rng.uniform(*INTERFERENCE_INTERVAL_SECONDS)
    return sorted(sounds, key=lambda s: s.start_sample)


def render(sounds: Sequence[PlacedSound], first_sample: int, out: np.ndarray) -> None:
    """Add every sound overlapping [first_sample, first_sample + len(out)) into ``out``."""
    end = first_sample + len(out)
    for sound in sounds:
        if sound.end_sample <= first_sample or sound.start_sample >= end:
            continue
        lo = max(sound.start_sample, first_sample)
        hi = min(sound.end_sample, end)
        out[lo - first_sample:hi - first_sample] += (
            sound.gain * sound.wave[lo - sound.start_sample:hi - sound.start_sample])


class SyntheticHydrophone:
    """Renders the simulated stream in consecutive chunks, the same for any chunk size."""

    def __init__(self, rate_hz: int, duration_seconds: float, seed: int = 1) -> None:
        self.rate_hz = rate_hz
        self.sounds = schedule(duration_seconds, rate_hz, seed)
        self._seed = seed

    @property
    def upcalls(self) -> list[PlacedSound]:
        return [s for s in self.sounds if s.kind == "upcall"]

    def chunk(self, first_sample: int, n_samples: int) -> np.ndarray:
        """Samples [first_sample, first_sample + n_samples), independent of earlier calls."""
        second = self.rate_hz
        out = np.empty(n_samples, np.float32)
        pos = first_sample
        while pos < first_sample + n_samples:
            index = pos // second
            noise = ocean_noise(second, self.rate_hz, np.random.default_rng([self._seed, index]))
            lo = pos - index * second
            hi = min(second, first_sample + n_samples - index * second)
            out[pos - first_sample:pos - first_sample + hi - lo] = noise[lo:hi]
            pos += hi - lo
        render(self.sounds, first_sample, out)
        return out
