"""``whaled listen`` start-up and shutdown: everything external is checked before capture.

Config, model, audio device, metrics port and output directory each fail with one clear
line and exit status 2 before any audio is taken. Then the pipeline runs until the source
ends or a signal comes: SIGINT or SIGTERM stop capture, close open events, flush and exit 0;
a second signal forces the exit.
"""

from __future__ import annotations

import logging
import os
import signal
import sys
import threading
from datetime import datetime
from pathlib import Path
from types import FrameType

import torch
from prometheus_client import CollectorRegistry

from detector.config import ConfigError, Settings
from detector.metrics import Metrics, serve
from detector.model import LoadedModel, ModelError, load_model, pick_torch_device
from detector.pipeline import Pipeline, RunSummary
from detector.sinks import JsonlSink, LogSink, RavenSink, Sink
from detector.sources import FileSource, Source, SourceError, SyntheticSource

log = logging.getLogger("whaled")
SYNTHETIC_RATE_HZ = 2000
FORCED_EXIT_STATUS = 130


class StartupError(Exception):
    """Anything that stops the daemon before capture starts; one line for the operator."""


def check_model(settings: Settings) -> LoadedModel:
    device = pick_torch_device(settings.torch_device)
    loaded = load_model(settings.model_path, device)
    meta = loaded.metadata
    if meta.sample_rate_hz != settings.model_rate_hz:
        raise ModelError(f"{loaded.path}: model rate {meta.sample_rate_hz} Hz disagrees with "
                         f"config model_rate_hz = {settings.model_rate_hz}")
    if abs(meta.window_seconds - settings.window_seconds) > 1e-9:
        raise ModelError(f"{loaded.path}: model window {meta.window_seconds} s disagrees with "
                         f"config window_seconds = {settings.window_seconds}")
    return loaded


def open_source(settings: Settings) -> Source:
    origin = None
    if settings.origin_utc:
        origin = datetime.fromisoformat(settings.origin_utc.replace("Z", "+00:00"))
    duration = settings.duration_seconds or None
    device = settings.device
    if device.startswith("file:"):
        path = Path(device[len("file:"):])
        if not path.is_file():
            raise SourceError(f"recording not found: {path}")
        rate = _file_rate(path)
        return FileSource(path, block_frames=max(1, round(settings.block_seconds * rate)),
                          speed=settings.speed, channels=settings.channels, origin=origin,
                          duration_seconds=duration)
    if device == "synthetic":
        rate = settings.sample_rate_hz or SYNTHETIC_RATE_HZ
        n_channels = max(settings.channels, default=1)
        return SyntheticSource(rate_hz=rate, block_frames=max(1, round(settings.block_seconds
                                                                       * rate)),
                               speed=settings.speed, channels=n_channels, seed=settings.seed,
                               origin=origin, duration_seconds=duration)
    from detector.capture import PortAudioSource

    return PortAudioSource(device, rate_hz=settings.sample_rate_hz,
                           channels=settings.channels or (1,),
                           block_seconds=settings.block_seconds,
                           queue_seconds=settings.queue_seconds)


def _file_rate(path: Path) -> int:
    import soundfile

    try:
        return int(soundfile.info(str(path)).samplerate)
    except (RuntimeError, soundfile.LibsndfileError) as error:
        raise SourceError(f"cannot read {path}: {str(error).strip().splitlines()[0]}") from None


def open_sinks(settings: Settings, source: Source) -> list[Sink]:
    out = Path(settings.out)
    try:
        out.mkdir(parents=True, exist_ok=True)
        probe = out / ".whaled-write-test"
        probe.write_text("")
        probe.unlink()
    except OSError as error:
        raise StartupError(f"output directory {out} is not writable: {error.strerror}")\
            from None
    return [LogSink(), JsonlSink(out), RavenSink(out, source.info.name, source.info.origin_utc)]


def install_signal_handlers(stop: threading.Event) -> None:
    def handle(signum: int, frame: FrameType | None) -> None:
        if stop.is_set():
            os._exit(FORCED_EXIT_STATUS)
        log.info("signal %s: stopping", signal.Signals(signum).name)
        stop.set()

    signal.signal(signal.SIGINT, handle)
    signal.signal(signal.SIGTERM, handle)


def listen(settings: Settings) -> RunSummary:
    """Start everything, run until done; raise StartupError-like exceptions before capture."""
    if settings.torch_threads:
        torch.set_num_threads(settings.torch_threads)
    loaded = check_model(settings)
    registry = CollectorRegistry()
    source = open_source(settings)
    try:
        info = source.info
        metrics = Metrics(registry, info.channels, loaded.metadata.labels)
        metrics.set_model(loaded.content_hash, loaded.metadata.version, str(loaded.path),
                          loaded.metadata.sample_rate_hz, loaded.metadata.window_seconds,
                          loaded.metadata.labels)
        sinks = open_sinks(settings, source)
        server = None
        if settings.metrics_port:
            try:
                server = serve(registry, settings.metrics_address, settings.metrics_port)
            except OSError as error:
                raise StartupError(f"cannot serve metrics on {settings.metrics_address}:"
                                   f"{settings.metrics_port}: {error.strerror}") from None
        pipeline = Pipeline(source, loaded, settings, sinks, metrics)
        log.info("listening source=%s rate_hz=%d channels=%s origin=%s origin_from=%s "
                 "model=%s model_hash=%s torch_device=%s on=%.3f off=%.3f hop_s=%.3f out=%s "
                 "metrics=%s", info.name, info.rate_hz, ",".join(map(str, info.channels)),
                 info.origin_utc.isoformat(), info.origin_from.replace(" ", "_"), loaded.path,
                 loaded.content_hash, loaded.device, pipeline.thresholds.on,
                 pipeline.thresholds.off, settings.hop_seconds, settings.out,
                 f"{settings.metrics_address}:{settings.metrics_port}" if server else "off")
        stop = threading.Event()
        install_signal_handlers(stop)
        summary = pipeline.run(stop)
        if server is not None:
            server.shutdown()
        log.info("stopped samples=%d windows=%d detections=%d gaps=%d", summary.samples,
                 summary.windows, len(summary.detections), len(summary.gaps))
        return summary
    finally:
        source.close()


def fail(message: str, status: int = 2) -> None:
    print(f"whaled: error: {message}", file=sys.stderr)
    raise SystemExit(status)


KNOWN_STARTUP_ERRORS = (ConfigError, ModelError, SourceError, StartupError)
