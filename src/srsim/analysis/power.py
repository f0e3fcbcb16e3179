"""Matter power spectrum of a particle snapshot: CIC mass assignment, FFT, spherical shell averages.

Conventions (the paper's, Eq. 1):

* Mesh point ``(i, j, k)`` sits at ``(i, j, k) * box / n_mesh``; a particle exactly on a mesh point gives
  all its mass to that point (so a particle lattice commensurate with the mesh has zero power below its
  own Nyquist wavenumber).
* ``delta = rho / rho_mean - 1`` on the mesh; ``P(k) = <|delta_k|^2> V`` with ``delta_k`` the DFT
  normalised by ``1 / n_mesh^3``. No shot-noise subtraction and, by default, no window deconvolution: the
  paper compares LR, HR and SR on the same 512^3 mesh "on an equal footing".
* Shells of width the fundamental frequency ``k_F = 2 pi / box`` centred on ``i k_F`` (edges at
  ``(i + 1/2) k_F``); ``k`` of a bin is the mean ``|k|`` of its modes. A mode and its complex conjugate are
  both counted (``n_modes`` counts the full complex FFT), as in MP-Gadget and nbodykit.

Particles are streamed in chunks so the memory needed is that of the mesh (and its FFT) only.
Two engines give the same numbers: NumPy + numba on the CPU, PyTorch on any torch device.
"""
from __future__ import annotations

import math
import os
import sys
from dataclasses import dataclass, field
from typing import Iterable, Iterator

import numba
import numpy as np

from srsim.errors import SrsimError

__all__ = [
    "PowerResult",
    "cic_paint_numpy",
    "paint_numpy",
    "paint_torch",
    "power_from_mesh",
    "power_from_positions",
    "power_spectrum_snapshot",
    "default_k_edges",
    "delta_from_density_",
    "shell_sums_numpy",
    "shell_sums_torch",
    "delta_from_density_torch_",
    "cpu_workers",
    "power_engine",
    "power_meta",
    "snapshot_chunks",
]


@dataclass
class PowerResult:
    """Binned power spectrum.

    k        (nbins,) float64, h/Mpc   mean |k| of the modes in each bin
    P        (nbins,) float64, (Mpc/h)^3
    n_modes  (nbins,) int64            modes in the bin (a mode and its conjugate count twice)
    Delta2   (nbins,) float64          k^3 P / (2 pi^2), dimensionless
    meta     dict: box_size (Mpc/h), n_mesh, k_nyquist (h/Mpc), n_particles, shot_noise ((Mpc/h)^3),
             deconvolved (bool), and whatever the caller adds (redshift, source)
    """

    k: np.ndarray
    P: np.ndarray
    n_modes: np.ndarray
    Delta2: np.ndarray
    meta: dict = field(default_factory=dict)

    def table(self) -> dict:
        return {"k": self.k, "P": self.P, "n_modes": self.n_modes, "Delta2": self.Delta2}


# --------------------------------------------------------------------------------------------------
# CIC painting, CPU (numba)


@numba.njit(cache=True, nogil=True)
def _cic_kernel(mesh, pos, scale, weight, use_weight):
    n = mesh.shape[0]
    for p in range(pos.shape[0]):
        w = weight[p] if use_weight else 1.0
        x = pos[p, 0] * scale
        y = pos[p, 1] * scale
        z = pos[p, 2] * scale
        fx = math.floor(x)
        fy = math.floor(y)
        fz = math.floor(z)
        dx = x - fx
        dy = y - fy
        dz = z - fz
        i0 = int(fx) % n
        j0 = int(fy) % n
        k0 = int(fz) % n
        i1 = (i0 + 1) % n
        j1 = (j0 + 1) % n
        k1 = (k0 + 1) % n
        tx = 1.0 - dx
        ty = 1.0 - dy
        tz = 1.0 - dz
        mesh[i0, j0, k0] += w * tx * ty * tz
        mesh[i0, j0, k1] += w * tx * ty * dz
        mesh[i0, j1, k0] += w * tx * dy * tz
        mesh[i0, j1, k1] += w * tx * dy * dz
        mesh[i1, j0, k0] += w * dx * ty * tz
        mesh[i1, j0, k1] += w * dx * ty * dz
        mesh[i1, j1, k0] += w * dx * dy * tz
        mesh[i1, j1, k1] += w * dx * dy * dz


