"""The sample rates whaled takes, in one place.

A recording is scanned at any rate that can hold an upcall's band (Nyquist above its top); a
sound card or stream is opened at rates PortAudio devices and recorders offer; a model runs at
its own rate, and every input is resampled to it.
"""

from __future__ import annotations

from detector.core.band import UPCALL_HIGH_HZ

MIN_RECORDING_RATE_HZ = int(2 * UPCALL_HIGH_HZ)  # slower audio cannot hold the upcall band
CAPTURE_RATES_HZ = (2_000, 192_000)  # what --rate may ask of a sound card (inclusive)
MODEL_RATES_HZ = (1_000, 192_000)  # what a deployment's model_rate_hz may say (inclusive)


def in_range(rate_hz: int, limits: tuple[int, int]) -> bool:
    return limits[0] <= rate_hz <= limits[1]


def range_text(limits: tuple[int, int]) -> str:
    return f"{limits[0]}-{limits[1]}"
