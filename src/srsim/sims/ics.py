"""Gaussian initial conditions (Zel'dovich / 2LPT) whose large-scale modes do not depend on the resolution.

White noise
-----------
The white noise of a simulation is defined directly in Fourier space, mode by mode: the complex unit
Gaussian W(k) of the integer wave vector k = (kx, ky, kz) is a hash (splitmix64) of (seed, k) turned into
a Gaussian by Box-Muller. It is Hermitian by construction (W(-k) = conj W(k); self-conjugate modes are
real with unit variance, the others have <|W|^2> = 1 with independent real and imaginary parts). This is
statistically the same as the FFT of unit white noise on the ``noise_grid`` (divided by
sqrt(noise_grid^3)), but a run on an n^3 grid only evaluates its own n^3 modes, so an LR run never
builds the HR-sized field.

Sharing between LR and HR (``n_grid <= noise_grid``): the n^3 run keeps every mode with |k_i| < n/2 on
all axes, with exactly the same W(k) as the noise_grid run, and zeroes its own Nyquist planes
(|k_i| = n/2) when n < noise_grid (there the noise-grid field has complex modes that an n-grid cannot
represent). The run with n = noise_grid keeps its Nyquist modes (self-conjugate, real). Hence LR and HR
linear fields are equal mode by mode on |k_i| < n_lr/2, to rounding.

Fields
------
With V = box^3, the linear density at z = 0 has Fourier coefficients (continuum normalisation)
delta0(k) = W(k) sqrt(V P_lin(k)), and on an n^3 grid delta0(x) = irfftn(delta0(k)) n^3 / V.
Displacements at D1 = 1: psi1(k) = i k delta0(k) / k^2 (so div psi1 = -delta0), and the 2LPT term
psi2 = grad phi2 with lap phi2 = sum_{i<j} (phi1_ii phi1_jj - phi1_ij^2), lap phi1 = delta0, giving
x(q, a) = q + D1(a) psi1(q) + D2(a) psi2(q) with D2 ~ -3/7 D1^2 (Cosmology.growth2_a).
The derivative operators use the exact k; on Nyquist planes the first-derivative factor is zero (an odd
derivative of a real Nyquist mode is not representable).
"""

from __future__ import annotations

import math

import numpy as np
import torch

from srsim.cosmology import Cosmology
from srsim.errors import SrsimError
from srsim.sims.suite import fixed_amplitudes

__all__ = ["fourier_white_noise", "linear_modes", "linear_density", "initial_conditions", "lpt_fields", "lpt_state",
           "integer_wavenumbers"]

_OFF = 1 << 20  # offset making signed integer wave numbers non-negative in the hash key


def _splitmix64(x: np.ndarray) -> np.ndarray:
    """The splitmix64 output function (a strong 64-bit mixer), elementwise on uint64 (wrapping)."""
    with np.errstate(over="ignore"):
        z = x + np.uint64(0x9E3779B97F4A7C15)
        z = (z ^ (z >> np.uint64(30))) * np.uint64(0xBF58476D1CE4E5B9)
        z = (z ^ (z >> np.uint64(27))) * np.uint64(0x94D049BB133111EB)
        return z ^ (z >> np.uint64(31))


def _uniform(seed_key: np.uint64, key: np.ndarray, stream: int) -> np.ndarray:
    """Uniform float64 in (0, 1] from (seed, mode key, stream)."""
    with np.errstate(over="ignore"):
        h = _splitmix64(seed_key ^ (key * np.uint64(2) + np.uint64(stream)))
        h = _splitmix64(h)
    return ((h >> np.uint64(11)).astype(np.float64) + 1.0) * 2.0 ** -53


