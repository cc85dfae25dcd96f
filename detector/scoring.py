"""Windows through the model: batched, on the model's torch device, timed.

On the CPU the TorchScript module is frozen and optimised for inference once (batch norm
folded into the convolutions, oneDNN kernels): 3-4x faster on the shipped model, scores
within 1e-6 of the plain module (benchmarks/detect.py checks 1e-4 against a naive
reference). Large batches are cut into ``CPU_BATCH_WINDOWS`` pieces, which stay in cache.
On CUDA the batch goes through pinned memory with a non-blocking copy.
"""

from __future__ import annotations

import logging
import time
import warnings

import numpy as np
import torch

from detector.model import LoadedModel

log = logging.getLogger("whaled.scoring")
CPU_BATCH_WINDOWS = 64  # measured on 2 cores: 32-128 beat 256 and 512


def optimised(loaded: LoadedModel) -> torch.jit.ScriptModule:
    """The frozen, inference-optimised module; the plain one if freezing fails."""
    if loaded.device.type != "cpu":
        return loaded.module
    try:
        with warnings.catch_warnings():
            warnings.filterwarnings("ignore", category=DeprecationWarning)
            frozen = torch.jit.optimize_for_inference(torch.jit.freeze(loaded.module.eval()))
            with torch.inference_mode():
                frozen(torch.zeros(2, loaded.metadata.window_samples))
        return frozen
    except (RuntimeError, AttributeError) as error:
        log.debug("model not frozen (%s); running it as loaded", error)
        return loaded.module


class Scorer:
    """``score(windows) -> probabilities``: (n, window_samples) float32 -> (n, labels)."""

    def __init__(self, loaded: LoadedModel, max_batch_windows: int) -> None:
        self.loaded = loaded
        self.module = optimised(loaded)
        self.cuda = loaded.device.type == "cuda"
        self.batch_windows = (max_batch_windows if self.cuda
                              else min(max_batch_windows, CPU_BATCH_WINDOWS))
        self.last_seconds = 0.0  # wall time of the latest batch, for the metrics

    def score(self, windows: np.ndarray) -> np.ndarray:
        n_labels = len(self.loaded.metadata.labels)
        if len(windows) == 0:
            return np.zeros((0, n_labels), np.float32)
        started = time.perf_counter()
        parts = []
        with torch.inference_mode():
            for lo in range(0, len(windows), self.batch_windows):
                batch = torch.from_numpy(np.ascontiguousarray(
                    windows[lo:lo + self.batch_windows], np.float32))
                if self.cuda:
                    batch = batch.pin_memory()
                batch = batch.to(self.loaded.device, non_blocking=True)
                parts.append(self.module(batch).float().cpu().numpy())
        self.last_seconds = time.perf_counter() - started
        return np.concatenate(parts)
