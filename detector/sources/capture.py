"""Live audio from a sound card through PortAudio (sounddevice), in callback mode.

The PortAudio callback copies the selected channels, stamps the block with the index of its
first sample, puts it on a bounded queue without blocking, and counts. It never raises: an
exception there silently stops PortAudio capture. :meth:`PortAudioSource.read` drains the
queue on the consumer's thread.

Every time is ``origin + index / rate``. The origin is the wall clock at the first callback
minus that block's duration. Lost audio advances the index and is said with a :class:`Gap`
before the next block: a block dropped on a full queue ("queue_full") moves it by its own
length; an input overflow or a lost-and-reopened device ("overflow", "device_lost") re-anchors
it to the clock, so the samples PortAudio never delivered are still counted as time.

``sounddevice`` is imported inside functions: PortAudio lists the devices when it initialises,
so importing this module does nothing, and the environment (a PulseAudio server, say) may be
set up first.
"""

from __future__ import annotations

import logging
import math
import queue
import threading
import time
from collections.abc import Sequence
from datetime import UTC, datetime
from typing import Any

import numpy as np

from detector.core.rates import CAPTURE_RATES_HZ, in_range, range_text
from detector.sources.devices import list_input_devices, match_device
from detector.sources.reopen import LiveCounters
from detector.sources.replay import SourceError, one_line
from detector.stream.blocks import Block, ClockStep, Gap, Item, StreamInfo, frames_per_block

log = logging.getLogger("whaled.capture")

MIN_QUEUE_BLOCKS = 2  # the capture queue holds at least this many blocks
FIRST_AUDIO_TIMEOUT_SECONDS = 5.0  # a device that opens but sends nothing fails at start-up

REASON_QUEUE_FULL = "queue_full"
REASON_OVERFLOW = "overflow"
REASON_DEVICE_LOST = "device_lost"
REASON_STALL = "stall"
REASON_DRIFT = "drift"
CLOCK_PERIOD_SECONDS = 10.0  # the card's clock is compared with the system's over this long
CLOCK_STEP_SECONDS = 0.1  # a drift this large moves the sample-to-UTC mapping (a clock record)
MAX_CAPTURE_DELAY_SECONDS = 10.0  # a larger ADC-to-callback delay is a host API's bad report


class SampleClock:
    """Stamps captured blocks with sample indexes and collects the gaps between them.

    Runs on the PortAudio callback thread only. ``now`` is ``time.monotonic()``: the wall
    clock is read once, for the origin, so a clock step (NTP) never moves a sample index.

    Callbacks silent for more than ``stall_timeout_seconds`` (the daemon's one stall
    threshold; 0: never) and then back: the audio the clock says is missing was never
    captured, so the block is re-anchored to the clock behind a "stall" gap. Shorter pauses,
    and pauses after which the missing audio arrives after all, keep counting samples.
    """

    def __init__(self, rate_hz: int, stall_timeout_seconds: float = 0.0) -> None:
        self.rate_hz = rate_hz
        self.stall_timeout_seconds = stall_timeout_seconds
        self.next_index = 0
        self.origin_monotonic: float | None = None
        self.last_monotonic: float | None = None  # capture time of the previous block's end
        self.pending: list[Gap | ClockStep] = []  # not yet handed on with a block
        # Sample index i was captured at origin + i / rate - correction (clock seconds).
        self.correction_seconds = 0.0
        self.skew_seconds = 0.0  # stream minus clock time, corrections applied: last period's
        self._period_start: float | None = None
        self._period_skew = -math.inf  # the period's largest: the least-delayed callback's

    def place(self, frames: int, now_monotonic: float, reanchor: str | None = None) -> int:
        """The index of a block of ``frames`` whose last sample was captured at ``now``.

        After a loss (``reanchor``) the block is placed by the clock: behind a gap when
        audio is missing, or, when the stream is ahead of the clock (a fast card), with a
        :class:`ClockStep`. Otherwise the drift is measured, and stepped out once a period's
        estimate reaches ``CLOCK_STEP_SECONDS`` either way.
        """
        if self.last_monotonic is not None and reanchor is None and \
                self.stall_timeout_seconds and \
                now_monotonic - self.last_monotonic > self.stall_timeout_seconds:
            reanchor = REASON_STALL
        self.last_monotonic = now_monotonic
        if self.origin_monotonic is None:
            self.origin_monotonic = now_monotonic - frames / self.rate_hz
        else:
            clock_end = round((now_monotonic - self.origin_monotonic + self.correction_seconds)
                              * self.rate_hz)
            behind = clock_end - (self.next_index + frames)  # samples; < 0: stream ahead
            if reanchor is not None:
                if behind > 0:
                    self.add_gap(self.next_index, self.next_index + behind, reanchor)
                    self.next_index += behind
                elif -behind / self.rate_hz >= CLOCK_STEP_SECONDS:  # less: callback jitter
                    self.step(-behind / self.rate_hz, reanchor)
                self._period_start, self._period_skew = None, -math.inf
            else:
                self._track_drift(now_monotonic, -behind / self.rate_hz)
        first = self.next_index
        self.next_index += frames
        return first

    def _track_drift(self, now_monotonic: float, skew_seconds: float) -> None:
        """Late callbacks only lower the skew, so a period's largest is its true value."""
        if self._period_start is None:
            self._period_start = now_monotonic
        self._period_skew = max(self._period_skew, skew_seconds)
        if now_monotonic - self._period_start < CLOCK_PERIOD_SECONDS:
            return
        self.skew_seconds = self._period_skew
        self._period_start, self._period_skew = now_monotonic, -math.inf
        if abs(self.skew_seconds) >= CLOCK_STEP_SECONDS:
            self.step(self.skew_seconds, REASON_DRIFT)

    def step(self, seconds: float, reason: str) -> None:
        """Move the mapping from the next block on: times ``seconds`` earlier than before."""
        self.correction_seconds += seconds
        self.pending.append(ClockStep(self.next_index, seconds, self.correction_seconds,
                                      reason))

    def add_gap(self, first_sample: int, end_sample: int, reason: str) -> None:
        last = self.pending[-1] if self.pending else None
        if isinstance(last, Gap) and last.reason == reason and last.end_sample == first_sample:
            self.pending[-1] = Gap(last.first_sample, end_sample, reason)
        else:
            self.pending.append(Gap(first_sample, end_sample, reason))


