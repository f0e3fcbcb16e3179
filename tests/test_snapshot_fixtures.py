"""Our snapshot reader and displacement code on the real MP-Gadget outputs (tests/data/mpgadget).

16^3 and 32^3 particles in 100 Mpc/h, WMAP9, the same Seed; Zel'dovich ICs at z = 99 and snapshots at
z = 4, 2, 0 (see the README there). Everything is checked against physics or against MP-Gadget's own
bookkeeping (PrePosition, MassTable), never against numbers produced by our code.
"""

import numpy as np
import pytest

from srsim.cosmology import Cosmology
from srsim.fields import displacement_to_positions, lagrangian_positions, minimum_image, positions_to_displacement
from srsim.io.snapshot import KPC_PER_MPC, iter_particles, read_header, read_particles

WMAP9 = {"Omega_m": 0.2814, "Omega_b": 0.0464, "Omega_L": 0.7186, "h": 0.697, "sigma8": 0.82, "n_s": 0.971}
SNAPSHOTS = {"IC": 99.0, "PART_000": 4.0, "PART_001": 2.0, "PART_002": 0.0}
RHO_CRIT = 2.77536627e11  # (Msun/h) / (Mpc/h)^3


def _path(mpgadget_dir, n, name):
    return mpgadget_dir / f"n{n}" / "output" / name


@pytest.fixture(scope="module")
def displacements(mpgadget_dir):
    """{(n, snapshot): (3, n, n, n) float32 Mpc/h} from our reader + positions_to_displacement."""
    out = {}
    for n in (16, 32):
        for name in SNAPSHOTS:
            p = read_particles(_path(mpgadget_dir, n, name), ("Position", "ID"))
            out[n, name] = positions_to_displacement(p["Position"], p["ID"], n, 100.0, source=name)
    return out


@pytest.mark.parametrize("n", [16, 32])
@pytest.mark.parametrize("name", list(SNAPSHOTS))
def test_header_units(mpgadget_dir, n, name):
    h = read_header(_path(mpgadget_dir, n, name))
    assert h.box_size == 100.0  # BoxSize = 100000 kpc/h
    assert h.attrs["BoxSize"][0] == 100.0 * KPC_PER_MPC
    assert h.n_particles == n**3 and h.n_grid == n
    assert h.redshift == pytest.approx(SNAPSHOTS[name], abs=1e-8)
    assert (h.omega_m, h.omega_l, h.omega_b, h.h) == (0.2814, 0.7186, 0.0464, 0.697)
    # MassTable[1] (1e10 Msun/h) -> Msun/h, and it must be the mean matter density / particle number
    assert h.particle_mass == pytest.approx(h.attrs["MassTable"][1] * 1e10, rel=1e-12)
    assert h.particle_mass == pytest.approx(0.2814 * RHO_CRIT * 100.0**3 / n**3, rel=1e-4)


@pytest.mark.parametrize("n", [16, 32])
@pytest.mark.parametrize("name", list(SNAPSHOTS))
def test_ids_permutation_and_positions_in_box(mpgadget_dir, n, name):
    p = read_particles(_path(mpgadget_dir, n, name), ("Position", "Velocity", "ID"))
    assert p["Position"].shape == (n**3, 3) and p["Position"].dtype == np.float64
    assert p["Velocity"].shape == (n**3, 3) and p["ID"].dtype == np.uint64
    np.testing.assert_array_equal(np.sort(p["ID"]), np.arange(1, n**3 + 1, dtype=np.uint64))
    assert p["Position"].min() >= 0.0 and p["Position"].max() < 100.0
    assert np.all(np.isfinite(p["Velocity"]))


@pytest.mark.parametrize("n", [16, 32])
def test_id_to_grid_matches_preposition(mpgadget_dir, n):
    """ID = i*N^2 + j*N + k + 1 sits at (i, j, k) * BoxSize / N: MP-GenIC's PrePosition, exactly."""
    p = read_particles(_path(mpgadget_dir, n, "IC"), ("PrePosition", "ID"))
    pre_kpc = np.asarray(p["PrePosition"], dtype=np.float64)  # raw blocks come back as stored (kpc/h)
    q = lagrangian_positions(n, 100.0).reshape(3, -1).T  # Mpc/h, C order = ID order
    expected_kpc = q[p["ID"].astype(np.int64) - 1] * KPC_PER_MPC
    np.testing.assert_array_equal(pre_kpc, expected_kpc)


