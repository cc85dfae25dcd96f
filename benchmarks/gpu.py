"""whaled scoring on CUDA: tuned batch, reduced precision, 1 and 64 channels, as JSON.

Self-contained: needs only torch, numpy, scipy and soundfile (no prometheus, no typer, no
network); generates its own audio. Run through ``benchmarks/gpu.sh`` (under 5 minutes on one
GPU). Windows are cut on the GPU from the raw audio (``unfold``: 1/8 of the bytes of
host-cut windows cross the bus at a 0.25-s hop); the host path the pipeline uses (windows
cut on the CPU, pinned memory, non-blocking copies, ``detector.model.scoring.Scorer``) is timed
too. Reduced precision is kept only where scores stay within 1e-3 of fp32.
"""

from __future__ import annotations

import contextlib
import json
import sys
import tempfile
import time
from collections.abc import Callable
from pathlib import Path

import numpy as np
import torch

sys.path.insert(0, str(Path(__file__).resolve().parent))
from machine import machine, matmul_flops_per_second, model_path

RATE_HZ = 2000
HOP_SAMPLES = 500  # the default 0.25-s hop
ONE_CHANNEL_SECONDS = 3600.0
MANY_CHANNELS, MANY_CHANNEL_SECONDS = 64, 900.0
BATCHES = (256, 1024, 4096, 16384)
PRECISION_TOLERANCE = 1e-3


def audio(seconds: float, seed: int) -> np.ndarray:
    from detector.sources.synthetic import upcall

    rng = np.random.default_rng(seed)
    x = rng.standard_normal(int(seconds * RATE_HZ)).astype(np.float32) * 0.01
    for start in np.arange(20.0, seconds - 5, 61.0):
        wave = upcall(RATE_HZ, rng, duration_seconds=1.0)
        x[int(start * RATE_HZ):int(start * RATE_HZ) + len(wave)] += (wave * 0.1).astype(np.float32)
    return x


def score_on_gpu(module: Callable[[torch.Tensor], torch.Tensor], signals: torch.Tensor,
                 window: int, batch: int, precision: str) -> tuple[float, torch.Tensor]:
    """(seconds, scores): every window of every row of ``signals`` (on the GPU)."""
    windows = signals.unfold(1, window, HOP_SAMPLES).reshape(-1, window)  # a view
    dtype = {"fp16": torch.float16, "bf16": torch.bfloat16}.get(precision)
    ctx = (torch.autocast("cuda", dtype=dtype) if dtype is not None
           else contextlib.nullcontext())
    out = []
    torch.cuda.synchronize()
    started = time.perf_counter()
    with torch.inference_mode(), ctx:
        for lo in range(0, len(windows), batch):
            out.append(module(windows[lo:lo + batch].contiguous()).float())
    scores = torch.cat(out)
    torch.cuda.synchronize()
    return time.perf_counter() - started, scores[:, 0].cpu()


def main() -> None:
    from detector.model.artifact import load_model
    from detector.model.scoring import Scorer

    if not torch.cuda.is_available():
        print(json.dumps({"benchmark": "gpu", "machine": machine(), "error": "no CUDA"}))
        return
    torch.backends.cudnn.benchmark = True
    scratch = Path(tempfile.mkdtemp(prefix="whaled-gpu-"))
    model_file, note = model_path(scratch)
    loaded = load_model(model_file, "cuda")
    window = loaded.metadata.window_samples
    one = torch.from_numpy(audio(ONE_CHANNEL_SECONDS, 1)).cuda()[None]
    many = torch.from_numpy(np.stack([audio(MANY_CHANNEL_SECONDS, 10 + c)
                                      for c in range(MANY_CHANNELS)])).cuda()
    module = loaded.module
    for _ in range(3):  # TorchScript profiles, then fuses
        score_on_gpu(module, one[:, :RATE_HZ * 120], window, 1024, "fp32")

    sweep = {}
    for batch in BATCHES:
        score_on_gpu(module, one, window, batch, "fp32")  # every shape seen (last batch)
        seconds, _ = score_on_gpu(module, one, window, batch, "fp32")
        sweep[batch] = ONE_CHANNEL_SECONDS / seconds
    best = max(sweep, key=lambda b: sweep[b])
    _, reference = score_on_gpu(module, one, window, best, "fp32")

    precisions: dict[str, dict[str, object]] = {}
    for precision in ("fp32", "fp16", "bf16"):
        try:
            for _ in range(2):
                score_on_gpu(module, one, window, best, precision)
            seconds, scores = score_on_gpu(module, one, window, best, precision)
            diff = float((scores - reference).abs().max())
            precisions[precision] = {"real_time_factor": round(ONE_CHANNEL_SECONDS / seconds),
                                     "max_score_difference_vs_fp32": diff,
                                     "within_1e-3": diff <= PRECISION_TOLERANCE}
        except RuntimeError as error:
            precisions[precision] = {"error": str(error).splitlines()[0][:200]}
    usable = [p for p, r in precisions.items() if r.get("within_1e-3")]
    chosen = max(usable, key=lambda p: float(precisions[p]["real_time_factor"]))  # type: ignore[arg-type]

    score_on_gpu(module, many, window, best, chosen)
    many_seconds, _ = score_on_gpu(module, many, window, best, chosen)

    scorer = Scorer(loaded, best)  # the pipeline's host path: CPU-cut windows, pinned copies
    host = one[0, :RATE_HZ * 600].cpu().numpy()
    host_windows = np.lib.stride_tricks.sliding_window_view(host, window)[::HOP_SAMPLES]
    scorer.score(np.ascontiguousarray(host_windows[:best]))
    started = time.perf_counter()
    for lo in range(0, len(host_windows), best):
        scorer.score(np.ascontiguousarray(host_windows[lo:lo + best]))
    host_rtf = 600 / (time.perf_counter() - started)

    print(json.dumps({
        "benchmark": "gpu", "machine": machine(), "model": note,
        "gpu_matmul_fp32_flops_per_second": round(matmul_flops_per_second("cuda")),
        "hop_seconds": HOP_SAMPLES / RATE_HZ,
        "batch_sweep_fp32_real_time_factor": {str(b): round(r) for b, r in sweep.items()},
        "batch": best, "precision": precisions, "chosen_precision": chosen,
        "one_channel_real_time_factor": precisions[chosen]["real_time_factor"],
        "channels_64": {"channels": MANY_CHANNELS, "audio_seconds_each": MANY_CHANNEL_SECONDS,
                        "stream_real_time_factor": round(MANY_CHANNEL_SECONDS / many_seconds),
                        "aggregate_real_time_factor":
                            round(MANY_CHANNELS * MANY_CHANNEL_SECONDS / many_seconds)},
        "host_path_one_channel_real_time_factor_fp32": round(host_rtf),
    }, indent=2))


if __name__ == "__main__":
    main()