def cic_paint_numpy(mesh: np.ndarray, pos: np.ndarray, box_size: float, weight: np.ndarray | None = None) -> None:
    """Add the CIC assignment of particles to ``mesh`` in place (periodic).

    mesh    (n, n, n) float64, C-contiguous; receives sum of weights (mass in particle units)
    pos     (N, 3) float, Mpc/h (any real values; wrapped periodically)
    weight  (N,) float or None (1 per particle)
    """
    if mesh.ndim != 3 or mesh.dtype != np.float64 or not mesh.flags.c_contiguous:
        raise ValueError("mesh must be a C-contiguous (n, n, n) float64 array")
    pos = np.ascontiguousarray(pos, dtype=np.float64)
    if pos.ndim != 2 or pos.shape[1] != 3:
        raise ValueError(f"positions must have shape (N, 3), got {pos.shape}")
    use_w = weight is not None
    w = np.ascontiguousarray(weight, dtype=np.float64) if use_w else np.zeros(1)
    if use_w and w.shape != (pos.shape[0],):
        raise ValueError(f"weight must have shape ({pos.shape[0]},), got {w.shape}")
    _cic_kernel(mesh, pos, mesh.shape[0] / float(box_size), w, use_w)


def paint_numpy(chunks: Iterable[np.ndarray], n_mesh: int, box_size: float) -> tuple[np.ndarray, int]:
    """CIC-paint streamed position chunks ((n, 3) Mpc/h each) on a fresh (n_mesh,)*3 float64 mesh.

    Returns (mesh, number of particles).
    """
    mesh = np.zeros((n_mesh, n_mesh, n_mesh), dtype=np.float64)
    n_tot = 0
    for pos in chunks:
        cic_paint_numpy(mesh, pos, box_size)
        n_tot += len(pos)
    return mesh, n_tot


# --------------------------------------------------------------------------------------------------
# CIC painting, torch


def paint_torch(chunks: Iterable[np.ndarray], n_mesh: int, box_size: float, device: str = "cpu"):
    """CIC-paint streamed position chunks ((n, 3) Mpc/h NumPy arrays) on a float64 torch mesh on ``device``.

    Same stencil and mesh convention as ``srsim.mesh.cic_paint`` (the tests check they agree), but it
    accumulates in place: the autograd-friendly ``cic_paint`` returns a new mesh per call (and per stencil
    corner), which for thousands of chunks of a 5120^3 catalogue on a 512^3 mesh is avoidable traffic.
    Returns (mesh tensor (n_mesh,)*3 float64, number of particles).
    """
    import torch

    from srsim.mesh import cic_paint_add_

    dev = torch.device(device)
    mesh = torch.zeros((n_mesh, n_mesh, n_mesh), dtype=torch.float64, device=dev)
    scale = n_mesh / float(box_size)
    n_tot = 0
    for pos in chunks:
        p = torch.as_tensor(np.ascontiguousarray(pos, dtype=np.float64), device=dev) * scale
        cic_paint_add_(mesh, p)
        n_tot += len(pos)
    return mesh, n_tot


# --------------------------------------------------------------------------------------------------
# Fourier transform and shell averages


def default_k_edges(n_mesh: int, box_size: float) -> np.ndarray:
    """Shell edges (h/Mpc): ``(i + 1/2) k_F`` for i = 0 .. ceil(sqrt(3) n_mesh / 2), covering every mode."""
    kf = 2 * np.pi / box_size
    imax = int(np.ceil(np.sqrt(3.0) * n_mesh / 2)) + 1
    return (np.arange(imax + 1) + 0.5) * kf


