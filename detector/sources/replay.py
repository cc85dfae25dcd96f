"""Where audio comes from: recordings replayed as if live, and the simulated hydrophone.

A source is one method wide: ``read(timeout_seconds)`` returns what is available now, a list
of :class:`Block`, :class:`Gap` and finally :class:`EndOfStream`. ``close()`` releases it.
The PortAudio source lives in :mod:`detector.sources.capture`; :class:`ListSource` is the fake that
unit tests and demos drive the pipeline with.
"""

from __future__ import annotations

import json
import logging
import math
import time
from collections.abc import Sequence
from datetime import datetime
from pathlib import Path
from typing import Protocol, TextIO

import numpy as np

from detector.core.band import UPCALL_HIGH_HZ, UPCALL_LOW_HZ
from detector.core.errors import WhaledError
from detector.core.rates import MIN_RECORDING_RATE_HZ
from detector.core.stamps import UNKNOWN_ORIGIN, recording_origin
from detector.sources.synthetic import NOISE_LEVEL_DBFS, SyntheticHydrophone
from detector.stream.blocks import Block, EndOfStream, Item, StreamInfo, utc_now

log = logging.getLogger("whaled.source")

SYNTHETIC_EPOCH_SECONDS = 3600  # the simulated stream is scheduled an hour at a time
SYNTHETIC_TRUTH_FILE = "synthetic_truth.jsonl"  # beside the outputs: the calls placed
RIFF_UNKNOWN_SIZES = (0, 0xFFFFFFFF)  # data sizes a recorder writes before it finalises a file


class SourceError(WhaledError):
    """A source that cannot start; the message is one line for the operator."""


class Source(Protocol):
    info: StreamInfo

    def read(self, timeout_seconds: float) -> list[Item]: ...

    def close(self) -> None: ...


def select_channels(available: int, wanted: Sequence[int]) -> tuple[int, ...]:
    """1-based channel numbers; empty ``wanted`` means all of them."""
    chosen = tuple(wanted) or tuple(range(1, available + 1))
    bad = [c for c in chosen if not 1 <= c <= available]
    if bad:
        raise SourceError(f"channel {bad[0]} asked for, but the input has {available} channel(s)")
    return chosen


class Pacer:
    """Releases stream time at ``speed`` times the wall clock (0: as fast as possible).

    The stream starts at the first read, not when the source is built: a slow start-up (the
    model loading on a busy machine) is not a backlog delivered in a burst.
    """

    def __init__(self, speed: float) -> None:
        self.speed = speed
        self._start: float | None = None

    def wait_until(self, stream_seconds: float, timeout_seconds: float) -> bool:
        """Sleep until ``stream_seconds`` is due; False when the timeout comes first."""
        if self.speed <= 0:
            return True
        if self._start is None:
            self._start = time.monotonic()
        delay = self._start + stream_seconds / self.speed - time.monotonic()
        if delay > timeout_seconds:
            time.sleep(max(timeout_seconds, 0.0))
            return False
        if delay > 0:
            time.sleep(delay)
        return True

    def due_monotonic(self, stream_seconds: float) -> float:
        """When ``stream_seconds`` became due: a block's arrival as a sound card would stamp
        it, however late the consumer reads it (unpaced: now)."""
        if self.speed <= 0 or self._start is None:
            return time.monotonic()
        return self._start + stream_seconds / self.speed


