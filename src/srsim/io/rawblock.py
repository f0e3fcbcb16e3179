"""Writing rows of a bigfile block straight into its data files: the bytes and header bigfile's own write leaves.

bigfile's write converts every element through a generic iterator into a 64 MB buffer before `fwrite`,
which on the generator's hot path runs several times slower than the disk (benchmarks/generate.py
--profile). A block of a native little-endian dtype stores its rows raw, so `RawBlock.write` hands the
array's bytes to `os.pwrite` at the row's offset in the right data file(s), and adds their byte sum
(bigfile's "sysv" checksum: the sum of all bytes written, mod 2^32) to the file's entry in the block
``header``, which it rewrites in bigfile's format. The header update is serialised between threads and,
through an flock on the data file, between processes writing the same block (bigfile itself does not
guard it).
"""

from __future__ import annotations

import fcntl
import os
import re
import threading
from pathlib import Path

import numpy as np

__all__ = ["RawBlock", "byte_sum", "read_block_header"]

_FILE_LINE = re.compile(r"\s*([0-9A-Fa-f]+):\s*(\d+)\s*:\s*(\d+)\s*:\s*(\d+)\s*$")
_KERNEL = None


def byte_sum(buf: np.ndarray) -> int:
    """Sum of the bytes of a C-contiguous array, mod 2^32 (bigfile's per-file checksum increment)."""
    global _KERNEL
    if _KERNEL is None:
        import numba

        @numba.njit(nogil=True, cache=True)
        def _sum(b):  # 8 bytes at a time would need lane masks; the compiled byte loop runs at GB/s
            s = np.uint64(0)
            for i in range(b.size):
                s += b[i]
            return s

        _KERNEL = _sum
    return int(_KERNEL(np.ascontiguousarray(buf).reshape(-1).view(np.uint8))) & 0xFFFFFFFF


def read_block_header(path: Path) -> tuple[dict, list[list[int]]]:
    """A block header: ({DTYPE, NMEMB, NFILE}, [[size, checksum, folded] per file])."""
    lines = path.read_text().splitlines()
    head, files = {}, []
    for line in lines:
        m = _FILE_LINE.match(line)
        if m:
            files.append([int(m.group(2)), int(m.group(3)), int(m.group(4))])
        elif ":" in line:
            key, value = line.split(":", 1)
            head[key.strip()] = value.strip()
    if set(head) != {"DTYPE", "NMEMB", "NFILE"} or len(files) != int(head["NFILE"]):
        raise ValueError(f"{path}: not a bigfile block header")
    return head, files


def _folded(s: int) -> int:
    """bigfile's folded 16-bit form of a per-file checksum (the header's last column)."""
    r = (s & 0xFFFF) + (s >> 16)
    return (r & 0xFFFF) + (r >> 16)


class RawBlock:
    """One block of an existing bigfile (directory `path`, e.g. ``snap/1/Position``), opened for row writes."""

    def __init__(self, path):
        self.path = Path(path)
        self.header = self.path / "header"
        head, files = read_block_header(self.header)
        self.dtype = np.dtype(head["DTYPE"])
        if self.dtype.byteorder not in ("<", "|", "="):
            raise ValueError(f"{self.path}: raw writes need a little-endian dtype, the block is {head['DTYPE']}")
        self.nmemb = int(head["NMEMB"])
        self.row_bytes = self.dtype.itemsize * max(self.nmemb, 1)
        self.sizes = [f[0] for f in files]
        self.starts = np.concatenate([[0], np.cumsum(self.sizes)]).astype(np.int64)
        self._fds = [os.open(self.path / f"{i:06X}", os.O_WRONLY) for i in range(len(self.sizes))]
        self._lock = threading.Lock()

    @property
    def size(self) -> int:
        return int(self.starts[-1])

    def write(self, start: int, rows: np.ndarray) -> None:
        """Write rows [start, start + len(rows)): `rows` of the block's dtype, shape (n,) or (n, NMEMB)."""
        rows = np.asarray(rows)
        n = len(rows)
        shape = (n,) if self.nmemb == 1 and rows.ndim == 1 else (n, self.nmemb)
        if rows.dtype.newbyteorder("<") != self.dtype.newbyteorder("<") or rows.shape != shape:
            raise ValueError(f"{self.path}: expected rows of {self.dtype} shape {shape}, got {rows.dtype} "
                             f"{rows.shape}")
        if start < 0 or start + n > self.size:
            raise ValueError(f"{self.path}: rows [{start}, {start + n}) outside the block's {self.size}")
        data = memoryview(np.ascontiguousarray(rows).reshape(-1).view(np.uint8))
        added = {}
        row = start
        while row < start + n:
            f = int(np.searchsorted(self.starts, row, side="right")) - 1
            count = min(start + n, int(self.starts[f + 1])) - row
            piece = data[(row - start) * self.row_bytes:(row - start + count) * self.row_bytes]
            added[f] = (added.get(f, 0) + byte_sum(np.frombuffer(piece, np.uint8))) & 0xFFFFFFFF
            offset = (row - int(self.starts[f])) * self.row_bytes
            while len(piece):  # pwrite may write less than asked
                done = os.pwrite(self._fds[f], piece, offset)
                piece, offset = piece[done:], offset + done
            row += count
        self._add_checksums(added)

    def _add_checksums(self, added: dict[int, int]) -> None:
        with self._lock:
            fcntl.flock(self._fds[0], fcntl.LOCK_EX)
            try:
                head, files = read_block_header(self.header)
                for f, s in added.items():
                    files[f][1] = (files[f][1] + s) & 0xFFFFFFFF
                    files[f][2] = _folded(files[f][1])
                text = (f"DTYPE: {head['DTYPE']}\nNMEMB: {head['NMEMB']}\nNFILE: {head['NFILE']}\n"
                        + "".join(f"{i:06X}: {size} : {s} : {fold}\n" for i, (size, s, fold) in enumerate(files)))
                tmp = self.header.with_name(f".header.{os.getpid()}.{threading.get_ident()}")
                tmp.write_text(text)
                os.replace(tmp, self.header)
            finally:
                fcntl.flock(self._fds[0], fcntl.LOCK_UN)

    def close(self) -> None:
        for fd in self._fds:
            os.close(fd)
        self._fds = []
