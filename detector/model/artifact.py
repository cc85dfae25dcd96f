"""The model artifact: a TorchScript archive that describes itself.

This is the one module that knows the on-disk format. The archive holds a scripted module
that maps a float32 batch of raw windows, shape (batch, window_samples), to probabilities,
shape (batch, labels), and a JSON metadata file readable without torch:

    unzip -p model.pt '*/extra/whaled.json'
"""

from __future__ import annotations

import hashlib
import io
import json
import logging
import math
import warnings
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

import torch

from detector.core.config import Settings
from detector.core.durable import publish
from detector.core.errors import WhaledError
from detector.stream.events import Thresholds

FORMAT_VERSION = 1
METADATA_NAME = "whaled.json"
log = logging.getLogger("whaled")
HASH_HEX_CHARS = 12  # enough to tell models apart in logs and metrics


class ModelError(WhaledError):
    """A model file that cannot be used; the message is one line for the operator."""


@dataclass(frozen=True)
class ModelMetadata:
    sample_rate_hz: int
    window_samples: int
    labels: tuple[str, ...]
    thresholds: Thresholds = field(default_factory=Thresholds)
    version: str = "0"
    format_version: int = FORMAT_VERSION
    extra: dict[str, Any] = field(default_factory=dict)  # training data, metrics, command

    @property
    def window_seconds(self) -> float:
        return self.window_samples / self.sample_rate_hz

    def to_json(self) -> str:
        doc = asdict(self)
        doc["labels"] = list(self.labels)
        return json.dumps(doc, indent=2, sort_keys=True)

    @classmethod
    def from_json(cls, text: str) -> ModelMetadata:
        try:
            doc = json.loads(text)
            if int(doc["format_version"]) > FORMAT_VERSION:
                raise ModelError(f"model format {doc['format_version']} is newer than this "
                                 f"whaled understands ({FORMAT_VERSION})")
            labels = tuple(str(label) for label in doc["labels"])
            if not labels:
                raise ValueError("no labels")
            return cls(
                sample_rate_hz=int(doc["sample_rate_hz"]),
                window_samples=int(doc["window_samples"]),
                labels=labels,
                thresholds=Thresholds(**doc.get("thresholds", {})),
                version=str(doc.get("version", "0")),
                format_version=int(doc["format_version"]),
                extra=dict(doc.get("extra", {})),
            )
        except (KeyError, TypeError, ValueError, json.JSONDecodeError) as error:
            raise ModelError(f"model metadata is invalid ({error!r})") from None


@dataclass(frozen=True, eq=False)
class LoadedModel:
    module: torch.jit.ScriptModule
    metadata: ModelMetadata
    path: Path
    content_hash: str  # first hex digits of the file's SHA-256
    device: torch.device
    # scoring.optimised's frozen module per span hop (samples), made at its first use, so a
    # run over many recordings freezes and warms the model once
    optimised_by_hop: dict[int, torch.jit.ScriptModule] = field(default_factory=dict, repr=False)


def file_hash(path: Path) -> str:
    digest = hashlib.sha256()
    with path.open("rb") as handle:
        for chunk in iter(lambda: handle.read(1 << 20), b""):
            digest.update(chunk)
    return digest.hexdigest()[:HASH_HEX_CHARS]


def save_model(module: torch.nn.Module, metadata: ModelMetadata, path: Path) -> str:
    """Script ``module`` (in eval mode, on the CPU) and write it with its metadata.

    Returns the content hash of the written file.
    """
    was_training = module.training
    module = module.cpu().eval()
    with warnings.catch_warnings():
        warnings.filterwarnings("ignore", category=DeprecationWarning)
        scripted = torch.jit.script(module)
        path.parent.mkdir(parents=True, exist_ok=True)
        tmp = path.with_suffix(path.suffix + ".tmp")
        torch.jit.save(scripted, str(tmp), _extra_files={METADATA_NAME: metadata.to_json()})
    publish(tmp, path)  # synced: a power cut leaves the old model or the whole new one
    module.train(was_training)
    return file_hash(path)


def read_metadata(path: Path) -> ModelMetadata:
    """Read only the metadata (a zip member), without loading the network."""
    return _metadata_from(_read_bytes(Path(path)), Path(path))


def _read_bytes(path: Path) -> bytes:
    try:
        return path.read_bytes()
    except FileNotFoundError:
        raise ModelError(f"model file not found: {path}") from None
    except (IsADirectoryError, PermissionError) as error:
        raise ModelError(f"{path}: not a TorchScript archive ({error})") from None


def _metadata_from(data: bytes, path: Path) -> ModelMetadata:
    import zipfile

    try:
        with zipfile.ZipFile(io.BytesIO(data)) as archive:
            names = [n for n in archive.namelist() if n.endswith(f"/extra/{METADATA_NAME}")]
            if not names:
                raise ModelError(f"{path}: not a whaled model (no extra/{METADATA_NAME} inside)")
            return ModelMetadata.from_json(archive.read(names[0]).decode())
    except zipfile.BadZipFile as error:
        raise ModelError(f"{path}: not a TorchScript archive ({error})") from None