class FileSource:
    """A recording replayed in blocks, paced at ``speed`` times real time (0: unpaced).

    Its start is ``origin``, else the time stamp in its name (:mod:`detector.core.stamps`), else
    unknown: ``origin_from`` is "none" and times count from the file's start (1970-01-01).
    """

    def __init__(self, path: Path, *, block_frames: int, speed: float = 0.0,
                 channels: Sequence[int] = (), origin: datetime | None = None,
                 timestamp_pattern: str = "") -> None:
        import soundfile

        from detector.sources.formats import native_stderr_guard

        self.path = Path(path)
        self._quiet = native_stderr_guard
        try:
            with self._quiet(self.path):
                self._file = soundfile.SoundFile(str(self.path))
        except (RuntimeError, OSError, soundfile.LibsndfileError) as error:
            raise SourceError(f"cannot read {self.path}: {one_line(error)}") from None
        rate = int(self._file.samplerate)
        if rate < MIN_RECORDING_RATE_HZ:
            self._file.close()
            raise SourceError(f"{self.path}: sample rate {rate} Hz cannot hold the "
                              f"{UPCALL_LOW_HZ:.0f}-{UPCALL_HIGH_HZ:.0f} Hz band of an upcall "
                              f"(at least {MIN_RECORDING_RATE_HZ} Hz is needed)")
        self.frames = int(self._file.frames)
        self.declared_frames = declared_wav_frames(self.path) or self.frames  # header's count
        self._columns = [c - 1 for c in select_channels(self._file.channels, channels)]
        stamp = recording_origin(self.path, timestamp_pattern)
        if origin is not None:
            origin_utc, origin_from = origin, "flag"
        elif stamp is not None:
            origin_utc, origin_from = stamp, "file name"
        else:  # never the modification time: recorders set it when the file closes
            origin_utc, origin_from = UNKNOWN_ORIGIN, "none"
        self.info = StreamInfo(rate, tuple(c + 1 for c in self._columns), origin_utc,
                               origin_from, f"file:{self.path.name}", live=speed > 0)
        self._block_frames = block_frames
        self._limit = self._file.frames
        self._position = 0
        self._pacer = Pacer(speed)

    def read(self, timeout_seconds: float) -> list[Item]:
        if self._position >= self._limit:
            return [EndOfStream(self._position)]
        frames = min(self._block_frames, self._limit - self._position)
        if not self._pacer.wait_until((self._position + frames) / self.info.rate_hz,
                                      timeout_seconds):
            return []
        try:
            with self._quiet(self.path):
                data = self._file.read(frames, dtype="float32", always_2d=True)
        except (RuntimeError, OSError) as error:
            log.error("read error in %s at sample %d: %s", self.path, self._position,
                      one_line(error))
            return [EndOfStream(self._position)]
        if len(data) == 0:
            return [EndOfStream(self._position)]
        block = Block(self._position, np.ascontiguousarray(data[:, self._columns]),
                      self._pacer.due_monotonic((self._position + len(data))
                                                / self.info.rate_hz))
        self._position += len(data)
        return [block]

    def close(self) -> None:
        self._file.close()


