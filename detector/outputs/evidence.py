"""Evidence for review: each detection's audio and spectrogram, kept within a disk budget.

For every detection, in ``<evidence_dir>/<label>/``: ``<peak UTC>_ch<N>.wav`` (the capture
rate, with padding before and after), ``.png`` (its spectrogram, the detection marked by a
white bar along the top) and ``.json`` (the detection's fields and the clip's start). One
folder per label is the layout ``whaled train`` reads: a reviewer moves a false alarm's files
to ``noise/`` and trains on the folder. The oldest clips go first beyond the size or age limit.

The recorder is a sink (``write`` takes the detection) and an audio tap (``push`` takes each
block): a detection is reported when its event closes, and its trailing padding is saved once
that audio has arrived. A write that fails is counted, logged and retried with the next block
while its audio is still held.
"""

from __future__ import annotations

import json
import logging
import math
import os
import shutil
import struct
import time
import zlib
from collections import deque
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import soundfile

from detector.core.band import UPCALL_BAND_HZ
from detector.core.durable import make_directory, sync_directory, sync_file
from detector.outputs.metrics import Metrics
from detector.outputs.sinks import HoldsNothing, Record, detection_fields, utc_text
from detector.stream.blocks import StreamInfo
from detector.stream.events import Detection

log = logging.getLogger("whaled.evidence")
SPECTROGRAM_SECONDS = 0.128  # STFT frame of the review spectrogram
SPECTROGRAM_OVERLAP = 8  # frames per STFT length
SPECTROGRAM_MAX_HZ = 500.0  # upcalls live at 50-250 Hz; show up to this
SPECTROGRAM_BLACK_BELOW_MEDIAN_DB = 0.0  # black: the clip's median bin (the noise) less this
SPECTROGRAM_RANGE_DB = 30.0  # white: this far above black (a loud tone cannot darken a call)
MARK_ROWS = 4  # rows of the detection bar at the top of the PNG
SECONDS_PER_DAY = 86_400
RESCAN_SECONDS = 3600.0  # how often retention walks the folder for what others changed
KEEP_MARGIN_SECONDS = 5.0  # audio held beyond the longest a detection can need
SUFFIXES = (".wav", ".png", ".json")
TMP_SUFFIX = ".tmp"  # a clip's files are written under this suffix, then renamed


@dataclass(frozen=True)
class Clip:
    """One clip's files on disk, for retention."""

    mtime: float  # Unix seconds, of its oldest file
    bytes: int  # of all its files
    files: tuple[Path, ...]


