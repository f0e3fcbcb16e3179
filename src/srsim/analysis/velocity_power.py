"""Power spectra that need particle velocities: redshift-space multipoles and the momentum power.

Same CIC mesh, mesh-point convention, normalisation and k shells as :mod:`srsim.analysis.power` (whose shell
accumulators both use), no window deconvolution unless asked, and the same two engines: NumPy + numba on the
CPU, PyTorch on any torch device (they agree to float64 rounding).

Redshift space (plane-parallel, line of sight a box axis): each particle moves along the axis by
v_los / (a H(a)); with v the peculiar velocity in km/s and H = 100 h E(a) km/s/Mpc that is
``s = x + v_los / (100 a E(a))`` in Mpc/h, wrapped periodically. The multipoles of the redshift-space
density are ``P_l(k) = (2 l + 1) <|delta_s(k)|^2 L_l(mu)>`` over the modes of each shell, mu = k_los / |k|,
l = 0, 2, 4 (Legendre L_l); the k = 0 mode is left out. In linear theory (Kaiser) P0 = (1 + 2/3 beta + 1/5
beta^2) P, P2 = (4/3 beta + 4/7 beta^2) P, P4 = 8/35 beta^2 P with beta = f for matter.

Momentum: the CIC-painted mass-weighted velocity divided by the mean number of particles per cell, i.e. the
momentum field p = (1 + delta) v (3 components, km/s) on the mesh; its power summed over components,
``P_pp(k) = sum_i <|p_i(k)|^2> V`` in (km/s)^2 (Mpc/h)^3, and the longitudinal part ``<|k.p(k)|^2 / k^2> V``
(all of it for the curl-free linear flow, where P_pp = (100 a E f)^2 P(k) / k^2).
"""

from __future__ import annotations

import os
from dataclasses import dataclass, field
from typing import Iterable, Iterator

import numpy as np

from srsim.analysis.power import (
    cic_paint_numpy,
    cpu_workers,
    default_k_edges,
    delta_from_density_,
    delta_from_density_torch_,
    paint_numpy,
    paint_torch,
    power_engine,
    power_meta,
    shell_sums_numpy,
    shell_sums_torch,
    snapshot_chunks,
)
from srsim.errors import SrsimError

__all__ = [
    "AXIS_NAMES",
    "MultipoleResult",
    "MomentumPowerResult",
    "parse_axis",
    "redshift_space_positions",
    "velocity_to_distance",
    "multipoles_from_positions",
    "momentum_power_from_particles",
    "multipoles_snapshot",
    "momentum_power_snapshot",
]

AXIS_NAMES = ("x", "y", "z")
#: the shift convention, as the tables state it
RSD_CONVENTION = "plane-parallel: s = x + v_los / (100 a E(a)) Mpc/h, v peculiar km/s, wrapped periodically"
MOMENTUM_CONVENTION = "p = (1 + delta) v: CIC-painted sum of v_i per cell / mean particles per cell"


@dataclass
class MultipoleResult:
    """Redshift-space power multipoles.

    k            (nbins,) float64, h/Mpc   mean |k| of the modes in each bin
    P0, P2, P4   (nbins,) float64, (Mpc/h)^3
    n_modes      (nbins,) int64            modes in the bin (a mode and its conjugate count twice)
    meta         dict: power_meta's keys, plus axis ('x' | 'y' | 'z'), scale_factor, hubble_E (E(a)) and
                 rsd_convention; the snapshot functions add redshift and source
    """

    k: np.ndarray
    P0: np.ndarray
    P2: np.ndarray
    P4: np.ndarray
    n_modes: np.ndarray
    meta: dict = field(default_factory=dict)


@dataclass
class MomentumPowerResult:
    """Momentum power spectrum.

    k                  (nbins,) float64, h/Mpc
    P_pp               (nbins,) float64, (km/s)^2 (Mpc/h)^3   sum over the 3 components
    P_pp_longitudinal  (nbins,) float64, (km/s)^2 (Mpc/h)^3   <|k.p(k)|^2 / k^2> V
    n_modes            (nbins,) int64
    meta               dict: power_meta's keys plus momentum_convention (+ redshift, source)
    """

    k: np.ndarray
    P_pp: np.ndarray
    P_pp_longitudinal: np.ndarray
    n_modes: np.ndarray
    meta: dict = field(default_factory=dict)


