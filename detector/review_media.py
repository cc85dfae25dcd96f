"""A detection's audio cut from its clip or recording, as a spectrogram PNG and a playable WAV.

The spectrogram has axes in the units a reviewer checks against Raven: seconds from the
recording's start and Hz, 0-500 Hz so the 50-250 Hz upcall band fills most of the height, and
the detection's box drawn over it. The WAV is peak-normalised (hydrophone audio is quiet) and
can be played ``speed`` times faster: the same samples labelled at ``speed`` times the rate, so
a 100 Hz upcall sounds at 400 Hz when ``speed`` is 4. Browsers refuse very low sample rates,
so audio below ``MIN_PLAYBACK_HZ`` is upsampled first.
"""

from __future__ import annotations

import io
from dataclasses import dataclass

import numpy as np
import soundfile
from scipy.signal import resample_poly

from detector.review_items import AudioRef, Item

CONTEXT_SECONDS = 3.0  # audio shown and played before and after a detection
MIN_PLAYBACK_HZ = 8000  # Chromium will not play WAV below 3 kHz; upsample to at least this
PEAK_LEVEL = 0.9  # normalised peak of played audio, full scale = 1


@dataclass(frozen=True)
class Clip:
    audio: np.ndarray  # mono float32
    rate_hz: int
    first_seconds: float  # recording seconds at the first sample


def cut_clip(item: Item, audio: AudioRef) -> Clip:
    """The detection and ``CONTEXT_SECONDS`` around it; raises OSError or RuntimeError."""
    info = soundfile.info(str(audio.path))
    rate = int(info.samplerate)
    first = max(0, round((item.start_seconds - CONTEXT_SECONDS - audio.first_seconds) * rate))
    end = min(int(info.frames),
              round((item.end_seconds + CONTEXT_SECONDS - audio.first_seconds) * rate))
    if end <= first:
        raise RuntimeError(f"{audio.path} holds no audio at {item.start_seconds:.3f} s")
    if audio.column >= info.channels:
        raise RuntimeError(f"{audio.path} has no channel {audio.column + 1}")
    frames, _ = soundfile.read(str(audio.path), start=first, stop=end, dtype="float32",
                               always_2d=True)
    return Clip(frames[:, audio.column], rate, audio.first_seconds + first / rate)


def playback_wav(clip: Clip, speed: int) -> bytes:
    """16-bit WAV of the clip, peak-normalised, ``speed`` times faster (and higher)."""
    audio = clip.audio.astype(np.float64)
    audio = audio - audio.mean()
    rate = clip.rate_hz * speed
    if rate < MIN_PLAYBACK_HZ:
        factor = -(-MIN_PLAYBACK_HZ // rate)
        audio, rate = resample_poly(audio, factor, 1), rate * factor
    peak = float(np.abs(audio).max()) if len(audio) else 0.0
    if peak > 0:
        audio = audio * (PEAK_LEVEL / peak)
    buffer = io.BytesIO()
    soundfile.write(buffer, audio.astype(np.float32), rate, format="WAV", subtype="PCM_16")
    return buffer.getvalue()