class EvidenceRecorder(HoldsNothing):
    name = "evidence"

    def __init__(self, folder: Path, info: StreamInfo, metrics: Metrics, *,
                 padding_seconds: float, max_event_seconds: float, delay_seconds: float,
                 max_bytes: int, max_age_days: float) -> None:
        """``delay_seconds``: how long a detection can be reported after its last sample
        arrived (a backlogged batch;
        :func:`detector.stream.detector_stage.longest_emission_delay_seconds`).
        The audio held covers it, so a late detection still finds its samples."""
        self.folder, self.info, self.metrics = Path(folder), info, metrics
        self.padding_seconds = padding_seconds
        self.max_bytes, self.max_age_seconds = max_bytes, max_age_days * SECONDS_PER_DAY
        keep_seconds = max_event_seconds + 2 * padding_seconds + delay_seconds + KEEP_MARGIN_SECONDS
        self._keep_samples = round(keep_seconds * info.rate_hz)
        self._blocks: deque[tuple[int, np.ndarray]] = deque()
        self._waiting: list[Detection] = []
        self._clips: dict[Path, Clip] = {}  # on disk, oldest first (see enforce_limits)
        self._bytes = 0
        self._scanned_monotonic = -math.inf

    def write(self, record: Record) -> None:
        if isinstance(record, Detection):
            self._waiting.append(record)
            self._save_ready(final=False)

    def push(self, first_sample: int, samples: np.ndarray) -> None:
        self._blocks.append((first_sample, samples))
        end = first_sample + len(samples)
        while self._blocks and self._blocks[0][0] + len(self._blocks[0][1]) < \
                end - self._keep_samples:
            self._blocks.popleft()
        if self._waiting:
            self._save_ready(final=False)

    def flush(self) -> None:
        """At shutdown: save what is waiting with the audio there is."""
        self._save_ready(final=True)

    def close(self) -> None:
        """The end of the stream: every waiting clip saved (or counted lost), audio let go."""
        self.flush()
        self._blocks.clear()

    def _span(self, d: Detection) -> tuple[int, int]:
        rate = self.info.rate_hz
        return (max(0, round((d.start_seconds - self.padding_seconds) * rate)),
                round((d.end_seconds + self.padding_seconds) * rate))

    def _save_ready(self, final: bool) -> None:
        latest = self._blocks[-1][0] + len(self._blocks[-1][1]) if self._blocks else 0
        oldest = self._blocks[0][0] if self._blocks else 0
        still: list[Detection] = []
        for d in self._waiting:
            first, end = self._span(d)
            if end > latest and not final:
                still.append(d)
                continue
            try:
                self._save(d, first, min(end, latest))
            except OSError as error:
                self.metrics.sink_errors.labels(self.name).inc()
                if final or first < oldest:
                    log.error("evidence clip for %s lost: %s", utc_text(d.peak_utc), error)
                else:
                    log.error("cannot save evidence clip (%s); retrying", error)
                    still.append(d)
        self._waiting = still

    def _audio(self, column: int, first: int, end: int) -> np.ndarray:
        out = np.zeros(max(end - first, 0), np.float32)  # audio lost in a gap stays silent
        for start, samples in self._blocks:
            lo, hi = max(first, start), min(end, start + len(samples))
            if lo < hi:
                out[lo - first:hi - first] = samples[lo - start:hi - start, column]
        return out

    def _save(self, d: Detection, first: int, end: int) -> None:
        """The three files, each written as ``*.tmp`` and renamed only when all are whole."""
        audio = self._audio(self.info.channels.index(d.channel), first, end)
        stamp = d.peak_utc.strftime("%Y%m%dT%H%M%S") + f"{d.peak_utc.microsecond // 1000:03d}Z"
        folder = self.folder / d.label
        make_directory(folder)
        stem = folder / f"{stamp}_ch{d.channel}"
        rate = self.info.rate_hz
        mark = ((d.start_seconds * rate - first) / max(len(audio), 1),
                (d.end_seconds * rate - first) / max(len(audio), 1))
        meta = {**detection_fields(d), "clip_start_utc": utc_text(self.info.utc_at(first)),
                "clip_seconds": round(len(audio) / rate, 3), "rate_hz": rate,
                "padding_seconds": self.padding_seconds}
        final = [stem.with_suffix(suffix) for suffix in SUFFIXES]
        temporary = [path.with_name(path.name + TMP_SUFFIX) for path in final]
        try:
            soundfile.write(str(temporary[0]), audio, rate, subtype="PCM_16", format="WAV")
            temporary[1].write_bytes(spectrogram_png(audio, rate, mark))
            temporary[2].write_text(json.dumps(meta, indent=1) + "\n")
            for tmp in temporary:
                sync_file(tmp)
            for tmp, path in zip(temporary, final, strict=True):
                os.replace(tmp, path)
            sync_directory(folder)
        except (OSError, soundfile.SoundFileError) as error:  # libsndfile raises RuntimeError
            for path in temporary + final:  # never a torn clip in a folder train reads
                path.unlink(missing_ok=True)
            if isinstance(error, OSError):
                raise
            free = shutil.disk_usage(folder).free
            raise OSError(f"{temporary[0]}: libsndfile: {error} ({free} bytes free)") from error
        self.metrics.evidence_clips.inc()
        log.info("evidence clip %s", stem.with_suffix(".wav"))
        self._count_clip(stem, final)

    def remove_leftovers(self) -> None:
        """``*.tmp`` files a crash left behind (at start-up, before any clip is written)."""
        for path in self.folder.rglob("*" + TMP_SUFFIX):
            path.unlink(missing_ok=True)

    def enforce_limits(self) -> None:
        """Walk the folder, then remove the oldest clips beyond the size or the age limit.

        At start-up and every ``RESCAN_SECONDS`` (a reviewer moves and deletes clips); between
        walks the recorder counts what it writes itself, so a clip costs no walk of the tree.
        """
        groups: dict[Path, list[Path]] = {}
        for path in self.folder.rglob("*"):
            if path.suffix in SUFFIXES and path.is_file():
                groups.setdefault(path.with_suffix(""), []).append(path)
        clips = []
        for stem, files in groups.items():
            try:
                stats = [p.stat() for p in files]
            except FileNotFoundError:
                continue  # moved away while we looked
            clips.append((stem, Clip(min(st.st_mtime for st in stats),
                                     sum(st.st_size for st in stats), tuple(files))))
        self._clips = dict(sorted(clips, key=lambda item: item[1].mtime))
        self._bytes = sum(clip.bytes for clip in self._clips.values())
        self._scanned_monotonic = time.monotonic()
        self._trim()

    def _count_clip(self, stem: Path, files: list[Path]) -> None:
        """A clip just written joins the index as the newest."""
        old = self._clips.pop(stem, None)
        if old is not None:
            self._bytes -= old.bytes
        clip = Clip(time.time(), sum(p.stat().st_size for p in files), tuple(files))
        self._clips[stem] = clip
        self._bytes += clip.bytes
        if time.monotonic() - self._scanned_monotonic >= RESCAN_SECONDS:
            self.enforce_limits()
        else:
            self._trim()

    def _trim(self) -> None:
        now = time.time()
        while self._clips:
            stem, clip = next(iter(self._clips.items()))
            too_old = self.max_age_seconds and now - clip.mtime > self.max_age_seconds
            if not too_old and self._bytes <= self.max_bytes:
                break
            for path in clip.files:
                path.unlink(missing_ok=True)
            del self._clips[stem]
            self._bytes -= clip.bytes
            self.metrics.evidence_removed.inc()
        self.metrics.evidence_bytes.set(self._bytes)


