"""Bigfile snapshots in MP-Gadget's layout, for MP-Gadget's outputs and ours alike.

On disk (MP-Gadget units): `Header` attributes (`BoxSize` kpc/h, `Time` = scale factor, `MassTable`
1e10 Msun/h, `TotNumPart`, `Omega0`, ...), and blocks `1/Position` (comoving kpc/h, wrapped into
[0, BoxSize)), `1/Velocity` (peculiar km/s), `1/ID` (u8, grid particles `i*N^2 + j*N + k + 1`).
In memory (what these functions return or accept): positions in Mpc/h, velocities in km/s (peculiar; an
MP-Gadget snapshot written with `UsePeculiarVelocity = 0` stores v / sqrt(a), converted on reading), masses in
Msun/h. Particles are in no particular order; sort by ID where order matters.
"""

from __future__ import annotations

import json
import shutil
import threading
import warnings
from dataclasses import dataclass, field
from pathlib import Path
from typing import Iterable, Iterator

import bigfile
import numpy as np

from srsim.errors import SrsimError
from srsim.fields import grid_side
from srsim.io.atomic import replace_path, temporary_sibling

KPC_PER_MPC = 1000.0
#: critical density in (1e10 Msun/h) / (Mpc/h)^3 (MP-Gadget's units: 3 H0^2 / 8 pi G)
RHO_CRIT_1E10 = 27.7536627
PTYPE = 1  # dark matter
_BLOCKS = ("Position", "Velocity", "ID")


@dataclass
class Header:
    """The header of a snapshot, in srsim units."""

    box_size: float  #: comoving box side, Mpc/h
    time: float  #: scale factor a
    n_particles: int  #: number of dark-matter (type 1) particles
    particle_mass: float  #: Msun/h
    omega_m: float
    omega_l: float
    omega_b: float
    h: float
    attrs: dict = field(default_factory=dict)  #: every raw attribute, MP-Gadget units

    @property
    def redshift(self) -> float:
        return 1.0 / self.time - 1.0

    @property
    def velocity_factor(self) -> float:
        """Factor turning the stored `Velocity` into peculiar km/s: MP-Gadget with `UsePeculiarVelocity = 0`
        stores Gadget's u = v / sqrt(a), so v = sqrt(a) u; 1 with `UsePeculiarVelocity = 1` or without the
        attribute (our snapshots). Any other value is a convention we cannot convert: SrsimError."""
        flag = np.asarray(self.attrs.get("UsePeculiarVelocity", [1])).reshape(-1)
        if flag.size == 0 or int(flag[0]) == 1:
            return 1.0
        if int(flag[0]) == 0:
            return float(np.sqrt(self.time))
        raise SrsimError(f"snapshot Header UsePeculiarVelocity = {flag[0]}: unknown velocity convention (the reader "
                         "converts 0, Gadget's v / sqrt(a), and 1, peculiar km/s)")

    @property
    def n_grid(self) -> int | None:
        """Particles per side when the particle count is a cube, else None."""
        return grid_side(self.n_particles)


def _scalar(attrs: dict, key: str, path: Path, default=None):
    if key not in attrs:
        if default is not None:
            return default
        raise SrsimError(f"{path}: snapshot Header has no attribute '{key}'")
    value = np.asarray(attrs[key])
    return value.reshape(-1)[0].item() if value.size else default


def _open(path: str | Path) -> bigfile.File:
    path = Path(path)
    if not path.is_dir():
        raise SrsimError(f"{path}: snapshot not found (expected a bigfile directory)")
    if not (path / "Header").is_dir():
        raise SrsimError(f"{path}: not a snapshot: no 'Header' block")
    try:
        return bigfile.File(str(path))
    except Exception as exc:  # bigfile raises plain Exceptions for corrupt files
        raise SrsimError(f"{path}: cannot open snapshot: {exc}") from exc


