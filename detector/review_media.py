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
import threading
from dataclasses import dataclass

import numpy as np
import soundfile
from scipy.signal import resample_poly

from detector.review_items import AudioRef, Item
from detector.sinks import UPCALL_HIGH_HZ, UPCALL_LOW_HZ

CONTEXT_SECONDS = 3.0  # audio shown and played before and after a detection
SPECTROGRAM_MAX_HZ = 500.0  # top of the plot; upcalls sweep 50-250 Hz
FRAME_SECONDS = 0.128  # STFT frame (256 samples at 2 kHz: 7.8 Hz bins)
FRAME_OVERLAP = 8  # frames per STFT length
FLOOR_PERCENTILE = 50.0  # colour scale: the median bin (the noise floor) is black ...
PEAK_PERCENTILE = 99.8  # ... and bins above this percentile are white, so calls stand out
FIGURE_INCHES = (9.6, 3.6)
FIGURE_DPI = 100  # 960 x 360 pixels
MIN_PLAYBACK_HZ = 8000  # Chromium will not play WAV below 3 kHz; upsample to at least this
PEAK_LEVEL = 0.9  # normalised peak of played audio, full scale = 1
_render_lock = threading.Lock()  # matplotlib's Agg is not safe across threads


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


def spectrogram_png(item: Item, clip: Clip) -> bytes:
    from matplotlib.figure import Figure
    from matplotlib.patches import Rectangle

    n_fft = 1 << max(4, round(np.log2(FRAME_SECONDS * clip.rate_hz)))
    hop = n_fft // FRAME_OVERLAP
    audio = np.pad(clip.audio.astype(np.float64), (0, max(0, n_fft - len(clip.audio))))
    frames = np.lib.stride_tricks.sliding_window_view(audio, n_fft)[::hop]
    power = np.abs(np.fft.rfft(frames * np.hanning(n_fft), axis=1)) ** 2
    top_hz = min(SPECTROGRAM_MAX_HZ, clip.rate_hz / 2)
    bins = int(top_hz / clip.rate_hz * n_fft) + 1
    db = 10 * np.log10(power[:, :bins].T + 1e-20)
    times = clip.first_seconds + (np.arange(db.shape[1]) * hop + n_fft / 2) / clip.rate_hz
    freqs = np.arange(bins) * clip.rate_hz / n_fft
    with _render_lock:
        figure = Figure(figsize=FIGURE_INCHES, dpi=FIGURE_DPI, layout="constrained")
        axes = figure.add_subplot()
        floor, peak = np.percentile(db[freqs >= UPCALL_LOW_HZ / 2],
                                    [FLOOR_PERCENTILE, PEAK_PERCENTILE])
        mesh = axes.pcolormesh(times, freqs, db - floor, shading="nearest", cmap="magma",
                               vmin=0, vmax=max(peak - floor, 1.0), rasterized=True)
        axes.add_patch(Rectangle((item.start_seconds, UPCALL_LOW_HZ),
                                 item.end_seconds - item.start_seconds,
                                 UPCALL_HIGH_HZ - UPCALL_LOW_HZ, fill=False,
                                 edgecolor="#7df9ff", linewidth=2, linestyle="--"))
        axes.set_ylim(0, top_hz)
        axes.set_xlabel("seconds from the start of the recording", fontsize=12)
        axes.set_ylabel("frequency (Hz)", fontsize=12)
        axes.tick_params(labelsize=11)
        figure.colorbar(mesh, ax=axes, pad=0.01, label="dB above the median")
        buffer = io.BytesIO()
        figure.savefig(buffer, format="png")
    return buffer.getvalue()


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
