"""The embedded particle-mesh N-body code (``sims.backend: pm``), in PyTorch (CPU or CUDA).

Equations (comoving x in Mpc/h, time variable a, H0 = 1 units): with the momentum p = a^3 E(a) dx/da
(= a^2 E dx/dlna, Mpc/h),

    dx/da = p / (a^3 E),        dp/da = F / (a^2 E),        F = -grad psi,   lap psi = 1.5 Omega_m delta,

so the peculiar velocity is v = a dx/dt = 100 p / a km/s. The force is solved on a periodic PM mesh
(``mesh_factor`` x the particle grid per side): CIC painting, rfftn, F(k) = i D(k) 1.5 Omega_m delta(k) / k^2
with D(k) the 2-point finite-difference gradient by default (why: see PMForce; no CIC deconvolution),
three inverse FFTs and CIC readout. Meshes are float32; positions and momenta float64.

The background has no radiation (as srsim.cosmology): MP-Gadget with RadiationOn = 1 grows ~2% less
between z = 99 and 0, so our runs started from MP-GenIC's ICs end ~4% higher in power at low k.

Integrator: kick-drift-kick with the FastPM factors (Feng et al. 2016), built from the linear growth D1:
g_p = a^3 E dD1/da, g_f = a^2 E dg_p/da = 1.5 Omega_m D1. Kick a0 -> a1 with the force at ac:
p += F (g_p(a1) - g_p(a0)) / g_f(ac); drift a0 -> a1 with the momentum at ac: x += p (D1(a1) - D1(a0)) / g_p(ac).
In the linear regime (F = g_f psi1, p = g_p psi1) both are exact, so the linear growth of large scales is
reproduced with any number of steps. Steps are uniform in a from a_init to the last output, with each
output time moved onto the nearest step boundary (an extra boundary is inserted if two outputs compete).

Initial conditions: srsim.sims.ics (2LPT or Zel'dovich at z_init, noise shared between LR and HR).
"""

from __future__ import annotations

import math
import sys
import time
from pathlib import Path

import numpy as np
import torch

from srsim.cosmology import Cosmology
from srsim.device import resolve_device
from srsim.errors import SrsimError
from srsim.mesh import cic_paint_add_, cic_readout
from srsim.sims.ics import initial_conditions, lpt_state

__all__ = ["run", "simulate", "evolve", "time_steps", "PMForce"]

_CHUNK = 1 << 21  # particles per paint/readout chunk: bounds the temporary memory of the CIC stencil
_VEL_UNIT = 100.0  # km/s per (Mpc/h) in H0 = 1 units: v_pec = 100 p / a


def time_steps(a_init: float, a_outputs, n_steps: int) -> np.ndarray:
    """Step boundaries in scale factor: uniform from a_init to max(a_outputs), outputs on boundaries.

    Returns an increasing float64 array starting at a_init and ending at the last output; every output
    scale factor (> a_init) is one of its elements exactly. Length n_steps + 1, or more when several
    outputs fall on the same boundary.
    """
    if n_steps < 1:
        raise SrsimError(f"sims.pm.steps must be >= 1, got {n_steps}")
    outs = sorted(float(a) for a in a_outputs)
    if not outs:
        raise SrsimError("pm: no output redshifts")
    if outs[0] < a_init * (1 - 1e-12):
        raise SrsimError(f"pm: output at a = {outs[0]:g} (z = {1 / outs[0] - 1:g}) precedes the start "
                         f"a_init = {a_init:g} (z_init = {1 / a_init - 1:g})")
    a_end = outs[-1]
    grid = list(np.linspace(a_init, a_end, n_steps + 1))
    grid[-1] = a_end
    taken = {0, n_steps}
    extra = []
    for a in outs[:-1]:
        if a <= a_init * (1 + 1e-12):
            continue
        j = int(round((a - a_init) / (a_end - a_init) * n_steps))
        j = min(max(j, 1), n_steps - 1) if n_steps > 1 else None
        if j is None or j in taken:
            extra.append(a)
        else:
            grid[j] = a
            taken.add(j)
    out = np.unique(np.array(grid + extra, dtype=np.float64))
    return out


GRADIENTS = ("fd2", "fd4", "lanczos", "exact")
LAPLACIANS = ("exact", "fd")


