"""The typed values that travel from a source into the pipeline.

Every time in whaled derives from a sample index: a block carries the index of its first
sample since the stream's origin, so ``time = origin + index / rate``. Lost audio never
shifts that formula: the source advances the index across the loss (re-anchored to the
clock for live capture) and says so with a :class:`Gap`.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import UTC, datetime, timedelta

import numpy as np

SCAN_BLOCK_SECONDS = 8.0  # detect's and evaluate's blocks: large, so per-block Python costs vanish


def frames_per_block(block_seconds: float, rate_hz: int) -> int:
    """The frames a source hands on per block at ``rate_hz``: never fewer than one."""
    return max(1, round(block_seconds * rate_hz))


@dataclass(frozen=True)
class StreamInfo:
    """What a source knows about its stream before the first block arrives."""

    rate_hz: int
    channels: tuple[int, ...]  # device channel numbers (1-based) carried by each column
    origin_utc: datetime  # the UTC time of sample index 0
    origin_from: str  # where origin_utc came from: "file name", "flag", "clock", "none"
    name: str  # a short human description of the source
    live: bool = True  # arrives in real time and can stall (a device, a stream, paced replay)

    def utc_at(self, sample_index: float) -> datetime:
        return self.origin_utc + timedelta(seconds=sample_index / self.rate_hz)


@dataclass(frozen=True, eq=False)
class Block:
    """Consecutive audio frames: float32, shape (frames, channels), full scale = 1.0."""

    first_sample: int  # index of samples[0] since the stream's origin, at the source rate
    samples: np.ndarray
    arrival_monotonic: float = 0.0  # time.monotonic() when the source delivered it; 0: unknown

    @property
    def frames(self) -> int:
        return int(self.samples.shape[0])

    @property
    def end_sample(self) -> int:
        return self.first_sample + self.frames


@dataclass(frozen=True)
class Gap:
    """Audio the source could not deliver: [first_sample, end_sample) at the source rate."""

    first_sample: int
    end_sample: int
    reason: str  # "queue full", "overflow", "device lost", "stall", ...

    @property
    def samples(self) -> int:
        return self.end_sample - self.first_sample


@dataclass(frozen=True)
class ClockStep:
    """The sample-to-UTC mapping moves from ``first_sample`` on: times from there are
    ``origin + index / rate - correction_seconds``.

    A live source says this when the sound card's clock has drifted from the system clock by
    a step's worth (either way), or when a re-anchor finds the stream ahead of the clock (a
    fast card: samples cannot be taken back, so the mapping moves instead).
    """

    first_sample: int
    step_seconds: float  # added to the correction here (positive: the card ran fast)
    correction_seconds: float  # the total now subtracted from origin + index / rate
    reason: str  # "drift", or the re-anchor's: "overflow", "device_lost", "stall"

    @property
    def end_sample(self) -> int:
        return self.first_sample  # it takes no samples


@dataclass(frozen=True)
class EndOfStream:
    """The source has nothing more to give (end of a file, --duration reached)."""

    end_sample: int


def utc_now() -> datetime:
    return datetime.now(UTC)


Item = Block | Gap | ClockStep | EndOfStream  # what a source's read() hands on
