"""FOF halo catalogues (HDF5): what `srsim fof` / `fof-domain` / `fof-merge` write and the HMF and figures read.

Catalogue (HDF5): ``npart`` (G,) int64, ``mass`` (G,) float64 Msun/h, ``pos`` (G, 3) float64 Mpc/h
(periodic centre of mass), ``min_id`` (G,) uint64 (smallest member ID, a stable halo key); optional
``members_offset`` (G+1,) int64 and ``members_id`` (sum npart,) uint64 (IDs of group g are
``members_id[members_offset[g]:members_offset[g+1]]``, sorted); where the snapshot had velocities, ``vel``
(G, 3) float64 km/s (the members' mean peculiar velocity) and ``sigma_v`` (G,) float64 km/s (their 1D velocity
dispersion about it, sqrt(sum |v_i - vel|^2 / 3 n)), both or neither. Attributes ``box_size``, ``redshift``,
``particle_mass``, ``b``, ``linking_length``, ``min_members``, ``n_particles``, ``source``, ``has_velocity``
(whether ``vel`` and ``sigma_v`` are there; catalogues written before it existed have neither).
Groups are ordered by decreasing ``npart``, ties by increasing ``min_id``.
"""

from __future__ import annotations

import os

import numpy as np

from srsim.errors import SrsimError

_REQUIRED = ("npart", "mass", "pos")
_VELOCITY = ("vel", "sigma_v")


def write_catalog(path, cat: dict, attrs: dict) -> None:
    """Write a halo catalogue HDF5 file atomically (datasets and attributes as in the module docstring)."""
    import h5py

    from srsim.io.atomic import atomic_path

    for key in _REQUIRED:
        if key not in cat:
            raise ValueError(f"halo catalogue needs dataset '{key}'")
    n = len(np.asarray(cat["npart"]))
    has_vel = _VELOCITY[0] in cat
    if (_VELOCITY[1] in cat) != has_vel:
        raise ValueError("halo catalogue: 'vel' and 'sigma_v' come together")
    if has_vel and (np.shape(cat["vel"]) != (n, 3) or np.shape(cat["sigma_v"]) != (n,)):
        raise ValueError(f"halo catalogue of {n} groups: 'vel' has shape {np.shape(cat['vel'])}, 'sigma_v' "
                         f"{np.shape(cat['sigma_v'])}; expected ({n}, 3) and ({n},)")
    if "has_velocity" in attrs and bool(attrs["has_velocity"]) != has_vel:
        raise ValueError(f"halo catalogue: attribute has_velocity = {attrs['has_velocity']} but the datasets "
                         f"{'include' if has_vel else 'lack'} 'vel' and 'sigma_v'")
    with atomic_path(path) as tmp:
        with h5py.File(tmp, "w") as f:
            f.create_dataset("npart", data=np.asarray(cat["npart"], dtype=np.int64))
            f.create_dataset("mass", data=np.asarray(cat["mass"], dtype=np.float64))
            f.create_dataset("pos", data=np.asarray(cat["pos"], dtype=np.float64).reshape(-1, 3))
            for key in ("min_id", "members_offset", "members_id"):
                if key in cat:
                    dt = np.int64 if key == "members_offset" else np.uint64
                    f.create_dataset(key, data=np.asarray(cat[key], dtype=dt))
            if has_vel:
                f.create_dataset("vel", data=np.asarray(cat["vel"], dtype=np.float64))
                f.create_dataset("sigma_v", data=np.asarray(cat["sigma_v"], dtype=np.float64))
            for k, v in attrs.items():
                f.attrs[k] = v
            f.attrs["has_velocity"] = has_vel


def read_catalog(path, *, max_members: int | None = None) -> tuple[dict, dict]:
    """Read a halo catalogue -> (datasets dict of arrays, attributes dict), as in the module docstring.

    With `max_members`, member lists longer than that (8 bytes per ID) are not loaded: 'members_id' and
    'members_offset' are then absent, as in a catalogue written without members.
    """
    import h5py

    path = os.fspath(path)
    if not os.path.isfile(path):
        raise SrsimError(f"{path}: halo catalogue not found")
    try:
        with h5py.File(path, "r") as f:
            missing = [k for k in _REQUIRED if k not in f]
            if missing:
                raise SrsimError(f"{path}: not a halo catalogue: missing dataset(s) {', '.join(missing)}")
            skip = set()
            if max_members is not None and "members_id" in f and f["members_id"].shape[0] > max_members:
                skip = {"members_id", "members_offset"}
            cat = {k: f[k][()] for k in f.keys() if k not in skip}
            attrs = {k: (v.item() if isinstance(v, np.generic) else v) for k, v in f.attrs.items()}
    except OSError as exc:
        raise SrsimError(f"{path}: cannot read halo catalogue: {exc}") from exc
    for key in ("box_size", "redshift"):
        if key not in attrs:
            raise SrsimError(f"{path}: halo catalogue has no '{key}' attribute")
    if attrs.get("has_velocity") and not all(k in cat for k in _VELOCITY):
        raise SrsimError(f"{path}: halo catalogue says has_velocity but lacks dataset 'vel' or 'sigma_v'")
    if isinstance(attrs.get("source"), bytes):
        attrs["source"] = attrs["source"].decode()
    return cat, attrs
