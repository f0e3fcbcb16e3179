"""Chunked, periodic, streaming super-resolution of an LR box of any size (paper: "Application to a large volume").

Per chunk: read a cubic window of the LR displacement plus ``pad`` LR cells of periodic context (sliced
from HDF5, never the whole box), run the generator, keep the chunk's own cells, turn SR displacements into
particle positions and grid IDs, and hand them to a background thread that writes them at the chunk's
slot of the output snapshot. Memory is bounded by a few chunks, whatever the box.

Geometry. The LR grid has ``n`` cells per side; the SR grid ``n_hr = scale * n``. A *region* (the whole
box by default) is a periodic box of LR cells ``origin + [0, extent)``. It is tiled by cubic windows of
``size`` LR cells; where ``size`` does not divide the extent, the last window of an axis is shifted back to
end at the region's edge and keeps only the cells not yet covered, so every window has the same shape
(batched generator calls, one compiled kernel shape). A window is passed to the generator with its
padding, and the generator's noise is keyed by global voxel indices, so the result does not depend on the
chunking (DESIGN.md invariant 3).

Output. A bigfile snapshot in MP-Gadget's layout: ``Header`` (BoxSize, Time, MassTable with the SR
particle mass, TotNumPart, ...), ``1/Position`` (kpc/h, wrapped into the box) and ``1/ID`` (SR grid IDs
``i*n_hr^2 + j*n_hr + k + 1``). Particles are stored chunk after chunk (not in ID order). There is no
``1/Velocity`` block: the model predicts displacements only. Optionally the SR displacement field
(HDF5, streamed chunk-wise) for the whole box.

Resume. Output goes to ``.<name>.partial`` next to the final path; a journal ``.<name>.journal*.jsonl``
lists every finished chunk with CRC32 checksums of the bytes on disk. A rerun verifies those chunks,
skips them, generates the rest, and renames the partial output into place only when every chunk is done.
Several jobs (``job, jobs``) may fill the same partial snapshot concurrently, each with its own journal;
``finalize`` (``srsim generate-merge``) then checks the journals and renames.
"""

from __future__ import annotations

import contextlib
import dataclasses
import fcntl
import hashlib
import json
import math
import os
import queue
import shutil
import sys
import threading
import time
import zlib
from dataclasses import dataclass
from pathlib import Path
from typing import Iterator, Sequence

import numpy as np

from srsim.errors import SrsimError

#: bytes per SR particle held on the host between generator and writer: position f8 x3, ID u8, disp f4 x3
HOST_BYTES_PER_PARTICLE = 24 + 8 + 12


#: the bigfile library is not thread-safe (concurrent opens/reads fail even on separate File objects):
#: every bigfile call of this module holds this lock, the HDF5 writes and checksums run beside it
BIGFILE_LOCK = threading.Lock()


def default_writers() -> int:
    """Background writer threads: one in bigfile at a time, another one checksumming or writing HDF5."""
    return 2


def host_slots(writers: int, batch: int) -> int:
    """Host buffers of one chunk each: one per writer thread, plus a batch being filled, plus one queued."""
    return writers + batch + 1


# --------------------------------------------------------------------------------------------------
# chunk planning


@dataclass(frozen=True)
class Chunk:
    """One generator window and the cells it contributes.

    window: global LR cell (unwrapped, may exceed n) of the window's first cell;
    lo, hi: the kept cells along each axis, relative to the window (LR cells);
    local: the kept block's first cell relative to the region origin (LR cells);
    start: first particle slot of the block in the output (particles are stored chunk after chunk).
    """

    index: int
    window: tuple[int, int, int]
    lo: tuple[int, int, int]
    hi: tuple[int, int, int]
    local: tuple[int, int, int]
    start: int

    @property
    def shape(self) -> tuple[int, int, int]:
        """Kept LR cells per axis."""
        return tuple(h - l for l, h in zip(self.lo, self.hi))

    @property
    def cells(self) -> int:
        return int(np.prod(self.shape))


