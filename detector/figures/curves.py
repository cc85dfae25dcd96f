"""Every matplotlib figure of a model: evaluation curves, the learning curve, the first
layer's filters and the occlusion saliency. (Spectrograms of detections are in
:mod:`detector.figures.detections`, the presence chart in :mod:`detector.season.chart`.)
matplotlib is imported on first use, with the Agg backend: no display is needed.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np

from detector.core.band import UPCALL_BAND_HZ
from detector.evaluate.measures import (
    EventReport,
    average_precision,
    event_average_precision,
    precision_recall_curve,
    roc_auc,
    roc_curve,
    safe_ratio,
)

if TYPE_CHECKING:
    import torch

    from detector.model.inspection import Saliency
    from detector.train.loop import EpochRecord

PLOT_SIZE_INCHES = (6.4, 5.0)  # at PLOT_DPI: 768 x 600 pixels, readable on any screen
PLOT_DPI = 120
LEARNING_CURVE_INCHES = (9, 3.2)
LEARNING_CURVE_DPI = 80
FILTER_INCHES = 1.2  # each filter's square
FILTER_DPI = 80
SALIENCY_INCHES = (11, 4.4)
SALIENCY_DPI = 100


def pyplot() -> Any:
    """matplotlib.pyplot on the Agg backend (files only, no display)."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    return plt


# ---- evaluation ----

def operating_point(scores: np.ndarray, labels: np.ndarray, threshold: float
                    ) -> tuple[float, float, float]:
    """(false positive rate, true positive rate = recall, precision) of ``score >= threshold``."""
    scores, positive = np.asarray(scores, np.float64), np.asarray(labels) > 0
    chosen = scores >= threshold
    tp, fp = int(np.sum(chosen & positive)), int(np.sum(chosen & ~positive))
    return (safe_ratio(fp, int(np.sum(~positive))), safe_ratio(tp, int(np.sum(positive))),
            safe_ratio(tp, tp + fp))


def plot_titles(scores: np.ndarray, labels: np.ndarray, curve: Sequence[EventReport]
                ) -> dict[str, str]:
    """The title of each plot: the figure and the counts it rests on."""
    n_pos = int(np.sum(np.asarray(labels) > 0))
    n_neg = len(labels) - n_pos
    counts = f"{n_pos:,} positive, {n_neg:,} negative windows"
    titles = {"roc.png": f"ROC, AUC {roc_auc(scores, labels):.3f}\n{counts}",
              "pr.png": f"precision-recall, average precision "
                        f"{average_precision(scores, labels):.3f}\n{counts}"}
    if curve:
        events = f"events: {curve[0].n_annotations:,} calls in {curve[0].hours:.1f} h of audio"
        titles["recall_vs_false_alarms.png"] = (
            f"{events}\nevent recall against false alarms per hour")
        titles["event_pr.png"] = (f"{events}\nevent precision-recall, average precision "
                                  f"{event_average_precision(curve):.3f}")
    return titles


def false_alarm_axis(ax: Any, hours: float) -> None:
    """False alarms per hour on a log axis, as detection-error-tradeoff plots have it, so
    0-10/h is as wide as 10-1000/h; linear below one false alarm in the audio heard (so a
    threshold with none is drawn at 0)."""
    linear = max(1.0 / max(hours, 1e-9), 0.01)
    ax.set_xscale("symlog", linthresh=linear, linscale=0.5)
    right = max(ax.get_xlim()[1], 10.0)
    ax.set_xlim(-0.1 * linear, right)  # a threshold with none stands clear of the axis
    ax.set_xticks([0.0, *(10.0**k for k in range(-1, 6) if 10.0**k <= right)])
    ax.xaxis.set_major_formatter("{x:g}")


