"""Windows through the model: batched, on the model's torch device, timed.

On the CPU the TorchScript module is frozen and optimised for inference once (batch norm
folded into the convolutions, oneDNN kernels): 3-4x faster on the shipped model, scores
within 1e-6 of the plain module (benchmarks/detect.py checks 1e-4 against a naive
reference). Large batches are cut into ``CPU_BATCH_WINDOWS`` pieces, which stay in cache.
On CUDA the batch goes through pinned memory with a non-blocking copy.

A model with ``score_span`` (:class:`detector.model.network.SharedTrunkNet`), at a hop on its
grid, shares work between overlapping windows: each run of consecutive windows (each one
``hop`` samples after the last, checked bit for bit on the audio they share) is put back
together into one span, and the network's trunk runs once over it.
"""

from __future__ import annotations

import itertools
import logging
import time
import warnings
from typing import TYPE_CHECKING

import numpy as np
import torch
from torch import nn

from detector.model.artifact import LoadedModel, span_grid_samples

if TYPE_CHECKING:
    from detector.train.examples import Example

log = logging.getLogger("whaled.scoring")
CPU_BATCH_WINDOWS = 64  # measured on 2 cores: 32-128 beat 256 and 512
SPAN_WINDOWS = 256  # windows per score_span call: 3 % recomputed context, maps stay small
TRAINING_BATCH_WINDOWS = 128  # windows per batch when a network in training is scored


def optimised(loaded: LoadedModel, span_hop_samples: int = 0) -> torch.jit.ScriptModule:
    """The frozen, inference-optimised module; the plain one if freezing fails. Made once
    per model and span hop (kept in ``loaded.optimised_by_hop``), not once per recording."""
    if loaded.device.type != "cpu":
        return loaded.module
    if span_hop_samples not in loaded.optimised_by_hop:
        loaded.optimised_by_hop[span_hop_samples] = _freeze(loaded, span_hop_samples)
    return loaded.optimised_by_hop[span_hop_samples]


def _freeze(loaded: LoadedModel, span_hop_samples: int) -> torch.jit.ScriptModule:
    methods = ["score_span"] if span_hop_samples else []
    window = loaded.metadata.window_samples
    try:
        with warnings.catch_warnings():
            warnings.filterwarnings("ignore", category=DeprecationWarning)
            frozen = torch.jit.optimize_for_inference(
                torch.jit.freeze(loaded.module.eval(), preserved_attrs=methods),
                other_methods=methods)
            with torch.inference_mode():
                frozen(torch.zeros(2, window))
                if methods:
                    frozen.score_span(torch.zeros(1, window + span_hop_samples),
                                      span_hop_samples)
        return frozen
    except (RuntimeError, AttributeError) as error:
        log.debug("model not frozen (%s); running it as loaded", error)
        return loaded.module


def consecutive_runs(windows: np.ndarray, hop_samples: int) -> list[tuple[int, int]]:
    """[first, end) of each run in (n, channels, samples) where window i + 1 starts
    ``hop_samples`` after window i: the samples they share are equal bit for bit."""
    bits = windows.view(np.uint32)
    joined = np.all(bits[1:, :, :-hop_samples] == bits[:-1, :, hop_samples:], axis=(1, 2))
    edges = [0, *(np.flatnonzero(~joined) + 1).tolist(), len(windows)]
    return list(itertools.pairwise(edges))


def span_of(windows: np.ndarray, hop_samples: int) -> np.ndarray:
    """The (channels, samples) audio that consecutive (n, channels, samples) windows cut."""
    channels = windows.shape[1]
    fresh = windows[1:, :, -hop_samples:].transpose(1, 0, 2).reshape(channels, -1)
    return np.ascontiguousarray(np.concatenate([windows[0], fresh], axis=1), np.float32)


class Scorer:
    """``score(windows) -> probabilities``: (n, window_samples) float32 -> (n, labels).

    Rows are window-major and channel-minor when ``channels`` > 1, as the pipeline cuts them;
    ``hop_samples`` is the pipeline's window hop (0: unknown, every window scored alone).
    """

    def __init__(self, loaded: LoadedModel, max_batch_windows: int,
                 hop_samples: int = 0, channels: int = 1) -> None:
        self.loaded = loaded
        self.channels = channels
        grid_samples = span_grid_samples(loaded)
        shares = (grid_samples > 0 and 0 < hop_samples < loaded.metadata.window_samples
                  and hop_samples % grid_samples == 0)
        self.span_hop_samples = hop_samples if shares else 0
        self.module = optimised(loaded, self.span_hop_samples)
        self.cuda = loaded.device.type == "cuda"
        self.batch_windows = (max_batch_windows if self.cuda
                              else min(max_batch_windows, CPU_BATCH_WINDOWS))
        self.last_seconds = 0.0  # wall time of the latest batch, for the metrics

    def score(self, windows: np.ndarray) -> np.ndarray:
        n_labels = len(self.loaded.metadata.labels)
        if len(windows) == 0:
            return np.zeros((0, n_labels), np.float32)
        started = time.perf_counter()
        with torch.inference_mode():
            if self.span_hop_samples:
                parts = self._score_spans(windows.reshape(-1, self.channels, windows.shape[-1]))
            else:
                parts = [self.module(self._tensor(windows[lo:lo + self.batch_windows]))
                         .float().cpu().numpy()
                         for lo in range(0, len(windows), self.batch_windows)]
        self.last_seconds = time.perf_counter() - started
        return np.concatenate(parts)

    def _score_spans(self, windows: np.ndarray) -> list[np.ndarray]:
        """(n, channels, samples) -> [(windows x channels, labels)] via ``score_span``."""
        hop, parts = self.span_hop_samples, []
        windows = np.ascontiguousarray(windows, np.float32)
        for first, end in consecutive_runs(windows, hop):
            for lo in range(first, end, SPAN_WINDOWS):
                run = windows[lo:min(end, lo + SPAN_WINDOWS)]
                scores = self.module.score_span(self._tensor(span_of(run, hop)), hop)
                parts.append(scores.float().cpu().transpose(0, 1).reshape(
                    -1, scores.shape[-1]).numpy())
        return parts

    def _tensor(self, array: np.ndarray) -> torch.Tensor:
        batch = torch.from_numpy(np.ascontiguousarray(array, np.float32))
        if self.cuda:
            batch = batch.pin_memory()
        return batch.to(self.loaded.device, non_blocking=True)


# ---- a network being trained (an nn.Module, not a loaded archive) ----

def centre_crop(example: Example) -> np.ndarray:
    """The window in the middle of an example: how validation and clip evaluation see it."""
    from detector.model.network import WINDOW_SAMPLES

    offset = (len(example.audio) - WINDOW_SAMPLES) // 2
    return example.audio[offset:offset + WINDOW_SAMPLES]


def score_windows(model: nn.Module, windows: np.ndarray, device: torch.device) -> np.ndarray:
    """Probabilities of the positive label for (n, window samples) windows, in eval mode."""
    was_training = model.training
    model.eval()
    scores = []
    with torch.inference_mode():
        for lo in range(0, len(windows), TRAINING_BATCH_WINDOWS):
            batch = torch.from_numpy(np.ascontiguousarray(windows[lo:lo + TRAINING_BATCH_WINDOWS]))
            scores.append(model(batch.to(device)).float()[:, 0].cpu().numpy())
    model.train(was_training)
    return np.concatenate(scores) if scores else np.zeros(0, np.float32)
