"""The ``whaled`` command line: listen, detect, devices, train, evaluate, inspect."""

from __future__ import annotations

import functools
import inspect
import logging
import math
import os
import sys
from collections.abc import Callable
from pathlib import Path
from typing import Annotated, Any, get_args

import typer

from detector.cli import evaluate as evaluate_command
from detector.cli import model as model_commands
from detector.cli import train as train_command
from detector.cli.model import HopOption, OffThresholdOption, OnThresholdOption
from detector.core.config import Settings
from detector.core.errors import fail

app = typer.Typer(add_completion=False, no_args_is_help=True, pretty_exceptions_enable=False,
                  help="Streaming detector of North Atlantic right whale upcalls.")
REVIEW_PORT = 9873  # next to the metrics endpoint's 9872
HELP_MIN_COLUMNS = 120  # narrower, rich cuts option names and help with an ellipsis


def _print_version(value: bool) -> None:
    if value:
        from detector.core.version import VERSION

        typer.echo(f"whaled {VERSION}")
        raise typer.Exit()


@app.callback()
def _root(version: Annotated[bool, typer.Option(
        "--version", callback=_print_version, is_eager=True,
        help="Print the version and exit.")] = False) -> None:
    """Streaming detector of North Atlantic right whale upcalls."""


def _channels(text: str | None) -> list[int] | None:
    if text is None:
        return None
    try:
        return [int(part) for part in text.split(",") if part.strip()]
    except ValueError:
        raise typer.BadParameter(f"{text!r} is not a comma-separated list of channel numbers")\
            from None


@app.command()
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
        "channels": _channels(channels), "origin_utc": origin,
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


@app.command()
def detect(
    paths: Annotated[list[Path], typer.Argument(
        help="Recordings (WAV, FLAC, AIFF; any rate; every channel) and folders of them.")],
    model: Annotated[Path | None, typer.Option(
        help="TorchScript model archive. (default: models/upcall.pt)")] = None,
    config: Annotated[Path | None, typer.Option(
        help="TOML config file (thresholds, hop, ...); flags override it.")] = None,
    out: Annotated[str, typer.Option(
        help="Directory for detections.jsonl and one Raven table per recording; a rerun "
             "over it skips recordings already complete.")] = "detections",
    shard: Annotated[str, typer.Option(
        help="K/N: only the recordings of shard K (0-based) of N, e.g. "
             "$SLURM_ARRAY_TASK_ID/$SLURM_ARRAY_TASK_COUNT.")] = "0/1",
    dask: Annotated[str | None, typer.Option(
        help="Fan recordings out over a Dask scheduler at this address, or 'local' for a "
             "LocalCluster (needs the dask extra).")] = None,
    channels: Annotated[str | None, typer.Option(
        help="Comma-separated 1-based channels, each detected separately. (default: all)")]
    = None,
    origin: Annotated[str | None, typer.Option(
        help="Start of the one recording given, ISO 8601 (an offset is applied).")] = None,
    timestamp_pattern: Annotated[str | None, typer.Option(
        help="strptime pattern of the start in file names (%Y %y %m %d %j %H %M %S %f %z), "
             "e.g. %Y%m%d_%H%M%S; with a / it is matched against the whole path. (default: "
             "YYYYMMDD_HHMMSS, YYYY-MM-DD_HH-MM-SS, SoundTrap NNNN.YYMMDDHHMMSS, ISO 8601)")]
    = None,
    hop: HopOption = None,
    on_threshold: OnThresholdOption = None,
    off_threshold: OffThresholdOption = None,
    torch_device: Annotated[str | None, typer.Option(
        help="auto, cpu, cuda, cuda:N. (default: auto)")] = None,
    threads: Annotated[int | None, typer.Option(
        help="Torch CPU threads. (default: torch's, one per core)")] = None,
    progress: Annotated[bool, typer.Option(help="Show a progress line on stderr.")] = True,
    save_scores: Annotated[bool, typer.Option(
        help="Keep every window's scores in OUT/scores/ (one .npz per recording), so "
             "'whaled events' redoes detections at another threshold without rescanning.")]
    = False,
    evidence: Annotated[int, typer.Option(
        help="Evidence clips (WAV, spectrogram, JSON) in OUT/evidence/ for the N "
             "highest-scoring detections of each recording and N more drawn at random from "
             "the rest, for whaled review and whaled train.")] = 0,
    figure: Annotated[bool, typer.Option(
        help="Redraw OUT/presence_daily.png at the end (about a second, matplotlib's); "
             "--no-figure leaves it to 'whaled presence OUT', e.g. for shards or one file "
             "at a time.")] = True,
) -> None:
    """Scan recordings and archives offline with the listen pipeline; resumable."""
    from detector.core import config as config_module
    from detector.stream.blocks import SCAN_BLOCK_SECONDS

    overrides: dict[str, Any] = {
        "model": str(model) if model else None, "channels": _channels(channels),
        "hop_seconds": hop, "on_threshold": on_threshold, "off_threshold": off_threshold,
        "torch_device": torch_device, "torch_threads": threads, "speed": 0.0,
        "origin_utc": origin, "timestamp_pattern": timestamp_pattern,
        "block_seconds": SCAN_BLOCK_SECONDS, "evidence": False, "metrics_port": 0}
    try:
        settings = config_module.load(config, overrides)
    except config_module.ConfigError as error:
        fail(error)
    setup_logging(settings.log_level)
    from detector.cli.detect import run_detect_command

    raise typer.Exit(run_detect_command(paths, settings, Path(out), shard, dask, progress,
                                        save_scores, evidence, figure))


