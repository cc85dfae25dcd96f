"""``whaled listen`` start-up and shutdown: everything external is checked before capture.

Signal handlers come first (:mod:`detector.live.signals`), then config, model, output
directories and metrics port, each failing with one clear line and exit status 2; the audio
device opens last, as opening it starts capture. Then the pipeline runs until the source
ends or a signal comes: SIGINT or SIGTERM stop capture, close open events, flush and exit 0;
a second signal forces the exit. SIGHUP reloads the model and thresholds from the config
file without dropping audio; a bad new model is refused and the old one keeps running. Under
systemd (Type=notify) it reports READY=1, WATCHDOG=1 while audio flows, STATUS= and STOPPING=1.
"""

from __future__ import annotations

import contextlib
import logging
import os
from collections.abc import Callable
from dataclasses import replace
from datetime import UTC, datetime
from pathlib import Path
from wsgiref.simple_server import WSGIServer

import torch
from prometheus_client import CollectorRegistry

from detector.core.config import Settings
from detector.core.errors import WhaledError
from detector.core.stamps import parse_origin
from detector.core.version import VERSION
from detector.live import signals
from detector.live.notify import Watchdog
from detector.live.selftest import SelfTest
from detector.model.artifact import LoadedModel, check_model, rate_refusal
from detector.outputs.evidence import EvidenceRecorder
from detector.outputs.metrics import Metrics, serve
from detector.outputs.sinks import JsonlSink, LogSink, RavenSink, RunRecord, Sink
from detector.sources.reopen import DeviceCounters, LiveSource, Reconnector
from detector.sources.replay import (
    SYNTHETIC_TRUTH_FILE,
    FileSource,
    Source,
    SourceError,
    SyntheticSource,
)
from detector.stream.blocks import StreamInfo, frames_per_block
from detector.stream.detector_stage import longest_emission_delay_seconds
from detector.stream.pipeline import Pipeline
from detector.stream.run_summary import RunSummary, Status

log = logging.getLogger("whaled")
SYNTHETIC_RATE_HZ = 2000
RECENT_RECORDS_KEPT = 1000  # detections and gaps held in memory (the latest; all are in files)
RELOADED_KEYS = ("model", "on_threshold", "off_threshold", "min_duration_seconds",
                 "merge_gap_seconds", "max_duration_seconds")  # what SIGHUP may change


class StartupError(WhaledError):
    """Anything that stops the daemon before capture starts; one line for the operator."""


def open_source(settings: Settings) -> tuple[Source, LiveSource | None]:
    """The source ``device`` names; the second is the same source when it is live (a sound
    card or a network stream, which can be lost and reopened), else None."""
    origin = parse_origin(settings.origin_utc) if settings.origin_utc else None
    device = settings.device
    if device.startswith("file:"):
        path = Path(device[len("file:"):])
        if not path.is_file():
            raise SourceError(f"recording not found: {path}")
        rate = _file_rate(path)
        if settings.sample_rate_hz and settings.sample_rate_hz != rate:
            raise SourceError(f"--rate {settings.sample_rate_hz} (sample_rate_hz) cannot apply "
                              f"to {path}: a recording is read at its own {rate} Hz and "
                              "resampled for the model; drop --rate")
        source = FileSource(path, block_frames=frames_per_block(settings.block_seconds, rate),
                            speed=settings.speed, channels=settings.channels, origin=origin,
                            timestamp_pattern=settings.timestamp_pattern)
        if source.info.origin_from == "none":
            source.close()
            raise SourceError(f"recording {path} has no start time in its name: give --origin "
                              "(its ISO 8601 start) or --timestamp-pattern")
        return source, None
    if device == "synthetic":
        rate = settings.sample_rate_hz or SYNTHETIC_RATE_HZ
        return SyntheticSource(rate_hz=rate,
                               block_frames=frames_per_block(settings.block_seconds, rate),
                               speed=settings.speed, channels=settings.channels or (1,),
                               seed=settings.seed, origin=origin,
                               truth_path=Path(settings.out) / SYNTHETIC_TRUTH_FILE), None
    from detector.sources.netstream import NetworkSource, is_network_url

    live: LiveSource
    if is_network_url(device):
        live = NetworkSource(device, block_seconds=settings.block_seconds,
                             channels=settings.channels)
        return live, live
    from detector.sources.capture import PortAudioSource

    live = PortAudioSource(device, rate_hz=settings.sample_rate_hz,
                           channels=settings.channels or (1,),
                           block_seconds=settings.block_seconds,
                           queue_seconds=settings.queue_seconds,
                           stall_timeout_seconds=settings.stall_timeout_seconds)
    return live, live


def _file_rate(path: Path) -> int:
    import soundfile

    try:
        return int(soundfile.info(str(path)).samplerate)
    except (RuntimeError, soundfile.LibsndfileError) as error:
        raise SourceError(f"cannot read {path}: {str(error).strip().splitlines()[0]}") from None


