"""Windows through the model: batched, on the model's torch device, timed."""

from __future__ import annotations

import time

import numpy as np
import torch

from detector.model import LoadedModel


class Scorer:
    """``score(windows) -> probabilities``: (n, window_samples) float32 -> (n, labels)."""

    def __init__(self, loaded: LoadedModel, max_batch_windows: int) -> None:
        self.loaded = loaded
        self.max_batch_windows = max_batch_windows
        self.last_seconds = 0.0  # wall time of the latest batch, for the metrics

    def score(self, windows: np.ndarray) -> np.ndarray:
        n_labels = len(self.loaded.metadata.labels)
        if len(windows) == 0:
            return np.zeros((0, n_labels), np.float32)
        started = time.perf_counter()
        parts = []
        with torch.inference_mode():
            for lo in range(0, len(windows), self.max_batch_windows):
                batch = torch.from_numpy(windows[lo:lo + self.max_batch_windows])
                batch = batch.to(self.loaded.device, non_blocking=True)
                parts.append(self.loaded.module(batch).float().cpu().numpy())
        self.last_seconds = time.perf_counter() - started
        return np.concatenate(parts)