@dataclass(frozen=True)
class Plan:
    """How a region of the LR box is cut into chunks (see the module docstring)."""

    n_lr: int  #: LR cells per side of the whole box
    scale: int  #: SR factor per axis
    pad: int  #: LR cells of periodic context per side
    size: int  #: window side, LR cells
    origin: tuple[int, int, int]  #: region's first LR cell, in [0, n_lr)
    extent: tuple[int, int, int]  #: region's LR cells per axis, in [1, n_lr]
    chunks: tuple[Chunk, ...]

    @property
    def n_hr(self) -> int:
        return self.scale * self.n_lr

    @property
    def n_particles(self) -> int:
        return int(np.prod(self.extent)) * self.scale**3

    @property
    def full_box(self) -> bool:
        return self.extent == (self.n_lr,) * 3

    def particles(self, chunk: Chunk) -> int:
        return chunk.cells * self.scale**3

    def job_chunks(self, job: int, jobs: int) -> list[Chunk]:
        """The contiguous share of the chunks that job `job` of `jobs` generates."""
        if not (jobs >= 1 and 0 <= job < jobs):
            raise SrsimError(f"generate: job {job} of {jobs} is not a valid job index (0 <= job < jobs)")
        m = len(self.chunks)
        return list(self.chunks[job * m // jobs:(job + 1) * m // jobs])

    def describe(self) -> dict:
        return {"n_lr": self.n_lr, "scale": self.scale, "pad": self.pad, "size": self.size,
                "origin": list(self.origin), "extent": list(self.extent), "n_chunks": len(self.chunks),
                "n_particles": self.n_particles}


def axis_windows(extent: int, size: int) -> list[tuple[int, int, int]]:
    """Windows along one axis: [(window start, kept lo, kept hi)], starts relative to the region origin.

    Windows of `size` cells tile [0, extent); the last one is shifted back to end at `extent` (keeping only
    new cells) when `size` does not divide `extent`; if extent < size the single window overhangs the end.
    """
    if extent <= size:
        return [(0, 0, extent)]
    out = []
    for k in range(0, extent, size):
        w = min(k, extent - size)
        out.append((w, k - w, min(k + size, extent) - w))
    return out


def plan_chunks(n_lr: int, size: int, scale: int, pad: int,
                region: tuple[Sequence[int], Sequence[int]] | None = None) -> Plan:
    """Cut a region (origin, extent) of an n_lr^3 periodic LR box (default: the whole box) into chunks.

    size: window side in LR cells (clamped to the largest extent). Chunks are in C order of the window grid.
    """
    if region is None:
        origin, extent = (0, 0, 0), (n_lr,) * 3
    else:
        origin = tuple(int(o) % n_lr for o in region[0])
        extent = tuple(int(e) for e in region[1])
    if len(origin) != 3 or len(extent) != 3 or not all(1 <= e <= n_lr for e in extent):
        raise SrsimError(f"generate: region extent {extent} must hold 3 values in [1, {n_lr}] LR cells")
    if size < 1:
        raise SrsimError(f"generate: chunk size must be >= 1 LR cell, got {size}")
    size = min(int(size), max(extent))
    axes = [axis_windows(e, size) for e in extent]
    chunks = []
    start = 0
    for wi in axes[0]:
        for wj in axes[1]:
            for wk in axes[2]:
                ws = (wi, wj, wk)
                window = tuple(origin[a] + ws[a][0] for a in range(3))
                lo = tuple(w[1] for w in ws)
                hi = tuple(w[2] for w in ws)
                local = tuple(w[0] + w[1] for w in ws)
                c = Chunk(len(chunks), window, lo, hi, local, start)
                chunks.append(c)
                start += c.cells * scale**3
    return Plan(n_lr, scale, pad, size, origin, extent, tuple(chunks))


def region_from_cells(lo: Sequence[int], hi: Sequence[int], n_lr: int) -> tuple[tuple, tuple]:
    """(origin, extent) of LR cells [lo, hi) per axis; lo may be negative and hi may exceed n (periodic)."""
    lo = [int(v) for v in lo]
    hi = [int(v) for v in hi]
    extent = [h - l for l, h in zip(lo, hi)]
    if len(lo) != 3 or len(hi) != 3 or not all(1 <= e <= n_lr for e in extent):
        raise SrsimError(f"generate: region [{lo}, {hi}) must span 1..{n_lr} LR cells on each axis")
    return tuple(l % n_lr for l in lo), tuple(extent)


def region_from_mpc(lo: Sequence[float], hi: Sequence[float], box_size: float, n_lr: int) -> tuple[tuple, tuple]:
    """(origin, extent) of the LR cells whose particles' Lagrangian positions cover [lo, hi) Mpc/h.

    The region is widened outward to whole LR cells; lo may be negative and hi may exceed the box.
    """
    cell = box_size / n_lr
    eps = 1e-9
    lo_c = [math.floor(float(v) / cell + eps) for v in lo]
    hi_c = [math.ceil(float(v) / cell - eps) for v in hi]
    hi_c = [max(h, l + 1) for l, h in zip(lo_c, hi_c)]
    return region_from_cells(lo_c, hi_c, n_lr)


# --------------------------------------------------------------------------------------------------
# periodic LR windows


def periodic_runs(start: int, length: int, n: int) -> list[tuple[int, int, int]]:
    """Contiguous pieces of the periodic index range start..start+length-1 (mod n).

    Returns [(source start, source stop, destination start)]; two pieces when the range wraps once,
    more when it is longer than the box.
    """
    runs = []
    pos, s = 0, start % n
    while pos < length:
        m = min(length - pos, n - s)
        runs.append((s, s + m, pos))
        pos += m
        s = 0
    return runs


def read_periodic(source, origin: Sequence[int], size: int, n: int) -> np.ndarray:
    """A (3, size, size, size) float32 block of a periodic (3, n, n, n) field starting at cell `origin`.

    source: a numpy array or an h5py dataset (only the needed slabs are read: at most 8 pieces when the
    block wraps around once per axis).
    """
    out = np.empty((3, size, size, size), dtype=np.float32)
    ri, rj, rk = (periodic_runs(o, size, n) for o in origin)
    for i0, i1, di in ri:
        for j0, j1, dj in rj:
            for k0, k1, dk in rk:
                out[:, di:di + i1 - i0, dj:dj + j1 - j0, dk:dk + k1 - k0] = source[:, i0:i1, j0:j1, k0:k1]
    return out


class LRInput:
    """The LR displacement field (3, n, n, n) float32 Mpc/h, read window by window.

    path: an HDF5 displacement file (sliced lazily, so a 640^3 box is never loaded whole) or a snapshot
    directory (converted with positions_to_displacement; the whole LR field is then in memory).
    Attributes: n, box_size (Mpc/h), redshift, cosmology (dict), path.
    """

    def __init__(self, path):
        self.path = Path(path)
        self._file = None
        if self.path.is_dir():
            from srsim.displacement import snapshot_displacement

            disp, attrs = snapshot_displacement(self.path)
            self._data = disp
        else:
            from srsim.io.displacement import displacement_attrs, open_displacement

            attrs = displacement_attrs(self.path)
            self._file = open_displacement(self.path)
            self._data = self._file["disp"]
        self.n = int(self._data.shape[1])
        self.box_size = float(attrs["box_size"])
        self.redshift = float(attrs["redshift"])
        self.cosmology = dict(attrs.get("cosmology") or {})

    def window(self, origin: Sequence[int], size: int, pad: int) -> np.ndarray:
        """(3, size+2*pad, ...) float32 Mpc/h: cells origin-pad .. origin+size+pad-1, periodically wrapped."""
        block = read_periodic(self._data, [o - pad for o in origin], size + 2 * pad, self.n)
        if not np.all(np.isfinite(block)):
            raise SrsimError(f"{self.path}: LR displacement contains NaN or inf near cell {tuple(origin)}")
        return block

    def close(self) -> None:
        if self._file is not None:
            self._file.close()
            self._file = None

    def __enter__(self):
        return self

    def __exit__(self, *exc):
        self.close()
        return False


# --------------------------------------------------------------------------------------------------
# generator and particles


def resolve_device(device: str = "auto"):
    """torch.device for 'auto' (cuda if available), 'cpu', 'cuda', 'cuda:N'."""
    import torch

    if device in (None, "auto"):
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    dev = torch.device(device)
    if dev.type == "cuda" and not torch.cuda.is_available():
        raise SrsimError(f"generate: device '{device}' requested but CUDA is not available")
    return dev


def super_resolve(gen, windows: np.ndarray, offsets: np.ndarray, seed: int, n_lr: int, disp_scale: float,
                  device, bf16: bool = False):
    """Run the generator on a batch of padded LR windows.

    windows: (B, 3, m, m, m) float32 LR displacement in Mpc/h including the periodic padding;
    offsets: (B, 3) int global LR cell of windows[:, :, 0, 0, 0]. Returns a (B, 3, scale*(m-2*pad), ...)
    float32 torch tensor on `device`, SR displacement in Mpc/h (network in/out are divided by disp_scale).
    """
    import torch

    x = torch.from_numpy(np.ascontiguousarray(windows))
    if device.type == "cuda":
        x = x.pin_memory()
    x = x.to(device, non_blocking=True)
    if disp_scale != 1.0:
        x = x / disp_scale
    off = torch.as_tensor(np.asarray(offsets), dtype=torch.int64)
    with torch.inference_mode(), torch.autocast(device.type, dtype=torch.bfloat16, enabled=bool(bf16)):
        y = gen(x, off, seed, (n_lr, n_lr, n_lr))
    y = y.float()
    if disp_scale != 1.0:
        y = y * disp_scale
    return y


def trivial_predictor(levels: int):
    """Stand-in for the generator: SR = the LR displacement trilinearly upsampled onto the HR lattice.

    This is what the untrained generator returns (its output projections start at zero), so an SR snapshot
    made with it is the *trivial* baseline every metric is compared against. A torch module (class name
    ``TrivialPredictor``, recorded as the snapshot's ``SRModel``) with the interface of
    ``srsim.model.generator.Generator``: ``scale = 2**levels``, ``pad`` from ``generator_geometry(levels)``,
    ``widths``, forward(x, offset, seed, box_cells). No weights, no noise (one realization only).
    """
    import torch

    from srsim.model.generator import generator_geometry
    from srsim.model.layers import lr_to_hr

    if int(levels) < 1:
        raise SrsimError(f"generate --trivial: the generator needs >= 2 widths (>= 1 rung), got {levels} rungs")

    class TrivialPredictor(torch.nn.Module):
        def __init__(self):
            super().__init__()
            self.levels = int(levels)
            self.scale = 2 ** self.levels
            self.pad = int(generator_geometry(self.levels)[1])
            self.widths = (3,) * (self.levels + 1)  # memory estimate: only the 3-channel interpolated field

        def hyperparameters(self) -> dict:
            return {"trivial": True, "levels": self.levels, "scale": self.scale, "pad": self.pad}

        def forward(self, x, offset=None, seed=0, box_cells=None):
            """(B, C, n+2 pad, ...) padded LR crop -> (B, C, scale n, ...); sample 0 at HR cell scale (o+pad)."""
            return lr_to_hr(x, self.scale, self.pad)

    return TrivialPredictor()


def trivial_generator(model_cfg: dict):
    """The trivial predictor with the geometry the config's generator (``model.gen_widths``) would have."""
    widths = model_cfg.get("gen_widths") if model_cfg else None
    if not widths:
        raise SrsimError("generate --trivial: the config needs model.gen_widths to set the SR scale and padding")
    return trivial_predictor(len(widths) - 1)


def chunk_particles(disp, hr_origin: Sequence[int], n_hr: int, box_size: float):
    """Positions and IDs of a block of SR particles (torch, on the block's device).

    disp: (3, A, B, C) SR displacement in Mpc/h of HR cells hr_origin + [0, (A, B, C)) (wrapped mod n_hr).
    Returns (pos (A*B*C, 3) float64 Mpc/h wrapped into [0, box), ids (A*B*C,) int64), C order.
    """
    import torch

    dev = disp.device
    cell = box_size / n_hr
    idx = [torch.remainder(torch.arange(s, dtype=torch.int64, device=dev) + int(o), n_hr)
           for o, s in zip(hr_origin, disp.shape[1:])]
    A, B, C = disp.shape[1:]
    pos = torch.empty((A, B, C, 3), dtype=torch.float64, device=dev)
    q = [i.double() * cell for i in idx]  # float64: an int64 tensor times a float would give float32
    pos[..., 0] = disp[0].double() + q[0][:, None, None]
    pos[..., 1] = disp[1].double() + q[1][None, :, None]
    pos[..., 2] = disp[2].double() + q[2][None, None, :]
    pos = torch.remainder(pos, box_size)
    pos = torch.where(pos >= box_size, pos - box_size, pos)  # remainder of tiny negatives rounds to box
    ids = (idx[0][:, None, None] * (n_hr * n_hr) + idx[1][None, :, None] * n_hr + idx[2][None, None, :] + 1)
    return pos.reshape(-1, 3), ids.reshape(-1)


def minimum_image_(disp, box_size: float):
    """Wrap displacements into [-box/2, box/2) in place, touching only the (rare) values outside."""
    import torch

    half = 0.5 * box_size
    bad = (disp < -half) | (disp >= half)
    if bool(bad.any()):
        disp[bad] = torch.remainder(disp[bad] + half, box_size) - half
    return disp


def estimate_generator_bytes(widths: Sequence[int], size: int, pad: int, batch: int = 1) -> float:
    """Rough peak activation memory (bytes, float32) of one generator call on `batch` windows of `size`.

    Each level l holds about 3 tensors of widths[l] channels on a grid of 2^l (size + 2 pad) per side
    (features, upsampled copy, convolution output); calibrated against CUDA peaks in benchmarks/generate.py.
    """
    m = size + 2 * pad
    total = sum(w * (2**level * m) ** 3 for level, w in enumerate(widths))
    return 4.0 * 3.0 * batch * total


def _available_host_bytes() -> float:
    try:
        with open("/proc/meminfo") as f:
            for line in f:
                if line.startswith("MemAvailable:"):
                    return float(line.split()[1]) * 1024
    except OSError:
        pass
    return float(os.sysconf("SC_PAGE_SIZE") * os.sysconf("SC_AVPHYS_PAGES"))


def auto_chunk_size(widths: Sequence[int], scale: int, pad: int, extent: int, device, batch: int = 1,
                    writers: int = 1, memory_fraction: float = 0.6) -> int:
    """Largest window side (LR cells) whose generator call and host buffers fit in the free memory.

    Device budget: `memory_fraction` of the free CUDA memory (or of the available RAM on CPU, shared with
    the host buffers). The size is then balanced so that the windows tile `extent` evenly.
    """
    import torch

    host = memory_fraction * _available_host_bytes()
    if device.type == "cuda":
        free, _ = torch.cuda.mem_get_info(device)
        dev_budget = memory_fraction * free
    else:
        dev_budget = 0.5 * host
        host = 0.5 * host
    best = 1
    for size in range(1, extent + 1):
        slots = host_slots(writers, batch)
        if (estimate_generator_bytes(widths, size, pad, batch) > dev_budget
                or slots * (scale * size) ** 3 * HOST_BYTES_PER_PARTICLE > host):
            break
        best = size
    pieces = -(-extent // best)
    return -(-extent // pieces)


# --------------------------------------------------------------------------------------------------
# outputs, journal, resume


def output_paths(out, jobs: int = 1, job: int = 0) -> dict:
    """The hidden sibling paths of a generation: partial snapshot, plan, lock and this job's journal."""
    out = Path(out)
    tag = "" if jobs == 1 else f"-job{job}of{jobs}"
    return {"partial": out.with_name(f".{out.name}.partial"), "plan": out.with_name(f".{out.name}.plan.json"),
            "lock": out.with_name(f".{out.name}.lock"),
            "journal": out.with_name(f".{out.name}.journal{tag}.jsonl")}


def _journals(out) -> list[Path]:
    out = Path(out)
    return sorted(out.parent.glob(f".{out.name}.journal*.jsonl"))


@contextlib.contextmanager
def _locked(path: Path) -> Iterator[None]:
    """Exclusive advisory lock on `path` (jobs sharing one partial output create it once)."""
    path.parent.mkdir(parents=True, exist_ok=True)
    with open(path, "a") as f:
        fcntl.flock(f, fcntl.LOCK_EX)
        try:
            yield
        finally:
            fcntl.flock(f, fcntl.LOCK_UN)


def _crc(a: np.ndarray) -> int:
    return zlib.crc32(np.ascontiguousarray(a).view(np.uint8).reshape(-1))


def read_journal(path: Path, fingerprint: dict) -> dict[int, dict] | None:
    """Finished-chunk entries {index: entry} of a journal, or None if it belongs to other settings.

    A torn last line (interrupted append) is ignored.
    """
    if not path.is_file():
        return {}
    entries = {}
    with open(path) as f:
        lines = f.read().splitlines()
    if not lines:
        return {}
    try:
        head = json.loads(lines[0])
    except json.JSONDecodeError:
        return None
    if head.get("fingerprint") != fingerprint:
        return None
    for line in lines[1:]:
        try:
            e = json.loads(line)
        except json.JSONDecodeError:
            continue
        if "chunk" in e:
            entries[int(e["chunk"])] = e
    return entries


class Journal:
    """Append-only JSON-lines record of finished chunks (first line: the settings fingerprint)."""

    def __init__(self, path: Path, fingerprint: dict, fresh: bool):
        self.path = path
        if fresh or not path.is_file() or path.stat().st_size == 0:
            tmp = path.with_name(path.name + ".tmp")
            with open(tmp, "w") as f:
                f.write(json.dumps({"fingerprint": fingerprint}, sort_keys=True) + "\n")
                f.flush()
                os.fsync(f.fileno())
            os.replace(tmp, path)
        self._f = open(path, "a")

    def append(self, entry: dict) -> None:
        self._f.write(json.dumps(entry, sort_keys=True) + "\n")
        self._f.flush()
        os.fsync(self._f.fileno())

    def close(self) -> None:
        self._f.close()


class DisplacementOutput:
    """The SR displacement field (3, N, N, N) float32 Mpc/h streamed into HDF5 at a fixed partial name.

    Same dataset and attributes as srsim.io.displacement; the fixed name `.<name>.partial` lets a rerun
    resume; `finish()` renames it into place.
    """

    def __init__(self, path, n_grid: int, attrs: dict, fresh: bool):
        import h5py

        self.path = Path(path)
        self.tmp = self.path.with_name(f".{self.path.name}.partial")
        self.path.parent.mkdir(parents=True, exist_ok=True)
        if fresh and self.tmp.exists():
            self.tmp.unlink()
        if self.tmp.exists():
            try:
                self._f = h5py.File(self.tmp, "r+")
                ok = self._f["disp"].shape == (3, n_grid, n_grid, n_grid)
            except (OSError, KeyError):
                ok = False
            if not ok:
                with contextlib.suppress(Exception):
                    self._f.close()
                self.tmp.unlink()
        if not self.tmp.exists():
            self._f = h5py.File(self.tmp, "w")
            self._f.create_dataset("disp", shape=(3, n_grid, n_grid, n_grid), dtype=np.float32)
            for key, value in attrs.items():
                self._f.attrs[key] = value
        self._d = self._f["disp"]

    def write(self, origin: Sequence[int], block: np.ndarray) -> int:
        """Write block (3, a, b, c) at HR cell origin (no wrap); returns the CRC32 of the bytes read back."""
        i, j, k = origin
        _, a, b, c = block.shape
        self._d[:, i:i + a, j:j + b, k:k + c] = block
        return self.crc(origin, block.shape[1:])

    def crc(self, origin, shape) -> int:
        i, j, k = origin
        a, b, c = shape
        return _crc(self._d[:, i:i + a, j:j + b, k:k + c])

    def finish(self) -> Path:
        self._f.close()
        os.replace(self.tmp, self.path)
        return self.path

    def close(self) -> None:
        with contextlib.suppress(Exception):
            self._f.close()


def model_digest(gen) -> str:
    """SHA-256 (hex, 16 chars) of the generator's hyper-parameters and weights: resumed chunks must match."""
    h = hashlib.sha256()
    h.update(json.dumps(getattr(gen, "hyperparameters", lambda: {})(), sort_keys=True).encode())
    for name, t in sorted(gen.state_dict().items()):
        h.update(name.encode())
        h.update(t.detach().cpu().contiguous().numpy().tobytes())
    return h.hexdigest()[:16]


def snapshot_attrs(plan: Plan, lr: LRInput, *, seed: int, model: str, cosmology: dict) -> dict:
    """Raw Header attributes of the SR snapshot (MP-Gadget units; MassTable = SR particle mass)."""
    from srsim.io.snapshot import make_header

    cosmo = dict(cosmology)
    for key in ("Omega_m", "Omega_L", "Omega_b", "h", "sigma8", "n_s"):
        cosmo.setdefault(key, float("nan"))  # unknown in the input: recorded as NaN, never guessed
    attrs = make_header(box_size=lr.box_size, redshift=lr.redshift, n_particles=plan.n_hr**3, cosmology=cosmo,
                        n_grid=plan.n_hr)
    attrs["TotNumPart"] = np.array([0, plan.n_particles, 0, 0, 0, 0], dtype=np.uint64)
    attrs["SRSeed"] = np.array([int(seed)], dtype=np.int64)
    attrs["SRScale"] = np.array([plan.scale], dtype=np.int64)
    attrs["SRRegionCells"] = np.array([*plan.origin, *plan.extent], dtype=np.int64)
    attrs["SRModel"] = str(model)
    if model == "TrivialPredictor":
        attrs["SRPredictor"] = "trivial: LR displacement trilinearly upsampled (vertex-aligned) onto the HR grid"
    attrs["SRInput"] = str(lr.path)
    attrs["SRNote"] = ("super-resolved snapshot: positions = SR grid + generated displacement; no Velocity "
                       "block (the model predicts displacements only); particles stored chunk by chunk, not in "
                       "ID order; SRRegionCells = LR origin and extent of the super-resolved region")
    return attrs


# --------------------------------------------------------------------------------------------------
# the streaming loop


class _Writer:
    """Background writers: threads take finished chunks from a queue, write, checksum and journal them.

    Host buffer slots circulate between the generator loop (`take_slot`) and the writers (returned after
    writing), so at most `host_slots` chunks are held on the host, whatever the box.
    """

    def __init__(self, snap, reader, disp: DisplacementOutput | None, journal: Journal, plan: Plan, threads: int):
        self.snap, self.reader, self.disp, self.journal, self.plan = snap, reader, disp, journal, plan
        self.q: queue.Queue = queue.Queue()
        self.free: queue.Queue = queue.Queue()
        self.error: BaseException | None = None
        self.written = 0
        self._lock = threading.Lock()
        self._threads = [threading.Thread(target=self._run, name=f"srsim-writer-{i}", daemon=True)
                         for i in range(max(1, threads))]
        for t in self._threads:
            t.start()

    def _check(self) -> None:
        if self.error is not None:
            raise self.error

    def submit(self, item) -> None:
        self._check()
        self.q.put(item)

    def take_slot(self):
        """A free host buffer slot (blocks while the writers are behind: this bounds memory)."""
        while True:
            self._check()
            try:
                return self.free.get(timeout=0.2)
            except queue.Empty:
                continue

    def _run(self) -> None:
        while True:
            item = self.q.get()
            if item is None:
                return
            if self.error is not None:
                continue
            try:
                self._write(*item)
            except BaseException as exc:  # handed to the main thread
                self.error = exc

    def _write(self, chunk: Chunk, slot: dict, event) -> None:
        if event is not None:
            event.synchronize()
        n = self.plan.particles(chunk)
        pos = slot["pos"][:n].numpy()
        ids = slot["ids"][:n].numpy().view(np.uint64)
        with BIGFILE_LOCK:
            self.snap.write(chunk.start, pos, ids)
            raw = read_stored(self.reader, chunk.start, n)
        entry = {"chunk": chunk.index, "start": chunk.start, "count": n}
        entry.update({k: _crc(v) for k, v in raw.items()})
        if self.disp is not None:
            shape = tuple(self.plan.scale * s for s in chunk.shape)
            block = slot["disp"][:3 * n].numpy().reshape(3, *shape)
            entry["crc_disp"] = self.disp.write([self.plan.scale * l for l in chunk.local], block)
        with self._lock:
            self.journal.append(entry)
            self.written += n
        self.free.put(slot)

    def close(self) -> None:
        for _ in self._threads:
            self.q.put(None)
        for t in self._threads:
            t.join()
        self._check()


def read_stored(reader, start: int, count: int) -> dict:
    """Raw stored Position and ID arrays of particles [start, start+count) (caller holds BIGFILE_LOCK)."""
    return {"crc_position": reader["1/Position"][start:start + count], "crc_id": reader["1/ID"][start:start + count]}


def stored_crc(reader, start: int, count: int) -> dict:
    """CRC32 of the Position and ID bytes of particles [start, start+count) as stored in a bigfile."""
    with BIGFILE_LOCK:
        raw = read_stored(reader, start, count)
    return {k: _crc(v) for k, v in raw.items()}


def _verify(entries: dict[int, dict], chunks: list[Chunk], plan: Plan, reader, disp, progress: bool) -> set[int]:
    """Indices of journaled chunks whose bytes on disk still match their checksums."""
    from tqdm import tqdm

    good = set()
    todo = [c for c in chunks if c.index in entries]
    for c in tqdm(todo, desc="verify", unit="chunk", disable=not progress or not todo, file=sys.stderr):
        e = entries[c.index]
        n = plan.particles(c)
        if e.get("start") != c.start or e.get("count") != n:
            continue
        if {k: e.get(k) for k in ("crc_position", "crc_id")} != stored_crc(reader, c.start, n):
            continue
        if disp is not None:
            shape = tuple(plan.scale * s for s in c.shape)
            if e.get("crc_disp") != disp.crc([plan.scale * l for l in c.local], shape):
                continue
        good.add(c.index)
    return good


@dataclass
class GenerateResult:
    """What a call of `generate` did."""

    path: Path  #: the final snapshot (exists only if complete and finalized)
    complete: bool  #: every chunk of this job is written (and, for a single job, renamed into place)
    n_chunks: int  #: chunks of this job
    generated: int  #: chunks generated in this call
    skipped: int  #: chunks found verified from an earlier run
    particles: int  #: SR particles of the whole output
    seconds: float
    plan: dict = dataclasses.field(default_factory=dict)


def _alloc_slot(n_part: int, with_disp: bool, pin: bool) -> dict:
    import torch

    slot = {"pos": torch.empty((n_part, 3), dtype=torch.float64, pin_memory=pin),
            "ids": torch.empty(n_part, dtype=torch.int64, pin_memory=pin)}
    if with_disp:
        slot["disp"] = torch.empty(3 * n_part, dtype=torch.float32, pin_memory=pin)
    return slot


def generate(model, lr, out, *, seed: int = 0, disp_out=None, chunk: int | None = None, batch: int = 1,
             device: str = "auto", bf16: bool = False, position_dtype: str = "f8",
             region: tuple[Sequence[int], Sequence[int]] | None = None, resume: bool = True,
             max_chunks: int | None = None, job: int = 0, jobs: int = 1, progress: bool = True,
             cosmology: dict | None = None, stop=None, writers: int | None = None) -> GenerateResult:
    """Super-resolve an LR box (or a region of it) chunk by chunk into an SR snapshot.

    Args:
        model: checkpoint path, or a (Generator, meta) pair (meta may hold disp_scale, redshift, box_size,
            n_lr; missing keys skip the corresponding consistency checks).
        lr: LR displacement HDF5 file or LR snapshot directory.
        out: output snapshot directory (bigfile, MP-Gadget layout; appears only when complete).
        seed: noise seed (one SR realization per seed).
        disp_out: optional HDF5 path for the SR displacement field (whole box only, single job).
        chunk: window side in LR cells (None: from the free memory); batch: windows per generator call.
        device: 'auto', 'cpu', 'cuda', 'cuda:N'; bf16: bfloat16 autocast in the generator.
        position_dtype: 'f8' or 'f4' storage of 1/Position.
        region: (origin, extent) in LR cells (see region_from_cells / region_from_mpc); None = whole box.
        resume: reuse verified chunks of an interrupted run with the same settings (else start afresh).
        max_chunks: stop after generating this many chunks (time-limited jobs; a rerun continues).
        job, jobs: generate only share `job` of `jobs`; with jobs > 1 the output is completed by `finalize`.
        cosmology: cosmology entries missing from the LR input's attributes.
        writers: background writer threads (default 2: bigfile calls are serialised, see BIGFILE_LOCK).
        stop: optional callable; when it returns True the run stops after the current batch, leaving a
            resumable partial output (the CLI sets it from SIGUSR1/SIGTERM, e.g. slurm's time-limit warning).
    """
    import torch
    from tqdm import tqdm

    t0 = time.perf_counter()
    out = Path(out)
    dev = resolve_device(device)
    if isinstance(model, (str, os.PathLike)):
        from srsim.model.checkpoint import load_generator

        gen, meta = load_generator(model, device=dev)
        model_name = str(Path(model).resolve())
    else:
        gen, meta = model
        gen = gen.to(dev).eval()
        model_name = type(gen).__name__
    meta = dict(meta or {})
    scaling = None
    if "scaling" in meta or isinstance(model, (str, os.PathLike)):
        from srsim.model.scaling import Scaling

        scaling = Scaling.from_meta(meta, model_name)
        disp_scale = scaling.disp_scale
    else:
        disp_scale = float(meta.get("disp_scale", 1.0))
    scale, pad = int(gen.scale), int(gen.pad)
    if position_dtype not in ("f4", "f8"):
        raise SrsimError(f"generate: position_dtype must be 'f4' or 'f8', got {position_dtype!r}")
    if jobs > 1 and not resume:
        raise SrsimError(f"{out}: resume=False would discard the other jobs' chunks (jobs = {jobs})")
    if jobs > 1 and disp_out is not None:
        raise SrsimError(f"{out}: the SR displacement file can only be written by a single job (jobs = {jobs})")

    with LRInput(lr) as src:
        _check_model_input(meta, src, scale)
        n = src.n
        if region is not None and tuple(int(e) for e in region[1]) == (n, n, n):
            region = None  # the whole box, whatever the origin: store it in the standard chunk order
        extent = n if region is None else max(int(e) for e in region[1])
        widths = getattr(gen, "widths", (64,))
        writers = int(writers or default_writers())
        size = chunk if chunk else auto_chunk_size(widths, scale, pad, extent, dev, batch, writers)
        plan = plan_chunks(n, size, scale, pad, region)
        if disp_out is not None and not plan.full_box:
            raise SrsimError(f"{disp_out}: the SR displacement file needs the whole box, not a region")
        mine = plan.job_chunks(job, jobs)
        cosmo = {**(cosmology or {}), **src.cosmology}
        if "scaling" in meta and cosmo:  # recorded scalings only: pre-scaling checkpoints used a fixed unit
            _check_scaling(scaling, cosmo, src)
        attrs = snapshot_attrs(plan, src, seed=seed, model=model_name, cosmology=cosmo)
        fingerprint = {"plan": plan.describe(), "seed": int(seed), "model": model_digest(gen),
                       "lr": _file_identity(src.path), "position_dtype": position_dtype, "bf16": bool(bf16),
                       "batch": int(batch), "device": dev.type, "disp": disp_out is not None,
                       "disp_scale": disp_scale}
        paths = output_paths(out, jobs, job)
        snap, entries = _open_partial(out, attrs, plan, paths, fingerprint, jobs, resume, position_dtype)
        import bigfile

        reader = bigfile.File(str(paths["partial"]))
        disp = None
        if disp_out is not None:
            dattrs = {"box_size": src.box_size, "redshift": src.redshift, "n_grid": plan.n_hr,
                      "cosmology": json.dumps(cosmo, sort_keys=True), "units": "Mpc/h", "seed": int(seed),
                      "source": f"srsim generate: model {model_name}, LR {src.path}"}
            disp = DisplacementOutput(disp_out, plan.n_hr, dattrs, fresh=not entries)
        done = _verify(entries, mine, plan, reader, disp, progress) if entries else set()
        journal = Journal(paths["journal"], fingerprint, fresh=not done)
        if done and len(done) != len(entries):  # drop entries that failed verification
            _rewrite_journal(journal, fingerprint, [entries[i] for i in sorted(done)])
        todo = [c for c in mine if c.index not in done]
        if max_chunks is not None:
            todo = todo[:max(0, int(max_chunks))]

        pin = dev.type == "cuda"
        max_part = max((plan.particles(c) for c in todo), default=0)
        writer = _Writer(snap, reader, disp, journal, plan, writers)
        for _ in range(host_slots(writers, batch) if todo else 0):
            writer.free.put(_alloc_slot(max_part, disp is not None, pin))
        bar = tqdm(total=len(mine), initial=len(done), unit="chunk", desc=f"generate {out.name}",
                   disable=not progress, file=sys.stderr, dynamic_ncols=True,
                   mininterval=0.5 if sys.stderr.isatty() else 30)  # log files: a line every 30 s
        t_loop, generated = time.perf_counter(), 0
        try:
            for group in _batches(todo, batch):
                if stop is not None and stop():
                    break
                windows = np.stack([src.window(c.window, plan.size, pad) for c in group])
                offsets = np.array([[w - pad for w in c.window] for c in group], dtype=np.int64)
                y = super_resolve(gen, windows, offsets, seed, n, disp_scale, dev, bf16)
                expect = (len(group), 3) + (scale * plan.size,) * 3
                if tuple(y.shape) != expect:
                    raise SrsimError(f"{model_name}: generator returned shape {tuple(y.shape)}, expected {expect}")
                for c, yc in zip(group, y):
                    block = yc[:, scale * c.lo[0]:scale * c.hi[0], scale * c.lo[1]:scale * c.hi[1],
                               scale * c.lo[2]:scale * c.hi[2]]
                    if not bool(torch.isfinite(block).all()):
                        raise SrsimError(f"{model_name}: generator produced NaN/inf in chunk {c.index} "
                                         f"(LR window {c.window}, seed {seed})")
                    block = minimum_image_(block.contiguous(), src.box_size)
                    hr_origin = [scale * (w + l) for w, l in zip(c.window, c.lo)]
                    pos, ids = chunk_particles(block, hr_origin, plan.n_hr, src.box_size)
                    m = plan.particles(c)
                    slot = writer.take_slot()
                    slot["pos"][:m].copy_(pos, non_blocking=pin)
                    slot["ids"][:m].copy_(ids, non_blocking=pin)
                    if disp is not None:
                        slot["disp"][:3 * m].copy_(block.reshape(-1), non_blocking=pin)
                    event = None
                    if pin:
                        event = torch.cuda.Event()
                        event.record(torch.cuda.current_stream(dev))  # the copies above are queued there
                    writer.submit((c, slot, event))
                generated += len(group)
                bar.update(len(group))
                rate = writer.written / max(time.perf_counter() - t_loop, 1e-9)
                bar.set_postfix_str(f"{rate / 1e6:.2f} Mpart/s written", refresh=False)
            writer.close()
        except BaseException:
            bar.close()
            with contextlib.suppress(BaseException):
                writer.close()
            journal.close()
            if disp is not None:
                disp.close()
            raise
        bar.close()
        journal.close()
        complete = len(done) + generated == len(mine)
        if disp is not None and not (complete and jobs == 1):
            disp.close()

    if complete and jobs == 1:
        if disp is not None:
            disp.finish()
        _finish(out, snap, paths)
    elif complete:
        with open(paths["journal"], "a") as f:
            f.write(json.dumps({"job_complete": job, "jobs": jobs}) + "\n")
    return GenerateResult(path=out, complete=complete, n_chunks=len(mine), generated=generated,
                          skipped=len(done), particles=plan.n_particles, seconds=time.perf_counter() - t0,
                          plan=plan.describe())


def _check_scaling(scaling, cosmo: dict, src: LRInput) -> None:
    """The model's D(z) scaling must be that of the LR input's cosmology and redshift."""
    from srsim.model.scaling import Scaling

    data = Scaling.for_data({"disp_scale": scaling.disp_unit, "density": scaling.density}, cosmo, src.redshift)
    scaling.check_matches(data, str(src.path))


def _check_model_input(meta: dict, src: LRInput, scale: int) -> None:
    """The model is resolution- and redshift-specific: refuse an LR input it was not trained for."""
    if "redshift" in meta and meta["redshift"] is not None and abs(float(meta["redshift"]) - src.redshift) > 1e-3:
        raise SrsimError(f"{src.path}: LR input is at z = {src.redshift:g} but the model was trained at "
                         f"z = {float(meta['redshift']):g}")
    if meta.get("box_size") and meta.get("n_lr"):
        trained = float(meta["box_size"]) / int(meta["n_lr"])
        cell = src.box_size / src.n
        if abs(cell / trained - 1) > 1e-3:
            raise SrsimError(f"{src.path}: LR cell of {cell:g} Mpc/h but the model was trained on "
                             f"{trained:g} Mpc/h cells (box {meta['box_size']}, n_lr {meta['n_lr']})")
    if meta.get("n_lr") and meta.get("n_hr") and int(meta["n_hr"]) // int(meta["n_lr"]) != scale:
        raise SrsimError(f"generate: model meta says n_hr/n_lr = {meta['n_hr']}/{meta['n_lr']} but the generator "
                         f"scale is {scale}")


def _file_identity(path: Path) -> dict:
    st = path.stat()
    return {"path": str(path.resolve()), "size": st.st_size, "mtime_ns": st.st_mtime_ns}


def _batches(chunks: list[Chunk], batch: int) -> Iterator[list[Chunk]]:
    for i in range(0, len(chunks), max(1, batch)):
        yield chunks[i:i + batch]


def _rewrite_journal(journal: Journal, fingerprint: dict, entries: list[dict]) -> None:
    """Keep only the verified entries (atomically), then reopen for appending."""
    journal._f.close()
    tmp = journal.path.with_name(journal.path.name + ".tmp")
    with open(tmp, "w") as f:
        f.write(json.dumps({"fingerprint": fingerprint}, sort_keys=True) + "\n")
        for e in entries:
            f.write(json.dumps(e, sort_keys=True) + "\n")
        f.flush()
        os.fsync(f.fileno())
    os.replace(tmp, journal.path)
    journal._f = open(journal.path, "a")


def _open_partial(out: Path, attrs: dict, plan: Plan, paths: dict, fingerprint: dict, jobs: int, resume: bool,
                  position_dtype: str):
    """Create or reopen the partial snapshot (under a lock); returns (SnapshotWriter, this job's entries)."""
    from srsim.io.snapshot import SnapshotWriter

    shared = {k: v for k, v in fingerprint.items()}
    with _locked(paths["lock"]):
        plan_ok = paths["plan"].is_file() and json.loads(paths["plan"].read_text() or "{}") == shared
        structure_ok = all((paths["partial"] / b / "header").is_file() for b in ("1/Position", "1/ID"))
        if not paths["partial"].exists():  # journals without their data are meaningless
            for j in _journals(out):
                j.unlink()
            paths["plan"].unlink(missing_ok=True)
        elif not (plan_ok and structure_ok and resume):
            if jobs > 1 and paths["plan"].is_file() and not plan_ok:
                raise SrsimError(f"{paths['partial']}: a partial output with other settings exists "
                                 f"(see {paths['plan']}); delete it and its journals to start again")
            shutil.rmtree(paths["partial"])
            for j in _journals(out):
                j.unlink()
            paths["plan"].unlink(missing_ok=True)
        if not paths["plan"].is_file():
            tmp = paths["plan"].with_name(paths["plan"].name + ".tmp")
            tmp.write_text(json.dumps(shared, sort_keys=True, indent=1))
            os.replace(tmp, paths["plan"])
        snap = SnapshotWriter(out, attrs, plan.n_particles, velocity=False, position_dtype=position_dtype,
                              tmp_path=paths["partial"])
    entries = read_journal(paths["journal"], fingerprint) if resume else {}
    return snap, entries or {}


def _finish(out: Path, snap, paths: dict) -> None:
    """Rename the complete partial snapshot into place and drop the bookkeeping files."""
    snap.close()
    for j in _journals(out):
        j.unlink()
    paths["plan"].unlink(missing_ok=True)
    paths["lock"].unlink(missing_ok=True)


def finalize(out, jobs: int, *, verify: bool = False, progress: bool = True) -> Path:
    """Complete a snapshot generated by `jobs` jobs: check every job's journal covers its chunks, rename.

    verify: re-read every chunk and compare its checksums (reads the whole output once).
    """
    import bigfile

    from srsim.io.snapshot import SnapshotWriter

    out = Path(out)
    p = output_paths(out)
    if not p["plan"].is_file() or not p["partial"].is_dir():
        raise SrsimError(f"{out}: no partial output to merge (expected {p['partial']} and {p['plan']})")
    fingerprint = json.loads(p["plan"].read_text())
    d = fingerprint["plan"]
    plan = plan_chunks(d["n_lr"], d["size"], d["scale"], d["pad"], (d["origin"], d["extent"]))
    if plan.describe() != d:
        raise SrsimError(f"{p['plan']}: the recorded plan does not reproduce ({d})")
    reader = bigfile.File(str(p["partial"]))
    missing = []
    for job in range(jobs):
        jp = output_paths(out, jobs, job)["journal"]
        entries = read_journal(jp, fingerprint) or {}
        chunks = plan.job_chunks(job, jobs)
        if verify:
            good = _verify(entries, chunks, plan, reader, None, progress)
        else:
            good = {c.index for c in chunks if c.index in entries
                    and entries[c.index].get("count") == plan.particles(c)
                    and entries[c.index].get("start") == c.start}
        lost = [c.index for c in chunks if c.index not in good]
        if lost:
            missing.append(f"job {job}: {len(lost)} of {len(chunks)} chunks missing ({jp})")
    if missing:
        raise SrsimError(f"{out}: cannot merge, incomplete jobs: " + "; ".join(missing))
    snap = SnapshotWriter(out, {"BoxSize": reader["Header"].attrs["BoxSize"]}, plan.n_particles,
                          tmp_path=p["partial"])
    _finish(out, snap, p)
    return out