def read_header(path: str | Path) -> Header:
    """Read a snapshot's `Header` (MP-Gadget's or ours)."""
    path = Path(path)
    f = _open(path)
    hdr = f["Header"]
    with warnings.catch_warnings():
        # bigfile decodes string attributes with numpy's deprecated 'a' dtype alias
        warnings.simplefilter("ignore", DeprecationWarning)
        attrs = {k: np.asarray(hdr.attrs[k]) for k in hdr.attrs.keys()}
    box = _scalar(attrs, "BoxSize", path) / KPC_PER_MPC
    time = _scalar(attrs, "Time", path)
    tot = np.asarray(attrs.get("TotNumPart", []), dtype=np.int64).reshape(-1)
    if tot.size > PTYPE:
        n_part = int(tot[PTYPE])
    elif f"{PTYPE}/ID" in f.list_blocks():
        n_part = int(f[f"{PTYPE}/ID"].size)
    else:
        raise SrsimError(f"{path}: snapshot Header has no 'TotNumPart' and there is no 1/ID block")
    omega_m = _scalar(attrs, "Omega0", path)
    mass_table = np.asarray(attrs.get("MassTable", []), dtype=np.float64).reshape(-1)
    if mass_table.size > PTYPE and mass_table[PTYPE] > 0:
        mass = mass_table[PTYPE] * 1e10
    elif n_part:
        mass = particle_mass(box, n_part, omega_m)
    else:
        mass = 0.0
    return Header(
        box_size=float(box),
        time=float(time),
        n_particles=n_part,
        particle_mass=float(mass),
        omega_m=float(omega_m),
        omega_l=float(_scalar(attrs, "OmegaLambda", path, 0.0)),
        omega_b=float(_scalar(attrs, "OmegaBaryon", path, 0.0)),
        h=float(_scalar(attrs, "HubbleParam", path, 0.0)),
        attrs=attrs,
    )


def _column(f: bigfile.File, path: Path, block: str) -> bigfile.Column:
    name = f"{PTYPE}/{block}"
    if name not in f.list_blocks():
        raise SrsimError(f"{path}: snapshot has no block '{name}'")
    return f[name]


def has_block(path: str | Path, block: str) -> bool:
    """Whether the snapshot at `path` has the dark-matter block `1/<block>` (e.g. "Velocity")."""
    return f"{PTYPE}/{block}" in _open(path).list_blocks()


def _velocity_factor(header: Header, path: Path, blocks) -> float:
    """header.velocity_factor when `blocks` include Velocity (its error naming the file), else 1."""
    if "Velocity" not in blocks:
        return 1.0  # an unknown velocity convention does not stop reading positions or IDs
    try:
        return header.velocity_factor
    except SrsimError as err:
        raise SrsimError(f"{path}: {err}") from None


def _convert(block: str, data: np.ndarray, box: float, vel_factor: float = 1.0) -> np.ndarray:
    if block == "Position":
        pos = np.asarray(data, dtype=np.float64) / KPC_PER_MPC
        # MP-Gadget wraps into [0, BoxSize) but float rounding after the unit change can give == box
        pos[pos >= box] -= box
        pos[pos < 0] += box
        return pos
    if block == "Velocity":
        vel = np.asarray(data, dtype=np.float32)
        return vel if vel_factor == 1.0 else (vel * np.float32(vel_factor)).astype(np.float32)
    if block == "ID":
        return np.asarray(data, dtype=np.uint64)
    return np.asarray(data)


def read_particles(
    path: str | Path, blocks: Iterable[str] = ("Position", "ID"), start: int = 0, stop: int | None = None
) -> dict[str, np.ndarray]:
    """Read particles `start:stop` of some blocks.

    Returns a dict: "Position" (n, 3) float64 Mpc/h in [0, box); "Velocity" (n, 3) float32 km/s
    (peculiar); "ID" (n,) uint64; any other block as stored.
    """
    path = Path(path)
    header = read_header(path)
    f = _open(path)
    blocks = tuple(blocks)
    vel_factor = _velocity_factor(header, path, blocks)
    out = {}
    for block in blocks:
        col = _column(f, path, block)
        end = col.size if stop is None else min(stop, col.size)
        if col.size != header.n_particles:
            raise SrsimError(f"{path}: block 1/{block} has {col.size} particles, Header TotNumPart says {header.n_particles}")
        out[block] = _convert(block, col[start:end], header.box_size, vel_factor)
    return out


