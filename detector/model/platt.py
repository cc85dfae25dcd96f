"""Platt scaling: scores a reader can take as probabilities.

A network trained on balanced batches with heavy augmentation scores calls and noise alike
close to 1.0 (the shipped model's operating threshold was 0.991), which reads as certainty it
does not have. Platt scaling fits ``p = sigmoid(scale * logit(score) + bias)`` to held-out
windows (each either holds a whole annotated call or lies clear of every annotation), by
maximum likelihood. Cross-validated training fits it on the pooled out-of-fold scores, the
only scores no model trained on, and folds it into the network's last linear layer, so every
score the model gives (``forward``, ``score_span``) is the calibrated one and nothing else
changes: the map is monotonic, so the calibrated thresholds pick exactly the same windows and
detections as the raw ones.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np
import torch
from torch import nn

from detector.stream.events import Thresholds

SCORE_CLIP = 1e-7  # scores of exactly 0 or 1 (float32 saturation) have finite logits
NEWTON_STEPS = 100
RIDGE = 1e-6  # keeps the Newton system solvable when a class is separable


def threshold_text(threshold: float) -> str:
    """A raw threshold with the digits that tell it from 1: 0.991, 0.99909, 0.99999989."""
    if threshold <= 0.999 or threshold >= 1.0:
        return f"{threshold:.3f}"
    return f"{threshold:.{int(np.ceil(-np.log10(1.0 - threshold))) + 1}f}"


@dataclass(frozen=True)
class Platt:
    scale: float
    bias: float

    def logit(self, raw_logit: float) -> float:
        return self.scale * raw_logit + self.bias

    def probability(self, raw_score: float) -> float:
        return sigmoid(self.logit(logit(raw_score)))

    def thresholds(self, raw: Thresholds) -> Thresholds:
        """The calibrated thresholds that pass exactly the windows ``raw`` passes."""
        return Thresholds(on=self.probability(raw.on), off=self.probability(raw.off))

    def as_dict(self) -> dict[str, float]:
        return {"scale": self.scale, "bias": self.bias}


def logit(score: float) -> float:
    p = min(max(score, SCORE_CLIP), 1 - SCORE_CLIP)
    return math.log(p / (1 - p))


def sigmoid(x: float) -> float:
    return 1 / (1 + math.exp(-x)) if x >= 0 else math.exp(x) / (1 + math.exp(x))


def fit_platt(scores: np.ndarray, labels: np.ndarray) -> Platt:
    """The (scale, bias) of maximum likelihood for ``labels`` (0/1) given raw ``scores``."""
    if labels.min(initial=1) == labels.max(initial=0):
        raise ValueError("Platt scaling needs both positive and negative windows")
    p = np.clip(scores.astype(np.float64), SCORE_CLIP, 1 - SCORE_CLIP)
    x = np.stack([np.log(p / (1 - p)), np.ones(len(p))], axis=1)
    y = labels.astype(np.float64)
    base = float(y.mean())
    w = np.array([0.0, math.log(base / (1 - base))])  # every window at the base rate

    def loss(v: np.ndarray) -> float:
        z = x @ v
        return float(np.sum(np.logaddexp(0, z) - y * z))

    for _ in range(NEWTON_STEPS):
        q = 0.5 * (1 + np.tanh(0.5 * (x @ w)))  # the sigmoid, without overflow
        gradient = x.T @ (q - y)
        hessian = (x * (q * (1 - q))[:, None]).T @ x + RIDGE * np.eye(2)
        step = np.linalg.solve(hessian, gradient)
        before = loss(w)
        while loss(w - step) > before and np.abs(step).max() > 1e-12:
            step /= 2  # damped: the likelihood never falls
        w -= step
        if np.abs(step).max() < 1e-10:
            break
    return Platt(float(w[0]), float(w[1]))


def fold_into(model: nn.Module, platt: Platt) -> None:
    """Scale and shift the final linear layer's output: the model now scores calibrated."""
    classifier = model.classifier
    assert isinstance(classifier, nn.Linear | torch.jit.ScriptModule)
    with torch.no_grad():
        classifier.weight.mul_(platt.scale)
        classifier.bias.mul_(platt.scale).add_(platt.bias)


def unfolded(state: dict[str, torch.Tensor], platt: Platt) -> dict[str, torch.Tensor]:
    """A calibrated network's ``state_dict`` with the map taken out of its last layer again:
    the raw network, for training to continue from (fine-tuning moves the raw logits, and the
    same map is folded back in afterwards)."""
    out = dict(state)
    out["classifier.weight"] = state["classifier.weight"] / platt.scale
    out["classifier.bias"] = (state["classifier.bias"] - platt.bias) / platt.scale
    return out


def of_metadata(extra: dict[str, object]) -> Platt | None:
    """The Platt map a model's metadata records, if it was calibrated."""
    fit = extra.get("calibration")
    if not isinstance(fit, dict):
        return None
    return Platt(float(fit["scale"]), float(fit["bias"]))
