"""The detector network: raw 2-s windows in, one probability per label out.

The spectrogram and its normalisation live inside the module, so training and serving share
one code path and the STFT runs wherever the model runs (GPU when there is one). The layout
follows the 2013 talk: a log spectrogram image into a small CNN, dropout before the
classifier and a light dropout on the input.
"""

from __future__ import annotations

import torch
from torch import nn

SAMPLE_RATE_HZ = 2000
WINDOW_SECONDS = 2.0
WINDOW_SAMPLES = int(SAMPLE_RATE_HZ * WINDOW_SECONDS)  # 4000 samples in a 2-s window
N_FFT = 256  # 128 ms frames, 7.8 Hz bins at 2 kHz
STFT_HOP_SAMPLES = 32  # 16 ms: 118 frames in a 2-s window
LOW_BIN = 3  # 23 Hz: below the lowest upcall start (~50 Hz)
N_BINS = 64  # up to 523 Hz: the call and its first harmonic
LOG_FLOOR = 1e-10  # power floor before the logarithm


class Spectrogram(nn.Module):
    """Log power spectrogram with per-frequency background removal (median over time)."""

    def __init__(self, n_fft: int = N_FFT, hop_samples: int = STFT_HOP_SAMPLES,
                 low_bin: int = LOW_BIN, n_bins: int = N_BINS) -> None:
        super().__init__()
        self.n_fft = n_fft
        self.hop_samples = hop_samples
        self.low_bin = low_bin
        self.n_bins = n_bins
        self.log_floor = LOG_FLOOR  # an attribute: TorchScript cannot read a float global
        self.register_buffer("window", torch.hann_window(n_fft), persistent=False)

    def forward(self, audio: torch.Tensor) -> torch.Tensor:
        # audio: (batch, samples) float32 -> (batch, 1, n_bins, frames)
        audio = audio - audio.mean(dim=1, keepdim=True)
        spec = torch.stft(audio, self.n_fft, hop_length=self.hop_samples,
                          window=self.window,  # type: ignore[arg-type]
                          center=False, return_complex=True)
        power = spec[:, self.low_bin:self.low_bin + self.n_bins].abs().square()
        log_power = torch.log10(power + self.log_floor)
        background = log_power.median(dim=2, keepdim=True).values
        whitened = log_power - background
        return whitened.unsqueeze(1)


def conv_trunk(width: int, in_channels: int = 1, extra_layers: int = 0) -> nn.Sequential:
    """Three unpadded 3x3 convolutions with batch norm and ReLU, two 2x2 max pools between,
    then ``extra_layers`` more 3x3 convolutions at the third one's resolution: each widens
    what a unit sees by 8 spectrogram frames and 8 bins (in shared-trunk nets 0.1 s, 62 Hz)."""
    layers: list[nn.Module] = [
        nn.Conv2d(in_channels, width, 3), nn.BatchNorm2d(width), nn.ReLU(), nn.MaxPool2d(2),
        nn.Conv2d(width, 2 * width, 3), nn.BatchNorm2d(2 * width), nn.ReLU(),
        nn.MaxPool2d(2),
        nn.Conv2d(2 * width, 2 * width, 3), nn.BatchNorm2d(2 * width), nn.ReLU(),
    ]
    for _ in range(extra_layers):
        layers += [nn.Conv2d(2 * width, 2 * width, 3), nn.BatchNorm2d(2 * width), nn.ReLU()]
    return nn.Sequential(*layers)


def mask_stripes(image: torch.Tensor, max_width: int, dim: int) -> torch.Tensor:
    """SpecAugment's mask: each example of ``image`` (batch, channels, bins, frames) loses a
    random stripe of up to ``max_width`` rows (``dim`` 2: frequency bins) or columns (``dim``
    3: time frames), set to zero, so no single band or moment is relied on."""
    batch, length = image.shape[0], image.shape[dim]
    widths = torch.randint(0, max_width + 1, (batch, 1), device=image.device)
    starts = (torch.rand(batch, 1, device=image.device) * (length - widths + 1)).long()
    index = torch.arange(length, device=image.device).unsqueeze(0)
    hidden = (index >= starts) & (index < starts + widths)  # (batch, length)
    shape = [batch, 1, 1, 1]
    shape[dim] = length
    return image.masked_fill(hidden.reshape(shape), 0.0)