def load_model(path: Path, device: torch.device | str = "cpu") -> LoadedModel:
    """Load and check a model; raise :class:`ModelError` with one line on any problem.

    The file is read once: the metadata, the module and the content hash all come from the
    same bytes, so a file replaced while loading cannot pair one model with another's hash.
    """
    path = Path(path)
    data = _read_bytes(path)
    metadata = _metadata_from(data, path)
    torch_device = torch.device(device)
    try:
        with warnings.catch_warnings():
            warnings.filterwarnings("ignore", category=DeprecationWarning)
            module = torch.jit.load(io.BytesIO(data), map_location=torch_device)
    except (RuntimeError, ValueError) as error:
        first_line = str(error).strip().splitlines()[0] if str(error).strip() else repr(error)
        raise ModelError(f"{path}: cannot load the TorchScript module ({first_line})") from None
    module.eval()
    probe = torch.zeros(1, metadata.window_samples, device=torch_device)
    try:
        with torch.inference_mode():
            out = module(probe)
    except RuntimeError as error:
        raise ModelError(f"{path}: the model fails on a silent window ({error})") from None
    if tuple(out.shape) != (1, len(metadata.labels)):
        raise ModelError(f"{path}: the model returns shape {tuple(out.shape)} for one window, "
                         f"expected (1, {len(metadata.labels)}) for labels {metadata.labels}")
    content_hash = hashlib.sha256(data).hexdigest()[:HASH_HEX_CHARS]
    return LoadedModel(module, metadata, path, content_hash, torch_device)


def span_grid_samples(loaded: LoadedModel) -> int:
    """The hop grid, in samples, on which the module's ``score_span`` shares work; 0: none.

    ``score_span(audio (channels, samples), hop_samples) -> (channels, windows, labels)``
    scores every window of a contiguous span at once (see :class:`detector.model.network.
    SharedTrunkNet`), equal to the module called on each window cut out.
    """
    if not hasattr(loaded.module, "score_span"):
        return 0
    return int(getattr(loaded.module, "span_grid_samples", 0))


def listening_band_hz(loaded: LoadedModel) -> tuple[float, float]:
    """(low, high) Hz of what the model hears: the bins its spectrogram keeps (``n_fft``,
    ``low_bin``, ``n_bins``: 23-523 Hz for the shipped network), else up to its Nyquist."""
    rate = loaded.metadata.sample_rate_hz
    for _, part in loaded.module.named_modules():
        if all(hasattr(part, name) for name in ("n_fft", "low_bin", "n_bins")):
            bin_hz = rate / int(part.n_fft)
            return int(part.low_bin) * bin_hz, (int(part.low_bin) + int(part.n_bins)) * bin_hz
    return 0.0, rate / 2


def rate_refusal(rate_hz: int, loaded: LoadedModel) -> str:
    """Why audio at ``rate_hz`` cannot be scanned by this model ("" when it can): its Nyquist
    is below the top of the model's band, so the top of every window would be empty, not
    quiet, and the model would score what it never heard (resampling up adds no band)."""
    low_hz, high_hz = listening_band_hz(loaded)
    if rate_hz / 2 >= high_hz:
        return ""
    return (f"sample rate {rate_hz} Hz cannot hold the {low_hz:.0f}-{high_hz:.0f} Hz band the "
            f"model listens to (at least {math.ceil(2 * high_hz)} Hz is needed)")


def pick_torch_device(requested: str) -> torch.device:
    """``auto`` means CUDA when available, else the CPU."""
    if requested == "auto":
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    try:
        device = torch.device(requested)
    except RuntimeError:
        raise ModelError(f"unknown torch device {requested!r} (use auto, cpu, cuda or cuda:N)")\
            from None
    if device.type == "cuda" and not torch.cuda.is_available():
        raise ModelError(f"torch device {requested!r} asked for, but CUDA is not available")
    return device


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
    warn_off_grid_hop(loaded, settings.hop_seconds)
    return loaded


def off_grid_hop_warning(loaded: LoadedModel, hop_seconds: float) -> str | None:
    """The warning for a hop off the model's span grid (every window scored alone), or None."""
    grid = span_grid_samples(loaded)
    rate = loaded.metadata.sample_rate_hz
    hop = round(hop_seconds * rate)
    if grid <= 0 or hop >= loaded.metadata.window_samples or hop % grid == 0:
        return None
    nearest = max(grid, round(hop / grid) * grid) / rate
    return (f"hop {hop_seconds:g} s is not a multiple of the model's {grid / rate:g} s span "
            f"grid: each window is scored alone instead of sharing work with its neighbours, "
            f"several times slower; --hop {nearest:g} keeps the fast path")


def warn_off_grid_hop(loaded: LoadedModel, hop_seconds: float) -> None:
    warning = off_grid_hop_warning(loaded, hop_seconds)
    if warning:
        log.warning("%s", warning)
