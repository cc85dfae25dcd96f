"""SpecAugment masks: each training image loses one stripe of bins or of frames, no more."""

from __future__ import annotations

import pytest
import torch

from detector.model.network import build_network, mask_stripes

BATCH = 64
BINS, FRAMES = 12, 40
MAX_WIDTH = 7


@pytest.mark.parametrize("dim", [2, 3])
def test_each_example_loses_one_stripe_no_wider_than_asked(dim: int) -> None:
    torch.manual_seed(0)
    image = torch.rand(BATCH, 2, BINS, FRAMES) + 1.0  # no zero before masking
    masked = mask_stripes(image, MAX_WIDTH, dim)
    hidden = masked == 0
    across = (1, 5 - dim)  # channels, and the axis the stripe spans whole
    lines = hidden.all(dim=across)  # (batch, length): the hidden rows or columns
    assert torch.equal(hidden.any(dim=across), lines)  # whole stripes, nothing partial
    widths = lines.sum(dim=1)
    assert int(widths.max()) <= MAX_WIDTH and len(set(widths.tolist())) > 3
    for row, width in zip(lines, widths, strict=True):  # one contiguous stripe
        at = row.nonzero().flatten()
        assert len(at) == int(width) and (len(at) == 0 or int(at[-1] - at[0]) + 1 == len(at))
    assert torch.equal(masked[~hidden], image[~hidden])


def test_time_masks_act_in_training_only() -> None:
    torch.manual_seed(1)
    net = build_network("contrast", 4)
    net.mask_frames = 24
    audio = torch.randn(2, 4000)
    net.eval()
    assert torch.equal(net.logits(audio), net.logits(audio))
    net.train()
    net.input_dropout = torch.nn.Identity()  # type: ignore[assignment]
    net.dropout = torch.nn.Identity()  # type: ignore[assignment]
    torch.manual_seed(2)
    first = net.logits(audio)
    torch.manual_seed(3)
    assert not torch.equal(first, net.logits(audio))  # only the mask draw differs
