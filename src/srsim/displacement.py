"""Snapshot -> displacement field (and, with velocity=True, velocity field) on the Lagrangian grid: the
pre-processing step of training and generation."""

from __future__ import annotations

from pathlib import Path

import numpy as np

from srsim.errors import SrsimError
from srsim.fields import cube_root, particles_to_grid, positions_to_displacement
from srsim.io.displacement import write_displacement
from srsim.io.snapshot import has_block, read_header, read_particles


#: header attribute of each background parameter a snapshot must agree on with the config's cosmology
_HEADER_KEYS = {"Omega_m": "omega_m", "Omega_L": "omega_l", "h": "h"}


def snapshot_displacement(snapshot, cosmology: dict | None = None) -> tuple[np.ndarray, dict]:
    """Read a grid-particle snapshot: ((3, N, N, N) float32 Mpc/h displacement, header-derived attrs).

    cosmology: the config's cosmology section. MP-Gadget's snapshots record the background (Omega0,
    OmegaLambda, HubbleParam) but neither sigma8 nor n_s, which the model's scaling and the SR headers
    need: with `cosmology` the attrs carry the config's section, after checking that the header agrees
    with it; without, what the header has.
    """
    disp, _, attrs = snapshot_fields(snapshot, cosmology)
    return disp, attrs


def snapshot_fields(snapshot, cosmology: dict | None = None, *, velocity: bool = False
                    ) -> tuple[np.ndarray, np.ndarray | None, dict]:
    """Read a grid-particle snapshot's fields on the Lagrangian grid: (disp, vel, attrs).

    disp: (3, N, N, N) float32 Mpc/h, as :func:`snapshot_displacement` (`cosmology` and attrs as there).
    vel: with `velocity`, the `1/Velocity` block in ID order, (3, N, N, N) float32 km/s, peculiar (v = a dx/dt;
    the reader converts MP-Gadget's `UsePeculiarVelocity = 0` storage and refuses conventions it does not
    know); attrs then also carry `velocity_convention`. Without `velocity`, vel is None. A snapshot with no
    Velocity block (SR snapshots) fails naming the snapshot and the block, before anything is read.
    """
    snapshot = Path(snapshot)
    header = read_header(snapshot)
    n = cube_root(header.n_particles, source=str(snapshot))
    blocks = ("Position", "ID")
    if velocity:
        if not has_block(snapshot, "Velocity"):
            raise SrsimError(f"{snapshot}: the snapshot has no '1/Velocity' block, so no velocity field can be made "
                             "(SR snapshots carry none); drop --velocity")
        blocks += ("Velocity",)
    parts = read_particles(snapshot, blocks)
    disp = positions_to_displacement(parts["Position"], parts["ID"], n, header.box_size, source=str(snapshot))
    vel = (np.ascontiguousarray(particles_to_grid(parts["Velocity"], parts["ID"], n, source=str(snapshot)))
           if velocity else None)
    if cosmology is not None:
        for key, attr in _HEADER_KEYS.items():
            ours, theirs = float(cosmology[key]), float(getattr(header, attr))
            if abs(ours - theirs) > 1e-6 * max(abs(ours), 1e-3):
                raise SrsimError(f"{snapshot}: the snapshot's {attr} = {theirs:.8g} differs from config "
                                 f"cosmology.{key} = {ours:.8g}: it was run with another cosmology")
        cosmology = dict(cosmology)
    else:
        cosmology = {"Omega_m": header.omega_m, "Omega_L": header.omega_l, "Omega_b": header.omega_b, "h": header.h}
        for key, name in (("Sigma8", "sigma8"), ("PrimordialIndex", "n_s")):
            if key in header.attrs:
                cosmology[name] = float(np.asarray(header.attrs[key]).reshape(-1)[0])
    attrs = {"box_size": header.box_size, "redshift": header.redshift, "cosmology": cosmology,
             "particle_mass": header.particle_mass}
    if velocity:
        attrs["velocity_convention"] = f"peculiar, a dx/dt, from {snapshot.resolve()}'s 1/Velocity"
    return disp, vel, attrs


def snapshot_to_displacement_file(snapshot, out, cosmology: dict | None = None, *, velocity: bool = False) -> Path:
    """Write the displacement field of `snapshot` to HDF5 `out` (atomically); `cosmology` as in
    :func:`snapshot_displacement`. With `velocity` also the peculiar velocity field, dataset `vel` (3, N, N, N)
    float32 km/s (:func:`snapshot_fields`); every check runs before anything is written."""
    disp, vel, attrs = snapshot_fields(snapshot, cosmology, velocity=velocity)
    if float(np.abs(disp).max()) >= 0.5 * attrs["box_size"] * (1 - 1e-6):
        # minimum image cannot tell a displacement of half the box from its negative
        raise SrsimError(f"{snapshot}: displacements reach half the box; the minimum-image field is ambiguous")
    return write_displacement(out, disp, source=str(Path(snapshot).resolve()), velocity=vel, **attrs)

