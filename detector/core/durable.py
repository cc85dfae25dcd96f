"""Durable writes: what whaled has reported survives a power cut.

The page cache is not the disk. An appended line is ``fdatasync``'ed before its write returns
(detections are rare, a sync costs milliseconds); a file is ``fsync``'ed before the rename that
publishes it, so the name always points at the old or the whole new file; and a directory is
``fsync``'ed after a name in it is created or replaced, or the name itself may be lost.
"""

from __future__ import annotations

import errno
import os
from pathlib import Path

UNSYNCABLE = (errno.EINVAL, errno.ENOTSUP, errno.EBADF)  # directories on some filesystems


def sync_directory(folder: Path) -> None:
    """Make the names in ``folder`` durable (a no-op where the filesystem cannot)."""
    fd = os.open(folder, os.O_RDONLY | getattr(os, "O_DIRECTORY", 0))
    try:
        os.fsync(fd)
    except OSError as error:
        if error.errno not in UNSYNCABLE:
            raise
    finally:
        os.close(fd)


def sync_file(path: Path) -> None:
    fd = os.open(path, os.O_RDONLY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


def publish(tmp: Path, path: Path) -> None:
    """Sync ``tmp``, rename it over ``path`` and sync the directory."""
    sync_file(tmp)
    os.replace(tmp, path)
    sync_directory(path.parent)


def make_directory(folder: Path) -> None:
    """``mkdir -p`` whose new directories survive a power cut."""
    missing = [p for p in (folder, *folder.parents) if not p.exists()]
    folder.mkdir(parents=True, exist_ok=True)
    for created in reversed(missing):
        sync_directory(created.parent)
