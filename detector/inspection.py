"""What a model archive holds: its metadata, size, cost per window and first-layer filters.

The talk's advice is to look at the filters: noisy first-layer filters generalise badly.
"""

from __future__ import annotations

import json
import math
from pathlib import Path
from typing import Any

import torch

from detector.model import LoadedModel


def parameter_count(module: torch.nn.Module) -> int:
    return sum(p.numel() for p in module.parameters())


def flops_per_window(module: torch.nn.Module, window_samples: int) -> int:
    """Floating-point operations of one window (convolutions and matrix products; the STFT,
    pooling and activations are not counted), measured by torch's FLOP counter."""
    from torch.utils.flop_counter import FlopCounterMode

    counter = FlopCounterMode(display=False)
    with counter, torch.inference_mode():
        module(torch.zeros(1, window_samples))
    return int(counter.get_total_flops())


def first_conv_weight(module: torch.nn.Module) -> torch.Tensor:
    """The first 4-dimensional weight (out_channels, in_channels, height, width)."""
    for _, parameter in module.named_parameters():
        if parameter.dim() == 4:
            return parameter.detach().cpu()
    raise ValueError("the model has no convolution layer")


def summarise(loaded: LoadedModel) -> dict[str, Any]:
    meta = loaded.metadata
    return {
        "path": str(loaded.path), "hash": loaded.content_hash,
        "sample_rate_hz": meta.sample_rate_hz, "window_samples": meta.window_samples,
        "window_seconds": meta.window_seconds, "labels": list(meta.labels),
        "thresholds": {"on": meta.thresholds.on, "off": meta.thresholds.off},
        "version": meta.version, "format_version": meta.format_version,
        "parameters": parameter_count(loaded.module),
        "flops_per_window": flops_per_window(loaded.module, meta.window_samples),
        "extra": meta.extra,
    }


def format_summary(summary: dict[str, Any]) -> str:
    extra = summary["extra"]
    lines = [
        f"model       {summary['path']} ({summary['hash']})",
        f"input       {summary['window_samples']} samples = {summary['window_seconds']:g} s "
        f"at {summary['sample_rate_hz']} Hz",
        f"labels      {', '.join(summary['labels'])}",
        f"thresholds  on {summary['thresholds']['on']:.3f}, off {summary['thresholds']['off']:.3f}",
        f"parameters  {summary['parameters']:,}",
        f"FLOPs       {summary['flops_per_window'] / 1e6:.1f} M per window",
    ]
    for key in ("command", "training_seconds", "versions", "validation", "data"):
        if key in extra:
            value = extra[key]
            lines.append(f"{key:11} {value if isinstance(value, str) else json.dumps(value)}")
    if "filters_png" in summary:
        lines.append(f"filters     {summary['filters_png']}")
    return "\n".join(lines)


def plot_first_filters(module: torch.nn.Module, path: Path) -> None:
    """A grid of the first convolution's kernels, each on its own symmetric colour scale."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    weight = first_conv_weight(module)[:, 0]
    n = weight.shape[0]
    cols = math.ceil(math.sqrt(n))
    rows = math.ceil(n / cols)
    fig, axes = plt.subplots(rows, cols, figsize=(1.2 * cols, 1.2 * rows), squeeze=False)
    for index, ax in enumerate(axes.flat):
        ax.set_axis_off()
        if index < n:
            kernel = weight[index].numpy()
            limit = float(abs(kernel).max()) or 1.0
            ax.imshow(kernel, cmap="RdBu_r", vmin=-limit, vmax=limit, origin="lower")
            ax.set_title(str(index), fontsize=7)
    fig.suptitle("first-layer filters (frequency up, time right)", fontsize=8)
    path.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(path, dpi=80)
    plt.close(fig)