def write_plots(scores: np.ndarray, labels: np.ndarray, curve: Sequence[EventReport],
                out_dir: Path, threshold: float | None = None) -> list[Path]:
    """ROC, precision-recall and (when there are events) recall versus false alarms per hour,
    with the AUC and counts in the titles and the operating point (``threshold``) marked."""
    plt = pyplot()
    out_dir.mkdir(parents=True, exist_ok=True)
    written = []
    titles = plot_titles(scores, labels, curve)
    fpr, tpr = roc_curve(scores, labels)
    recall, precision = precision_recall_curve(scores, labels)
    point = operating_point(scores, labels, threshold) if threshold is not None else None
    panels = [("roc.png", fpr, tpr, "false positive rate (of negative windows)",
               "true positive rate (of positive windows)",
               None if point is None else (point[0], point[1], "TPR {1:.3f} at FPR {0:.4f}")),
              ("pr.png", recall, precision, "recall (of positive windows)", "precision",
               None if point is None else (point[1], point[2],
                                           "recall {0:.3f}, precision {1:.3f}"))]
    if curve:
        nearest = (None if threshold is None
                   else min(curve, key=lambda r: abs(r.threshold - threshold)))
        marked = None if nearest is None else (nearest.false_alarms_per_hour, nearest.recall,
                                               "recall {1:.3f} at {0:.2f} false alarms/h")
        panels.append(("recall_vs_false_alarms.png",
                       np.array([r.false_alarms_per_hour for r in curve]),
                       np.array([r.recall for r in curve]),
                       "false alarms per hour (log scale)", "event recall (calls found)",
                       marked))
        by_recall = sorted(curve, key=lambda r: -r.threshold)
        panels.append(("event_pr.png", np.array([r.recall for r in by_recall]),
                       np.array([r.precision for r in by_recall]),
                       "event recall (calls found)", "event precision (detections matched)",
                       None if nearest is None else (
                           nearest.recall, nearest.precision,
                           "recall {0:.3f}, precision {1:.3f}")))
    for name, x, y, xlabel, ylabel, mark in panels:
        fig, ax = plt.subplots(figsize=PLOT_SIZE_INCHES)
        events = name in ("recall_vs_false_alarms.png", "event_pr.png")
        ax.plot(x, y, drawstyle=None if events else "steps-post", marker="." if events else None,
                linewidth=2)
        if name == "roc.png":
            ax.plot([0, 1], [0, 1], color="0.6", linestyle=":", label="chance")
        if name == "recall_vs_false_alarms.png":  # after the curve: the axis spans it
            false_alarm_axis(ax, curve[0].hours)
        if mark is not None and threshold is not None:
            mx, my, text = mark
            ax.plot(mx, my, "o", color="tab:red", markersize=9, zorder=3,
                    label=f"threshold {threshold:.3f}: " + text.format(mx, my))
        if (mark is not None and threshold is not None) or name == "roc.png":
            ax.legend(loc="lower left" if name == "event_pr.png" else "lower right",
                      fontsize=11)
        ax.set_title(titles[name], fontsize=13)
        ax.set_xlabel(xlabel, fontsize=12)
        ax.set_ylabel(ylabel, fontsize=12)
        ax.tick_params(labelsize=11)
        ax.set_ylim(0, 1.02)
        ax.grid(alpha=0.3)
        fig.tight_layout()
        fig.savefig(out_dir / name, dpi=PLOT_DPI)
        plt.close(fig)
        written.append(out_dir / name)
    return written


# ---- training ----

def plot_learning_curve(history: Sequence[EpochRecord], best_epoch: int, path: Path) -> None:
    """Loss per epoch, and validation AUC beside it when the run had a validation split (a
    cross-validated model has none: it is judged out of fold, and gets the loss alone)."""
    plt = pyplot()
    epochs = [r.epoch + 1 for r in history]
    validated = any(math.isfinite(r.validation_auc) for r in history)
    fig, axes = plt.subplots(1, 2 if validated else 1, figsize=LEARNING_CURVE_INCHES,
                             squeeze=False)
    left = axes[0, 0]
    left.plot(epochs, [r.train_loss for r in history], label="train")
    if validated:
        left.plot(epochs, [r.validation_loss for r in history], label="validation")
    left.set(xlabel="epoch", ylabel="binary cross-entropy",
             title="loss" if validated else "training loss (no validation split: judged "
             "out of fold)")
    left.legend()
    if not validated:
        fig.tight_layout()
        fig.savefig(path, dpi=LEARNING_CURVE_DPI)
        plt.close(fig)
        return
    right = axes[0, 1]
    right.plot(epochs, [r.validation_auc for r in history], color="C2")
    right.axvline(best_epoch + 1, color="grey", linestyle=":", label="kept")
    right.set(xlabel="epoch", ylabel="ROC AUC", title="validation AUC")
    right.legend()
    fig.tight_layout()
    fig.savefig(path, dpi=LEARNING_CURVE_DPI)
    plt.close(fig)