def _mode_grid(n: int):
    """Integer wavenumbers along an axis (full FFT and half rFFT) and rFFT conjugate weights."""
    full = np.fft.fftfreq(n, d=1.0 / n)  # 0, 1, ..., -1 (integers as floats)
    half = np.arange(n // 2 + 1, dtype=np.float64)
    w = np.full(n // 2 + 1, 2.0)
    w[0] = 1.0
    if n % 2 == 0:
        w[-1] = 1.0  # the Nyquist plane is its own conjugate
    return full, half, w


def _sinc2(n_int: np.ndarray, n_mesh: int) -> np.ndarray:
    """CIC window per axis, sinc^2(pi n / n_mesh), at integer wavenumbers n."""
    return np.sinc(n_int / n_mesh) ** 2  # np.sinc(x) = sin(pi x) / (pi x)


def _finish(kf, ksum, psum, nmodes, norm, meta) -> PowerResult:
    keep = nmodes > 0
    nm = nmodes[keep]
    k = ksum[keep] / nm * kf
    P = psum[keep] / nm * norm
    d2 = k**3 * P / (2 * np.pi**2)
    return PowerResult(k=k, P=P, n_modes=np.rint(nm).astype(np.int64), Delta2=d2, meta=meta)


def delta_from_density_(mesh: np.ndarray) -> np.ndarray:
    """Turn a float64 density mesh (any positive mean) into delta = rho / rho_mean - 1, in place; returns it."""
    mean = mesh.mean()
    if not mean > 0:
        raise SrsimError("power spectrum: the density mesh is empty (no particles painted)")
    mesh /= mean
    mesh -= 1.0
    return mesh


def shell_sums_numpy(fields_k: list, box_size: float, k_edges: np.ndarray, deconvolve: bool, quantities):
    """Mode-weighted shell sums of quadratic per-mode quantities of rFFT'd meshes (the estimator's binning).

    fields_k    list of (n, n, n//2+1) complex arrays, the rFFT of real (n, n, n) meshes
    k_edges     shell edges in h/Mpc; bin i holds edges[i] < |k| <= edges[i+1]; k = 0 is left out
    deconvolve  divide every quantity by the CIC window W^2 = prod sinc^4 (each quantity is quadratic in the
                fields, so this is the window correction of each)
    quantities  callable (planes, nx, ny, nz, nmag) -> list of per-mode real arrays of shape (n, n//2+1);
                planes: the fields' x-planes at integer wavenumber nx (a float), ny (n, 1), nz (1, n//2+1)
                and nmag (n, n//2+1) integer wavenumbers (units of k_F), every one of them real-valued
    Returns (k_F, sum of |k| / k_F, (n_quantities, nbins) sums, n_modes (nbins,), norm = V / n^6): the
    binned mean of quantity j is sums[j] / n_modes * norm (for |delta_k|^2, the power in (Mpc/h)^3).
    """
    n = fields_k[0].shape[0]
    kf = 2 * np.pi / box_size
    edges = np.asarray(k_edges, dtype=np.float64) / kf  # in units of k_F
    nb = len(edges) - 1
    full, half, w = _mode_grid(n)
    ny, nz = full[:, None], half[None, :]
    r2_yz = ny**2 + nz**2
    wyz = np.broadcast_to(w[None, :], r2_yz.shape)
    win_yz = (_sinc2(full, n)[:, None] * _sinc2(half, n)[None, :]) ** 2 if deconvolve else None
    win_x = _sinc2(full, n) ** 2
    ksum = np.zeros(nb)
    nmodes = np.zeros(nb)
    sums = None
    for ix in range(n):
        kmag = np.sqrt(full[ix] ** 2 + r2_yz)
        qs = quantities([fk[ix] for fk in fields_k], full[ix], ny, nz, kmag)
        if sums is None:
            sums = np.zeros((len(qs), nb))
        b = np.searchsorted(edges, kmag.ravel(), side="left") - 1  # bin i: edges[i] < |k| <= edges[i+1]
        ok = (b >= 0) & (b < nb) & (kmag.ravel() > 0)
        b = b[ok]
        ww = wyz.ravel()[ok]
        nmodes += np.bincount(b, ww, nb)
        ksum += np.bincount(b, ww * kmag.ravel()[ok], nb)
        for j, q in enumerate(qs):
            if deconvolve:
                q = q / (win_yz * win_x[ix])
            sums[j] += np.bincount(b, ww * q.ravel()[ok], nb)
    norm = box_size**3 / float(n) ** 6
    return kf, ksum, sums, nmodes, norm


def _abs2(planes, nx, ny, nz, nmag):
    return [planes[0].real**2 + planes[0].imag**2]


def _power_numpy(mesh: np.ndarray, box_size: float, k_edges: np.ndarray, deconvolve: bool, workers: int):
    """Shell-averaged |FFT(delta)|^2 of a float64 density mesh (mesh is turned into delta in place)."""
    import scipy.fft

    dk = scipy.fft.rfftn(delta_from_density_(mesh), workers=workers, overwrite_x=True)
    del mesh
    kf, ksum, sums, nmodes, norm = shell_sums_numpy([dk], box_size, k_edges, deconvolve, _abs2)
    return kf, ksum, sums[0], nmodes, norm


def delta_from_density_torch_(mesh):
    """Torch twin of :func:`delta_from_density_`: a float64 density tensor turned into delta in place."""
    n = mesh.shape[0]
    total = mesh.sum()
    if not float(total) > 0:
        raise SrsimError("power spectrum: the density mesh is empty (no particles painted)")
    mesh /= total / n**3
    mesh -= 1.0
    return mesh


def shell_sums_torch(fields_k: list, box_size: float, k_edges: np.ndarray, deconvolve: bool, quantities,
                     slab: int = 16):
    """Torch twin of :func:`shell_sums_numpy` on the fields' device, float64, in x-slabs of ``slab`` planes.

    quantities gets the fields' slabs and nx (s, 1, 1), ny (1, n, 1), nz (1, 1, n//2+1), nmag (s, n, n//2+1)
    tensors; returns as shell_sums_numpy (NumPy arrays).
    """
    import torch

    dev = fields_k[0].device
    n = fields_k[0].shape[0]
    kf = 2 * np.pi / box_size
    edges = torch.as_tensor(np.asarray(k_edges, dtype=np.float64) / kf, device=dev)
    nb = len(k_edges) - 1
    full, half, w = (torch.as_tensor(a, device=dev) for a in _mode_grid(n))
    r2_yz = full[:, None] ** 2 + half[None, :] ** 2
    wyz = w[None, :].expand_as(r2_yz)
    sx = torch.as_tensor(_sinc2(np.fft.fftfreq(n, d=1.0 / n), n), device=dev)
    sh = torch.as_tensor(_sinc2(np.arange(n // 2 + 1, dtype=np.float64), n), device=dev)
    ksum = torch.zeros(nb, dtype=torch.float64, device=dev)
    nmodes = torch.zeros_like(ksum)
    sums = None
    for x0 in range(0, n, slab):
        x1 = min(n, x0 + slab)
        kmag = torch.sqrt(full[x0:x1, None, None] ** 2 + r2_yz[None])
        qs = quantities([fk[x0:x1] for fk in fields_k], full[x0:x1, None, None], full[None, :, None],
                        half[None, None, :], kmag)
        if sums is None:
            sums = torch.zeros((len(qs), nb), dtype=torch.float64, device=dev)
        b = torch.bucketize(kmag.reshape(-1), edges, right=False) - 1
        ok = (b >= 0) & (b < nb) & (kmag.reshape(-1) > 0)
        b = b[ok]
        ww = wyz.expand(x1 - x0, -1, -1).reshape(-1)[ok]
        nmodes += torch.bincount(b, ww, nb)
        ksum += torch.bincount(b, ww * kmag.reshape(-1)[ok], nb)
        for j, q in enumerate(qs):
            if deconvolve:
                q = q / (sx[x0:x1, None, None] * sx[None, :, None] * sh[None, None, :]) ** 2
            sums[j] += torch.bincount(b, ww * q.reshape(-1)[ok], nb)
    norm = box_size**3 / float(n) ** 6
    return kf, ksum.cpu().numpy(), sums.cpu().numpy(), nmodes.cpu().numpy(), norm


def _power_torch(mesh, box_size: float, k_edges: np.ndarray, deconvolve: bool, slab: int = 16):
    """Torch twin of :func:`_power_numpy` on the mesh's device; float64 throughout."""
    import torch

    dk = torch.fft.rfftn(delta_from_density_torch_(mesh))
    del mesh
    kf, ksum, sums, nmodes, norm = shell_sums_torch([dk], box_size, k_edges, deconvolve, _abs2, slab)
    return kf, ksum, sums[0], nmodes, norm


def power_meta(box_size, n_mesh, n_particles, deconvolve, engine):
    """PowerResult.meta of a spectrum (see PowerResult): the same keys whatever engine computed it."""
    return {
        "box_size": float(box_size),
        "n_mesh": int(n_mesh),
        "k_nyquist": float(np.pi * n_mesh / box_size),
        "n_particles": int(n_particles),
        "shot_noise": float(box_size**3 / n_particles) if n_particles else float("inf"),
        "deconvolved": bool(deconvolve),
        "engine": engine,
    }


def power_from_mesh(
    delta_or_density, box_size: float, *, k_edges=None, deconvolve: bool = False, workers: int | None = None
) -> PowerResult:
    """Power spectrum of a density (or 1 + overdensity) mesh.

    delta_or_density  (n, n, n) NumPy array (any positive-mean density; copied) or float64 torch tensor
                      (consumed: it is turned into delta in place). Pass ``1 + delta`` for an overdensity.
    box_size          Mpc/h
    k_edges           shell edges in h/Mpc (default :func:`default_k_edges`); bins are (e_i, e_{i+1}]
    deconvolve        divide |delta_k|^2 by the CIC window W^2 = prod sinc^4 (off in the paper)
    """
    n = delta_or_density.shape[0]
    if tuple(delta_or_density.shape) != (n, n, n):
        raise ValueError(f"mesh must be cubic, got shape {tuple(delta_or_density.shape)}")
    edges = default_k_edges(n, box_size) if k_edges is None else np.asarray(k_edges, dtype=np.float64)
    if isinstance(delta_or_density, np.ndarray):
        mesh = np.array(delta_or_density, dtype=np.float64, order="C")
        parts = _power_numpy(mesh, box_size, edges, deconvolve, workers or cpu_workers())
        engine = "numpy"
    else:
        import torch

        parts = _power_torch(delta_or_density.to(torch.float64), box_size, edges, deconvolve)
        engine = f"torch:{delta_or_density.device}"
    return _finish(*parts, power_meta(box_size, n, 0, deconvolve, engine))


def cpu_workers() -> int:
    try:
        return max(1, len(os.sched_getaffinity(0)))
    except AttributeError:  # pragma: no cover - non-Linux
        return max(1, os.cpu_count() or 1)


def power_engine(device: str | None) -> str:
    """The P(k) engine of a device setting: 'numpy' (numba CIC + scipy FFT) for None, '' or 'numpy' and for
    'auto' without a GPU; otherwise the torch device (``srsim.device.resolve_device``) as a string."""
    if device in (None, "", "numpy"):
        return "numpy"
    from srsim.device import resolve_device

    dev = resolve_device(device, what="power spectrum device")
    return "numpy" if device == "auto" and dev.type == "cpu" else str(dev)


def power_from_positions(
    chunks: Iterable[np.ndarray],
    box_size: float,
    n_mesh: int,
    *,
    device: str = "numpy",
    k_edges=None,
    deconvolve: bool = False,
    workers: int | None = None,
) -> PowerResult:
    """P(k) of particles streamed as position chunks ((n, 3) float Mpc/h each), all of equal mass.

    device  'numpy' (numba CIC + scipy FFT on the CPU), or a torch device string ('cpu', 'cuda', 'cuda:1');
            'auto' picks CUDA when available. Both engines agree to float64 rounding.
    """
    device = power_engine(device)
    edges = default_k_edges(n_mesh, box_size) if k_edges is None else np.asarray(k_edges, dtype=np.float64)
    if device == "numpy":
        mesh, n_tot = paint_numpy(chunks, n_mesh, box_size)
        if n_tot == 0:
            raise SrsimError("power spectrum: no particles")
        parts = _power_numpy(mesh, box_size, edges, deconvolve, workers or cpu_workers())
        engine = "numpy"
    else:
        mesh, n_tot = paint_torch(chunks, n_mesh, box_size, device=device)
        if n_tot == 0:
            raise SrsimError("power spectrum: no particles")
        parts = _power_torch(mesh, box_size, edges, deconvolve)
        engine = f"torch:{device}"
    return _finish(*parts, power_meta(box_size, n_mesh, n_tot, deconvolve, engine))


def snapshot_chunks(path, n_particles: int, blocks: tuple, chunk_size: int, progress: bool) -> Iterator[dict]:
    """Stream a snapshot's ``blocks`` (srsim.io.snapshot.iter_particles' units) in chunks, with a tqdm bar on
    stderr counting painted particles when ``progress`` (hidden off a terminal)."""
    from srsim.io.snapshot import iter_particles

    it = iter_particles(path, blocks=blocks, chunk_size=chunk_size)
    if not progress:
        yield from it
        return
    from tqdm import tqdm

    bar = tqdm(total=n_particles, unit="part", desc=f"paint {os.fspath(path)}", file=sys.stderr, disable=None)
    for c in it:
        bar.update(len(c[blocks[0]]))
        yield c
    bar.close()


def power_spectrum_snapshot(
    path,
    n_mesh: int = 512,
    *,
    device: str = "numpy",
    chunk_size: int = 2**22,
    deconvolve: bool = False,
    k_edges=None,
    progress: bool = True,
) -> PowerResult:
    """P(k) of a snapshot (bigfile directory, MP-Gadget layout), read in chunks through srsim.io.snapshot."""
    from srsim.io.snapshot import read_header

    header = read_header(path)
    chunks = (c["Position"] for c in snapshot_chunks(path, header.n_particles, ("Position",), chunk_size, progress))
    res = power_from_positions(chunks, header.box_size, n_mesh, device=device, k_edges=k_edges,
                               deconvolve=deconvolve)
    if res.meta["n_particles"] != header.n_particles:
        raise SrsimError(f"{path}: header says {header.n_particles} particles, read {res.meta['n_particles']}")
    res.meta["redshift"] = float(header.redshift)
    res.meta["source"] = os.fspath(path)
    return res
