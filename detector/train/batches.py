"""Training batches: which examples an epoch draws, and the windows cut from them.

Two recipes. The plain one (the 2013 talk's): real positives repeated up to a share of the
negatives, random crops that keep a known call inside, synthetic upcalls laid into real
noise, and a random negative mixed into an example. The augmented one draws a fixed number of
batches, half positives, every window through :mod:`detector.train.augment`.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import TYPE_CHECKING

import numpy as np
import torch

from detector.model.network import WINDOW_SAMPLES
from detector.train import augment
from detector.train.examples import Example

if TYPE_CHECKING:
    from detector.train.loop import TrainConfig


def random_crop(example: Example, rng: np.random.Generator) -> np.ndarray:
    """One window; a known call is kept inside it (centred when longer than a window)."""
    return augment.crop(example.audio, WINDOW_SAMPLES, example.call_samples, rng)


SYNTHETIC = -1  # an epoch item that stands for a fresh synthetic call


def epoch_items(train: Sequence[Example], config: TrainConfig,
                rng: np.random.Generator) -> np.ndarray:
    """Indices into ``train`` (real positives repeated) and SYNTHETIC slots, shuffled."""
    positives = [i for i, e in enumerate(train) if e.label == 1]
    negatives = [i for i, e in enumerate(train) if e.label == 0]
    repeats = max(1, round(config.positive_share * len(negatives) / max(len(positives), 1)))
    items = np.array(negatives + positives * repeats + [SYNTHETIC] * config.synthetic)
    return rng.permutation(items)


def augmented_items(train: Sequence[Example], config: TrainConfig,
                    rng: np.random.Generator) -> np.ndarray:
    """``batches_per_epoch`` batches drawn with replacement: half positives (a share of them
    SYNTHETIC), half negatives."""
    positives = [i for i, e in enumerate(train) if e.label == 1]
    negatives = [i for i, e in enumerate(train) if e.label == 0]
    n = config.batches_per_epoch * config.batch_size
    positive = rng.random(n) < 0.5
    synthetic_slot = rng.random(n) < config.synthetic_share
    items = np.where(positive, np.where(synthetic_slot, SYNTHETIC, rng.choice(positives, n)),
                     rng.choice(negatives, n))
    return items.astype(np.int64)


def make_augmented_batch(items: np.ndarray, train: Sequence[Example],
                         noise: Sequence[np.ndarray], aug: augment.Augmentation,
                         rng: np.random.Generator) -> tuple[torch.Tensor, torch.Tensor]:
    """Windows drawn through :mod:`detector.train.augment`; ``noise`` is every negative's audio."""
    windows, labels = [], []
    for item in items:
        example = None if item == SYNTHETIC else train[item]
        if example is None or example.label == 1:
            windows.append(augment.positive_window(
                None if example is None else example.audio,
                None if example is None else example.call_samples, noise, aug, rng))
            labels.append(1)
        else:
            windows.append(augment.negative_window(example.audio, noise, aug, rng))
            labels.append(0)
    return (torch.from_numpy(np.stack(windows).astype(np.float32)),
            torch.tensor(labels, dtype=torch.float32).unsqueeze(1))


def make_batch(items: np.ndarray, train: Sequence[Example], negatives: Sequence[int],
               config: TrainConfig, rng: np.random.Generator
               ) -> tuple[torch.Tensor, torch.Tensor]:
    if config.augment:
        return make_augmented_batch(items, train, [train[i].audio for i in negatives],
                                    config.augmentation, rng)
    windows, labels = [], []
    for item in items:
        noise = random_crop(train[negatives[int(rng.integers(len(negatives)))]], rng)
        if item == SYNTHETIC:
            window, label = augment.with_synthetic_call(noise, rng, config.synthetic_snr_db), 1
        else:
            window, label = random_crop(train[item], rng), train[item].label
        if rng.random() < config.mix_probability:
            window = augment.mixed_with(window, noise, rng, config.mix_level_db)
        windows.append(window)
        labels.append(label)
    return (torch.from_numpy(np.stack(windows).astype(np.float32)),
            torch.tensor(labels, dtype=torch.float32).unsqueeze(1))