class PMForce:
    """Particle-mesh gravity on a periodic n_mesh^3 mesh: positions (N, 3) Mpc/h -> F (N, 3) Mpc/h.

    F = -grad psi with lap psi = 1.5 Omega_m delta (see the module doc); delta is the CIC density contrast
    of the N particles (equal masses). Kernels (cell size h, x = k h per axis):

    - gradient "fd2" (default): i sin(x) / h, the 2-point central difference;
      "fd4": i (8 sin x - sin 2x) / (6 h); "lanczos": i (2 sin x + sin 2x) / (4 h) (FastPM's low-noise
      kernel); "exact": i k with the Nyquist planes zeroed.
    - laplace "exact" (default): -k^2; "fd": -sum_i (2 sin(x_i / 2) / h)^2.

    Why fd2 + exact: with a mesh finer than the particle lattice, the lattice itself imprints the mesh
    Nyquist frequency on the painted density, and displacements modulate it into side bands just below
    it. Gradient kernels that respond strongly there (exact, fd4) turn those side bands into spurious
    forces which, read out on the lattice, alias back to low k and make the lattice modes grow too fast
    (measured: +10-30% power at k ~ k_Nyq(particles)/2 by z = 2, and several % at the fundamental).
    The 2-point difference vanishes linearly at the Nyquist frequency and showed the smallest errors
    against MP-Gadget evolving the same initial conditions (tests/data/mpgadget/n32), while its low-k
    deficit (1 - x^2/6) is below 1% for k < k_Nyq(mesh)/8.
    """

    def __init__(self, n_mesh: int, box_size: float, omega_m: float, device, mesh_dtype=torch.float32,
                 gradient: str = "fd2", laplace: str = "exact"):
        if gradient not in GRADIENTS:
            raise SrsimError(f"sims.pm.gradient: unknown kernel '{gradient}' (expected one of {GRADIENTS})")
        if laplace not in LAPLACIANS:
            raise SrsimError(f"sims.pm.laplace: unknown kernel '{laplace}' (expected one of {LAPLACIANS})")
        self.n = int(n_mesh)
        self.box = float(box_size)
        self.device = torch.device(device)
        self.dtype = mesh_dtype
        n = self.n
        k = torch.fft.fftfreq(n, d=1.0 / n, device=self.device, dtype=torch.float64) * (2 * math.pi / self.box)
        kz = torch.arange(n // 2 + 1, device=self.device, dtype=torch.float64) * (2 * math.pi / self.box)
        kx, ky, kz = k.view(n, 1, 1), k.view(1, n, 1), kz.view(1, 1, -1)
        cell = self.box / n
        if laplace == "fd":
            k2 = sum((2.0 / cell * torch.sin(0.5 * kk * cell)) ** 2 for kk in (kx, ky, kz))
        else:
            k2 = kx ** 2 + ky ** 2 + kz ** 2
        safe = torch.where(k2 > 0, k2, torch.ones_like(k2))
        self.green = torch.where(k2 > 0, 1.5 * omega_m / safe, torch.zeros_like(k2)).to(mesh_dtype)
        grads = []
        for kk in (kx, ky, kz):
            if gradient == "fd2":
                kk = torch.sin(kk * cell) / cell
            elif gradient == "fd4":
                kk = (8.0 * torch.sin(kk * cell) - torch.sin(2.0 * kk * cell)) / (6.0 * cell)
            elif gradient == "lanczos":
                kk = (2.0 * torch.sin(kk * cell) + torch.sin(2.0 * kk * cell)) / (4.0 * cell)
            else:
                kk = kk.clone()
                if n % 2 == 0:
                    k_nyq = math.pi * n / self.box  # Nyquist: odd derivative not representable
                    kk[(kk.abs() - k_nyq).abs() < 1e-9 * k_nyq] = 0.0  # not ==: rounding (n = 48, box 100)
            # sin() leaves ~1e-16 at the Nyquist frequency: make it exactly zero (real output).
            kk = torch.where(kk.abs() < 1e-12 / cell, torch.zeros_like(kk), kk)
            grads.append(kk.to(mesh_dtype))
        self.grads = grads

    def density(self, pos: torch.Tensor) -> torch.Tensor:
        """CIC density contrast (n, n, n) of particles at pos (N, 3) Mpc/h."""
        n = self.n
        rho = torch.zeros((n, n, n), dtype=self.dtype, device=self.device)
        scale = n / self.box
        for s in range(0, pos.shape[0], _CHUNK):
            cic_paint_add_(rho, pos[s:s + _CHUNK] * scale)
        rho *= n ** 3 / pos.shape[0]
        rho -= 1.0
        return rho

    def __call__(self, pos: torch.Tensor) -> torch.Tensor:
        n = self.n
        delta_k = torch.fft.rfftn(self.density(pos))
        pot_k = delta_k * self.green
        del delta_k
        scale = n / self.box
        force = torch.empty_like(pos)
        for axis in range(3):  # one force mesh at a time bounds the memory
            f_mesh = torch.fft.irfftn(pot_k * (1j * self.grads[axis]), s=(n, n, n))
            for s in range(0, pos.shape[0], _CHUNK):
                force[s:s + _CHUNK, axis] = cic_readout(f_mesh, pos[s:s + _CHUNK] * scale).to(pos.dtype)
            del f_mesh
        return force


def _cosmology(spec) -> Cosmology:
    return Cosmology.from_config(spec.cosmology)


def _options(spec) -> dict:
    """The `sims.pm` options of `spec`, validated and with the schema's defaults filled in."""
    from srsim.config import validated

    return validated("sims.pm", spec.options)


def evolve(pos: torch.Tensor, p: torch.Tensor, steps, force, cosmo: Cosmology, *, on_step=None,
           desc: str | None = None):
    """FastPM kick-drift-kick integration from steps[0] to steps[-1] (scale factors), in place.

    Args:
        pos: (N, 3) float64 positions in Mpc/h at steps[0] (wrapped in place into [0, box)).
        p: (N, 3) float64 momenta p = a^2 E dx/dlna (Mpc/h) at steps[0].
        steps: increasing scale factors (step boundaries).
        force: callable pos -> (N, 3) force F (Mpc/h), e.g. a PMForce.
        on_step: optional ``on_step(i, a_i, pos, p)`` after step i (1-based), with synchronised pos, p.
        desc: tqdm description (progress bar on stderr), None for no bar.

    Returns:
        (pos, p) at steps[-1].
    """
    from tqdm import tqdm

    box = force.box
    gp, gf, d1 = cosmo.growth_g_p, cosmo.growth_g_f, cosmo.growth_a
    f = force(pos)
    bar = tqdm(total=len(steps) - 1, desc=desc, unit="step", file=sys.stderr, disable=desc is None)
    for i in range(len(steps) - 1):
        a0, a1 = float(steps[i]), float(steps[i + 1])
        ah = 0.5 * (a0 + a1)
        p += f * float((gp(ah) - gp(a0)) / gf(a0))
        pos += p * float((d1(a1) - d1(a0)) / gp(ah))
        torch.remainder(pos, box, out=pos)
        f = force(pos)
        p += f * float((gp(a1) - gp(ah)) / gf(a1))
        bar.set_postfix(a=f"{a1:.4f}", refresh=False)
        bar.update(1)
        if on_step is not None:
            on_step(i + 1, a1, pos, p)
    bar.close()
    return pos, p


def simulate(spec, outdir: Path | None = None, *, callback=None, progress: bool = True) -> dict:
    """Run one PM simulation; optionally write its snapshots; return timing statistics.

    Args:
        spec: srsim.sims.suite.SimSpec (box_size, n_grid, seed, noise_grid, redshifts, z_init, cosmology,
            options = the sims.pm section).
        outdir: directory receiving IC/ and z<z>/ snapshots (None: write nothing).
        callback: optional ``callback(z, pos, p)`` called at every output redshift z (and with z = None
            for the initial conditions): pos (N, 3) Mpc/h tensor wrapped into [0, box), p (N, 3) momenta (v = 100 p / a km/s),
            both in grid (ID) order on the run's device.
        progress: show a tqdm bar on stderr.

    Returns:
        dict with device, n_grid, n_mesh, n_steps, and wall times in s (ics_s, steps_s, io_s, total_s).
    """
    t_start = time.perf_counter()
    opts = _options(spec)
    cosmo = _cosmology(spec)
    device = resolve_device(opts["device"], what="sims.pm.device")
    if opts["threads"] > 0:
        torch.set_num_threads(int(opts["threads"]))
    n, box = int(spec.n_grid), float(spec.box_size)
    n_mesh = n * int(opts["mesh_factor"])
    a_init = 1.0 / (1.0 + float(spec.z_init))
    zs = sorted({float(z) for z in spec.redshifts}, reverse=True)
    a_out = {1.0 / (1.0 + z): z for z in zs}
    steps = time_steps(a_init, list(a_out), int(opts["steps"]))
    out_at = {}
    for a, z in a_out.items():
        i = int(np.argmin(np.abs(steps - a)))
        out_at.setdefault(i, []).append(z)

    def emit(z, pos, p, a):
        if callback is not None:
            callback(z, pos, p)
        if outdir is not None:
            name = "IC" if z is None else f"z{_zstr(z)}"
            _write(Path(outdir) / name, spec, cosmo, opts, n_mesh, a, float(spec.z_init) if z is None else z, pos, p)

    stats = dict(device=str(device), n_grid=n, n_mesh=n_mesh, n_steps=len(steps) - 1)
    # Initial conditions: float64 for moderate grids, float32 fields beyond (memory), positions float64.
    ic_dtype = torch.float64 if n <= 256 else torch.float32
    psi1, psi2 = initial_conditions(spec, device=device, dtype=ic_dtype, lpt_order=int(opts["lpt_order"]))
    pos, p = lpt_state(psi1, psi2, cosmo, a_init, box, dtype=torch.float64)
    del psi1, psi2
    _sync(device)
    stats["ics_s"] = time.perf_counter() - t_start
    t_io = 0.0
    t0 = time.perf_counter()
    emit(None, pos, p, a_init)
    for z in out_at.get(0, []):
        emit(z, pos, p, a_init)
    t_io += time.perf_counter() - t0

    force = PMForce(n_mesh, box, cosmo.Omega_m, device, gradient=opts["gradient"], laplace=opts["laplace"])
    t_steps = time.perf_counter()

    def on_step(i, a1, pos, p):
        nonlocal t_io
        if i in out_at:
            t0 = time.perf_counter()
            for z in out_at[i]:
                emit(z, pos, p, a1)
            t_io += time.perf_counter() - t0

    evolve(pos, p, steps, force, cosmo, on_step=on_step,
           desc=f"pm {spec.name}/{spec.kind} {n}^3" if progress else None)
    _sync(device)
    stats["steps_s"] = time.perf_counter() - t_steps - t_io
    stats["io_s"] = t_io
    stats["total_s"] = time.perf_counter() - t_start
    return stats


def run(spec, outdir: Path) -> None:
    """Run one simulation and write outdir/IC and outdir/z<z> snapshots (srsim simulate, backend pm)."""
    outdir = Path(outdir)
    outdir.mkdir(parents=True, exist_ok=True)
    stats = simulate(spec, outdir)
    print(f"pm {spec.name}/{spec.kind}: {stats['n_grid']}^3 particles, mesh {stats['n_mesh']}^3, "
          f"{stats['n_steps']} steps on {stats['device']}: ICs {stats['ics_s']:.1f} s, steps "
          f"{stats['steps_s']:.1f} s, I/O {stats['io_s']:.1f} s, total {stats['total_s']:.1f} s", file=sys.stderr)


def _sync(device: torch.device) -> None:
    if device.type == "cuda":
        torch.cuda.synchronize(device)


def _zstr(z: float) -> str:
    from srsim.sims.suite import zstr

    return zstr(z)


def _write(path: Path, spec, cosmo: Cosmology, opts: dict, n_mesh: int, a: float, z: float, pos, p) -> None:
    """Write one snapshot (ID order) in MP-Gadget layout; velocity = peculiar km/s."""
    from srsim.fields import grid_ids
    from srsim.io.snapshot import make_header, write_snapshot

    n = int(spec.n_grid)
    attrs = make_header(
        box_size=float(spec.box_size), redshift=z, n_particles=n ** 3, cosmology=cosmo.to_dict(), n_grid=n,
        Source="srsim pm", Seed=np.array([int(spec.seed)], dtype=np.int64),
        NoiseGrid=np.array([int(spec.noise_grid)], dtype=np.int64),
        InitRedshift=np.array([float(spec.z_init)]), PMMesh=np.array([n_mesh], dtype=np.int64),
        PMSteps=np.array([int(opts["steps"])], dtype=np.int64),
        LPTOrder=np.array([int(opts["lpt_order"])], dtype=np.int64),
    )
    position = pos.detach().to("cpu", torch.float64).numpy()
    velocity = (p.detach() * (_VEL_UNIT / a)).to("cpu", torch.float32).numpy()
    write_snapshot(path, attrs, position, grid_ids(n), velocity)