# A 3 x 5 pixel font for the axis labels (stdlib PNG, no matplotlib in the daemon).
GLYPHS = {
    "0": ("111", "101", "101", "101", "111"), "1": ("010", "110", "010", "010", "111"),
    "2": ("111", "001", "111", "100", "111"), "3": ("111", "001", "111", "001", "111"),
    "4": ("101", "101", "111", "001", "001"), "5": ("111", "100", "111", "001", "111"),
    "6": ("111", "100", "111", "101", "111"), "7": ("111", "001", "010", "010", "010"),
    "8": ("111", "101", "111", "101", "111"), "9": ("111", "101", "111", "001", "111"),
    "H": ("101", "101", "111", "101", "101"), "z": ("000", "111", "001", "010", "111"),
    "s": ("011", "100", "010", "001", "110"), " ": ("000",) * 5,
}
FONT_SCALE = 2  # glyph pixels per font pixel: 6 x 10 px characters
ROW_SCALE = 3  # image rows per frequency bin, so 0-500 Hz is ~200 px tall
LEFT_MARGIN = 44  # px, frequency labels
BOTTOM_MARGIN = 18  # px, time labels
FREQUENCY_TICKS_HZ = (0, 100, 200, 300, 400, 500)
AXIS_GREY = 170  # labels and ticks on the black margins


def _text(canvas: np.ndarray, text: str, row: int, col: int) -> None:
    """Draw ``text`` with its top-left corner at (row, col), clipped to the canvas."""
    for i, char in enumerate(text):
        glyph = np.array([[c == "1" for c in line] for line in GLYPHS[char]])
        big = np.kron(glyph, np.ones((FONT_SCALE, FONT_SCALE), bool))
        r0, c0 = row, col + i * 4 * FONT_SCALE
        region = canvas[r0:r0 + big.shape[0], c0:c0 + big.shape[1]]
        region[big[:region.shape[0], :region.shape[1]]] = 255


