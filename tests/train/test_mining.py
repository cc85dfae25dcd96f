"""Hard-negative mining: the windows kept are the ones the model scores highest, only from the
negatives it is given, and the epoch's draws move to them in the asked share."""

from __future__ import annotations

import numpy as np
import torch
from torch import nn

from detector.model.network import SAMPLE_RATE_HZ, WINDOW_SAMPLES
from detector.train.batches import SYNTHETIC
from detector.train.examples import Example
from detector.train.mining import MINED_CONTEXT_SAMPLES, MINING_HOP_SAMPLES, mine, with_mined


class LoudnessNet(nn.Module):
    """Scores a window by its peak: a window holding the loud burst scores highest."""

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return torch.sigmoid(x.abs().amax(dim=1, keepdim=True) - 1.0)


def quiet(seconds: float, source: str, seed: int) -> Example:
    rng = np.random.default_rng(seed)
    return Example((0.01 * rng.standard_normal(int(seconds * SAMPLE_RATE_HZ))).astype(
        np.float32), 0, source, 100.0)


def test_mine_keeps_the_highest_scoring_windows_with_context() -> None:
    a, b = quiet(30, "a.wav", 1), quiet(30, "b.wav", 2)
    burst_at = 20 * SAMPLE_RATE_HZ  # a 5-sample burst 20 s into b
    b.audio[burst_at:burst_at + 5] = 3.0
    mined = mine(LoudnessNet(), [a, b], 3, torch.device("cpu"))
    assert len(mined) == 3
    assert all(m.source == "b.wav" and m.label == 0 for m in mined)
    for m in mined:  # each holds the burst, with at most the context either side
        offset = round((m.start_seconds - 100.0) * SAMPLE_RATE_HZ)
        assert offset <= burst_at < offset + len(m.audio)
        assert len(m.audio) <= WINDOW_SAMPLES + 2 * MINED_CONTEXT_SAMPLES
        assert offset % MINING_HOP_SAMPLES in (0, MINING_HOP_SAMPLES - MINED_CONTEXT_SAMPLES)


def test_with_mined_moves_only_negative_draws_in_share() -> None:
    train = [Example(np.zeros(WINDOW_SAMPLES, np.float32), label, "x", 0.0)
             for label in (0, 1, 0)]
    items = np.array([0, 1, 2, SYNTHETIC] * 2500)
    out = with_mined(items, train, 4, 0.25, np.random.default_rng(0))
    moved = out >= len(train)
    assert not moved[(items == 1) | (items == SYNTHETIC)].any()  # positives stay
    assert abs(moved[(items == 0) | (items == 2)].mean() - 0.25) < 0.02
    assert set(out[moved]) == {3, 4, 5, 6}
    assert (with_mined(items, train, 0, 0.25, np.random.default_rng(0)) == items).all()