@pytest.mark.parametrize("n", [16, 32])
def test_ic_displacements_small_and_zeldovich_velocities(mpgadget_dir, displacements, n):
    disp = displacements[n, "IC"]
    spacing = 100.0 / n
    rms = float(np.sqrt(np.mean(disp.astype(np.float64) ** 2)))
    assert 0.0 < rms < 0.02 * spacing  # z = 99: ~0.06 Mpc/h against 3-6 Mpc/h spacing
    assert np.abs(disp).max() < 0.1 * spacing
    # Zel'dovich: peculiar velocity = a H(a) f(a) * displacement, particle by particle (km/s, Mpc/h)
    p = read_particles(_path(mpgadget_dir, n, "IC"), ("Velocity", "ID"))
    psi = disp.reshape(3, -1)[:, p["ID"].astype(np.int64) - 1].T.astype(np.float64)
    vel = p["Velocity"].astype(np.float64)
    slope = np.sum(psi * vel) / np.sum(psi * psi)
    assert np.corrcoef(psi.ravel(), vel.ravel())[0, 1] > 0.9999
    cosmo = Cosmology.from_config(WMAP9)
    a = 0.01
    # MP-Gadget's background has radiation, ours does not: agree to 2 %
    assert slope == pytest.approx(100.0 * a * cosmo.hubble(a) * cosmo.growth_rate_a(a), rel=0.02)


@pytest.mark.parametrize("n", [16, 32])
def test_displacements_grow_like_linear_theory(displacements, n):
    rms = {name: float(np.sqrt(np.mean(displacements[n, name].astype(np.float64) ** 2))) for name in SNAPSHOTS}
    assert rms["IC"] < rms["PART_000"] < rms["PART_001"] < rms["PART_002"] < 0.5 * 100.0
    cosmo = Cosmology.from_config(WMAP9)
    linear = cosmo.growth_a(0.2) / cosmo.growth_a(0.01)
    # z = 99 -> 4 is linear on these scales; grid discreteness slows the growth near the particle
    # Nyquist scale by a few per cent (more for 16^3)
    assert 0.85 * linear < rms["PART_000"] / rms["IC"] < 1.02 * linear
    ic, z4 = displacements[n, "IC"].ravel(), displacements[n, "PART_000"].ravel()
    assert np.corrcoef(ic, z4)[0, 1] > 0.95


@pytest.mark.parametrize("name", ["IC", "PART_000"])
def test_same_seed_16_and_32_share_large_scale_modes(displacements, name):
    """MP-GenIC with the same Seed at 16^3 and 32^3: the 32^3 grid points with even indices are the 16^3 grid."""
    d16 = displacements[16, name]
    d32 = displacements[32, name][:, ::2, ::2, ::2]
    for c in range(3):
        assert np.corrcoef(d16[c].ravel(), d32[c].ravel())[0, 1] > 0.95
    # and two different components do not correlate (the match is not a global artefact)
    assert abs(np.corrcoef(d16[0].ravel(), d32[1].ravel())[0, 1]) < 0.3


@pytest.mark.parametrize("n", [16, 32])
def test_displacement_round_trip_and_streaming(mpgadget_dir, displacements, n):
    path = _path(mpgadget_dir, n, "PART_002")
    p = read_particles(path, ("Position", "ID"))
    pos = displacement_to_positions(displacements[n, "PART_002"], 100.0)  # ID order
    back = pos[p["ID"].astype(np.int64) - 1]
    # float32 displacements: exact to ~1e-5 Mpc/h, modulo the box
    assert np.abs(minimum_image(back - p["Position"], 100.0)).max() < 1e-4
    chunks = list(iter_particles(path, ("Position", "ID"), chunk_size=1000))
    assert len(chunks) == -(-n**3 // 1000)
    np.testing.assert_array_equal(np.concatenate([c["ID"] for c in chunks]), p["ID"])
    np.testing.assert_array_equal(np.concatenate([c["Position"] for c in chunks]), p["Position"])