def spectrogram_png(audio: np.ndarray, rate_hz: int, mark: tuple[float, float]) -> bytes:
    """A greyscale log spectrogram, 0-500 Hz, low frequencies at the bottom, with a frequency
    axis (Hz, the 50-250 Hz call band bracketed), a time axis (seconds from the clip's start)
    and the detection (``mark``, 0-1 of the clip's time) as a bar along the top."""
    n_fft = 1 << max(4, round(np.log2(SPECTROGRAM_SECONDS * rate_hz)))
    hop = n_fft // SPECTROGRAM_OVERLAP
    padded = np.pad(audio.astype(np.float64), (0, max(0, n_fft - len(audio))))
    n_frames = 1 + (len(padded) - n_fft) // hop
    frames = np.lib.stride_tricks.sliding_window_view(padded, n_fft)[::hop][:n_frames]
    power = np.abs(np.fft.rfft(frames * np.hanning(n_fft), axis=1)) ** 2
    top_hz = min(SPECTROGRAM_MAX_HZ, rate_hz / 2)
    bins = max(1, int(top_hz / rate_hz * n_fft) + 1)
    db = 10 * np.log10(power[:, :bins].T + 1e-20)
    black = np.median(db) - SPECTROGRAM_BLACK_BELOW_MEDIAN_DB
    grey = np.clip((db - black) / SPECTROGRAM_RANGE_DB, 0, 1)
    pixels = np.repeat((grey[::-1] * 255).astype(np.uint8), ROW_SCALE, axis=0)
    height, width = pixels.shape
    hz_per_row = rate_hz / n_fft / ROW_SCALE
    canvas = np.zeros((MARK_ROWS + 2 + height + BOTTOM_MARGIN, LEFT_MARGIN + width), np.uint8)
    lo, hi = (int(np.clip(m, 0, 1) * width) for m in mark)
    canvas[:MARK_ROWS, LEFT_MARGIN + lo:LEFT_MARGIN + max(hi, lo + 1)] = 255
    top = MARK_ROWS + 2
    canvas[top:top + height, LEFT_MARGIN:] = pixels

    def row_of(hz: float) -> int:
        return top + height - 1 - round(hz / hz_per_row - 0.5 * (ROW_SCALE - 1))

    for hz in FREQUENCY_TICKS_HZ:
        if hz <= top_hz:
            row = int(np.clip(row_of(hz), top, top + height - 1))
            canvas[row, LEFT_MARGIN - 5:LEFT_MARGIN] = AXIS_GREY
            label = str(hz)
            label_row = int(np.clip(row - 5, 0, canvas.shape[0] - 5 * FONT_SCALE))
            _text(canvas, label, label_row, LEFT_MARGIN - 8 - len(label) * 4 * FONT_SCALE)
    band = [int(np.clip(row_of(hz), top, top + height - 1)) for hz in UPCALL_BAND_HZ]
    canvas[band[1]:band[0] + 1, LEFT_MARGIN - 3:LEFT_MARGIN - 1] = 255  # the upcall band
    _text(canvas, "Hz", canvas.shape[0] - 5 * FONT_SCALE - 2, 2)
    seconds = len(audio) / rate_hz
    frames_per_second = rate_hz / hop
    step = max(1, int(np.ceil(seconds / 12)))  # at most ~12 labels
    for t in range(0, int(seconds) + 1, step):
        col = LEFT_MARGIN + round(t * frames_per_second)
        if col >= canvas.shape[1]:
            break
        canvas[top + height:top + height + 3, col] = AXIS_GREY
        label = f"{t}s"
        _text(canvas, label, top + height + 5, min(col, canvas.shape[1] - len(label) * 8))
    return png_grey(canvas)


def png_grey(pixels: np.ndarray) -> bytes:
    """An 8-bit greyscale PNG from a (height, width) uint8 array: stdlib only."""
    height, width = pixels.shape

    def chunk(tag: bytes, data: bytes) -> bytes:
        return (struct.pack(">I", len(data)) + tag + data
                + struct.pack(">I", zlib.crc32(tag + data) & 0xFFFFFFFF))

    raw = b"".join(b"\x00" + row.tobytes() for row in np.ascontiguousarray(pixels))
    return (b"\x89PNG\r\n\x1a\n" + chunk(b"IHDR", struct.pack(">IIBBBBB", width, height, 8, 0,
                                                            0, 0, 0))
            + chunk(b"IDAT", zlib.compress(raw)) + chunk(b"IEND", b""))
