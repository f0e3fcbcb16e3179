"""Advisory file locks (flock) for processes that share an output directory."""

from __future__ import annotations

import contextlib
import fcntl
from pathlib import Path
from typing import Iterator

from srsim.errors import SrsimError

__all__ = ["locked"]


@contextlib.contextmanager
def locked(path, *, busy: str | None = None) -> Iterator[None]:
    """Hold an exclusive advisory lock on the file `path` (created with its directory if missing).

    busy: None waits for the lock (jobs that take turns, e.g. creating one shared partial output); a
    message makes a held lock an SrsimError(busy) at once (a second process must not run the same job).
    """
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    with open(path, "a") as fh:
        if busy is None:
            fcntl.flock(fh, fcntl.LOCK_EX)
        else:
            try:
                fcntl.flock(fh, fcntl.LOCK_EX | fcntl.LOCK_NB)
            except OSError as exc:
                raise SrsimError(busy) from exc
        try:
            yield
        finally:
            fcntl.flock(fh, fcntl.LOCK_UN)
