"""A detection's audio cut from its clip or recording, as a spectrogram PNG and a playable WAV.

The spectrogram has axes in the units a reviewer checks against Raven: seconds from the
recording's start and Hz, 0-500 Hz so the 50-250 Hz upcall band fills most of the height, and
the detection's box drawn over it. The WAV is peak-normalised (hydrophone audio is quiet) and
can be played ``speed`` times faster: the same samples labelled at ``speed`` times the rate, so
a 100 Hz upcall sounds at 400 Hz when ``speed`` is 4. Browsers refuse very low sample rates,
so audio below ``MIN_PLAYBACK_HZ`` is upsampled first.

A :class:`View` is how the reviewer looks: seconds of context either side, the contrast (dB
from black to white, or automatic) and the top of the frequency axis (zoom), each a query
parameter of the spectrogram (``?context=15&range=30&top=300``), checked here.
"""

from __future__ import annotations

import io
import math
from dataclasses import dataclass

import numpy as np
import soundfile
from scipy.signal import resample_poly

from detector.review.items import AudioRef, Item

CONTEXT_SECONDS = 3.0  # audio shown and played before and after a detection
MIN_PLAYBACK_HZ = 8000  # Chromium will not play WAV below 3 kHz; upsample to at least this
PEAK_LEVEL = 0.9  # normalised peak of played audio, full scale = 1
CONTEXT_LIMITS_SECONDS = (0.5, 60.0)  # context a view may ask for, either side
RANGE_LIMITS_DB = (6.0, 90.0)  # black (the median bin) to white
TOP_LIMITS_HZ = (60.0, 24_000.0)  # the frequency axis tops out here (then at Nyquist)
DEFAULT_TOP_HZ = 500.0  # upcalls sweep 50-250 Hz: they fill most of the height


@dataclass(frozen=True)
class View:
    """How a detection is shown: context either side, contrast, frequency zoom."""

    context_seconds: float = CONTEXT_SECONDS
    range_db: float | None = None  # None: automatic, the 99.8th-percentile bin is white
    top_hz: float = DEFAULT_TOP_HZ

    @classmethod
    def parse(cls, query: dict[str, list[str]]) -> View:
        """From ``context``, ``range`` (dB or ``auto``) and ``top`` query parameters, each
        optional; ValueError naming the first bad one."""
        context = _number(query, "context", CONTEXT_SECONDS, CONTEXT_LIMITS_SECONDS, "s")
        auto = query.get("range", ["auto"])[0] in ("auto", "")
        range_db = None if auto else _number(query, "range", 0.0, RANGE_LIMITS_DB, "dB")
        return cls(context, range_db, _number(query, "top", DEFAULT_TOP_HZ, TOP_LIMITS_HZ, "Hz"))

    def query(self) -> str:
        return (f"context={self.context_seconds:g}&range="
                f"{'auto' if self.range_db is None else f'{self.range_db:g}'}&top={self.top_hz:g}")


def _number(query: dict[str, list[str]], name: str, default: float,
            limits: tuple[float, float], unit: str) -> float:
    text = query.get(name, [""])[0]
    if not text:
        return default
    try:
        value = float(text)
    except ValueError:
        raise ValueError(f"{name} must be a number of {unit}, got {text!r}") from None
    if not (math.isfinite(value) and limits[0] <= value <= limits[1]):
        raise ValueError(f"{name} must be {limits[0]:g}-{limits[1]:g} {unit}, got {text}")
    return value


@dataclass(frozen=True)
class Clip:
    audio: np.ndarray  # mono float32
    rate_hz: int
    first_seconds: float  # recording seconds at the first sample


@dataclass(frozen=True)
class Extent:
    """Where a view's audio lies in its file: frames ``first`` to ``end`` at ``rate_hz``."""

    first: int
    end: int
    rate_hz: int
    first_seconds: float  # recording seconds at frame ``first``

    @property
    def seconds(self) -> tuple[float, float]:
        return self.first_seconds, self.first_seconds + (self.end - self.first) / self.rate_hz


def clip_extent(item: Item, audio: AudioRef, context_seconds: float = CONTEXT_SECONDS) -> Extent:
    """The detection and ``context_seconds`` either side, as far as the file holds them;
    raises OSError or RuntimeError."""
    info = soundfile.info(str(audio.path))
    rate = int(info.samplerate)
    first = max(0, round((item.start_seconds - context_seconds - audio.first_seconds) * rate))
    end = min(int(info.frames),
              round((item.end_seconds + context_seconds - audio.first_seconds) * rate))
    if end <= first:
        raise RuntimeError(f"{audio.path} holds no audio at {item.start_seconds:.3f} s")
    if audio.column >= info.channels:
        raise RuntimeError(f"{audio.path} has no channel {audio.column + 1}")
    return Extent(first, end, rate, audio.first_seconds + first / rate)


def cut_clip(item: Item, audio: AudioRef, context_seconds: float = CONTEXT_SECONDS) -> Clip:
    """The audio of :func:`clip_extent`; raises OSError or RuntimeError."""
    extent = clip_extent(item, audio, context_seconds)
    frames, _ = soundfile.read(str(audio.path), start=extent.first, stop=extent.end,
                               dtype="float32", always_2d=True)
    return Clip(frames[:, audio.column], extent.rate_hz, extent.first_seconds)


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