class UpcallNet(nn.Module):
    """Spectrogram -> three 3x3 conv layers -> global pooling -> dropout -> linear -> sigmoid."""

    def __init__(self, n_labels: int = 1, width: int = 16, dropout: float = 0.5,
                 input_dropout: float = 0.1, in_channels: int = 1) -> None:
        super().__init__()
        self.spectrogram: nn.Module = Spectrogram()
        self.input_dropout = nn.Dropout(input_dropout)
        self.features = conv_trunk(width, in_channels)
        self.dropout = nn.Dropout(dropout)
        self.classifier = nn.Linear(4 * width, n_labels)
        self.mask_bins = 0  # training only: a random band of this many bins at most is hidden
        self.mask_frames = 0  # training only: a random span of this many frames at most
        self.mean_span_frames = 0  # >0: the mean is the best span of this many map frames
        self.window_mean_too = False  # with a span: the whole window's mean pooled as well
        self.extra_layers = 0  # 3x3 convolutions after the third (see :func:`conv_trunk`)

    def deepen(self, extra_layers: int) -> None:
        """A fresh trunk with ``extra_layers`` more convolutions after the third."""
        first = self.features[0]
        assert isinstance(first, nn.Conv2d)
        width = first.out_channels
        self.features = conv_trunk(width, first.in_channels, extra_layers)
        self.features.train(self.training)  # a fresh module is in training mode: keep ours
        self.extra_layers = extra_layers

    def logits(self, audio: torch.Tensor) -> torch.Tensor:
        image = self.input_dropout(self.spectrogram(audio))
        if self.training and self.mask_bins > 0:
            image = mask_stripes(image, self.mask_bins, dim=2)
        if self.training and self.mask_frames > 0:
            image = mask_stripes(image, self.mask_frames, dim=3)
        maps = self.features(image)
        over_time = maps.mean(dim=2)  # (batch, maps, frames)
        span = self.mean_span_frames if self.mean_span_frames > 0 else over_time.shape[2]
        means = nn.functional.avg_pool1d(over_time, span, 1).amax(dim=2)  # the best span's
        pooled = torch.cat([means, maps.amax(dim=(2, 3))], dim=1)
        if self.window_mean_too:
            pooled = torch.cat([pooled, over_time.mean(dim=2)], dim=1)
        return self.classifier(self.dropout(pooled))

    def forward(self, audio: torch.Tensor) -> torch.Tensor:
        return torch.sigmoid(self.logits(audio))

    def conv_parameters(self) -> list[nn.Parameter]:
        """The parameters that take weight decay (the talk: decay on convolutions only)."""
        return [p for m in self.features if isinstance(m, nn.Conv2d)
                for p in m.parameters(recurse=False) if p.dim() == 4]


# ---- a network whose work is shared by overlapping windows ----

SHARED_STFT_HOP_SAMPLES = 25  # 12.5 ms: 20 frames per 0.25-s window hop, 150 in a window
SHARED_POOL_FRAMES = 2  # each max-pool halves time (and frequency)
SHARED_POOLS = 2  # so the trunk's time stride is 4 frames = 100 samples
SHARED_CONV_FRAMES = 3  # unpadded 3x3 convolutions: each trims 2 frames


