"""The matplotlib figures of single detections: the review page's spectrogram of one
detection and the spectrogram of each mistake ``whaled evaluate --review-dir`` writes. (The
season's presence chart is :mod:`detector.season.chart`.) Needs matplotlib (the ``review``
extra), imported on first use.
"""

from __future__ import annotations

import io
import threading
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np

from detector.core.band import UPCALL_HIGH_HZ, UPCALL_LOW_HZ
from detector.figures.curves import pyplot

if TYPE_CHECKING:
    from detector.evaluate.mistakes import Mistake
    from detector.review.items import Item
    from detector.review.media import Clip, View

# the review page's spectrogram
SPECTROGRAM_MAX_HZ = 500.0  # top of the plot; upcalls sweep 50-250 Hz
FRAME_SECONDS = 0.128  # STFT frame (256 samples at 2 kHz: 7.8 Hz bins)
FRAME_OVERLAP = 8  # frames per STFT length
FLOOR_PERCENTILE = 50.0  # colour scale: the median bin (the noise floor) is black ...
PEAK_PERCENTILE = 99.8  # ... and bins above this percentile are white, so calls stand out
FIGURE_INCHES = (9.6, 3.6)
FIGURE_DPI = 100  # 960 x 360 pixels
IMAGE_PX = (960, 360)  # the review page's spectrogram, width x height
# Its plot area in pixels from the image's top left (left, top, right, bottom), fixed so the
# page can turn a mouse position into seconds and Hz: x from the view's first to last second,
# y from the top frequency (at ``top``) down to 0 Hz (at ``bottom``).
AXES_PX = (64, 10, 868, 312)
COLORBAR_PX = (880, 10, 894, 312)
_render_lock = threading.Lock()  # matplotlib's Agg is not safe across threads

# a mistake's spectrogram: the review page's, with this much audio around the span
MISTAKE_PAD_SECONDS = 4.0  # audio shown before and after the boxed span


def contrast_spectrogram(audio: np.ndarray, rate_hz: int, top_hz: float = SPECTROGRAM_MAX_HZ
                         ) -> tuple[np.ndarray, np.ndarray, np.ndarray, float]:
    """The review page's spectrogram and contrast, for every figure a person judges a call
    on: (frame centres s from the audio's start, bin Hz up to ``top_hz`` or Nyquist, dB
    above the median bin (the noise floor, black), the dB above it of the
    ``PEAK_PERCENTILE`` bin (white)). The floor and peak are those of the bins up to
    ``SPECTROGRAM_MAX_HZ`` whatever ``top_hz`` is, so zooming keeps the colours."""
    n_fft = 1 << max(4, round(np.log2(FRAME_SECONDS * rate_hz)))
    hop = n_fft // FRAME_OVERLAP
    audio = np.pad(audio.astype(np.float64), (0, max(0, n_fft - len(audio))))
    frames = np.lib.stride_tricks.sliding_window_view(audio, n_fft)[::hop]
    power = np.abs(np.fft.rfft(frames * np.hanning(n_fft), axis=1)) ** 2
    top_hz = min(max(top_hz, SPECTROGRAM_MAX_HZ), rate_hz / 2)
    bins = int(top_hz / rate_hz * n_fft) + 1
    db = 10 * np.log10(power[:, :bins].T + 1e-20)
    times = (np.arange(db.shape[1]) * hop + n_fft / 2) / rate_hz
    freqs = np.arange(bins) * rate_hz / n_fft
    band = (freqs >= UPCALL_LOW_HZ / 2) & (freqs <= SPECTROGRAM_MAX_HZ)
    floor, peak = np.percentile(db[band], [FLOOR_PERCENTILE, PEAK_PERCENTILE])
    return times, freqs, db - floor, max(float(peak - floor), 1.0)


def plot_geometry(seconds: tuple[float, float], rate_hz: int, view: View) -> dict[str, object]:
    """Where the review spectrogram of ``seconds`` (first, last) at ``view`` puts its axes:
    the image and plot-area pixels and the seconds and Hz at the plot area's edges."""
    return {"image_px": list(IMAGE_PX), "axes_px": list(AXES_PX), "seconds": list(seconds),
            "hz": [0.0, min(view.top_hz, rate_hz / 2)]}


