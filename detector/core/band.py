"""What whaled takes a right whale upcall to be: the band it sweeps, and a signal's level there.

One definition for every stage that needs it: the box of a detection in a Raven table and on
a spectrogram, the lowest capture rate that can hold a call, and the level a training or
self-test call is mixed in against (a signal-to-noise ratio in the call's band).
"""

from __future__ import annotations

import numpy as np

UPCALL_LOW_HZ = 50.0  # nominal band of a North Atlantic right whale upcall
UPCALL_HIGH_HZ = 250.0
UPCALL_BAND_HZ = (UPCALL_LOW_HZ, UPCALL_HIGH_HZ)


def band_rms(audio: np.ndarray, rate_hz: int,
             band_hz: tuple[float, float] = UPCALL_BAND_HZ) -> float:
    """RMS of mono ``audio`` in ``band_hz`` (Parseval over the FFT bins of the band)."""
    spectrum = np.fft.rfft(audio - audio.mean())
    freqs = np.fft.rfftfreq(len(audio), 1 / rate_hz)
    power = np.abs(spectrum[(freqs >= band_hz[0]) & (freqs <= band_hz[1])]) ** 2
    return float(np.sqrt(2 * power.sum()) / len(audio))