class FrameSpectrogram(nn.Module):
    """Log power with each frame's mean over frequency removed: local to the frame.

    No window-wide statistic (no per-window median or mean), so a frame's value depends
    only on its 256 samples, and a long span's spectrogram sliced at a window equals that
    window's own. A periodic Hann window has no DC leakage past bin 1, so the mean of the
    audio needs no removal for bins from ``LOW_BIN`` up. Gain-invariant, like the median.
    """

    def __init__(self, n_fft: int = N_FFT, hop_samples: int = SHARED_STFT_HOP_SAMPLES,
                 low_bin: int = LOW_BIN, n_bins: int = N_BINS) -> None:
        super().__init__()
        self.n_fft = n_fft
        self.hop_samples = hop_samples
        self.low_bin = low_bin
        self.n_bins = n_bins
        self.log_floor = LOG_FLOOR
        self.register_buffer("window", torch.hann_window(n_fft), persistent=False)

    def log_power(self, audio: torch.Tensor) -> torch.Tensor:
        """(batch, samples) -> (batch, n_bins, frames): log10 power of the kept bins."""
        spec = torch.stft(audio, self.n_fft, hop_length=self.hop_samples,
                          window=self.window,  # type: ignore[arg-type]
                          center=False, return_complex=True)
        power = spec[:, self.low_bin:self.low_bin + self.n_bins].abs().square()
        return torch.log10(power + self.log_floor)

    def forward(self, audio: torch.Tensor) -> torch.Tensor:
        # audio: (batch, samples) float32 -> (batch, 1, n_bins, frames)
        log_power = self.log_power(audio)
        return (log_power - log_power.mean(dim=1, keepdim=True)).unsqueeze(1)


class SharedTrunkNet(UpcallNet):
    """Frame-local spectrogram -> unpadded conv trunk -> per-window mean+max -> linear.

    Every stage before the pooling is shift-equivariant on a grid of ``span_grid_samples``
    (STFT hop x pooling stride), so :meth:`score_span` runs the trunk once over a long span
    and pools each window's slice of the map: the same scores as :meth:`forward` on each
    window cut out, for any window hop that is a multiple of the grid (0.25 s = 500 samples).
    """

    def __init__(self, n_labels: int = 1, width: int = 16, dropout: float = 0.5,
                 input_dropout: float = 0.1, window_samples: int = WINDOW_SAMPLES) -> None:
        super().__init__(n_labels, width, dropout, input_dropout)
        self.spectrogram = FrameSpectrogram()  # the trunk, pooling and head are UpcallNet's
        self.stride_frames = SHARED_POOL_FRAMES ** SHARED_POOLS
        self.span_grid_samples = SHARED_STFT_HOP_SAMPLES * self.stride_frames
        self.window_samples = window_samples
        self.front_frames = (window_samples - N_FFT) // SHARED_STFT_HOP_SAMPLES + 1
        self.window_map_frames = trunk_frames(self.front_frames)

    def use_front(self, front: nn.Module, shrink_frames: int) -> None:
        """Put ``front`` before the trunk; it loses ``shrink_frames`` frames of each window."""
        self.spectrogram = front
        self.front_frames = (self.window_samples - N_FFT) // SHARED_STFT_HOP_SAMPLES + 1 \
            - shrink_frames
        self.window_map_frames = trunk_frames(self.front_frames, self.extra_layers)

    def deepen(self, extra_layers: int) -> None:
        super().deepen(extra_layers)
        self.window_map_frames = trunk_frames(self.front_frames, extra_layers)

    @torch.jit.export
    def score_span(self, audio: torch.Tensor, hop_samples: int) -> torch.Tensor:
        """(channels, span samples) -> (channels, windows, labels): windows at 0, hop, 2 hop...

        ``hop_samples`` must be a multiple of ``span_grid_samples``; the trunk runs once.
        """
        if hop_samples % self.span_grid_samples != 0:
            raise ValueError("hop_samples must be a multiple of span_grid_samples")
        n_windows = (audio.shape[1] - self.window_samples) // hop_samples + 1
        maps = self.features(self.spectrogram(audio))  # (channels, maps, rows, frames)
        step_frames = hop_samples // self.span_grid_samples
        length = self.window_map_frames
        over_time = maps.mean(dim=2)  # (channels, maps, frames)
        span = self.mean_span_frames if self.mean_span_frames > 0 else length
        spans = nn.functional.avg_pool1d(over_time, span, 1)  # every span's mean
        means = nn.functional.max_pool1d(spans, length - span + 1, step_frames)  # window's best
        peaks = nn.functional.max_pool1d(maps.amax(dim=2), length, step_frames)
        pooled = torch.cat([means, peaks], dim=1)
        if self.window_mean_too:
            window_means = nn.functional.avg_pool1d(over_time, length, step_frames)
            pooled = torch.cat([pooled, window_means], dim=1)
        pooled = pooled[:, :, :n_windows].transpose(1, 2)
        return torch.sigmoid(self.classifier(pooled))


