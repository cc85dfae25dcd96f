"""listen speed: file replay at --speed 0 and live latency/backlog, as JSON.

    python benchmarks/stream.py [--minutes 10] [--live-seconds 10]

Replay: synthetic 2 kHz audio in a WAV through ``detect_recording`` (what ``listen --device
file:PATH --speed 0`` runs, 0.1-s blocks). Live: the synthetic hydrophone at speed 1 (real
time) through the same pipeline, for 1 channel at 2 kHz, 16 channels at 2 kHz and 1 channel
at 96 kHz. Latency is from the arrival of the block holding a batch's newest sample to the
end of its scoring (add one block, 0.1 s, for the capture itself); backlog is
whaled_backlog_seconds as the pipeline sets it.
"""

from __future__ import annotations

import argparse
import json
import resource
import sys
import tempfile
import threading
import time
from pathlib import Path

import numpy as np
import soundfile

sys.path.insert(0, str(Path(__file__).resolve().parent))
from detect import RATE_HZ, synthetic_audio
from machine import machine, model_path

LIVE_CASES = ((2000, 1), (2000, 16), (96000, 1))  # (rate Hz, channels)


def replay(loaded: object, minutes: float, scratch: Path) -> dict[str, object]:
    from detector.archive.scan import detect_recording
    from detector.core.config import Settings

    audio = synthetic_audio(minutes * 60)
    wav = scratch / "replay_20090329_000000.wav"
    soundfile.write(str(wav), audio, RATE_HZ, subtype="PCM_16")
    cpu0, wall0 = time.process_time(), time.perf_counter()
    detect_recording(wav, loaded, Settings(speed=0.0))  # type: ignore[arg-type]
    wall, cpu = time.perf_counter() - wall0, time.process_time() - cpu0
    seconds = len(audio) / RATE_HZ
    return {"audio_seconds": seconds, "audio_seconds_per_wall_second": round(seconds / wall, 1),
            "cpu_seconds_per_audio_hour": round(cpu / seconds * 3600, 2)}


def live(loaded: object, rate_hz: int, channels: int, seconds: float) -> dict[str, object]:
    from prometheus_client import CollectorRegistry

    from detector.core.config import Settings
    from detector.outputs.metrics import Metrics
    from detector.sources.replay import SyntheticSource
    from detector.stream.pipeline import Pipeline

    source = SyntheticSource(rate_hz=rate_hz, block_frames=rate_hz // 10, speed=1.0,
                             channels=channels)
    metrics = Metrics(CollectorRegistry(), source.info.channels,
                      loaded.metadata.labels)  # type: ignore[attr-defined]
    pipeline = Pipeline(source, loaded, Settings(speed=1.0, duration_seconds=seconds), [],
                        metrics)  # type: ignore[arg-type]
    latencies: list[float] = []
    backlogs: list[float] = []
    score = pipeline.detector.score

    def timed() -> list:
        events = score()
        if pipeline._last_arrival:
            latencies.append(time.monotonic() - pipeline._last_arrival)
            backlogs.append(metrics.backlog._value.get())
        return events

    pipeline.detector.score = timed  # type: ignore[method-assign]
    cpu0 = time.process_time()
    pipeline.run(threading.Event())
    cpu = time.process_time() - cpu0
    source.close()
    lat = np.asarray(latencies or [0.0])
    return {"rate_hz": rate_hz, "channels": channels, "audio_seconds": seconds,
            "batches": len(latencies), "cpu_share_of_real_time": round(cpu / seconds, 3),
            "latency_seconds_p50": round(float(np.median(lat)), 4),
            "latency_seconds_p95": round(float(np.percentile(lat, 95)), 4),
            "latency_seconds_max": round(float(lat.max()), 4),
            "backlog_seconds_max": round(max(backlogs or [0.0]), 4),
            "keeps_up": bool(max(backlogs or [0.0]) < 1.0)}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--minutes", type=float, default=10.0)
    parser.add_argument("--live-seconds", type=float, default=10.0)
    args = parser.parse_args()
    from detector.model.artifact import load_model

    scratch = Path(tempfile.mkdtemp(prefix="whaled-stream-"))
    model_file, note = model_path(scratch)
    loaded = load_model(model_file)
    result = {"benchmark": "stream", "machine": machine(), "model": note,
              "replay_speed_0": replay(loaded, args.minutes, scratch),
              "live_speed_1": [live(loaded, rate, ch, args.live_seconds)
                               for rate, ch in LIVE_CASES],
              "block_seconds": 0.1}
    result["peak_rss_bytes"] = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss * 1024
    print(json.dumps(result, indent=2))


if __name__ == "__main__":
    main()
