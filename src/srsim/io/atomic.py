"""Write-then-rename helpers, so an interrupted job never leaves a file that looks complete, and the checksum
that resumable writers journal to verify what is on disk."""

from __future__ import annotations

import contextlib
import os
import shutil
import uuid
import zlib
from pathlib import Path
from typing import Iterator

import numpy as np


def temporary_sibling(path: str | Path, tag: str = "tmp") -> Path:
    """A unique temporary name in the same directory as `path` (same filesystem, so rename is atomic)."""
    path = Path(path)
    return path.with_name(f".{path.name}.{tag}-{uuid.uuid4().hex[:8]}")


def replace_path(src: Path, dst: Path) -> None:
    """Move `src` to `dst`, replacing an existing file or directory at `dst`."""
    dst = Path(dst)
    if dst.is_dir() and not dst.is_symlink():
        old = temporary_sibling(dst, "old")
        os.replace(dst, old)
        os.replace(src, dst)
        shutil.rmtree(old, ignore_errors=True)
    else:
        os.replace(src, dst)


@contextlib.contextmanager
def atomic_path(path: str | Path, *, directory: bool = False) -> Iterator[Path]:
    """Yield a temporary path to write to; on success rename it to `path`, on error delete it.

    `directory=True` creates the temporary directory first (for bigfile snapshots).
    """
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = temporary_sibling(path)
    if directory:
        tmp.mkdir()
    try:
        yield tmp
    except BaseException:
        if tmp.is_dir():
            shutil.rmtree(tmp, ignore_errors=True)
        elif tmp.exists():
            tmp.unlink()
        raise
    replace_path(tmp, path)


try:  # ISA-L's CRC32 is zlib's, 3-4x faster (measured in benchmarks/generate.py --profile's setting)
    from isal.isal_zlib import crc32 as _crc32
except ImportError:  # an environment without it gets the same checksums from zlib, slower
    _crc32 = zlib.crc32


def crc32(a: np.ndarray) -> int:
    """CRC32 (zlib's) of an array's bytes in C order (for checking chunks read back from disk)."""
    return _crc32(np.ascontiguousarray(a).view(np.uint8).reshape(-1))
