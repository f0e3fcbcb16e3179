"""HDF5 displacement fields: dataset `disp`, (3, N, N, N) float32, Mpc/h, minimum-image wrapped.

Attributes: `box_size` (Mpc/h), `redshift`, `n_grid`, `cosmology` (JSON string of the config's
cosmology section), `source` (what the field was made from), plus any extras.

Optional second dataset `vel` (`srsim displacement --velocity`): the peculiar velocity v = a dx/dt of each grid
particle, (3, N, N, N) float32 km/s on the same grid as `disp`, with attributes `velocity_units` ("km/s") and
`velocity_convention` (what it is and where it came from). Readers of `disp` ignore it.
"""

from __future__ import annotations

import contextlib
import json
import os
from pathlib import Path

import h5py
import numpy as np

from srsim.errors import SrsimError
from srsim.io.atomic import atomic_path, crc32

DATASET = "disp"
VELOCITY_DATASET = "vel"
VELOCITY_UNITS = "km/s"


def check_displacement(disp: np.ndarray, where: str = "displacement") -> None:
    """Raise SrsimError unless `disp` is a finite (3, N, N, N) array."""
    if disp.ndim != 4 or disp.shape[0] != 3 or not (disp.shape[1] == disp.shape[2] == disp.shape[3]):
        raise SrsimError(f"{where}: displacement must have shape (3, N, N, N), got {disp.shape}")
    if not np.all(np.isfinite(disp)):
        raise SrsimError(f"{where}: displacement contains NaN or inf")


def check_velocity(vel: np.ndarray, disp_shape: tuple, where: str = "velocity") -> None:
    """Raise SrsimError unless `vel` is finite and has the displacement field's shape `disp_shape`."""
    if tuple(vel.shape) != tuple(disp_shape):
        raise SrsimError(f"{where}: velocity field has shape {tuple(vel.shape)}, the displacement {tuple(disp_shape)}")
    if not np.all(np.isfinite(vel)):
        raise SrsimError(f"{where}: velocity field contains NaN or inf")


def write_displacement(path, disp: np.ndarray, *, box_size: float, redshift: float, cosmology: dict,
                       source: str, velocity: np.ndarray | None = None, velocity_convention: str | None = None,
                       **extra_attrs) -> Path:
    """Write a displacement field atomically. disp (3, N, N, N), Mpc/h (stored float32).

    velocity: optional (3, N, N, N) peculiar velocity in km/s on the same grid (stored float32 as `vel`);
    velocity_convention: the text of its `velocity_convention` attribute (required with `velocity`).
    """
    path = Path(path)
    check_displacement(disp, str(path))
    if velocity is not None:
        check_velocity(velocity, disp.shape, str(path))
        if not velocity_convention:
            raise ValueError("write_displacement: a velocity field needs its velocity_convention")
    with atomic_path(path) as tmp:
        with h5py.File(tmp, "w") as f:
            f.create_dataset(DATASET, data=np.asarray(disp, dtype=np.float32))
            _set_attrs(f, box_size, redshift, disp.shape[1], cosmology, source, extra_attrs)
            if velocity is not None:
                f.create_dataset(VELOCITY_DATASET, data=np.asarray(velocity, dtype=np.float32))
                f.attrs["velocity_units"] = VELOCITY_UNITS
                f.attrs["velocity_convention"] = str(velocity_convention)
    return path


def _set_attrs(f, box_size, redshift, n_grid, cosmology, source, extra) -> None:
    f.attrs["box_size"] = float(box_size)
    f.attrs["redshift"] = float(redshift)
    f.attrs["n_grid"] = int(n_grid)
    f.attrs["cosmology"] = json.dumps(cosmology, sort_keys=True)
    f.attrs["source"] = str(source)
    f.attrs["units"] = "Mpc/h"
    for key, value in extra.items():
        f.attrs[key] = json.dumps(value, sort_keys=True) if isinstance(value, dict) else value


def _decode(attrs) -> dict:
    out = {}
    for key, value in attrs.items():
        if isinstance(value, bytes):
            value = value.decode()
        if isinstance(value, np.generic):
            value = value.item()
        out[key] = value
    if isinstance(out.get("cosmology"), str):
        out["cosmology"] = json.loads(out["cosmology"])
    return out


def _open(path: Path) -> h5py.File:
    if not path.is_file():
        raise SrsimError(f"{path}: displacement file not found")
    try:
        f = h5py.File(path, "r")
    except OSError as exc:
        raise SrsimError(f"{path}: cannot read as HDF5: {exc}") from exc
    if DATASET not in f:
        f.close()
        raise SrsimError(f"{path}: no '{DATASET}' dataset (not a displacement field)")
    shape = f[DATASET].shape
    if len(shape) != 4 or shape[0] != 3 or not (shape[1] == shape[2] == shape[3]):
        f.close()
        raise SrsimError(f"{path}: '{DATASET}' must have shape (3, N, N, N), got {shape}")
    for key in ("box_size", "redshift"):
        if key not in f.attrs:
            f.close()
            raise SrsimError(f"{path}: missing attribute '{key}'")
    return f