def _fraction(box: tuple[int, int, int, int]) -> tuple[float, float, float, float]:
    """A pixel box from the top left as matplotlib's (left, bottom, width, height) fractions."""
    width, height = IMAGE_PX
    return (box[0] / width, 1 - box[3] / height, (box[2] - box[0]) / width,
            (box[3] - box[1]) / height)


def review_spectrogram_png(item: Item, clip: Clip, view: View) -> bytes:
    """The review page's spectrogram of a detection as ``view`` asks: its box over the clip,
    dB above the median bin, the plot area at ``AXES_PX``."""
    from matplotlib.figure import Figure

    times, freqs, db, peak = contrast_spectrogram(clip.audio, clip.rate_hz, view.top_hz)
    seconds = (clip.first_seconds, clip.first_seconds + len(clip.audio) / clip.rate_hz)
    with _render_lock:
        figure = Figure(figsize=FIGURE_INCHES, dpi=FIGURE_DPI)
        axes = figure.add_axes(_fraction(AXES_PX))
        axes.set_facecolor("black")  # the half frames at the edges: no white strips
        draw_contrast(figure, axes, clip.first_seconds + times, freqs, db,
                      peak if view.range_db is None else view.range_db,
                      (item.start_seconds, item.end_seconds), figure.add_axes(
                          _fraction(COLORBAR_PX)))
        axes.set_xlim(*seconds)
        axes.set_ylim(0, min(view.top_hz, clip.rate_hz / 2))
        axes.set_xlabel("seconds from the start of the recording", fontsize=12, labelpad=2)
        buffer = io.BytesIO()
        figure.savefig(buffer, format="png")
    return buffer.getvalue()


def draw_contrast(figure: Any, axes: Any, times: np.ndarray, freqs: np.ndarray,
                  db: np.ndarray, peak: float, span: tuple[float, float],
                  colorbar_axes: Any = None) -> None:
    """A :func:`contrast_spectrogram` on ``axes``, ``span`` (s) boxed over the upcall band."""
    from matplotlib.patches import Rectangle

    mesh = axes.pcolormesh(times, freqs, db, shading="nearest", cmap="magma", vmin=0,
                           vmax=peak, rasterized=True)
    axes.add_patch(Rectangle((span[0], UPCALL_LOW_HZ), span[1] - span[0],
                             UPCALL_HIGH_HZ - UPCALL_LOW_HZ, fill=False,
                             edgecolor="#7df9ff", linewidth=2, linestyle="--"))
    axes.set_ylim(0, freqs[-1])
    axes.set_ylabel("frequency (Hz)", fontsize=12)
    axes.tick_params(labelsize=11)
    if colorbar_axes is None:
        figure.colorbar(mesh, ax=axes, pad=0.01, label="dB above the median")
    else:
        figure.colorbar(mesh, cax=colorbar_axes, label="dB above the median")


def mistake_spectrogram_png(recording: Path, mistake: Mistake, out: Path,
                            channel: int = 1) -> None:
    """A missed call or false alarm on ``channel`` (1-based), ``MISTAKE_PAD_SECONDS`` either
    side, its span boxed, drawn as the review page draws a detection (the same frames and
    contrast)."""
    import soundfile

    plt = pyplot()
    info = soundfile.info(str(recording))
    rate = info.samplerate
    first = max(0, int((mistake.begin_seconds - MISTAKE_PAD_SECONDS) * rate))
    last = min(info.frames, int((mistake.end_seconds + MISTAKE_PAD_SECONDS) * rate))
    audio, _ = soundfile.read(str(recording), start=first, stop=last, dtype="float32",
                              always_2d=True)
    times, freqs, db, peak = contrast_spectrogram(audio[:, channel - 1], rate)
    fig = plt.figure(figsize=FIGURE_INCHES, dpi=FIGURE_DPI, layout="constrained")
    ax = fig.add_subplot()
    draw_contrast(fig, ax, first / rate + times, freqs, db, peak,
                  (mistake.begin_seconds, mistake.end_seconds))
    what = "missed call" if mistake.kind == "missed" else "false alarm"
    ax.set_xlabel("seconds from the start of the recording", fontsize=12)
    ax.set_title(f"{what}, score {mistake.score:.3f}: {mistake.recording} "
                 f"{mistake.begin_seconds:.1f} s", fontsize=12)
    fig.savefig(out)
    plt.close(fig)