def trunk_frames(frames: int, extra_layers: int = 0) -> int:
    """Frames of the trunk's output map for ``frames`` spectrogram frames."""
    for _ in range(SHARED_POOLS):
        frames = (frames - (SHARED_CONV_FRAMES - 1)) // SHARED_POOL_FRAMES
    return frames - (1 + extra_layers) * (SHARED_CONV_FRAMES - 1)


# ---- a front end that removes each frequency's own noise floor, still frame-local ----

FLOOR_SMOOTH_FRAMES = 5  # 62.5 ms: log power averaged over this many frames first
FLOOR_SPAN_FRAMES = 49  # 0.6 s: the floor is the minimum of the smoothed power over this span


class FloorSpectrogram(FrameSpectrogram):
    """Log power minus each frequency's local noise floor (minimum statistics).

    The floor of a frequency bin is the minimum, over ``floor_span`` frames centred on the
    frame, of its log power smoothed over ``smooth`` frames (Martin's minimum statistics).
    An upcall crosses a 7.8-Hz bin in a fraction of a second, so the floor under it is the
    noise beside it in time; a ship's tone or a slow tonal that sits in a bin for longer than
    the span becomes its own floor and vanishes. The level and colour of the noise are
    removed per frequency, so a faint call over quiet water looks like a loud one over
    loud water. Every step is a fixed-size, unpadded sliding operation: a frame's value
    depends only on the audio around it, so the trunk can still be shared across windows.
    ``shrink_frames`` frames are lost at the two edges together.
    """

    def __init__(self, n_fft: int = N_FFT, hop_samples: int = SHARED_STFT_HOP_SAMPLES,
                 low_bin: int = LOW_BIN, n_bins: int = N_BINS,
                 smooth_frames: int = FLOOR_SMOOTH_FRAMES,
                 floor_span_frames: int = FLOOR_SPAN_FRAMES) -> None:
        super().__init__(n_fft, hop_samples, low_bin, n_bins)
        self.smooth_frames = smooth_frames
        self.floor_span_frames = floor_span_frames
        self.shrink_frames = smooth_frames - 1 + floor_span_frames - 1

    def forward(self, audio: torch.Tensor) -> torch.Tensor:
        # audio: (batch, samples) float32 -> (batch, 1, n_bins, frames - shrink_frames)
        log_power = self.log_power(audio)
        smoothed = nn.functional.avg_pool1d(log_power, self.smooth_frames, 1)
        floor = -nn.functional.max_pool1d(-smoothed, self.floor_span_frames, 1)
        first = self.shrink_frames // 2
        centre = log_power[:, :, first:first + floor.shape[2]]
        return (centre - floor).unsqueeze(1)


class FloorNet(SharedTrunkNet):
    """:class:`SharedTrunkNet` on the per-frequency noise-floor spectrogram."""

    def __init__(self, n_labels: int = 1, width: int = 16, dropout: float = 0.5,
                 input_dropout: float = 0.1, window_samples: int = WINDOW_SAMPLES) -> None:
        super().__init__(n_labels, width, dropout, input_dropout, window_samples)
        front = FloorSpectrogram()
        self.use_front(front, front.shrink_frames)


# ---- two views of each frame: its shape across frequency, and each bin against its past ----

CONTRAST_SPAN_FRAMES = 33  # 0.4 s: each bin's background is its mean log power over this span


