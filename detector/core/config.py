"""The daemon's settings: one TOML file (``--config``), command-line flags override it.

Every key, its unit and its default is documented in ``deploy/whaled.example.toml``, which a
test loads. An unknown key or a bad value is a :class:`ConfigError` naming the key.
"""

from __future__ import annotations

import math
import tomllib
from dataclasses import dataclass, fields, replace
from pathlib import Path
from typing import Any

from detector.core.errors import WhaledError
from detector.core.rates import CAPTURE_RATES_HZ, MODEL_RATES_HZ, in_range, range_text

PACKAGE_DIR = Path(__file__).resolve().parent.parent  # detector/, above core/
CHECKOUT_MODEL = PACKAGE_DIR.parent / "models" / "upcall.pt"  # a checkout, an editable install
INSTALLED_MODEL = PACKAGE_DIR / "models" / "upcall.pt"  # an installed wheel (setup.py puts it)


def default_model() -> Path:
    """The shipped model: ``models/upcall.pt`` of a checkout, else the installed package's."""
    if CHECKOUT_MODEL.exists() or not INSTALLED_MODEL.exists():
        return CHECKOUT_MODEL
    return INSTALLED_MODEL


class ConfigError(WhaledError):
    """A configuration problem; the message names the key (and the flag, when one set it)."""

    def __init__(self, message: str, key: str = "", detail: str = "") -> None:
        super().__init__(message)
        self.key = key  # the config key at fault, when there is one
        self.detail = detail  # the message without the key's name


# Command-line flags whose name is not the config key with - for _ (listen, detect).
FLAG_NAMES = {"duration_seconds": "--duration", "sample_rate_hz": "--rate",
              "origin_utc": "--origin", "hop_seconds": "--hop", "torch_threads": "--threads"}


def flag_name(key: str) -> str:
    """The flag that sets ``key``: ``hop_seconds`` -> ``--hop``."""
    return FLAG_NAMES.get(key, "--" + key.replace("_", "-"))


def _key_error(key: str, detail: str) -> ConfigError:
    return ConfigError(f"config key {key!r}: {detail}", key, detail)


@dataclass(frozen=True)
class Settings:
    # audio input
    device: str = ""  # PortAudio device (hw:1,0, pulse, an index), file:PATH, synthetic;
    # listen refuses to start without one (never the simulated hydrophone by default)
    sample_rate_hz: int = 0  # capture rate; 0: the device's default (synthetic: 2000)
    channels: tuple[int, ...] = ()  # 1-based channels to detect on; empty: all (devices: 1)
    block_seconds: float = 0.1  # audio per capture callback or replayed block
    queue_seconds: float = 60.0  # capture backlog held before blocks are dropped
    speed: float = 1.0  # file: and synthetic pacing, times real time; 0: as fast as possible
    origin_utc: str = ""  # ISO 8601 start of a file: recording (an offset is applied)
    timestamp_pattern: str = ""  # strptime pattern of the start in recording names
    duration_seconds: float = 0.0  # stop after this much audio; 0: run until stopped
    seed: int = 1  # synthetic source
    # model and inference
    model: str = ""  # TorchScript archive; empty: the model shipped in models/
    torch_device: str = "auto"  # auto (cuda when available, else cpu), cpu, cuda, cuda:N
    torch_threads: int = 0  # intra-op CPU threads; 0: torch's default
    model_rate_hz: int = 2000  # the rate this deployment expects; another model is refused
    window_seconds: float = 2.0  # the window this deployment expects; another model is refused
    hop_seconds: float = 0.25  # between window starts
    max_batch_windows: int = 256  # largest batch sent to the model at once
    # event tracker; negative thresholds: the model's own defaults
    on_threshold: float = -1.0
    off_threshold: float = -1.0
    min_duration_seconds: float = 0.0
    merge_gap_seconds: float = 0.5
    max_duration_seconds: float = 10.0
    # outputs
    out: str = "detections"  # directory for detections.jsonl and detections.selections.txt
    metrics_address: str = "127.0.0.1"
    metrics_port: int = 9872  # 0 disables the Prometheus endpoint
    log_level: str = "INFO"
    # health and recovery
    stall_timeout_seconds: float = 10.0  # live audio absent this long is a stall: logged,
    # counted, recorded as a "stall" gap, systemd's watchdog withheld; 0: never
    reconnect_min_seconds: float = 1.0  # first wait before reopening a lost device (doubles)
    reconnect_max_seconds: float = 60.0  # longest wait between reopen attempts
    selftest_interval_seconds: float = 600.0  # a reference upcall mixed into recent live
    # audio and run through the model in a side path this often; 0: never (docs/operations.md)
    # evidence for review: a WAV and a spectrogram PNG per detection
    evidence: bool = True  # false: save no clips
    evidence_dir: str = ""  # empty: <out>/evidence; one folder per label, read by whaled train
    evidence_padding_seconds: float = 5.0  # audio saved before and after each detection
    evidence_max_bytes: int = 1_000_000_000  # oldest clips removed beyond this total size
    evidence_max_age_days: float = 90.0  # clips older than this removed; 0: no age limit

    @property
    def model_path(self) -> Path:
        return Path(self.model) if self.model else default_model()