def capture_delay_seconds(time_info: Any, frames: int, rate_hz: int,
                          input_latency_seconds: float) -> float:
    """How long before the callback the block's LAST sample was captured.

    PortAudio's ADC time of the block's first sample, on the stream's clock, where the host
    API reports one; else its input latency (taken as the first sample's delay); else 0.
    """
    block_seconds = frames / rate_hz
    try:
        adc = float(time_info.inputBufferAdcTime)
        current = float(time_info.currentTime)
    except (AttributeError, TypeError, ValueError):
        adc = current = 0.0
    if adc > 0 and current > 0 and 0 <= current - adc <= MAX_CAPTURE_DELAY_SECONDS:
        return max(0.0, current - adc - block_seconds)
    if 0 < input_latency_seconds <= MAX_CAPTURE_DELAY_SECONDS:
        return max(0.0, input_latency_seconds - block_seconds)
    return 0.0


class PortAudioSource:
    """A PortAudio input device as a :class:`~detector.sources.reopen.LiveSource`.

    Counters (plain ints, written only by the callback thread): ``blocks_dropped`` and
    ``overflows`` for the metrics (:meth:`counters`); ``callbacks``, ``samples_dropped`` and
    ``callback_errors`` for tests and a debugger.
    ``lost`` is True from a device loss until :meth:`reopen` succeeds.
    ``stall_timeout_seconds`` is the daemon's one configured stall timeout (0: none).
    """

    def __init__(self, device: str, *, rate_hz: int = 0, channels: Sequence[int] = (),
                 block_seconds: float = 0.1, queue_seconds: float = 60.0,
                 stall_timeout_seconds: float = 0.0) -> None:
        self.query = device
        self.callbacks = 0
        self.blocks_dropped = 0
        self.samples_dropped = 0
        self.overflows = 0
        self.callback_errors = 0
        self.lost = False
        self._closing = False
        self._reanchor: str | None = None
        self._stream: Any = None
        self._first_audio = threading.Event()

        self.device = match_device(device, list_input_devices())
        rate = rate_hz or self.device.default_rate_hz
        if not in_range(rate, CAPTURE_RATES_HZ):
            raise SourceError(f"{rate} Hz asked of {self.device.name!r}; whaled records "
                              f"{range_text(CAPTURE_RATES_HZ)} Hz (set --rate)")
        self._channels = tuple(channels) or (1,)
        bad = [c for c in self._channels if not 1 <= c <= self.device.max_input_channels]
        if bad:
            raise SourceError(f"channel {bad[0]} asked for, but {self.device.name!r} has "
                              f"{self.device.max_input_channels} input channel(s)")
        self._columns = [c - 1 for c in self._channels]
        self._open_channels = max(self._channels)
        self.rate_hz = rate
        self.block_frames = frames_per_block(block_seconds, rate)
        self._queue: queue.Queue[tuple[list[Gap | ClockStep], Block]] = queue.Queue(
            maxsize=max(MIN_QUEUE_BLOCKS, math.ceil(queue_seconds / block_seconds)))
        self._clock = SampleClock(rate, stall_timeout_seconds)
        self._origin_wall = 0.0  # time.time() when sample 0 was captured
        self._input_latency = 0.0  # PortAudio's estimate, seconds; used without ADC times

        self._open()
        if not self._first_audio.wait(max(FIRST_AUDIO_TIMEOUT_SECONDS, 3 * block_seconds)):
            self._abort()
            raise SourceError(f"input device {self.device.name!r} opened but delivered no "
                              f"audio within {FIRST_AUDIO_TIMEOUT_SECONDS:g} s")
        origin = datetime.fromtimestamp(self._origin_wall, UTC)
        self.info = StreamInfo(rate, self._channels, origin, "clock",
                               f"device:{self.device.name}")

    def _open(self) -> None:
        import sounddevice

        kind = {"device": self.device.index, "channels": self._open_channels,
                "samplerate": self.rate_hz, "dtype": "float32"}
        try:
            sounddevice.check_input_settings(**kind)
            self._stream = sounddevice.InputStream(
                blocksize=self.block_frames, callback=self._callback,
                finished_callback=self._finished, **kind)
            self._stream.start()
            self._input_latency = float(getattr(self._stream, "latency", 0.0) or 0.0)
        except (sounddevice.PortAudioError, ValueError) as error:
            self._abort()
            raise SourceError(f"input device {self.device.name!r} refuses "
                              f"{self.rate_hz} Hz x {self._open_channels} channel(s): "
                              f"{one_line(error)}") from None

    def _callback(self, indata: np.ndarray, frames: int, time_info: Any, status: Any) -> None:
        try:
            now = time.monotonic()
            delay = capture_delay_seconds(time_info, frames, self.rate_hz, self._input_latency)
            self.callbacks += 1
            reanchor, self._reanchor = self._reanchor, None
            if status.input_overflow:
                self.overflows += 1
                reanchor = reanchor or REASON_OVERFLOW
            clock = self._clock
            first_callback = clock.origin_monotonic is None
            if first_callback:
                self._origin_wall = time.time() - delay - frames / self.rate_hz
            first = clock.place(frames, now - delay, reanchor)
            block = Block(first, np.array(indata[:, self._columns], dtype=np.float32), now)
            try:
                self._queue.put_nowait((clock.pending, block))
                clock.pending = []
            except queue.Full:
                self.blocks_dropped += 1
                self.samples_dropped += frames
                clock.add_gap(first, first + frames, REASON_QUEUE_FULL)
            if first_callback:
                self._first_audio.set()
        except Exception:  # never let an exception stop PortAudio capture
            self.callback_errors += 1

    def _finished(self) -> None:
        if not self._closing:
            self.lost = True

    def read(self, timeout_seconds: float) -> list[Item]:
        """Gaps and blocks captured since the last read; [] while nothing came or lost."""
        items: list[Item] = []
        try:
            entry = self._queue.get(timeout=max(timeout_seconds, 0.0))
            while True:
                gaps, block = entry
                items.extend(gaps)
                items.append(block)
                entry = self._queue.get_nowait()
        except queue.Empty:
            pass
        return items

    def counters(self) -> LiveCounters:
        return LiveCounters(self.blocks_dropped, self.overflows, self._clock.skew_seconds)

    def reopen(self) -> None:
        """Open the device again after a loss; raises :class:`SourceError` if it can't.

        PortAudio is re-initialised to list devices anew, and the device is matched by the
        same query. The next block is re-anchored to the clock behind a "device_lost" gap.
        The seam for reconnection with backoff: call it until it stops raising.
        """
        import sounddevice

        self._abort()
        sounddevice._terminate()
        sounddevice._initialize()
        device = match_device(self.query, list_input_devices())
        if device.max_input_channels < self._open_channels:
            raise SourceError(f"input device {device.name!r} came back with "
                              f"{device.max_input_channels} input channel(s)")
        self.device = device
        self._reanchor = REASON_DEVICE_LOST
        self._closing = False
        self._open()
        self.lost = False

    def _abort(self) -> None:
        stream, self._stream = self._stream, None
        if stream is None:
            return
        self._closing = True
        try:  # abort, not stop: stop() can hang when no data flows
            stream.abort()
            stream.close()
        except Exception as error:
            log.debug("closing %s: %s", self.device.name, one_line(error))

    def close(self) -> None:
        self._abort()