def _wrap_signed(k: np.ndarray, ng: int) -> np.ndarray:
    """Integer wave numbers mod ng into [-ng/2, ng/2) (the Nyquist mode is -ng/2)."""
    return (k + ng // 2) % ng - ng // 2


def integer_wavenumbers(n: int):
    """Integer wave numbers of an n^3 rfft layout: kx (n,1,1), ky (1,n,1), kz (1,1,n//2+1), int64 numpy."""
    k = np.fft.fftfreq(n, d=1.0 / n).round().astype(np.int64)
    kz = np.arange(n // 2 + 1, dtype=np.int64)
    return k[:, None, None], k[None, :, None], kz[None, None, :]


def fourier_white_noise(seed: int, n_grid: int, noise_grid: int, *, planes: int = 16,
                        fixed_amplitude: bool = False) -> np.ndarray:
    """Unit complex white noise W(k) of the run (seed, noise_grid) restricted to an n_grid^3 run.

    Returns (n_grid, n_grid, n_grid//2 + 1) complex128 in numpy rfftn layout, <|W|^2> = 1 per mode,
    W(0) = 0. Modes with |k_i| = n_grid/2 on any axis are zero when n_grid < noise_grid (see module doc).
    The value of a mode depends only on (seed, noise_grid, k), never on n_grid.

    fixed_amplitude: |W| = 1 for every mode (self-conjugate modes +-1), with the same phases as the
    Gaussian field of this seed ("fixed" initial conditions, MP-GenIC's UnitaryAmplitude = 1); False draws
    |W|^2 ~ Exp(1), a Gaussian random field (sims.amplitudes: rayleigh).
    """
    n, ng = int(n_grid), int(noise_grid)
    if n < 1 or ng < 1:
        raise SrsimError(f"white noise: grids must be positive, got n_grid={n}, noise_grid={ng}")
    if n > ng:
        raise SrsimError(f"white noise: n_grid {n} exceeds the noise grid {ng}; the noise grid must be the finest")
    if ng >= _OFF:
        raise SrsimError(f"white noise: noise grid {ng} too large (max {_OFF - 1})")
    if not 0 <= int(seed) < 2 ** 63:
        raise SrsimError(f"white noise: seed must be in [0, 2^63), got {seed}")
    seed_key = _splitmix64(np.array([seed], dtype=np.uint64))[0] ^ _splitmix64(np.array([ng], dtype=np.uint64))[0]
    kx_all, ky, kz = integer_wavenumbers(n)
    # A Nyquist index of the rfft layout stands for -n/2 when n is the noise grid (same mode as +n/2).
    ky_s, kz_s = _wrap_signed(ky, ng), _wrap_signed(kz, ng)
    out = np.empty((n, n, n // 2 + 1), dtype=np.complex128)
    for x0 in range(0, n, planes):
        kx = _wrap_signed(kx_all[x0:x0 + planes], ng)
        kx_b, ky_b, kz_b = np.broadcast_arrays(kx, ky_s, kz_s)
        nx, ny, nz = _wrap_signed(-kx_b, ng), _wrap_signed(-ky_b, ng), _wrap_signed(-kz_b, ng)
        # Canonical representative of the pair {k, -k}: the lexicographically larger one.
        canon = (kx_b > nx) | ((kx_b == nx) & ((ky_b > ny) | ((ky_b == ny) & (kz_b >= nz))))
        selfconj = (kx_b == nx) & (ky_b == ny) & (kz_b == nz)
        cx, cy, cz = np.where(canon, kx_b, nx), np.where(canon, ky_b, ny), np.where(canon, kz_b, nz)
        key = (((cx + _OFF).astype(np.uint64) << np.uint64(42)) | ((cy + _OFF).astype(np.uint64) << np.uint64(21))
               | (cz + _OFF).astype(np.uint64))
        u1 = _uniform(seed_key, key, 0)
        u2 = _uniform(seed_key, key, 1)
        theta = 2.0 * math.pi * u2
        if fixed_amplitude:
            re, im = np.cos(theta), np.sin(theta)
            re = np.where(selfconj, np.where(re >= 0, 1.0, -1.0), re)  # real modes keep |W| = 1: a sign
        else:
            r = np.sqrt(-np.log(u1))  # |W|^2 ~ Exp(1)
            re, im = r * np.cos(theta), r * np.sin(theta)
            re = np.where(selfconj, math.sqrt(2.0) * re, re)
        im = np.where(canon, im, -im)
        im = np.where(selfconj, 0.0, im)
        out[x0:x0 + planes] = re + 1j * im
    out[0, 0, 0] = 0.0
    if n < ng and n % 2 == 0:
        h = n // 2
        out[h, :, :] = 0.0
        out[:, h, :] = 0.0
        out[:, :, h] = 0.0
    return out


def _cosmo(spec) -> Cosmology:
    return spec.cosmology if isinstance(spec.cosmology, Cosmology) else Cosmology.from_config(spec.cosmology)


def _kvectors(n: int, box_size: float, device, dtype):
    """Physical wave vectors (h/Mpc) of an n^3 rfft layout as broadcastable torch tensors, plus |k|^2."""
    kx, ky, kz = (torch.as_tensor(k * (2.0 * math.pi / box_size), dtype=dtype, device=device)
                  for k in integer_wavenumbers(n))
    k2 = kx ** 2 + ky ** 2 + kz ** 2
    return (kx, ky, kz), k2


def _grad_factors(n: int, kvec):
    """First-derivative wave numbers with the Nyquist planes zeroed (for even n)."""
    if n % 2:
        return kvec
    h = n // 2
    out = []
    for axis, k in enumerate(kvec):
        k = k.clone()
        idx = [slice(None)] * 3
        idx[axis] = slice(h, h + 1)
        k[tuple(idx)] = 0.0
        out.append(k)
    return tuple(out)


def linear_modes(cosmo: Cosmology, box_size: float, n_grid: int, seed: int, noise_grid: int,
                 device="cpu", dtype=torch.float64, *, fixed_amplitude: bool = False) -> torch.Tensor:
    """Fourier modes delta0(k) of the z = 0 linear density, continuum normalised (<|delta0|^2> = V P).

    Returns a complex tensor (n, n, n//2 + 1) in rfftn layout on ``device`` (complex dtype matching the
    real ``dtype``); delta0(x) = irfftn(delta0(k), s=(n, n, n)) * n^3 / box^3. fixed_amplitude: see
    fourier_white_noise (|delta0|^2 = V P exactly).
    """
    noise = fourier_white_noise(seed, n_grid, noise_grid, fixed_amplitude=fixed_amplitude)
    kx, ky, kz = integer_wavenumbers(n_grid)
    kmag = np.sqrt((kx ** 2 + ky ** 2 + kz ** 2).astype(np.float64)) * (2.0 * math.pi / box_size)
    amp = np.sqrt(cosmo.linear_power(kmag) * box_size ** 3)
    modes = noise * amp
    cdtype = torch.complex128 if dtype == torch.float64 else torch.complex64
    return torch.as_tensor(modes).to(device=device, dtype=cdtype)


def _to_real(modes: torch.Tensor, n: int, box_size: float) -> torch.Tensor:
    return torch.fft.irfftn(modes, s=(n, n, n)) * (n ** 3 / box_size ** 3)


def linear_density(spec, device="cpu", dtype=torch.float64) -> torch.Tensor:
    """The z = 0 linear density contrast of a run on its particle grid: (n, n, n) tensor (dimensionless)."""
    cosmo = _cosmo(spec)
    modes = linear_modes(cosmo, spec.box_size, spec.n_grid, spec.seed, spec.noise_grid, device, dtype,
                         fixed_amplitude=fixed_amplitudes(spec))
    return _to_real(modes, spec.n_grid, spec.box_size)


def initial_conditions(spec, device="cpu", dtype=torch.float64, lpt_order: int | None = None):
    """LPT displacement fields of a run at D1 = 1 (z = 0 normalisation).

    Args:
        spec: a srsim.sims.suite.SimSpec (uses box_size, n_grid, seed, noise_grid, cosmology and
            amplitudes and options['lpt_order'] unless ``lpt_order`` is given).
        device, dtype: torch device and real dtype of the returned fields.
        lpt_order: 1 (Zel'dovich) or 2 (2LPT).

    Returns:
        (psi1, psi2): (3, n, n, n) tensors in Mpc/h indexed [component, i, j, k] on the particle grid;
        psi2 is None for lpt_order 1. Positions: x = q + D1 psi1 + D2 psi2 (see lpt_state).
    """
    if lpt_order is None:
        from srsim.config import validated

        lpt_order = validated("sims.pm", spec.options)["lpt_order"]
    order = int(lpt_order)
    if order not in (1, 2):
        raise SrsimError(f"sims.pm.lpt_order must be 1 or 2, got {order}")
    n, box = int(spec.n_grid), float(spec.box_size)
    cosmo = _cosmo(spec)
    delta = linear_modes(cosmo, box, n, spec.seed, spec.noise_grid, device, dtype,
                         fixed_amplitude=fixed_amplitudes(spec))
    return lpt_fields(delta, box, order)


def lpt_fields(delta: torch.Tensor, box_size: float, order: int = 2):
    """LPT displacements (D1 = 1) from the Fourier modes of a linear density.

    Args:
        delta: (n, n, n//2 + 1) complex tensor, continuum-normalised modes (as from linear_modes):
            delta(x) = irfftn(delta) n^3 / box^3.
        box_size: Mpc/h.
        order: 1 or 2.

    Returns:
        (psi1, psi2): (3, n, n, n) real tensors in Mpc/h (psi2 None for order 1), with div psi1 = -delta and
        psi2 = grad phi2, lap phi2 = sum_{i<j} (phi1_ii phi1_jj - phi1_ij^2), lap phi1 = delta.
    """
    n, box = delta.shape[0], float(box_size)
    rdtype = torch.float64 if delta.dtype == torch.complex128 else torch.float32
    kvec, k2 = _kvectors(n, box, delta.device, rdtype)
    k2 = torch.where(k2 == 0, torch.ones_like(k2), k2)  # the k = 0 mode is excluded below
    delta = delta.clone()
    delta[0, 0, 0] = 0
    kg = _grad_factors(n, kvec)
    # psi1_k = i k delta / k^2
    psi1 = torch.stack([_to_real(1j * kg[a] * delta / k2, n, box) for a in range(3)])
    if order == 1:
        return psi1, None

    def phi(i, j):  # phi1_ij(x) = irfft(k_i k_j delta / k^2), one field at a time to bound memory
        ki = kvec[i] if i == j else kg[i]
        kj = kvec[j] if i == j else kg[j]
        return _to_real(ki * kj * delta / k2, n, box)

    p00, p11, p22 = phi(0, 0), phi(1, 1), phi(2, 2)
    source = p00 * p11 + p00 * p22 + p11 * p22
    del p00, p11, p22
    for i, j in ((0, 1), (0, 2), (1, 2)):
        source -= phi(i, j) ** 2
    src_k = torch.fft.rfftn(source) * (box ** 3 / n ** 3)
    del source
    src_k[0, 0, 0] = 0
    # psi2 = grad phi2, phi2_k = -S_k / k^2  ->  psi2_k = -i k S_k / k^2
    psi2 = torch.stack([_to_real(-1j * kg[a] * src_k / k2, n, box) for a in range(3)])
    return psi1, psi2


def lpt_state(psi1: torch.Tensor, psi2: torch.Tensor | None, cosmo: Cosmology, a: float, box_size: float,
              dtype: torch.dtype | None = None):
    """Particle positions and FastPM momenta at scale factor ``a`` from LPT displacement fields.

    Args:
        psi1, psi2: (3, n, n, n) displacement fields at D1 = 1 (Mpc/h); psi2 may be None (Zel'dovich).
        dtype: dtype of the outputs (default: that of psi1); float64 recommended for positions.

    Returns:
        pos: (n^3, 3) positions, Mpc/h, wrapped into [0, box), particles in grid (ID) order.
        p: (n^3, 3) momenta p = a^2 E(a) dx/dlna in Mpc/h (peculiar velocity = 100 p / a km/s).
    """
    n = psi1.shape[-1]
    dtype = dtype or psi1.dtype
    d1, f1 = float(cosmo.growth_a(a)), float(cosmo.growth_rate_a(a))
    d2 = f2 = 0.0
    if psi2 is not None:
        d2, f2 = float(cosmo.growth2_a(a)), float(cosmo.growth_rate2_a(a))
    pfac = a * a * float(cosmo.hubble(a))
    q = torch.arange(n, device=psi1.device, dtype=dtype) * (box_size / n)
    grid = (q.view(n, 1, 1), q.view(1, n, 1), q.view(1, 1, n))
    pos = torch.empty((n, n, n, 3), dtype=dtype, device=psi1.device)
    p = torch.empty((n, n, n, 3), dtype=dtype, device=psi1.device)
    for c in range(3):  # one component at a time: bounded temporaries
        disp = d1 * psi1[c].to(dtype)
        vel = (f1 * d1) * psi1[c].to(dtype)
        if psi2 is not None:
            disp += d2 * psi2[c].to(dtype)
            vel += (f2 * d2) * psi2[c].to(dtype)
        pos[..., c] = grid[c] + disp
        p[..., c] = pfac * vel
    pos = torch.remainder(pos.view(-1, 3), box_size)
    pos = torch.where(pos >= box_size, pos - box_size, pos)
    return pos, p.view(-1, 3)
