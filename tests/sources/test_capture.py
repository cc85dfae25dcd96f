"""PortAudio capture: the sample clock on fakes, then real capture.

The real tests record from a private PulseAudio null sink (``pulse.py``) through PortAudio's
ALSA ``pulse`` device while ``paplay`` plays a WAV written here, and find that file inside
the captured stream sample for sample.
"""

from __future__ import annotations

import itertools
import time
from collections.abc import Callable
from datetime import UTC, datetime
from pathlib import Path

import numpy as np
import pytest
import soundfile
from pulse import PulseServer, needs_pulseaudio, private_pulse

from detector.sources.capture import (
    REASON_DEVICE_LOST,
    REASON_OVERFLOW,
    REASON_QUEUE_FULL,
    PortAudioSource,
    SampleClock,
)
from detector.sources.replay import SourceError
from detector.stream.blocks import Block, EndOfStream, Gap

FULL_SCALE = 32768  # int16 full scale: float32 capture * FULL_SCALE gives back the s16 samples
PLAY_SECONDS = 1.5
SETTLE_SECONDS = 0.4  # capture kept running after paplay exits, to catch the file's tail
READ_TIMEOUT_SECONDS = 0.2
ORIGIN_TOLERANCE_SECONDS = 0.5  # file's position in the stream vs the wall clock at paplay



def pulse(test: Callable[..., None]) -> Callable[..., None]:
    """A real capture test: marked ``pulse``, skipped only when pulseaudio is missing."""
    return pytest.mark.pulse(needs_pulseaudio(test))


# --- the sample clock, on fake times --------------------------------------------------------

RATE_HZ = 2000
BLOCK = 200  # frames: 0.1 s at 2 kHz


def test_clock_counts_samples_not_seconds() -> None:
    clock = SampleClock(RATE_HZ)
    late = 0.7  # callbacks delayed by the system never move an index
    firsts = [clock.place(BLOCK, 100.0 + i * 0.1 + (late if i == 3 else 0)) for i in range(5)]
    assert firsts == [0, 200, 400, 600, 800]
    assert clock.origin_monotonic == pytest.approx(100.0 - 0.1)
    assert clock.pending == []


def test_overflow_reanchors_to_the_clock() -> None:
    clock = SampleClock(RATE_HZ)
    clock.place(BLOCK, 10.1)  # origin 10.0
    clock.place(BLOCK, 10.2)
    # 0.5 s of audio never delivered: this block ends at 0.8 s by the clock
    first = clock.place(BLOCK, 10.8, REASON_OVERFLOW)
    assert clock.pending == [Gap(400, 1400, REASON_OVERFLOW)]
    assert first == 1400
    # an overflow the clock can't see (jitter) leaves the index alone
    clock.pending.clear()
    assert clock.place(BLOCK, 10.85, REASON_OVERFLOW) == 1600
    assert clock.pending == []


STALL_TIMEOUT_SECONDS = 2.0  # below the 5 s capture once used on its own


def test_callbacks_silent_then_back_are_a_stall_gap_on_the_clock() -> None:
    clock = SampleClock(RATE_HZ, stall_timeout_seconds=STALL_TIMEOUT_SECONDS)
    clock.place(BLOCK, 10.1)  # origin 10.0
    clock.place(BLOCK, 10.2)
    # callbacks stop for longer than the configured stall timeout, then resume on their own:
    # the block arriving at 13.2 s ends at 3.2 s of stream time, not at 0.3 s
    back = 10.2 + STALL_TIMEOUT_SECONDS + 1.0
    first = clock.place(BLOCK, back)
    end_by_clock = round((back - 10.0) * RATE_HZ)
    assert first == end_by_clock - BLOCK
    assert clock.pending == [Gap(400, end_by_clock - BLOCK, "stall")]
    # a shorter pause is buffering jitter: indexes keep counting samples
    clock.pending.clear()
    assert clock.place(BLOCK, back + STALL_TIMEOUT_SECONDS - 0.5) == end_by_clock
    assert clock.pending == []


