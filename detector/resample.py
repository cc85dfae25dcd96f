"""Streaming anti-alias resampling from the capture rate to the model's rate.

A polyphase FIR (Kaiser-windowed sinc) whose state is carried across blocks, so the output
does not depend on how the input was cut into blocks: no clicks at block edges. Output
sample ``k`` lies at input time ``k / out_rate``: the filter is centred (the output waits
for half the filter's length of input), so resampling moves no timestamp.
"""

from __future__ import annotations

from fractions import Fraction
from math import ceil

import numpy as np
from numpy.lib.stride_tricks import sliding_window_view
from scipy import signal

CUTOFF_FRACTION = 0.9  # passband edge as a fraction of the output Nyquist frequency
ZERO_CROSSINGS = 16  # filter half-length, in output-rate periods; sets the transition band
KAISER_BETA = 8.6  # ~ -90 dB stopband


class Resampler:
    """``push(block) -> output`` for float32 (frames, channels) blocks; exact for equal rates."""

    def __init__(self, in_rate_hz: int, out_rate_hz: int, channels: int) -> None:
        ratio = Fraction(out_rate_hz, in_rate_hz)
        self.up, self.down = ratio.numerator, ratio.denominator  # L, M
        self.in_rate_hz, self.out_rate_hz, self.channels = in_rate_hz, out_rate_hz, channels
        self.passthrough = self.up == self.down == 1
        # Design at the upsampled rate L*fs_in; cutoff below both Nyquists.
        cutoff = CUTOFF_FRACTION * min(1.0 / self.up, 1.0 / self.down)  # of upsampled Nyquist
        half = ZERO_CROSSINGS * max(self.up, self.down)
        taps = signal.firwin(2 * half + 1, cutoff, window=("kaiser", KAISER_BETA))
        taps *= self.up  # the zero-stuffing of L loses a factor L of gain
        self.centre = half  # filter delay in upsampled samples
        self.phase_taps = ceil(len(taps) / self.up)
        padded = np.zeros(self.phase_taps * self.up)
        padded[:len(taps)] = taps
        # polyphase[p, j] = h[p + j*L]
        self.polyphase = padded.reshape(self.phase_taps, self.up).T.astype(np.float32).copy()
        self.reset()

    def reset(self) -> None:
        """Start a new contiguous segment (after a gap): output index 0 = next input sample."""
        self._history = np.zeros((self.phase_taps, self.channels), np.float32)
        self._consumed = 0  # input samples received in this segment
        self._produced = 0  # output samples emitted in this segment

    @property
    def delay_samples(self) -> int:
        """Input samples the resampler must see beyond an output's time to emit it."""
        return 0 if self.passthrough else ceil(self.centre / self.up)

    def flush(self) -> np.ndarray:
        """End of stream: the outputs still waiting for lookahead, computed against silence."""
        if self.passthrough:
            return np.zeros((0, self.channels), np.float32)
        total = (self._consumed * self.up) // self.down  # outputs the input's span holds
        produced = self._produced
        out = self.push(np.zeros((self.delay_samples + 1, self.channels), np.float32))
        self._consumed -= self.delay_samples + 1
        return out[:max(0, total - produced)]

    def push(self, block: np.ndarray) -> np.ndarray:
        if self.passthrough:
            return block
        history_start = self._consumed - len(self._history)  # input index of _history[0]
        buffer = np.concatenate([self._history, block])
        self._consumed += len(block)
        # Output k needs input up to n0 = floor((k*M + centre) / L).
        last_k = ((self._consumed - 1) * self.up - self.centre) // self.down
        ks = np.arange(self._produced, last_k + 1)
        out = np.empty((len(ks), self.channels), np.float32)
        if len(ks):
            t = ks * self.down + self.centre
            n0 = t // self.up
            phase = t - n0 * self.up
            # rows of the input, newest first: buffer[s - j] for j < J == reversed windows
            first = n0 - history_start - self.phase_taps + 1  # >= 1: history is zero-padded
            for p in np.unique(phase):
                rows = phase == p
                weights = self.polyphase[p, ::-1]
                for c in range(self.channels):
                    windows = sliding_window_view(buffer[:, c], self.phase_taps)
                    out[rows, c] = windows[first[rows]] @ weights
            self._produced = last_k + 1
        keep = self.phase_taps
        self._history = buffer[-keep:] if len(buffer) >= keep else np.concatenate(
            [np.zeros((keep - len(buffer), self.channels), np.float32), buffer])
        return out


def resample_signal(audio: np.ndarray, in_rate_hz: int, out_rate_hz: int) -> np.ndarray:
    """One channel resampled whole by the streaming :class:`Resampler`: the filtering the
    pipeline serves the model, so what it is trained on and shown is what it hears."""
    resampler = Resampler(in_rate_hz, out_rate_hz, 1)
    column = np.ascontiguousarray(audio, np.float32)[:, None]
    return np.concatenate([resampler.push(column), resampler.flush()])[:, 0]