class ContrastSpectrogram(FrameSpectrogram):
    """Two channels, both frame-local to a fixed span so the trunk can still be shared:

    0. log power minus the frame's mean over frequency (:class:`FrameSpectrogram`);
    1. log power minus the bin's own mean over the ``span_frames`` frames centred on the frame:
       a log-domain automatic gain control per frequency, in the spirit of PCEN (Lostanlen
       et al. 2019). A ship's line or one day's noise colour becomes flat; a faint call,
       which crosses a 7.8-Hz bin in a few frames, stands out of its bin's background.

    ``shrink_frames`` frames are lost at the two edges together.
    """

    def __init__(self, span_frames: int = CONTRAST_SPAN_FRAMES) -> None:
        super().__init__()
        self.span_frames = span_frames
        self.shrink_frames = span_frames - 1

    def forward(self, audio: torch.Tensor) -> torch.Tensor:
        # audio: (batch, samples) -> (batch, 2, n_bins, frames - shrink_frames)
        log_power = self.log_power(audio)
        background = nn.functional.avg_pool1d(log_power, self.span_frames, 1)
        first = self.shrink_frames // 2
        centre = log_power[:, :, first:first + background.shape[2]]
        shape = centre - centre.mean(dim=1, keepdim=True)
        return torch.stack([shape, centre - background], dim=1)


class ContrastNet(SharedTrunkNet):
    """:class:`SharedTrunkNet` on the two-channel :class:`ContrastSpectrogram`."""

    def __init__(self, n_labels: int = 1, width: int = 16, dropout: float = 0.5,
                 input_dropout: float = 0.1, window_samples: int = WINDOW_SAMPLES) -> None:
        super().__init__(n_labels, width, dropout, input_dropout, window_samples)
        front = ContrastSpectrogram()
        self.use_front(front, front.shrink_frames)
        self.features = conv_trunk(width, in_channels=2)


ARCHITECTURES = {"upcall": UpcallNet, "shared": SharedTrunkNet, "floor": FloorNet,
                 "contrast": ContrastNet}
Network = UpcallNet | SharedTrunkNet
MAX_EXTRA_LAYERS = 4  # the third convolution leaves 12 rows of the 64 bins; each trims 2


def build_network(architecture: str, width: int, mean_span_seconds: float = 0.0,
                  window_mean_too: bool = False, extra_layers: int = 0) -> Network:
    """The network called ``architecture`` (a key of ``ARCHITECTURES``).

    ``mean_span_seconds`` > 0 (shared-trunk networks only): the pooled mean is that of the
    window's best span of this length, not of the whole window, so a short call counts as
    much as a long one; 0 keeps the whole-window mean. ``window_mean_too`` (with a span):
    the whole window's mean is pooled beside the best span's, so the head weighs both.
    ``extra_layers``: that many more 3x3 convolutions after the third (a deeper trunk whose
    units see more of a call's contour).
    """
    if architecture not in ARCHITECTURES:
        raise ValueError(f"unknown architecture {architecture!r}; one of {list(ARCHITECTURES)}")
    network = ARCHITECTURES[architecture](width=width)
    if not 0 <= extra_layers <= MAX_EXTRA_LAYERS:
        raise ValueError(f"extra_layers {extra_layers} must be between 0 and {MAX_EXTRA_LAYERS}")
    if extra_layers:
        network.deepen(extra_layers)
    if mean_span_seconds != 0:
        if not isinstance(network, SharedTrunkNet):
            raise ValueError(f"mean_span_seconds needs a shared-trunk network, not "
                             f"{architecture!r}")
        frame_seconds = network.span_grid_samples / SAMPLE_RATE_HZ
        frames = round(mean_span_seconds / frame_seconds)
        if not 1 <= frames <= network.window_map_frames:
            raise ValueError(f"mean_span_seconds {mean_span_seconds} must be between "
                             f"{frame_seconds:g} and "
                             f"{network.window_map_frames * frame_seconds:g} s")
        network.mean_span_frames = frames
    if window_mean_too:
        if network.mean_span_frames == 0:
            raise ValueError("window_mean_too needs mean_span_seconds: without a span the "
                             "window's mean is already the pooled one")
        network.window_mean_too = True
        pooled = network.classifier.in_features  # (best-span mean, max) per map: 2 per map
        network.classifier = nn.Linear(pooled + pooled // 2, network.classifier.out_features)
    return network