# ---- inspection ----

def plot_first_filters(module: torch.nn.Module, path: Path) -> None:
    """A grid of the first convolution's kernels, each on its own symmetric colour scale."""
    from detector.model.inspection import first_conv_weight

    plt = pyplot()
    weight = first_conv_weight(module)[:, 0]
    n = weight.shape[0]
    cols = math.ceil(math.sqrt(n))
    rows = math.ceil(n / cols)
    fig, axes = plt.subplots(rows, cols, figsize=(FILTER_INCHES * cols, FILTER_INCHES * rows),
                             squeeze=False)
    for index, ax in enumerate(axes.flat):
        ax.set_axis_off()
        if index < n:
            kernel = weight[index].numpy()
            limit = float(abs(kernel).max()) or 1.0
            ax.imshow(kernel, cmap="RdBu_r", vmin=-limit, vmax=limit, origin="lower")
            ax.set_title(str(index), fontsize=7)
    fig.suptitle("first-layer filters (frequency up, time right)", fontsize=8)
    path.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(path, dpi=FILTER_DPI)
    plt.close(fig)


def plot_saliency(saliency: Saliency, path: Path) -> None:
    """The window's spectrogram (0-500 Hz), and beside it the same with the score each tile
    carries overlaid: red where removing it lowers the score."""
    from scipy import signal

    from detector.model.inspection import SALIENCY_TOP_HZ, STFT_OVERLAP, STFT_SECONDS

    plt = pyplot()
    rate = saliency.rate_hz
    n_fft = 1 << round(math.log2(STFT_SECONDS * rate))
    freqs, times, power = signal.spectrogram(saliency.audio, rate, nperseg=n_fft,
                                             noverlap=n_fft - n_fft // STFT_OVERLAP)
    top = min(SALIENCY_TOP_HZ, rate / 2)
    keep = freqs <= top
    db = 10 * np.log10(power[keep] + 1e-20)
    floor = float(np.median(db))
    fig, axes = plt.subplots(1, 2, figsize=SALIENCY_INCHES, sharey=True)
    for ax in axes:
        ax.pcolormesh(times, freqs[keep], db, cmap="Greys", vmin=floor,
                      vmax=max(floor + 30, float(np.percentile(db, 99.5))), shading="auto")
        ax.set_xlabel("time in window (s)", fontsize=11)
        ax.set_xlim(0, len(saliency.audio) / rate)
        ax.axhspan(*UPCALL_BAND_HZ, color="tab:blue", alpha=0.06)
    axes[0].set_ylabel("frequency (Hz)", fontsize=11)
    axes[0].set_title("spectrogram (shaded: the 50-250 Hz upcall band)", fontsize=11)
    limit = max(float(np.abs(saliency.drop).max()), 1e-6)
    extent = (0.0, saliency.tile_seconds * saliency.drop.shape[1], 0.0,
              saliency.tile_hz * saliency.drop.shape[0])
    image = axes[1].imshow(saliency.drop, origin="lower", extent=extent, aspect="auto",
                           cmap="RdBu_r", vmin=-limit, vmax=limit, alpha=0.6,
                           zorder=3)
    axes[1].set_title(f"what the score rests on: each {saliency.tile_seconds:g} s x "
                      f"{saliency.tile_hz:g} Hz tile removed in turn", fontsize=11)
    axes[1].set_ylim(0, top)
    bar = fig.colorbar(image, ax=axes[1])
    bar.set_label("log-odds of the score lost (red: relied on)", fontsize=10)
    fig.suptitle(f"{saliency.source}: upcall score {saliency.score:.3f}", fontsize=12)
    fig.tight_layout()
    path.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(path, dpi=SALIENCY_DPI)
    plt.close(fig)