def check_outputs(settings: Settings) -> None:
    """The output directory is writable and the evidence directory exists (before capture)."""
    out = Path(settings.out)
    try:
        out.mkdir(parents=True, exist_ok=True)
        probe = out / ".whaled-write-test"
        probe.write_text("")
        probe.unlink()
    except OSError as error:
        raise StartupError(f"output directory {out} is not writable: {error.strerror}")\
            from None
    if settings.evidence:
        folder = evidence_folder(settings)
        try:
            folder.mkdir(parents=True, exist_ok=True)
        except OSError as error:
            raise StartupError(f"evidence directory {folder} cannot be created: "
                               f"{error.strerror}") from None


def evidence_folder(settings: Settings) -> Path:
    return Path(settings.evidence_dir or Path(settings.out) / "evidence")


def open_sinks(settings: Settings, source: Source) -> tuple[JsonlSink, list[Sink]]:
    """The journal (detections.jsonl, which also takes the run records) and every sink."""
    check_outputs(settings)
    out = Path(settings.out)
    journal = JsonlSink(out)
    return journal, [LogSink(), journal,
                     RavenSink(out, source.info.name, source.info.origin_utc,
                               path=replay_table(settings))]


def replay_table(settings: Settings) -> Path | None:
    """A ``file:`` replay's table is named for the recording, as ``detect`` names it
    (``X.wav`` -> ``X.selections.txt``); None for a live source (named for source and start)."""
    if not settings.device.startswith("file:"):
        return None
    return Path(settings.out) / Path(settings.device[len("file:"):]).with_suffix(
        ".selections.txt").name


def open_evidence(settings: Settings, info: StreamInfo, metrics: Metrics
                  ) -> EvidenceRecorder | None:
    if not settings.evidence:
        return None
    check_outputs(settings)
    recorder = EvidenceRecorder(evidence_folder(settings), info, metrics,
                                padding_seconds=settings.evidence_padding_seconds,
                                max_event_seconds=settings.max_duration_seconds,
                                delay_seconds=longest_emission_delay_seconds(settings),
                                max_bytes=settings.evidence_max_bytes,
                                max_age_days=settings.evidence_max_age_days)
    recorder.remove_leftovers()
    recorder.enforce_limits()
    return recorder


def serve_metrics(settings: Settings, registry: CollectorRegistry) -> WSGIServer | None:
    if not settings.metrics_port:
        return None
    try:
        return serve(registry, settings.metrics_address, settings.metrics_port)
    except OSError as error:
        raise StartupError(f"cannot serve metrics on {settings.metrics_address}:"
                           f"{settings.metrics_port}: {error.strerror}") from None


def model_reloader(reload_settings: Callable[[], Settings], metrics: Metrics
                   ) -> Callable[[Pipeline], None]:
    """SIGHUP's request, served by the main loop at one point of its pass: the new model and
    thresholds, or one line saying why the old ones stay."""
    def reload(pipeline: Pipeline) -> None:
        try:
            new = reload_settings()
            new = replace(pipeline.settings, **{k: getattr(new, k) for k in RELOADED_KEYS})
            loaded = check_model(new)
        except WhaledError as error:
            metrics.reloads.labels("failed").inc()
            log.error("reload refused, still running model %s: %s", pipeline.loaded.path, error)
            return
        pipeline.swap_model(loaded, new)
        meta = loaded.metadata
        metrics.set_model(loaded.content_hash, meta.version, str(loaded.path),
                          meta.sample_rate_hz, meta.window_seconds, meta.labels)
        metrics.reloads.labels("ok").inc()
        log.info("reloaded model=%s model_hash=%s on=%.3f off=%.3f", loaded.path,
                 loaded.content_hash, pipeline.thresholds.on, pipeline.thresholds.off)
    return reload


def status_line(status: Status) -> str:
    """systemd's one-line STATUS=: is it listening, and what has it done."""
    state = "listening" if status.flowing else (
        f"STALLED: no audio for {status.silent_seconds:.0f} s"
        if status.stalled else "waiting for audio")
    return (f"{state}; {status.analysed_seconds:.0f} s analysed, "
            f"{status.detections} detections, {status.gaps} gaps")


def listen(settings: Settings, reload_settings: Callable[[], Settings] | None = None,
           requests: signals.Requests | None = None) -> RunSummary:
    """Check everything external, then capture until done; StartupError-like exceptions
    come before the device opens (opening it starts the audio)."""
    requests = requests or signals.install()
    if settings.torch_threads:
        torch.set_num_threads(settings.torch_threads)
    loaded = check_model(settings)
    check_outputs(settings)
    registry = CollectorRegistry()
    with contextlib.ExitStack() as cleanup:
        server = serve_metrics(settings, registry)  # bound now: a busy port stops us here
        if server is not None:
            cleanup.callback(server.server_close)
            cleanup.callback(server.shutdown)
        if requests.stop.is_set():
            log.info("stopped before capture: a stop was asked for during start-up")
            return RunSummary()
        source, live = open_source(settings)
        cleanup.callback(source.close)
        refusal = rate_refusal(source.info.rate_hz, loaded)
        if refusal:  # a file's rate, or a device's capture rate (--rate, its default)
            raise StartupError(f"{source.info.name}: {refusal}")
        return run(settings, source, live, loaded, registry, requests,
                   reload_settings or (lambda: settings), server is not None)
    raise AssertionError("unreachable")  # mypy: ExitStack may swallow exceptions


