"""``whaled listen`` and ``whaled devices``: the live daemon's flags, parsed and checked before
anything slow; the work is :mod:`detector.live.daemon`'s."""

from __future__ import annotations

import logging
import os
from pathlib import Path
from typing import Annotated, Any

import typer

from detector.cli.model import HopOption, OffThresholdOption, OnThresholdOption
from detector.cli.shared import parse_channels, setup_logging
from detector.core.config import Settings
from detector.core.errors import fail


def listen(
    device: Annotated[str | None, typer.Option(
        help="Audio input: a PortAudio device (hw:1,0, pulse, an index), file:PATH to "
             "replay a recording, or synthetic for the built-in simulated hydrophone. "
             "(required, here or as device in --config)")] = None,
    model: Annotated[Path | None, typer.Option(
        help="TorchScript model archive. (default: models/upcall.pt)")] = None,
    config: Annotated[Path | None, typer.Option(
        help="TOML config file; flags override it (see deploy/whaled.example.toml).")] = None,
    out: Annotated[str | None, typer.Option(
        help="Directory for detections.jsonl and the Raven selection tables. "
             "(default: detections)")] = None,
    duration: Annotated[float | None, typer.Option(
        help="Stop after this many seconds of audio received (any source; a gap does not "
             "count). (default: run until stopped)")] = None,
    speed: Annotated[float | None, typer.Option(
        help="Pace of file: and synthetic sources, times real time; 0 = as fast as "
             f"possible. (default: {Settings.speed:g})")] = None,
    rate: Annotated[int | None, typer.Option(
        help="Capture rate in Hz (2000-192000). (default: the device's own)")] = None,
    channels: Annotated[str | None, typer.Option(
        help="Comma-separated 1-based channels to detect on, each separately. "
             "(default: 1 for devices, all for files)")] = None,
    origin: Annotated[str | None, typer.Option(
        help="Start of a file: recording, ISO 8601 (2009-03-29T12:15:00Z; an offset is "
             "applied). (default: the time stamp in the file name; none: refused)")] = None,
    timestamp_pattern: Annotated[str | None, typer.Option(
        help="strptime pattern of the start in the file name, e.g. %Y%m%d_%H%M%S. "
             "(default: YYYYMMDD_HHMMSS, YYYY-MM-DD_HH-MM-SS, SoundTrap, ISO 8601)")] = None,
    torch_device: Annotated[str | None, typer.Option(
        help="Where the model runs: auto (CUDA when available, else CPU), cpu, cuda, "
             "cuda:N. (default: auto)")] = None,
    hop: HopOption = None,
    on_threshold: OnThresholdOption = None,
    off_threshold: OffThresholdOption = None,
    block_seconds: Annotated[float | None, typer.Option(
        help="Audio per capture callback or replayed block. "
             f"(default: {Settings.block_seconds:g})")] = None,
    metrics_address: Annotated[str | None, typer.Option(
        help=f"Address of the Prometheus endpoint. (default: {Settings.metrics_address})")] = None,
    metrics_port: Annotated[int | None, typer.Option(
        help="Port of the Prometheus endpoint; 0 disables it. "
             f"(default: {Settings.metrics_port})")] = None,
    seed: Annotated[int | None, typer.Option(
        help=f"Seed of the synthetic source. (default: {Settings.seed})")] = None,
    log_level: Annotated[str | None, typer.Option(
        help="DEBUG, INFO, WARNING or ERROR. (default: INFO)")] = None,
) -> None:
    """Listen continuously and report upcalls to the log, files and Prometheus."""
    from detector.core import config as config_module

    overrides: dict[str, Any] = {
        "device": device, "model": str(model) if model else None, "out": out,
        "duration_seconds": duration, "speed": speed, "sample_rate_hz": rate,
        "channels": parse_channels(channels), "origin_utc": origin,
        "timestamp_pattern": timestamp_pattern, "torch_device": torch_device,
        "hop_seconds": hop, "on_threshold": on_threshold, "off_threshold": off_threshold,
        "block_seconds": block_seconds, "metrics_address": metrics_address,
        "metrics_port": metrics_port, "seed": seed, "log_level": log_level,
    }
    try:  # config errors come before the heavy imports (torch) so they answer at once
        settings = config_module.load(config, overrides)
    except config_module.ConfigError as error:
        fail(error)
    if not settings.device:  # never the simulated hydrophone unasked: its upcalls are fake
        fail("no input device: give --device (hw:1,0, pulse, an index, file:PATH, or "
             "synthetic for the simulated hydrophone) or device in the config")
    setup_logging(settings.log_level)
    from detector.live import signals

    requests = signals.install()  # first: a signal during the slow start-up is never fatal
    logging.getLogger("whaled").debug("starting pid=%d", os.getpid())
    from detector.core.errors import WhaledError
    from detector.live.daemon import listen as run_listen

    try:
        summary = run_listen(settings, lambda: config_module.load(config, overrides),  # SIGHUP
                             requests)
    except WhaledError as error:
        fail(str(error))
    if summary.unwritten:
        missing = ", ".join(f"{n} lines never reached {path}" for path, n in summary.unwritten)
        fail(f"{missing} (disk full or folder gone); they are in the log above", status=1)
    if summary.unanalysed:  # an empty or too short file: failed, as detect marks it
        fail(summary.unanalysed, status=1)


def devices() -> None:
    """List PortAudio input devices: index, name, host API, channels, default rate."""
    from detector.sources.devices import format_devices, list_input_devices

    found = list_input_devices()
    if not found:
        fail(format_devices(found), status=1)
    typer.echo(format_devices(found))