def iter_particles(
    path: str | Path, blocks: Iterable[str] = ("Position",), chunk_size: int = 2**22
) -> Iterator[dict[str, np.ndarray]]:
    """Stream a snapshot in chunks of at most `chunk_size` particles (same units as `read_particles`)."""
    path = Path(path)
    header = read_header(path)
    f = _open(path)
    blocks = tuple(blocks)
    cols = {b: _column(f, path, b) for b in blocks}
    vel_factor = _velocity_factor(header, path, blocks)
    for start in range(0, header.n_particles, chunk_size):
        stop = min(start + chunk_size, header.n_particles)
        yield {b: _convert(b, cols[b][start:stop], header.box_size, vel_factor) for b in blocks}


def check_blocks_complete(path: str | Path, blocks=("Position", "ID")) -> None:
    """Raise SrsimError, naming the file, when a particle block's data file is shorter on disk than its bigfile
    block header says (a write cut off by a crash, a full disk or a time limit): the header alone would read
    back as complete, and the missing rows only fail, or read as garbage, later."""
    from srsim.io.rawblock import read_block_header

    for block in blocks:
        where = Path(path) / str(PTYPE) / block
        try:
            head, files = read_block_header(where / "header")
        except (OSError, ValueError) as err:
            raise SrsimError(f"{where}: unreadable block header ({err})") from None
        row = np.dtype(head["DTYPE"]).itemsize * int(head["NMEMB"])
        for i, (rows, _, _) in enumerate(files):
            data = where / f"{i:06X}"
            size = data.stat().st_size if data.is_file() else 0
            if size < rows * row:
                raise SrsimError(f"{data}: {size} bytes, but its block header lists {rows} rows of {row} bytes "
                                 f"({rows * row} bytes): a truncated snapshot")


def particle_mass(box_size: float, n_particles: int, omega_m: float) -> float:
    """Mass of one particle in Msun/h for `n_particles` tracing the mean matter density."""
    return omega_m * RHO_CRIT_1E10 * 1e10 * box_size**3 / n_particles


def make_header(
    *, box_size: float, redshift: float, n_particles: int, cosmology: dict, n_grid: int | None = None, **extra
) -> dict:
    """Raw `Header` attributes in MP-Gadget's units and names for a dark-matter-only snapshot.

    box_size in Mpc/h; cosmology the config's `cosmology` section. Extra keyword arguments are stored
    as additional attributes (strings, numbers or arrays; dicts are stored as JSON strings).
    """
    mass = particle_mass(box_size, n_particles, cosmology["Omega_m"]) / 1e10
    attrs = {
        "BoxSize": np.array([box_size * KPC_PER_MPC]),
        "Time": np.array([1.0 / (1.0 + redshift)]),
        "Redshift": np.array([float(redshift)]),
        "TotNumPart": np.array([0, n_particles, 0, 0, 0, 0], dtype=np.uint64),
        "MassTable": np.array([0.0, mass, 0.0, 0.0, 0.0, 0.0]),
        "Omega0": np.array([cosmology["Omega_m"]]),
        "OmegaLambda": np.array([cosmology["Omega_L"]]),
        "OmegaBaryon": np.array([cosmology["Omega_b"]]),
        "HubbleParam": np.array([cosmology["h"]]),
        "OmegaK": np.array([1.0 - cosmology["Omega_m"] - cosmology["Omega_L"]]),
        "Sigma8": np.array([cosmology["sigma8"]]),
        "PrimordialIndex": np.array([cosmology["n_s"]]),
        "UnitLength_in_cm": np.array([3.085678e21]),
        "UnitMass_in_g": np.array([1.989e43]),
        "UnitVelocity_in_cm_per_s": np.array([1e5]),
        "UsePeculiarVelocity": np.array([1], dtype=np.int32),
    }
    if n_grid is not None:
        attrs["NGrid"] = np.array([n_grid], dtype=np.int64)
    for key, value in extra.items():
        attrs[key] = json.dumps(value, sort_keys=True) if isinstance(value, dict) else value
    return attrs