def parse_axis(axis) -> int:
    """Line-of-sight axis 'x' | 'y' | 'z' | 0 | 1 | 2 (or '0', '1', '2') -> 0, 1 or 2."""
    text = str(axis).strip().lower()
    if text in AXIS_NAMES:
        return AXIS_NAMES.index(text)
    if text in ("0", "1", "2"):
        return int(text)
    raise SrsimError(f"redshift-space axis must be x, y, z or 0, 1, 2, got {axis!r}")


def velocity_to_distance(a: float, omega_m: float, omega_l: float) -> float:
    """1 / (100 a E(a)): the factor (Mpc/h per km/s) turning a peculiar velocity into its redshift-space shift."""
    from srsim.cosmology import hubble_e

    return 1.0 / (100.0 * float(a) * float(hubble_e(a, omega_m, omega_l)))


def redshift_space_positions(pos: np.ndarray, vel: np.ndarray, axis: int, factor: float, box_size: float) -> np.ndarray:
    """Plane-parallel redshift-space positions.

    pos     (N, 3) float, Mpc/h
    vel     (N, 3) float, peculiar km/s
    axis    0, 1 or 2 (line of sight)
    factor  Mpc/h per km/s, :func:`velocity_to_distance`
    Returns (N, 3) float64 Mpc/h, the axis coordinate shifted by factor * v_axis and wrapped into [0, box).
    """
    out = np.array(pos, dtype=np.float64)
    out[:, axis] = np.mod(out[:, axis] + factor * np.asarray(vel[:, axis], dtype=np.float64), box_size)
    return out


def _legendre_quantities(axis: int):
    """Per-mode |delta_k|^2 L_l(mu), l = 0, 2, 4, for the shell accumulator (mu = n_axis / |n|)."""

    def quantities(planes, nx, ny, nz, nmag):
        p2 = planes[0].real**2 + planes[0].imag**2
        n_axis = (nx, ny, nz)[axis]
        with np.errstate(invalid="ignore", divide="ignore"):  # |n| = 0 is dropped by the accumulator
            mu2 = n_axis**2 / nmag**2  # NumPy arrays or torch tensors alike
        l2 = 0.5 * (3.0 * mu2 - 1.0)
        l4 = (35.0 * mu2 * mu2 - 30.0 * mu2 + 3.0) / 8.0
        return [p2, p2 * l2, p2 * l4]

    return quantities


def _momentum_quantities(planes, nx, ny, nz, nmag):
    px, py, pz = planes
    total = sum(p.real**2 + p.imag**2 for p in planes)
    with np.errstate(invalid="ignore", divide="ignore"):
        kdotp = nx * px + ny * py + nz * pz
        longitudinal = (kdotp.real**2 + kdotp.imag**2) / nmag**2
    return [total, longitudinal]


def _engine_name(engine: str) -> str:
    return "numpy" if engine == "numpy" else f"torch:{engine}"