def displacement_attrs(path) -> dict:
    """The attributes of a displacement file (cosmology decoded), plus `shape`."""
    path = Path(path)
    with _open(path) as f:
        attrs = _decode(f.attrs)
        attrs["shape"] = f[DATASET].shape
    return attrs


def read_displacement(path) -> tuple[np.ndarray, dict]:
    """Read a whole displacement field: ((3, N, N, N) float32 Mpc/h, attrs)."""
    path = Path(path)
    with _open(path) as f:
        disp = f[DATASET][...]
        attrs = _decode(f.attrs)
    check_displacement(disp, str(path))
    return disp, attrs


def read_velocity(path) -> tuple[np.ndarray, dict]:
    """Read the velocity field of a displacement file: ((3, N, N, N) float32 peculiar km/s, attrs).

    SrsimError naming the file when it has no `vel` dataset (written without `--velocity`)."""
    path = Path(path)
    with _open(path) as f:
        if VELOCITY_DATASET not in f:
            raise SrsimError(f"{path}: no '{VELOCITY_DATASET}' dataset (a displacement file written without "
                             "velocities: rerun srsim displacement with --velocity)")
        vel = f[VELOCITY_DATASET][...]
        attrs = _decode(f.attrs)
        shape = f[DATASET].shape
    check_velocity(vel, shape, str(path))
    return vel, attrs


def open_displacement(path) -> h5py.File:
    """Open a displacement file for sliced reading (`f['disp'][:, i0:i1, ...]`); caller closes it."""
    return _open(Path(path))


class DisplacementWriter:
    """Stream a (3, N, N, N) float32 Mpc/h displacement field into HDF5 block by block, resumably.

    Blocks go to the fixed partial name ``.<name>.partial`` next to `path` (same dataset and attributes as
    `write_displacement`); `close()` renames it into place. With ``resume=True`` an existing partial file of
    the same shape is reopened and kept (a rerun of an interrupted job rewrites only its missing blocks,
    which it checks with `crc`); otherwise any old partial file is discarded. `suspend()` closes the file and
    keeps the partial for a later resume; `abort()` deletes it.
    """

    def __init__(self, path, n_grid: int, *, box_size: float, redshift: float, cosmology: dict, source: str,
                 resume: bool = False, **extra_attrs):
        self.path = Path(path)
        self.tmp = self.path.with_name(f".{self.path.name}.partial")
        self.path.parent.mkdir(parents=True, exist_ok=True)
        shape = (3, n_grid, n_grid, n_grid)
        self._f = None
        if resume and self.tmp.exists():
            try:
                self._f = h5py.File(self.tmp, "r+")
                if self._f[DATASET].shape != shape:
                    self.suspend()
            except (OSError, KeyError):
                self.suspend()
        if self._f is None:
            self.tmp.unlink(missing_ok=True)
            self._f = h5py.File(self.tmp, "w")
            self._f.create_dataset(DATASET, shape=shape, dtype=np.float32)
            _set_attrs(self._f, box_size, redshift, n_grid, cosmology, source, extra_attrs)
        self._d = self._f[DATASET]

    def write(self, origin: tuple[int, int, int], block: np.ndarray) -> int:
        """Write `block` (3, a, b, c) Mpc/h at grid index `origin` (no wrap-around); returns `crc` of it."""
        i, j, k = origin
        _, a, b, c = block.shape
        self._d[:, i:i + a, j:j + b, k:k + c] = block
        return self.crc(origin, block.shape[1:])

    def crc(self, origin: tuple[int, int, int], shape: tuple[int, int, int]) -> int:
        """CRC32 of the stored float32 bytes of the block of `shape` cells at grid index `origin`."""
        i, j, k = origin
        a, b, c = shape
        return crc32(self._d[:, i:i + a, j:j + b, k:k + c])

    def close(self) -> Path:
        """Finish: close the file and rename it into place."""
        self._f.close()
        os.replace(self.tmp, self.path)
        return self.path

    def suspend(self) -> None:
        """Close the file, keeping the partial one for a resumed run."""
        if self._f is not None:
            with contextlib.suppress(Exception):
                self._f.close()
            self._f = None

    def abort(self) -> None:
        """Close and delete the partial file."""
        self.suspend()
        self.tmp.unlink(missing_ok=True)