def _write_attrs(block, attrs: dict) -> None:
    for key, value in attrs.items():
        block.attrs[key] = value if isinstance(value, str) else np.atleast_1d(np.asarray(value))


class SnapshotWriter:
    """Write a snapshot piece by piece into a temporary directory, renamed into place by `close()`.

    Any slice `[start, start + n)` of the particles can be written in any order, so chunked jobs
    stream their particles to disk without holding the whole box. Blocks: `1/Position` (kpc/h,
    `position_dtype` 'f8' or 'f4'), `1/ID` (u8) and, if `velocity`, `1/Velocity` (km/s, f4).
    Used as a context manager, an exception leaves the temporary directory for inspection and
    renames nothing.
    """

    def __init__(self, path, attrs: dict, n_total: int, *, velocity: bool = False, position_dtype: str = "f8",
                 tmp_path: str | Path | None = None):
        self.path = Path(path)
        self.path.parent.mkdir(parents=True, exist_ok=True)
        self.tmp = Path(tmp_path) if tmp_path is not None else temporary_sibling(self.path)
        self.n_total = int(n_total)
        self.box = float(np.asarray(attrs["BoxSize"]).reshape(-1)[0]) / KPC_PER_MPC
        self.velocity = velocity
        resume = self.tmp.is_dir() and (self.tmp / "Header").is_dir()
        self._file = bigfile.File(str(self.tmp), create=True)
        if not resume:
            _write_attrs(self._file.create("Header"), attrs)
            self._file.create(f"{PTYPE}/Position", dtype=(position_dtype, 3), size=self.n_total)
            self._file.create(f"{PTYPE}/ID", dtype="u8", size=self.n_total)
            if velocity:
                self._file.create(f"{PTYPE}/Velocity", dtype=("f4", 3), size=self.n_total)
        self._closed = False
        self._raw: dict = {}  #: RawBlock per block, opened by the first write_stored
        self._raw_lock = threading.Lock()

    def write(self, start: int, position: np.ndarray, ids: np.ndarray, velocity: np.ndarray | None = None) -> None:
        """Write particles `[start, start + len(ids))`: position (n, 3) Mpc/h, ids (n,), velocity (n, 3) km/s."""
        position = np.asarray(position)
        n = len(ids)
        if position.shape != (n, 3):
            raise ValueError(f"position shape {position.shape} does not match {n} ids")
        if start < 0 or start + n > self.n_total:
            raise ValueError(f"slice [{start}, {start + n}) outside the snapshot's {self.n_total} particles")
        if not np.all(np.isfinite(position)):
            raise SrsimError(f"{self.path}: refusing to write non-finite positions")
        col = self._file[f"{PTYPE}/Position"]
        dtype = col.dtype.base
        if position.min() < 0 or position.max() >= self.box:  # wrap only when needed: this is the hot path
            position = np.mod(position.astype(np.float64), self.box)
        pos = np.multiply(position, KPC_PER_MPC, dtype=np.float64).astype(dtype, copy=False)
        # rounding (mod of tiny negatives, or the cast to f4) can land exactly on BoxSize: that is 0
        pos[pos >= dtype.type(self.box * KPC_PER_MPC)] = 0
        col.write(start, pos)
        self._file[f"{PTYPE}/ID"].write(start, np.asarray(ids, dtype=np.uint64))
        if self.velocity:
            if velocity is None:
                raise ValueError("this snapshot has a Velocity block: pass velocity")
            self._file[f"{PTYPE}/Velocity"].write(start, np.asarray(velocity, dtype=np.float32))

    def write_stored(self, start: int, position: np.ndarray, ids: np.ndarray,
                     velocity: np.ndarray | None = None) -> None:
        """Write particles `[start, start + len(ids))` already in the stored form, as they go to disk.

        position: (n, 3) kpc/h of the Position block's dtype, wrapped into [0, BoxSize) by the caller
        (e.g. srsim.generate.infer.chunk_particles); ids: (n,) u8. No conversion pass: the generator's hot
        path. The bytes go straight into the block files (srsim.io.rawblock: the files and headers are
        those bigfile's own write leaves); safe to call from several threads for disjoint slices.
        velocity: (n, 3) f4 km/s, required exactly when the snapshot has a Velocity block.
        """
        from srsim.io.rawblock import RawBlock

        n = len(ids)
        if self.velocity != (velocity is not None):
            raise ValueError("write_stored: pass velocity exactly when the snapshot has a Velocity block")
        if velocity is not None and (velocity.shape != (n, 3) or velocity.dtype != np.float32):
            raise ValueError(f"write_stored: expected velocity ({n}, 3) f4, got {velocity.shape} {velocity.dtype}")
        with self._raw_lock:
            if not self._raw:
                blocks = ("Position", "ID") + (("Velocity",) if self.velocity else ())
                self._raw = {b: RawBlock(self.tmp / str(PTYPE) / b) for b in blocks}
        dtype = self._raw["Position"].dtype
        if position.shape != (n, 3) or position.dtype != dtype or ids.dtype != np.uint64:
            raise ValueError(f"write_stored: expected position ({n}, 3) {dtype} and ids u8, got "
                             f"{position.shape} {position.dtype} and {ids.dtype}")
        if start < 0 or start + n > self.n_total:
            raise ValueError(f"slice [{start}, {start + n}) outside the snapshot's {self.n_total} particles")
        self._raw["Position"].write(start, position)
        self._raw["ID"].write(start, ids)
        if velocity is not None:
            self._raw["Velocity"].write(start, velocity)

    def _close_raw(self) -> None:
        for block in self._raw.values():
            block.close()
        self._raw = {}

    def close(self) -> Path:
        """Finish: rename the temporary directory to the final path (replacing an old snapshot)."""
        if not self._closed:
            self._close_raw()
            self._file.close()
            replace_path(self.tmp, self.path)
            self._closed = True
        return self.path

    def detach(self) -> Path:
        """Close the file without renaming: for jobs that each write part of a shared snapshot."""
        if not self._closed:
            self._close_raw()
            self._file.close()
            self._closed = True
        return self.tmp

    def abort(self) -> None:
        """Delete the temporary directory."""
        if not self._closed:
            self._close_raw()
            self._file.close()
            shutil.rmtree(self.tmp, ignore_errors=True)
            self._closed = True

    def __enter__(self):
        return self

    def __exit__(self, exc_type, exc, tb):
        if exc_type is None:
            self.close()
        elif not self._closed:
            self._close_raw()
            self._file.close()
            self._closed = True
        return False


def write_snapshot(path, attrs: dict, position: np.ndarray, ids: np.ndarray, velocity: np.ndarray | None = None,
                   position_dtype: str = "f8") -> Path:
    """Write a whole snapshot atomically. position (n, 3) Mpc/h, ids (n,) u8, velocity (n, 3) km/s or None."""
    n = len(ids)
    tot = np.asarray(attrs.get("TotNumPart", [0, n]), dtype=np.int64).reshape(-1)
    if tot.size > PTYPE and tot[PTYPE] != n:
        raise ValueError(f"Header TotNumPart[1] = {tot[PTYPE]} but {n} particles given")
    writer = SnapshotWriter(path, attrs, n, velocity=velocity is not None, position_dtype=position_dtype)
    try:
        writer.write(0, position, ids, velocity)
    except BaseException:
        writer.abort()
        raise
    return writer.close()