def multipoles_from_positions(
    chunks: Iterable[np.ndarray],
    box_size: float,
    n_mesh: int,
    axis: int,
    *,
    device: str = "numpy",
    k_edges=None,
    deconvolve: bool = False,
    workers: int | None = None,
) -> MultipoleResult:
    """Multipoles P0, P2, P4 along ``axis`` of equal-mass particles streamed as (n, 3) Mpc/h position chunks.

    Pass redshift-space positions (:func:`redshift_space_positions`) for the redshift-space multipoles; P0 of
    real-space positions is the real-space P(k) of :func:`srsim.analysis.power.power_from_positions` (same
    mesh, same sums). device as there: 'numpy', a torch device string, or 'auto'.
    """
    engine = power_engine(device)
    edges = default_k_edges(n_mesh, box_size) if k_edges is None else np.asarray(k_edges, dtype=np.float64)
    quantities = _legendre_quantities(axis)
    if engine == "numpy":
        import scipy.fft

        mesh, n_tot = paint_numpy(chunks, n_mesh, box_size)
        if n_tot == 0:
            raise SrsimError("redshift-space power: no particles")
        dk = scipy.fft.rfftn(delta_from_density_(mesh), workers=workers or cpu_workers(), overwrite_x=True)
        del mesh
        kf, ksum, sums, nmodes, norm = shell_sums_numpy([dk], box_size, edges, deconvolve, quantities)
    else:
        import torch

        mesh, n_tot = paint_torch(chunks, n_mesh, box_size, device=engine)
        if n_tot == 0:
            raise SrsimError("redshift-space power: no particles")
        dk = torch.fft.rfftn(delta_from_density_torch_(mesh))
        del mesh
        kf, ksum, sums, nmodes, norm = shell_sums_torch([dk], box_size, edges, deconvolve, quantities)
    keep = nmodes > 0
    nm = nmodes[keep]
    p0, p2, p4 = (sums[j][keep] / nm * norm * (2 * ell + 1) for j, ell in enumerate((0, 2, 4)))
    meta = power_meta(box_size, n_mesh, n_tot, deconvolve, _engine_name(engine))
    meta["axis"] = AXIS_NAMES[axis]
    return MultipoleResult(k=ksum[keep] / nm * kf, P0=p0, P2=p2, P4=p4, n_modes=np.rint(nm).astype(np.int64),
                           meta=meta)


def _momentum_fields_numpy(chunks, n_mesh, box_size, workers):
    """rFFTs of the three (1 + delta) v_i meshes (NumPy), and the particle count."""
    import scipy.fft

    meshes = [np.zeros((n_mesh,) * 3, dtype=np.float64) for _ in range(3)]
    n_tot = 0
    for pos, vel in chunks:
        vel = np.asarray(vel, dtype=np.float64)
        for i in range(3):
            cic_paint_numpy(meshes[i], pos, box_size, weight=vel[:, i])
        n_tot += len(pos)
    if n_tot == 0:
        raise SrsimError("momentum power: no particles")
    per_cell = n_tot / float(n_mesh) ** 3
    fields_k = []
    while meshes:  # transform one at a time, dropping each real mesh as soon as it is transformed
        m = meshes.pop(0)
        m /= per_cell
        fields_k.append(scipy.fft.rfftn(m, workers=workers or cpu_workers(), overwrite_x=True))
        del m
    return fields_k, n_tot


def _momentum_fields_torch(chunks, n_mesh, box_size, device):
    """Torch twin of :func:`_momentum_fields_numpy` on ``device``, float64."""
    import torch

    from srsim.mesh import cic_paint_add_

    dev = torch.device(device)
    meshes = [torch.zeros((n_mesh,) * 3, dtype=torch.float64, device=dev) for _ in range(3)]
    scale = n_mesh / float(box_size)
    n_tot = 0
    for pos, vel in chunks:
        p = torch.as_tensor(np.ascontiguousarray(pos, dtype=np.float64), device=dev) * scale
        v = torch.as_tensor(np.asarray(vel, dtype=np.float64), device=dev)
        for i in range(3):
            cic_paint_add_(meshes[i], p, v[:, i])
        n_tot += len(pos)
    if n_tot == 0:
        raise SrsimError("momentum power: no particles")
    per_cell = n_tot / float(n_mesh) ** 3
    fields_k = []
    while meshes:
        m = meshes.pop(0)
        fields_k.append(torch.fft.rfftn(m / per_cell))
        del m
    return fields_k, n_tot


