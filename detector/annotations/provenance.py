"""What a model was trained on, and whether an evaluation scores the same audio.

Training records every file its examples came from in the model's metadata
(``extra["trained_on"]``): the path relative to the folder they all share, the SHA-256 of the
file's bytes and how far into it training read. ``whaled evaluate`` hashes what it scores and
warns, one line per file, when the model heard it, so a copied or renamed file still matches.
Models written before this recorded only file names (``extra["recordings"]``, and a fold
model's ``extra["fold"]["trained_on"]``); those are matched by name.
"""

from __future__ import annotations

import functools
import hashlib
import os
from collections.abc import Iterable, Mapping, Sequence
from pathlib import Path
from typing import Any

from detector.model.network import SAMPLE_RATE_HZ
from detector.train.examples import Dataset

TRAINED_ON_KEY = "trained_on"
HASH_CHUNK_BYTES = 1 << 20
NOT_OUT_OF_SAMPLE = "its figures are not out-of-sample"


def content_sha256(path: Path) -> str:
    """The SHA-256 of the file's bytes, read once per file version (size and time)."""
    stat = path.stat()
    return _sha256(str(path.resolve()), stat.st_size, stat.st_mtime_ns)


@functools.cache
def _sha256(path: str, size_bytes: int, mtime_ns: int) -> str:
    digest = hashlib.sha256()
    with open(path, "rb") as handle:
        for chunk in iter(lambda: handle.read(HASH_CHUNK_BYTES), b""):
            digest.update(chunk)
    return digest.hexdigest()


def trained_on(dataset: Dataset) -> list[dict[str, object]]:
    """Each file behind ``dataset``'s examples (training and validation alike: validation
    chooses the epoch and threshold): ``path`` relative to the folder every one of them is
    in, ``sha256``, ``bytes`` (evaluate hashes only files of a size trained on) and
    ``until_seconds``, the end of the last audio taken from it."""
    ends: dict[str, float] = {}
    for example in (*dataset.train, *dataset.validation):
        end = example.start_seconds + len(example.audio) / SAMPLE_RATE_HZ
        ends[example.source] = max(ends.get(example.source, 0.0), end)
    files = {source: Path(source).resolve() for source in ends if Path(source).is_file()}
    if not files:
        return []
    root = os.path.commonpath([str(p.parent) for p in files.values()])
    return [{"path": Path(os.path.relpath(path, root)).as_posix(),
             "sha256": content_sha256(path), "bytes": path.stat().st_size,
             "until_seconds": round(ends[source], 3)}
            for source, path in sorted(files.items())]


def without(entries: Iterable[Mapping[str, Any]], names: Iterable[str]
            ) -> list[dict[str, Any]]:
    """``entries`` of :func:`trained_on` less the files named ``names`` (a fold's held out)."""
    held = set(names)
    return [dict(e) for e in entries if Path(str(e["path"])).name not in held]


def overlap_warnings(extra: Mapping[str, Any], scored: Sequence[Path],
                     from_seconds: float = 0.0) -> list[str]:
    """One line for each of ``scored`` the model described by ``extra`` was trained on.

    A model with hashes matches by content, and not when scoring starts (``from_seconds``)
    at or after the audio training read; an older model matches by file name."""
    entries = extra.get(TRAINED_ON_KEY)
    by_hash = {str(e["sha256"]): e for e in entries if isinstance(e, Mapping) and
               e.get("sha256")} if isinstance(entries, list) else {}
    if by_hash:
        sizes = {e.get("bytes") for e in by_hash.values()}
        lines = []
        for path in scored:
            try:
                if None not in sizes and path.stat().st_size not in sizes:
                    continue  # no file trained on has its size: no need to hash it
                entry = by_hash.get(content_sha256(path))
            except OSError:
                continue  # unreadable: scoring it says so
            if entry is None or from_seconds >= float(entry.get("until_seconds", "inf")):
                continue
            same = "" if Path(str(entry["path"])).name == path.name else \
                f" (the same bytes as {entry['path']})"
            lines.append(f"{path}: the model was trained on this recording{same}; "
                         f"{NOT_OUT_OF_SAMPLE}")
        return lines
    names = {str(n) for n in extra.get("recordings", [])}
    fold = extra.get("fold")
    if isinstance(fold, Mapping):
        names |= {str(n) for n in fold.get("trained_on", [])}
    return [f"{path}: the model was trained on a recording of this name (it records names "
            f"only); {NOT_OUT_OF_SAMPLE}" for path in scored if path.name in names]