def test_a_stall_timeout_of_zero_never_reanchors() -> None:
    clock = SampleClock(RATE_HZ, stall_timeout_seconds=0.0)
    clock.place(BLOCK, 10.1)
    assert clock.place(BLOCK, 100.0) == BLOCK
    assert clock.pending == []


def test_queue_full_gaps_merge() -> None:
    clock = SampleClock(RATE_HZ)
    for first in (0, 200, 400):
        clock.add_gap(first, first + BLOCK, REASON_QUEUE_FULL)
    clock.add_gap(600, 900, REASON_DEVICE_LOST)
    assert clock.pending == [Gap(0, 600, REASON_QUEUE_FULL), Gap(600, 900, REASON_DEVICE_LOST)]


# --- real capture from a private PulseAudio server ------------------------------------------

def write_noise(path: Path, rate_hz: int, channels: int, seed: int) -> np.ndarray:
    """Random s16 samples (never matched by chance, never silent) as a WAV; returns them."""
    rng = np.random.default_rng(seed)
    frames = round(PLAY_SECONDS * rate_hz)
    data = rng.integers(-20000, 20000, (frames, channels), dtype=np.int16)
    data[data == 0] = 1
    soundfile.write(path, data, rate_hz, subtype="PCM_16")
    return data


def read_for(source: PortAudioSource, seconds: float) -> list[Block | Gap | EndOfStream]:
    items: list[Block | Gap | EndOfStream] = []
    deadline = time.monotonic() + seconds
    while time.monotonic() < deadline:
        items += source.read(READ_TIMEOUT_SECONDS)
    return items


def play_and_capture(server: PulseServer, source: PortAudioSource,
                     wav: Path) -> tuple[list[Block | Gap | EndOfStream], float]:
    """Everything captured while ``wav`` played, and the wall-clock time paplay started."""
    played_at = time.time()
    player = server.play(wav)
    items: list[Block | Gap | EndOfStream] = []
    while player.poll() is None:
        items += source.read(READ_TIMEOUT_SECONDS)
    assert player.returncode == 0
    return items + read_for(source, SETTLE_SECONDS), played_at


def as_int16(items: list[Block | Gap | EndOfStream]) -> np.ndarray:
    blocks = [item for item in items if isinstance(item, Block)]
    for before, after in itertools.pairwise(blocks):
        assert after.first_sample == before.end_sample, "capture is not contiguous"
    assert not [item for item in items if isinstance(item, Gap)]
    samples = np.concatenate([b.samples for b in blocks])
    scaled = samples * FULL_SCALE
    assert np.array_equal(scaled, np.round(scaled)), "capture is not s16 through float32"
    return scaled.astype(np.int16)


def find(captured: np.ndarray, wanted: np.ndarray) -> int:
    """Where ``wanted`` starts in ``captured`` (rows), by its first 32 samples."""
    head = wanted[:32]
    for start in np.flatnonzero(np.all(captured == head[0], axis=1)):
        if np.array_equal(captured[start:start + len(head)], head):
            return int(start)
    raise AssertionError("the played file was not found in the captured stream")


@pulse
def test_capture_is_bit_exact_at_2_khz_with_a_clock_origin(tmp_path: Path) -> None:
    wav = tmp_path / "noise.wav"
    played = write_noise(wav, 2000, 1, seed=1)
    with private_pulse(rate_hz=2000, channels=1) as server:
        source = PortAudioSource("pulse", rate_hz=2000, block_seconds=0.1)
        try:
            assert source.info.rate_hz == 2000 and source.info.channels == (1,)
            assert source.info.origin_from == "clock"
            assert abs((datetime.now(UTC) - source.info.origin_utc).total_seconds()) < 1.0
            items, played_at = play_and_capture(server, source, wav)
        finally:
            source.close()
    captured = as_int16(items)
    assert captured.shape[1] == 1
    start = find(captured, played)
    assert np.array_equal(captured[start:start + len(played)], played)
    assert not captured[start + len(played):].any()  # the monitor gives silence after the file
    first = next(item for item in items if isinstance(item, Block)).first_sample
    assert first == 0
    heard_at = source.info.utc_at(start).timestamp()
    assert abs(heard_at - played_at) < ORIGIN_TOLERANCE_SECONDS, heard_at - played_at
    print(f"file heard at {heard_at - played_at:+.4f} s from paplay's start; "
          f"stream-minus-clock skew {source.counters().skew_seconds or 0.0:+.4f} s")
    assert source.callbacks >= len([i for i in items if isinstance(i, Block)])
    assert source.blocks_dropped == source.overflows == source.callback_errors == 0