def momentum_power_from_particles(
    chunks: Iterable[tuple[np.ndarray, np.ndarray]],
    box_size: float,
    n_mesh: int,
    *,
    device: str = "numpy",
    k_edges=None,
    deconvolve: bool = False,
    workers: int | None = None,
) -> MomentumPowerResult:
    """Momentum power of equal-mass particles streamed as (positions (n, 3) Mpc/h, velocities (n, 3) km/s).

    The mesh of component i is the CIC sum of v_i over particles divided by N_particles / n_mesh^3, i.e.
    (1 + delta) v_i in km/s; memory: three float64 meshes and their rFFTs. device as for the multipoles.
    """
    engine = power_engine(device)
    edges = default_k_edges(n_mesh, box_size) if k_edges is None else np.asarray(k_edges, dtype=np.float64)
    if engine == "numpy":
        fields_k, n_tot = _momentum_fields_numpy(chunks, n_mesh, box_size, workers)
        parts = shell_sums_numpy(fields_k, box_size, edges, deconvolve, _momentum_quantities)
    else:
        fields_k, n_tot = _momentum_fields_torch(chunks, n_mesh, box_size, engine)
        parts = shell_sums_torch(fields_k, box_size, edges, deconvolve, _momentum_quantities)
    del fields_k
    kf, ksum, sums, nmodes, norm = parts
    keep = nmodes > 0
    nm = nmodes[keep]
    meta = power_meta(box_size, n_mesh, n_tot, deconvolve, _engine_name(engine))
    meta["momentum_convention"] = MOMENTUM_CONVENTION
    return MomentumPowerResult(k=ksum[keep] / nm * kf, P_pp=sums[0][keep] / nm * norm,
                               P_pp_longitudinal=sums[1][keep] / nm * norm,
                               n_modes=np.rint(nm).astype(np.int64), meta=meta)


def _velocity_chunks(path, header, chunk_size: int, progress: bool) -> Iterator[dict]:
    """Position + Velocity chunks of a snapshot (srsim units), checked first: a snapshot without a 1/Velocity
    block (or in an unknown velocity convention) fails before any painting, SrsimError naming file and block."""
    from srsim.io.snapshot import read_particles

    try:
        read_particles(path, ("Position", "Velocity"), 0, 0)
    except SrsimError as err:
        raise SrsimError(f"velocity power spectra need the 1/Velocity block (peculiar velocities): {err}") from None
    return snapshot_chunks(path, header.n_particles, ("Position", "Velocity"), chunk_size, progress)


def _finish_snapshot(res, header, path):
    if res.meta["n_particles"] != header.n_particles:
        raise SrsimError(f"{path}: header says {header.n_particles} particles, read {res.meta['n_particles']}")
    res.meta["redshift"] = float(header.redshift)
    res.meta["source"] = os.fspath(path)
    return res


def multipoles_snapshot(path, n_mesh: int, axis, *, device: str = "numpy", chunk_size: int = 2**22,
                        deconvolve: bool = False, k_edges=None, progress: bool = True) -> MultipoleResult:
    """Redshift-space multipoles of a snapshot along ``axis`` (:func:`parse_axis`), E(a) from the header's
    Omega0 and OmegaLambda at its Time."""
    from srsim.cosmology import hubble_e
    from srsim.io.snapshot import read_header

    axis = parse_axis(axis)
    header = read_header(path)
    factor = velocity_to_distance(header.time, header.omega_m, header.omega_l)
    positions = (redshift_space_positions(c["Position"], c["Velocity"], axis, factor, header.box_size)
                 for c in _velocity_chunks(path, header, chunk_size, progress))
    res = multipoles_from_positions(positions, header.box_size, n_mesh, axis, device=device, k_edges=k_edges,
                                    deconvolve=deconvolve)
    e_a = float(hubble_e(header.time, header.omega_m, header.omega_l))
    res.meta.update(scale_factor=float(header.time), hubble_E=e_a, rsd_convention=RSD_CONVENTION)
    return _finish_snapshot(res, header, path)


def momentum_power_snapshot(path, n_mesh: int, *, device: str = "numpy", chunk_size: int = 2**22,
                            deconvolve: bool = False, k_edges=None, progress: bool = True) -> MomentumPowerResult:
    """Momentum power spectrum of a snapshot (bigfile, MP-Gadget layout, with a 1/Velocity block)."""
    from srsim.io.snapshot import read_header

    header = read_header(path)
    pairs = ((c["Position"], c["Velocity"]) for c in _velocity_chunks(path, header, chunk_size, progress))
    res = momentum_power_from_particles(pairs, header.box_size, n_mesh, device=device, k_edges=k_edges,
                                        deconvolve=deconvolve)
    return _finish_snapshot(res, header, path)