def run(settings: Settings, source: Source, live: LiveSource | None, loaded: LoadedModel,
        registry: CollectorRegistry, requests: signals.Requests,
        reload_settings: Callable[[], Settings], serving: bool) -> RunSummary:
    info = source.info
    metrics = Metrics(registry, info.channels, loaded.metadata.labels)
    metrics.set_model(loaded.content_hash, loaded.metadata.version, str(loaded.path),
                      loaded.metadata.sample_rate_hz, loaded.metadata.window_seconds,
                      loaded.metadata.labels)
    journal, sinks = open_sinks(settings, source)
    try:
        return run_pipeline(settings, source, live, loaded, metrics, journal, sinks, requests,
                            reload_settings, serving)
    finally:  # on an error path too: no file left open, nothing written half
        for sink in sinks:
            sink.close()


def run_pipeline(settings: Settings, source: Source, live: LiveSource | None,
                 loaded: LoadedModel, metrics: Metrics, journal: JsonlSink, sinks: list[Sink],
                 requests: signals.Requests, reload_settings: Callable[[], Settings],
                 serving: bool) -> RunSummary:
    info = source.info
    evidence = open_evidence(settings, info, metrics)
    pipeline = Pipeline(source, loaded, settings, list(sinks), metrics,
                        records_kept=RECENT_RECORDS_KEPT)
    if evidence is not None:
        pipeline.sinks.append(evidence)
        pipeline.taps.append(evidence)
    selftest = SelfTest(metrics, settings.selftest_interval_seconds, info.rate_hz)
    if settings.selftest_interval_seconds:
        pipeline.taps.append(selftest)
        selftest.calibrate(pipeline.status())  # a model that cannot pass it: a warning now
    watchdog = Watchdog()
    pipeline.hooks.append(selftest)
    if live is not None:
        pipeline.hooks += [DeviceCounters(live, metrics), Reconnector(
            live, metrics, settings.reconnect_min_seconds, settings.reconnect_max_seconds)]
    pipeline.hooks.append(lambda status: watchdog.tick(status.flowing, status_line(status)))
    pipeline.reload_requested = requests.reload
    pipeline.reload = model_reloader(reload_settings, metrics)
    log.info("listening source=%s rate_hz=%d channels=%s origin=%s origin_from=%s "
             "model=%s model_hash=%s torch_device=%s on=%.3f off=%.3f hop_s=%.3f out=%s "
             "metrics=%s", info.name, info.rate_hz, ",".join(map(str, info.channels)),
             info.origin_utc.isoformat(), info.origin_from.replace(" ", "_"), loaded.path,
             loaded.content_hash, loaded.device, pipeline.thresholds.on,
             pipeline.thresholds.off, settings.hop_seconds, settings.out,
             f"{settings.metrics_address}:{settings.metrics_port}" if serving else "off")
    write_run_record(journal, run_record("start", pipeline), metrics)
    reason = "error"
    try:
        summary = pipeline.run(requests.stop)
        reason = (requests.stop_reason() if pipeline.end_reason == "stopped"
                  else pipeline.end_reason)
    except BaseException as error:
        reason = f"error: {type(error).__name__}: {error}"
        raise
    finally:
        if evidence is not None:
            evidence.close()  # clips of what was detected, with the audio there is
        write_run_record(journal, run_record("stop", pipeline, reason), metrics)
    watchdog.stopping(status_line(pipeline.status()))
    for path, lines in pipeline.unwritten():  # the journal keeps what the disk would not
        for line in lines:
            log.error("never written to %s: %s", path, line.rstrip("\n"))
        summary.unwritten.append((str(path), len(lines)))
    log.info("stopped samples=%d windows=%d detections=%d gaps=%d", summary.samples,
             summary.windows, summary.detection_count, summary.gap_count)
    if isinstance(source, FileSource) and reason == "end of stream":  # detect's rule
        from detector.archive.scan import unanalysed

        problem = unanalysed(summary, source.frames, source.declared_frames, info.rate_hz,
                             settings.window_seconds)
        summary.unanalysed = f"{source.path}: {problem}" if problem else ""
    return summary


def run_record(event: str, pipeline: Pipeline, reason: str = "") -> RunRecord:
    """This process starting or stopping, for ``detections.jsonl``."""
    info, s = pipeline.source.info, pipeline.summary
    return RunRecord(event, datetime.now(UTC), os.getpid(), info.name, info.origin_utc,
                     pipeline.loaded.content_hash, VERSION, reason,
                     s.samples / info.rate_hz, s.detection_count, s.gap_count)


def write_run_record(journal: JsonlSink, record: RunRecord, metrics: Metrics) -> None:
    """Into detections.jsonl only; a failure is counted, logged and kept for retry."""
    try:
        journal.write(record)
    except OSError as error:
        metrics.sink_errors.labels(journal.name).inc()
        log.error("cannot write the run %s record (%s); kept for retry", record.event, error)