def _coerce(key: str, value: Any, default: Any) -> Any:
    kind = type(default)
    if isinstance(default, bool):
        ok = isinstance(value, bool)
    elif kind is float:
        ok = isinstance(value, int | float) and not isinstance(value, bool)
        value = float(value) if ok else value
        if ok and not math.isfinite(value):  # TOML's inf and nan: no limit means 0 here
            raise _key_error(key, f"{value!r} is not a finite number")
    elif kind is int:
        ok = isinstance(value, int) and not isinstance(value, bool)
    elif kind is tuple:
        ok = isinstance(value, list | tuple) and all(
            isinstance(v, int) and not isinstance(v, bool) for v in value)
        value = tuple(value) if ok else value
    else:
        ok = isinstance(value, kind)
    if not ok:
        raise _key_error(key, f"expected {kind.__name__}, got {value!r}")
    return value


def validate(settings: Settings) -> Settings:
    s = settings
    checks = [
        ("block_seconds", 0.001 <= s.block_seconds <= 10.0, "between 0.001 and 10"),
        ("queue_seconds", s.queue_seconds >= 1.0, "at least 1"),
        ("speed", s.speed >= 0.0, "0 or more"),
        ("duration_seconds", s.duration_seconds >= 0.0, "0 or more"),
        ("sample_rate_hz", s.sample_rate_hz == 0 or in_range(s.sample_rate_hz, CAPTURE_RATES_HZ),
         f"0 or {range_text(CAPTURE_RATES_HZ)}"),
        ("hop_seconds", 0.01 <= s.hop_seconds <= 60.0, "between 0.01 and 60"),
        ("model_rate_hz", in_range(s.model_rate_hz, MODEL_RATES_HZ), range_text(MODEL_RATES_HZ)),
        ("window_seconds", 0.1 <= s.window_seconds <= 60.0, "between 0.1 and 60"),
        ("max_batch_windows", s.max_batch_windows >= 1, "at least 1"),
        ("on_threshold", s.on_threshold < 0 or s.on_threshold <= 1, "at most 1"),
        ("off_threshold", s.off_threshold < 0 or s.off_threshold <= 1, "at most 1"),
        ("min_duration_seconds", s.min_duration_seconds >= 0, "0 or more"),
        ("merge_gap_seconds", s.merge_gap_seconds >= 0, "0 or more"),
        ("max_duration_seconds", s.max_duration_seconds > 0, "more than 0"),
        ("metrics_port", 0 <= s.metrics_port <= 65535, "0-65535"),
        ("channels", all(c >= 1 for c in s.channels), "1-based channel numbers"),
        ("channels", len(set(s.channels)) == len(s.channels),
         "each channel once, or its detections are reported twice"),
        ("hop_seconds", s.hop_seconds <= s.window_seconds,
         "at most window_seconds, or the audio between windows is never analysed"),
        ("torch_threads", s.torch_threads >= 0, "0 or more"),
        ("stall_timeout_seconds", s.stall_timeout_seconds >= 0, "0 or more"),
        ("reconnect_min_seconds", s.reconnect_min_seconds > 0, "more than 0"),
        ("selftest_interval_seconds", s.selftest_interval_seconds >= 0, "0 or more"),
        ("reconnect_max_seconds", s.reconnect_max_seconds >= s.reconnect_min_seconds,
         "at least reconnect_min_seconds"),
        ("evidence_padding_seconds", 0 <= s.evidence_padding_seconds <= 60, "between 0 and 60"),
        ("evidence_max_bytes", s.evidence_max_bytes >= 0, "0 or more"),
        ("evidence_max_age_days", s.evidence_max_age_days >= 0, "0 or more"),
        ("log_level", s.log_level.upper() in {"DEBUG", "INFO", "WARNING", "ERROR"},
         "DEBUG, INFO, WARNING or ERROR"),
    ]
    for key, ok, expected in checks:
        if not ok:
            raise _key_error(key, f"{getattr(s, key)!r} is invalid ({expected})")
    if 0 <= s.on_threshold < s.off_threshold and s.off_threshold >= 0:
        raise _key_error("off_threshold", f"{s.off_threshold} is above on_threshold "
                         f"{s.on_threshold}")
    from detector.core.stamps import StampError, compile_pattern, parse_origin

    try:
        if s.origin_utc:
            parse_origin(s.origin_utc)
    except StampError as error:
        raise _key_error("origin_utc", str(error)) from None
    try:
        if s.timestamp_pattern:
            compile_pattern(s.timestamp_pattern)
    except StampError as error:
        raise _key_error("timestamp_pattern", str(error)) from None
    return s


def merge(settings: Settings, values: dict[str, Any], where: str) -> Settings:
    """Apply ``values`` (from a TOML file or flags) over ``settings``, checking each key."""
    defaults = {f.name: f.default for f in fields(Settings)}
    changes = {}
    for key, value in values.items():
        if key not in defaults:
            raise ConfigError(f"unknown config key {key!r} in {where}")
        changes[key] = _coerce(key, value, defaults[key])
    return validate(replace(settings, **changes))


def load(path: Path | None, overrides: dict[str, Any]) -> Settings:
    """Defaults, then the TOML file, then the flags that were given."""
    settings = Settings()
    if path is not None:
        try:
            doc = tomllib.loads(Path(path).read_text())
        except FileNotFoundError:
            raise ConfigError(f"config file not found: {path}") from None
        except (tomllib.TOMLDecodeError, UnicodeDecodeError, IsADirectoryError) as error:
            raise ConfigError(f"config file {path} is not valid TOML: {error}") from None
        settings = merge(settings, doc, str(path))
    flags = {k: v for k, v in overrides.items() if v is not None}
    try:
        return merge(settings, flags, "flags")
    except ConfigError as error:
        if error.key not in flags:
            raise
        raise ConfigError(f"{flag_name(error.key)}: {error.detail} (config key "
                          f"{error.key!r})", error.key, error.detail) from None
