"""Test fixtures built in code: a transparent scripted model and recordings with known calls.

The "centre band" model scores a window by the 50-300 Hz energy in its middle half second
against the energy above 400 Hz. It is no whale detector, but its answer is known exactly:
a loud upcall scores ~1 while it overlaps the window's centre, so a detection's times are
predictable to within a hop, which is what the pipeline's timing tests need.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import soundfile
import torch
from torch import nn

from detector.model.artifact import ModelMetadata, save_model
from detector.sources.synthetic import upcall
from detector.stream.events import Thresholds

RATE_HZ = 2000
WINDOW_SAMPLES = 4000
CENTRE_HALF_SECONDS = 0.25  # the model listens to [centre - 0.25 s, centre + 0.25 s]
N_FFT = 128
HOP = 32


class CentreBandModel(nn.Module):
    def __init__(self, gain_per_db: float = 1.0, offset_db: float = 10.0) -> None:
        super().__init__()
        self.gain_per_db = gain_per_db
        self.offset_db = offset_db
        self.n_fft = N_FFT
        self.hop = HOP
        self.register_buffer("window", torch.hann_window(N_FFT), persistent=False)
        centres = (torch.arange(0, (WINDOW_SAMPLES - N_FFT) // HOP + 1) * HOP + N_FFT / 2)
        middle = (centres - WINDOW_SAMPLES / 2).abs() <= CENTRE_HALF_SECONDS * RATE_HZ
        self.register_buffer("middle", middle.float(), persistent=False)
        freqs = torch.arange(N_FFT // 2 + 1) * RATE_HZ / N_FFT
        self.register_buffer("band", ((freqs >= 50) & (freqs <= 300)).float(), persistent=False)
        self.register_buffer("above", (freqs >= 400).float(), persistent=False)

    def forward(self, audio: torch.Tensor) -> torch.Tensor:
        spec = torch.stft(audio, self.n_fft, hop_length=self.hop, window=self.window, center=False,
                          return_complex=True).abs().square()  # (B, F, T)
        band = (spec * self.band[:, None]).sum(1) / self.band.sum()
        above = (spec * self.above[:, None]).sum(1) / self.above.sum()
        frame_db = 10 * torch.log10((band + 1e-12) / (above + 1e-12))  # (B, T)
        centre_db = (frame_db * self.middle).sum(1) / self.middle.sum()
        return torch.sigmoid(self.gain_per_db * (centre_db - self.offset_db))[:, None]


def centre_band_model(path: Path, rate_hz: int = RATE_HZ) -> Path:
    meta = ModelMetadata(sample_rate_hz=rate_hz, window_samples=WINDOW_SAMPLES,
                         labels=("upcall",), thresholds=Thresholds(on=0.5, off=0.5),
                         version="test-centre-band")
    save_model(CentreBandModel(), meta, path)
    return path


def calls_recording(path: Path, rate_hz: int, seconds: float,
                    calls: list[tuple[float, float]], snr_db: float = 25.0,
                    seed: int = 3, subtype: str = "PCM_16") -> Path:
    """White noise at -40 dBFS with upcalls at (start_seconds, duration_seconds)."""
    rng = np.random.default_rng(seed)
    noise_rms = 0.01
    audio = rng.standard_normal(int(seconds * rate_hz)) * noise_rms
    for start, duration in calls:
        wave = upcall(rate_hz, rng, duration_seconds=duration)
        at = int(start * rate_hz)
        audio[at:at + len(wave)] += wave * noise_rms * 10 ** (snr_db / 20)
    soundfile.write(str(path), audio.astype(np.float32), rate_hz, subtype=subtype)
    return path


def channel_two_recording(folder: Path, seconds: float = 40.0,
                          calls: tuple[float, ...] = (5.0, 15.0, 25.0, 35.0),
                          channel_one_call: float = 10.0) -> Path:
    """``X.wav``: 3 channels of white noise at -40 dBFS, loud 1-s upcalls at ``calls`` on
    channel 2 only, with its Raven table: those calls on channel 2, and one more annotated at
    ``channel_one_call`` on channel 1 (where nothing was laid)."""
    rng = np.random.default_rng(5)
    noise_rms = 0.01
    audio = rng.standard_normal((int(seconds * RATE_HZ), 3)) * noise_rms
    for start in calls:
        wave = upcall(RATE_HZ, rng, duration_seconds=1.0)
        at = int(start * RATE_HZ)
        audio[at:at + len(wave), 1] += wave * noise_rms * 10 ** (25 / 20)
    folder.mkdir(parents=True, exist_ok=True)
    path = folder / "REC_20090328_000000.wav"
    soundfile.write(str(path), audio.astype(np.float32), RATE_HZ)
    rows = ["Selection\tView\tChannel\tBegin Time (s)\tEnd Time (s)\tAnnotation"]
    annotated = [(channel_one_call, 1)] + [(start, 2) for start in calls]
    rows += [f"{i + 1}\tSpectrogram 1\t{channel}\t{start:.3f}\t{start + 1:.3f}\tupcall"
             for i, (start, channel) in enumerate(annotated)]
    (folder / "REC_20090328_000000.Table.1.selections.txt").write_text("\n".join(rows) + "\n")
    return path