def declared_wav_frames(path: Path) -> int | None:
    """Frames a WAV header promises (libsndfile quietly counts only what is there); None for
    other formats, or a header that does not say."""
    import struct

    try:
        with path.open("rb") as handle:
            head = handle.read(12)
            if len(head) < 12 or head[:4] not in (b"RIFF", b"RF64") or head[8:12] != b"WAVE":
                return None
            block_align = 0
            while chunk := handle.read(8):
                if len(chunk) < 8:
                    return None
                kind, size = chunk[:4], struct.unpack("<I", chunk[4:])[0]
                if kind == b"fmt ":
                    block_align = struct.unpack("<H", handle.read(16)[12:14])[0]
                    handle.seek(size - 16 + size % 2, 1)
                elif kind == b"data":
                    if size in RIFF_UNKNOWN_SIZES or not block_align or head[:4] == b"RF64":
                        return None
                    return int(size // block_align)
                else:
                    handle.seek(size + size % 2, 1)
    except (OSError, struct.error):
        return None
    return None


class SyntheticSource:
    """The simulated hydrophone as a live device: real-time paced unless ``speed`` says not.

    With ``truth_path``, every upcall is appended there as one JSON line once the stream has
    delivered all of it (a call cut off by the end of the stream is not listed): its channel,
    UTC start and end, seconds since the origin and SNR in dB over the broadband noise RMS.
    ``channels``: how many (1..N), or which 1-based channels; channel K always carries the same
    simulated sea, whichever others are taken with it.
    """

    def __init__(self, *, rate_hz: int, block_frames: int, speed: float = 1.0,
                 channels: int | Sequence[int] = 1, seed: int = 1,
                 origin: datetime | None = None, truth_path: Path | None = None) -> None:
        numbers = (tuple(range(1, channels + 1)) if isinstance(channels, int)
                   else tuple(channels))
        self.info = StreamInfo(rate_hz, numbers, origin or utc_now(),
                               "flag" if origin else "clock", "synthetic")
        self._block_frames = block_frames
        self._seed = seed
        self._position = 0
        self._pacer = Pacer(speed)
        self._epochs: dict[tuple[int, int], SyntheticHydrophone] = {}
        self._truth: TextIO | None = None
        if truth_path is not None:  # held open for the stream's life, closed by close()
            self._truth = open(truth_path, "a", encoding="utf-8")  # noqa: SIM115

    def hydrophone(self, channel: int, epoch: int) -> SyntheticHydrophone:
        key = (channel, epoch)
        if key not in self._epochs:
            self._epochs = {k: v for k, v in self._epochs.items() if k[1] >= epoch - 1}
            phone = SyntheticHydrophone(self.info.rate_hz, SYNTHETIC_EPOCH_SECONDS,
                                        seed=self._seed * 1_000_003 + 7919 * channel + epoch)
            self._epochs[key] = phone
            for call in phone.upcalls:
                at = epoch * SYNTHETIC_EPOCH_SECONDS * self.info.rate_hz + call.start_sample
                log.debug("synthetic upcall on channel %d at %s (%.2f s)", channel + 1,
                          self.info.utc_at(at).isoformat(), len(call.wave) / self.info.rate_hz)
        return self._epochs[key]

    def upcall_times(self, channel: int, until_seconds: float) -> list[tuple[float, float]]:
        """(start, end) seconds since the origin of every upcall placed on ``channel``."""
        rate = self.info.rate_hz
        spans = []
        for epoch in range(int(until_seconds // SYNTHETIC_EPOCH_SECONDS) + 1):
            offset = epoch * SYNTHETIC_EPOCH_SECONDS
            for call in self.hydrophone(channel, epoch).upcalls:
                start = offset + call.start_sample / rate
                if start < until_seconds:
                    spans.append((start, offset + call.end_sample / rate))
        return spans

    def read(self, timeout_seconds: float) -> list[Item]:
        frames = self._block_frames
        if not self._pacer.wait_until((self._position + frames) / self.info.rate_hz,
                                      timeout_seconds):
            return []
        out = np.empty((frames, len(self.info.channels)), np.float32)
        epoch_samples = SYNTHETIC_EPOCH_SECONDS * self.info.rate_hz
        for col, number in enumerate(self.info.channels):
            pos = self._position
            while pos < self._position + frames:
                epoch, offset = divmod(pos, epoch_samples)
                n = min(epoch_samples - offset, self._position + frames - pos)
                chunk = self.hydrophone(number - 1, epoch).chunk(offset, n)
                out[pos - self._position:pos - self._position + n, col] = chunk
                pos += n
        block = Block(self._position, out,
                      self._pacer.due_monotonic((self._position + frames) / self.info.rate_hz))
        if self._truth is not None:
            self._write_truth(self._position, self._position + frames)
        self._position += frames
        return [block]

    def _write_truth(self, first_sample: int, end_sample: int) -> None:
        """The upcalls whose last sample is in [first_sample, end_sample), one line each."""
        assert self._truth is not None
        rate = self.info.rate_hz
        epoch_samples = SYNTHETIC_EPOCH_SECONDS * rate
        noise_rms = 10 ** (NOISE_LEVEL_DBFS / 20)
        lines = []
        for epoch in range(first_sample // epoch_samples, (end_sample - 1) // epoch_samples + 1):
            offset = epoch * epoch_samples
            for channel in (number - 1 for number in self.info.channels):
                for call in self.hydrophone(channel, epoch).upcalls:
                    start, end = offset + call.start_sample, offset + call.end_sample
                    if first_sample < end <= end_sample:
                        lines.append((start, channel, json.dumps({
                            "kind": "upcall", "channel": channel + 1,
                            "start_utc": self.info.utc_at(start).isoformat(),
                            "end_utc": self.info.utc_at(end).isoformat(),
                            "start_seconds": round(start / rate, 6),
                            "end_seconds": round(end / rate, 6),
                            "snr_db": round(20 * math.log10(call.gain / noise_rms), 2)})))
        if lines:
            self._truth.write("".join(line + "\n" for *_, line in sorted(lines)))
            self._truth.flush()

    def close(self) -> None:
        self._epochs.clear()
        if self._truth is not None:
            self._truth.close()
            self._truth = None


class ListSource:
    """Hands out prepared items, a few per read: the in-package fake of the tests, and the
    source of :func:`detector.stream_blocks`."""

    def __init__(self, info: StreamInfo, items: Sequence[Item], per_read: int = 1) -> None:
        self.info = info
        self._items = list(items)
        self._per_read = per_read
        self._end = 0

    def read(self, timeout_seconds: float) -> list[Item]:
        if not self._items:
            return [EndOfStream(self._end)]
        taken, self._items = self._items[:self._per_read], self._items[self._per_read:]
        for item in taken:
            self._end = item.end_sample
        return taken

    def close(self) -> None:
        self._items.clear()


def one_line(error: BaseException) -> str:
    text = str(error).strip()
    return text.splitlines()[0] if text else type(error).__name__
