"""The ring buffer at the model's rate and the windows cut from it at a fixed hop.

The consumer thread owns the buffer, so it needs no lock. Windows start at whole multiples of
the hop from the start of the contiguous segment they belong to, so the same audio gives the
same windows whatever the block sizes were. A gap starts a new segment: no window spans it.
"""

from __future__ import annotations

import numpy as np

CHUNK_WINDOWS = 4  # the buffer holds one window plus this many windows of fresh audio


class RingBuffer:
    """Preallocated (capacity, channels) float32, written twice so every read is contiguous."""

    def __init__(self, capacity_frames: int, channels: int) -> None:
        self.capacity = capacity_frames
        self._data = np.zeros((2 * capacity_frames, channels), np.float32)
        self.end = 0  # absolute index one past the newest frame written

    def clear(self) -> None:
        self.end = 0

    def write(self, frames: np.ndarray) -> None:
        n = len(frames)
        if n > self.capacity:
            raise ValueError(f"write of {n} frames into a ring of {self.capacity}")
        at = self.end % self.capacity
        first = min(n, self.capacity - at)
        for offset in (0, self.capacity):
            self._data[offset + at:offset + at + first] = frames[:first]
        if first < n:
            self._data[:n - first] = frames[first:]
            self._data[self.capacity:self.capacity + n - first] = frames[first:]
        self.end += n

    def read(self, start: int, length: int) -> np.ndarray:
        """A view of frames [start, start + length); they must still be in the buffer."""
        if start < self.end - self.capacity or start + length > self.end:
            raise IndexError(f"frames {start}..{start + length} not held (end {self.end})")
        at = start % self.capacity
        return self._data[at:at + length]


class Windower:
    """Cuts (channels, window_samples) windows at ``hop_samples`` from a contiguous segment."""

    def __init__(self, window_samples: int, hop_samples: int, channels: int) -> None:
        self.window_samples = window_samples
        self.hop_samples = hop_samples
        self.channels = channels
        self.chunk_frames = CHUNK_WINDOWS * window_samples
        self.ring = RingBuffer(window_samples + self.chunk_frames, channels)
        self.next_start = 0  # segment index of the next window's first sample

    def reset(self) -> None:
        self.ring.clear()
        self.next_start = 0

    def push(self, frames: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        """Add frames; return (starts, windows): segment indices and (n, channels, window)."""
        starts: list[int] = []
        windows: list[np.ndarray] = []
        for lo in range(0, len(frames), self.chunk_frames):
            self.ring.write(frames[lo:lo + self.chunk_frames])
            while self.next_start + self.window_samples <= self.ring.end:
                starts.append(self.next_start)
                windows.append(self.ring.read(self.next_start, self.window_samples).T.copy())
                self.next_start += self.hop_samples
        if not windows:
            return np.zeros(0, np.int64), np.zeros((0, self.channels, self.window_samples),
                                                   np.float32)
        return np.asarray(starts, np.int64), np.stack(windows)