@pulse
def test_capture_at_48_khz(tmp_path: Path) -> None:
    wav = tmp_path / "noise48k.wav"
    played = write_noise(wav, 48000, 1, seed=2)
    with private_pulse(rate_hz=48000, channels=1) as server:
        source = PortAudioSource("pulse", rate_hz=48000, block_seconds=0.1)
        try:
            assert source.info.rate_hz == 48000 and source.block_frames == 4800
            items, _ = play_and_capture(server, source, wav)
        finally:
            source.close()
    captured = as_int16(items)
    start = find(captured, played)
    assert np.array_equal(captured[start:start + len(played)], played)


@pulse
def test_channel_selection_on_a_two_channel_sink(tmp_path: Path) -> None:
    wav = tmp_path / "stereo.wav"
    played = write_noise(wav, 2000, 2, seed=3)
    with private_pulse(rate_hz=2000, channels=2) as server:
        both = PortAudioSource("pulse", rate_hz=2000, channels=(2, 1))
        right = PortAudioSource("pulse", rate_hz=2000, channels=(2,))
        try:
            assert both.info.channels == (2, 1) and right.info.channels == (2,)
            items, _ = play_and_capture(server, both, wav)
            right_items = right.read(READ_TIMEOUT_SECONDS)  # it heard the same file meanwhile
        finally:
            both.close()
            right.close()
    captured = as_int16(items)
    assert captured.shape[1] == 2
    start = find(captured[:, [1]], played[:, [0]])  # column 2 carries channel 1
    assert np.array_equal(captured[start:start + len(played)], played[:, ::-1])
    only_right = as_int16(right_items)
    assert only_right.shape[1] == 1
    start = find(only_right, played[:, [1]])
    assert np.array_equal(only_right[start:start + len(played)], played[:, [1]])


@pulse
def test_full_queue_drops_blocks_as_a_gap(tmp_path: Path) -> None:
    with private_pulse(rate_hz=2000, channels=1):
        source = PortAudioSource("pulse", rate_hz=2000, block_seconds=0.1,
                               queue_seconds=0.2)  # room for 2 blocks
        try:
            time.sleep(1.0)  # a consumer that fell behind
            items = read_for(source, 0.5)
        finally:
            source.close()
    gaps = [item for item in items if isinstance(item, Gap)]
    assert gaps and {gap.reason for gap in gaps} == {REASON_QUEUE_FULL}
    assert sum(g.samples for g in gaps) == source.samples_dropped == source.blocks_dropped * 200
    assert source.blocks_dropped >= 5
    position = 0
    for item in items:  # blocks and the gap tile the stream with no hole or overlap
        assert isinstance(item, Block | Gap) and item.first_sample == position
        position = item.end_sample


@pulse
def test_start_up_errors_are_one_line() -> None:
    with private_pulse(rate_hz=2000, channels=1):
        with pytest.raises(SourceError) as unknown:
            PortAudioSource("pulze")
        with pytest.raises(SourceError) as channel:
            PortAudioSource("pulse", channels=(33,))  # the pulse device offers 32
        with pytest.raises(SourceError) as rate:
            PortAudioSource("pulse", rate_hz=1000)
    assert "no input device matches 'pulze'" in str(unknown.value)
    assert "] pulse" in str(unknown.value)
    assert "channel 33 asked for" in str(channel.value)
    assert "1000 Hz" in str(rate.value)
    for caught in (unknown, channel, rate):
        assert "\n" not in str(caught.value)