@app.command()
def events(
    scores: Annotated[list[Path], typer.Argument(
        help="Scores files (*.scores.npz from detect --save-scores) and folders of them, "
             "e.g. OUT/scores.")],
    on_threshold: Annotated[float | None, typer.Option(
        help="Score that opens a detection (required).")] = None,
    off_threshold: Annotated[float | None, typer.Option(
        help="Score below which a detection closes. (default: the model's, at most the "
             "on-threshold, as detect)")] = None,
    out: Annotated[Path | None, typer.Option(
        help="Directory for the redone detections, written as detect writes them "
             "(required).")] = None,
) -> None:
    """Redo detections from saved scores at another threshold, without rescanning."""
    from detector.cli.detect import run_events_command

    setup_logging("INFO")
    raise typer.Exit(run_events_command(scores, on_threshold, off_threshold, out))


@app.command()
def presence(
    out_dir: Annotated[Path, typer.Argument(
        help="A detect output folder, or one holding shards' detections.jsonl merged.")],
    target_precision: Annotated[float | None, typer.Option(
        help="Precision the threshold guidance aims for. (default: 0.9)")] = None,
) -> None:
    """Rewrite detections.csv, the presence tables (validated ones too), the figure and the
    season's Raven table with the verdicts so far; print the threshold guidance."""
    from detector.cli.detect import run_presence_command

    setup_logging("INFO")
    raise typer.Exit(run_presence_command(out_dir, target_precision))


@app.command()
def devices() -> None:
    """List PortAudio input devices: index, name, host API, channels, default rate."""
    from detector.sources.devices import format_devices, list_input_devices

    found = list_input_devices()
    if not found:
        fail(format_devices(found), status=1)
    typer.echo(format_devices(found))


@app.command()
def review(
    out_dir: Annotated[Path, typer.Argument(help="A listen or detect output folder.")],
    audio: Annotated[list[Path] | None, typer.Option(
        help="A recording, or a folder of them, to cut audio from when the path the "
             "output recorded is gone and there is no evidence clip; repeatable.")] = None,
    address: Annotated[str, typer.Option(help="Address to serve the page on.")] = "127.0.0.1",
    port: Annotated[int, typer.Option(
        help="Port of the page; 0 picks a free one.")] = REVIEW_PORT,
    reviewer: Annotated[str | None, typer.Option(
        help="Name written in the Reviewer column. (default: the login name)")] = None,
) -> None:
    """Confirm or reject detections in a local web page; verdicts go to OUT_DIR/review/."""
    from detector.review.server import run_review_command

    setup_logging("INFO")
    raise typer.Exit(run_review_command(out_dir, audio or [], address, port, reviewer))


def setup_logging(level: str) -> None:
    logging.basicConfig(stream=sys.stderr, level=level.upper(),
                        format="%(levelname)s %(name)s %(message)s", force=True)


app.command("train")(train_command.train)
app.command("evaluate")(evaluate_command.evaluate)
app.command("inspect")(model_commands.inspect)


def flag_of(function: Callable[..., Any], name: str) -> str:
    """The flag that sets ``name`` of a command: its declared --name, else typer's."""
    annotation = inspect.signature(function).parameters[name].annotation
    for info in get_args(annotation)[1:]:
        declared = [d for d in getattr(info, "param_decls", ()) or () if d.startswith("--")]
        if declared:
            return max(declared, key=len)
    return "--" + name.replace("_", "-")


def finite_numbers(command: Callable[..., Any]) -> Callable[..., Any]:
    """``command`` refusing inf and nan (which Python's float() reads) in any number flag:
    one error line and exit 2, before it does anything (config.py does the same for TOML)."""
    @functools.wraps(command)
    def checked(**flags: Any) -> Any:
        for name, value in flags.items():
            for number in value if isinstance(value, list | tuple) else [value]:
                if isinstance(number, float) and not math.isfinite(number):
                    fail(f"{flag_of(command, name)}: {number} is not a finite number")
        return command(**flags)
    return checked


for _info in app.registered_commands:  # every command, these and the ones above
    if _info.callback is not None:
        _info.callback = finite_numbers(_info.callback)


def help_width() -> int:
    """Columns for rich's help: the terminal's, but never so few that it cuts text."""
    try:
        columns = os.get_terminal_size(sys.stdout.fileno()).columns
    except (OSError, ValueError):
        columns = 0
    return max(columns, HELP_MIN_COLUMNS)


def main() -> None:
    # typer's rich_utils (0.1 s of imports) reads TERMINAL_WIDTH when help or a usage error
    # first needs it; set here, a command that prints neither never imports it
    if not os.environ.get("TERMINAL_WIDTH"):  # typer's own setting wins
        os.environ["TERMINAL_WIDTH"] = str(help_width())
    app()


if __name__ == "__main__":
    main()
