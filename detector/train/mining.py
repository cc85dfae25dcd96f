"""Hard negatives mined from the training data: the windows the model is most wrong about.

A detector's false alarms come from a few kinds of sound (a humpback note, a ship's harmonic,
an unannotated but mislabelled sweep) that random draws of negative audio rarely show it. From
``TrainConfig.mine_from_epoch`` on, every epoch first scores each training negative at a hop
with the model as it stands, keeps the ``mined_windows`` highest-scoring windows (a little
context either side, so a crop still moves), and draws ``mined_share`` of that epoch's
negatives from them. Only training negatives are searched, so a held-out day or recording is
never mined; the search is redone every epoch with the current weights, so a resumed run mines
what an uninterrupted one would.
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np
import torch
from torch import nn

from detector.model.network import SAMPLE_RATE_HZ, WINDOW_SAMPLES
from detector.model.scoring import score_windows
from detector.train.examples import Example

MINING_HOP_SAMPLES = WINDOW_SAMPLES // 4  # 0.5 s at 2 kHz: a call is never between two hops
MINED_CONTEXT_SAMPLES = SAMPLE_RATE_HZ // 4  # 0.25 s either side of a mined window
MINING_BATCH_WINDOWS = 4096  # windows scored at once (64 MB of audio)


def window_starts(audio_samples: int) -> np.ndarray:
    """Start samples of every window at :data:`MINING_HOP_SAMPLES` in ``audio_samples``."""
    if audio_samples < WINDOW_SAMPLES:
        return np.zeros(0, np.int64)
    return np.arange(0, audio_samples - WINDOW_SAMPLES + 1, MINING_HOP_SAMPLES)


def mine(model: nn.Module, negatives: Sequence[Example], count: int,
         device: torch.device) -> list[Example]:
    """The ``count`` windows of ``negatives`` that ``model`` scores highest, as examples."""
    found: list[tuple[float, int, int]] = []  # (score, example, start sample)
    where = [(index, int(start)) for index, example in enumerate(negatives)
             for start in window_starts(len(example.audio))]
    for lo in range(0, len(where), MINING_BATCH_WINDOWS):  # scored in batches: bounded memory
        part = where[lo:lo + MINING_BATCH_WINDOWS]
        windows = np.stack([negatives[i].audio[s:s + WINDOW_SAMPLES] for i, s in part])
        scores = score_windows(model, windows.astype(np.float32), device)
        keep = np.argsort(scores)[::-1][:count]
        found.extend((float(scores[k]), *part[k]) for k in keep)
    found.sort(key=lambda f: (-f[0], f[1], f[2]))
    mined = []
    for _, index, start in found[:count]:
        example = negatives[index]
        lo = max(0, start - MINED_CONTEXT_SAMPLES)
        hi = min(len(example.audio), start + WINDOW_SAMPLES + MINED_CONTEXT_SAMPLES)
        mined.append(Example(example.audio[lo:hi], 0, example.source,
                             example.start_seconds + lo / SAMPLE_RATE_HZ))
    return mined


def with_mined(items: np.ndarray, train: Sequence[Example], mined_count: int, share: float,
               rng: np.random.Generator) -> np.ndarray:
    """``items`` with ``share`` of its negative draws moved to the mined examples, which
    follow ``train``'s own (indices ``len(train)`` on)."""
    if mined_count == 0 or share <= 0:
        return items
    negative = np.array([i >= 0 and train[i].label == 0 for i in items])
    moved = negative & (rng.random(len(items)) < share)
    out = items.copy()
    out[moved] = len(train) + rng.integers(0, mined_count, int(moved.sum()))
    return out
