"""The machine a benchmark ran on, printed beside every figure; and the shipped-or-fresh model."""

from __future__ import annotations

import os
import platform
import time
from pathlib import Path

REPO = Path(__file__).resolve().parent.parent
SHIPPED_MODEL = REPO / "models" / "upcall.pt"
MATMUL_SIZE = 1024  # square fp32 matrices for the machine's FLOP/s
MATMUL_SECONDS = 1.0  # measured for about this long, median of the repeats


def cpu_model() -> str:
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or "unknown"


def machine() -> dict[str, object]:
    import torch

    cores = len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else os.cpu_count()
    try:
        load = os.getloadavg()[0]
    except OSError:
        load = -1.0
    info: dict[str, object] = {
        "cpu": cpu_model(), "cores": cores, "load_average_1min": round(load, 2),
        "torch": torch.__version__, "torch_threads": torch.get_num_threads(),
        "python": platform.python_version()}
    if torch.cuda.is_available():
        info["gpu"] = torch.cuda.get_device_name(0)
    return info


def matmul_flops_per_second(device: str = "cpu", repeats: int = 5) -> float:
    """Median fp32 matrix-multiply FLOP/s with the current thread settings."""
    import torch

    a = torch.randn(MATMUL_SIZE, MATMUL_SIZE, device=device)
    b = torch.randn(MATMUL_SIZE, MATMUL_SIZE, device=device)
    flops = 2 * MATMUL_SIZE ** 3
    rates = []
    for _ in range(repeats):
        n, started = 0, time.perf_counter()
        while time.perf_counter() - started < MATMUL_SECONDS / repeats:
            torch.mm(a, b)
            n += 1
        if device != "cpu":
            torch.cuda.synchronize()
        rates.append(n * flops / (time.perf_counter() - started))
    return sorted(rates)[len(rates) // 2]


def model_path(scratch: Path) -> tuple[Path, str]:
    """The shipped model, or a freshly initialised UpcallNet of the same architecture."""
    if SHIPPED_MODEL.exists():
        return SHIPPED_MODEL, "shipped models/upcall.pt"
    from detector.model.artifact import ModelMetadata, save_model
    from detector.model.network import SAMPLE_RATE_HZ, WINDOW_SAMPLES, UpcallNet

    path = scratch / "fresh.pt"
    save_model(UpcallNet(), ModelMetadata(SAMPLE_RATE_HZ, WINDOW_SAMPLES, ("upcall",)), path)
    return path, "freshly initialised UpcallNet (models/upcall.pt absent)"


def window_flops(module: object, window_samples: int) -> float:
    """FLOPs of one window through the model, counted by torch (convs, matmuls)."""
    import torch
    from torch.utils.flop_counter import FlopCounterMode

    counter = FlopCounterMode(display=False)
    with counter, torch.inference_mode():
        module(torch.zeros(8, window_samples))  # type: ignore[operator]
    return counter.get_total_flops() / 8
