"""Velocity fields on the Lagrangian grid (`srsim displacement --velocity`, dataset `vel`, peculiar km/s) and the
linear-theory velocity of a displacement, v = a H f psi, against real MP-Gadget outputs and the embedded PM code."""

import contextlib
import io

import h5py
import numpy as np
import pytest

from srsim.augment import ELEMENTS, transform_field, transform_positions
from srsim.cosmology import Cosmology
from srsim.displacement import snapshot_fields
from srsim.errors import SrsimError
from srsim.fields import grid_ids, particles_to_grid, positions_to_displacement
from srsim.io.displacement import read_displacement, read_velocity, write_displacement
from srsim.io.snapshot import make_header, read_header, read_particles, write_snapshot

# The fixtures' header has the background (Omega0, OmegaLambda, OmegaBaryon, HubbleParam); sigma8 and n_s are
# WMAP9's as in tests/data/mpgadget/README.md (the velocity relation does not depend on them).
WMAP9 = dict(Omega_m=0.2814, Omega_b=0.0464, Omega_L=0.7186, h=0.697, sigma8=0.82, n_s=0.971)


def _header_cosmology(snapshot) -> Cosmology:
    h = read_header(snapshot)
    return Cosmology(Omega_m=h.omega_m, Omega_b=h.omega_b, Omega_L=h.omega_l, h=h.h,
                     sigma8=WMAP9["sigma8"], n_s=WMAP9["n_s"])


def _low_pass(field, k_cut):
    """Keep the Fourier modes |k| <= k_cut (in units of the fundamental 2 pi / box) of each component."""
    n = field.shape[1]
    k = np.fft.fftfreq(n, 1.0 / n)
    kz = np.arange(n // 2 + 1)
    keep = np.sqrt(k[:, None, None] ** 2 + k[None, :, None] ** 2 + kz[None, None, :] ** 2) <= k_cut
    return np.fft.irfftn(np.fft.rfftn(field, axes=(1, 2, 3)) * keep, s=field.shape[1:], axes=(1, 2, 3))


def _slopes_and_correlations(vel, expected):
    """Per component: least-squares slope of vel on expected, and their correlation coefficient."""
    slopes = [float((vel[c] * expected[c]).sum() / (expected[c] ** 2).sum()) for c in range(3)]
    corrs = [float(np.corrcoef(vel[c].ravel(), expected[c].ravel())[0, 1]) for c in range(3)]
    return np.array(slopes), np.array(corrs)


def test_linear_velocity_units_and_einstein_de_sitter():
    """Omega_m = 1: E = a^-3/2 and f = 1, so v = 100 a^-1/2 psi km/s for psi in Mpc/h (h cancels)."""
    eds = Cosmology(Omega_m=1.0, Omega_b=0.05, Omega_L=0.0, h=0.5, sigma8=0.8, n_s=0.96)
    psi = np.array([[1.0, -2.0, 0.5]], dtype=np.float32)
    for a in (0.01, 0.25, 1.0):
        v = eds.linear_velocity(psi, a)
        assert v.dtype == np.float32
        np.testing.assert_allclose(v, 100.0 / np.sqrt(a) * psi, rtol=1e-6)
    lcdm = Cosmology(**WMAP9)
    a = 0.2
    want = 100.0 * a * float(lcdm.hubble(a)) * float(lcdm.growth_rate_a(a))
    assert float(lcdm.linear_velocity(2.0, a)) == pytest.approx(2.0 * want, rel=1e-12)


def test_mpgadget_ic_velocities_are_zeldovich(mpgadget_dir):
    """MP-GenIC's Zel'dovich ICs (z = 99, ScaleDepVelocity = 0) have v = a H f psi, particle by particle."""
    snap = mpgadget_dir / "n32" / "output" / "IC"
    disp, vel, attrs = snapshot_fields(snap, velocity=True)
    assert vel.shape == disp.shape == (3, 32, 32, 32) and vel.dtype == np.float32
    a = 1.0 / (1.0 + attrs["redshift"])
    assert a == pytest.approx(0.01)
    slopes, corrs = _slopes_and_correlations(vel, _header_cosmology(snap).linear_velocity(disp, a))
    # measured: slope 0.9949 in every component, correlation 1.00000. The -0.5% is MP-Gadget's photon background
    # (RadiationOn = 1: H and f at z = 99 differ from our matter + Lambda ones), not noise.
    assert np.all(np.abs(slopes - 1) < 0.02), slopes
    assert np.all(corrs > 0.9999), corrs


def test_mpgadget_z4_velocities_follow_linear_theory_on_large_scales(mpgadget_dir):
    """At z = 4 (PART_000) the modes k <= 4 k_f = 0.25 h/Mpc of v equal a H f psi of the same modes."""
    snap = mpgadget_dir / "n32" / "output" / "PART_000"
    disp, vel, attrs = snapshot_fields(snap, velocity=True)
    a = 1.0 / (1.0 + attrs["redshift"])
    lin = _header_cosmology(snap).linear_velocity(disp, a)
    slopes, corrs = _slopes_and_correlations(_low_pass(vel, 4), _low_pass(lin, 4))
    # measured: slopes 1.0065, 1.0049, 1.0039, correlations 0.9995 (unsmoothed 1.005-1.008 and 0.996-0.997;
    # at z = 2 the same cut gives +1.6-1.9%). At k = 0.25 h/Mpc, z = 4 the linear Delta^2 is ~0.05, so
    # second-order velocity corrections of a few % are expected: 3% bounds them with the 0.5% photon offset.
    assert np.all(np.abs(slopes - 1) < 0.03), slopes
    assert np.all(corrs > 0.998), corrs
    # smoothing removes the non-linear small scales: the full field agrees less well
    assert np.all(_slopes_and_correlations(vel, lin)[1] < corrs)


def test_pm_snapshots_hold_peculiar_velocities(tmp_path):
    """The embedded PM code's snapshots (16^3, 100 Mpc/h, 4 steps from z = 99 to 20) have v = a H f psi."""
    from srsim.sims.pm import run
    from srsim.sims.suite import SimSpec

    spec = SimSpec(name="t", kind="hr", box_size=100.0, n_grid=16, seed=3, noise_grid=16, redshifts=(20.0,),
                   z_init=99.0, cosmology=dict(WMAP9),
                   options=dict(mesh_factor=2, steps=4, lpt_order=2, device="cpu", threads=0))
    with contextlib.redirect_stderr(io.StringIO()):
        run(spec, tmp_path)
    cosmo = Cosmology(**WMAP9)
    for name, tol, min_corr in (("IC", 0.002, 0.99999), ("z20", 0.02, 0.995)):
        disp, vel, attrs = snapshot_fields(tmp_path / name, velocity=True)
        slopes, corrs = _slopes_and_correlations(vel, cosmo.linear_velocity(disp, 1.0 / (1.0 + attrs["redshift"])))
        # measured: IC 1.0000 (the 2LPT term, whose f2 = 2 f1, shifts one component by 3e-4), correlation 1;
        # z = 20 slopes 1.0009, 1.0014, 1.0036, correlations 0.9987-0.9992. A velocity in other units
        # (e.g. the momentum p = a v / 100, or Gadget's v / sqrt(a)) would be off by factors of 5 or more.
        assert np.all(np.abs(slopes - 1) < tol), (name, slopes)
        assert np.all(corrs > min_corr), (name, corrs)


@pytest.mark.parametrize("gi", [1, 10, 21, 34, 47])
def test_oh_action_on_velocity_field_equals_transformed_particles(mpgadget_dir, gi):
    """transform_field(vel, g) = the velocity field of the particles moved by g (positions transform_positions,
    velocity vectors R v): the O_h action on velocity and displacement fields agree."""
    g = ELEMENTS[gi]
    R = g.matrix()
    snap = mpgadget_dir / "n16" / "output" / "PART_000"
    disp, vel, attrs = snapshot_fields(snap, velocity=True)
    n, box = 16, attrs["box_size"]
    parts = read_particles(snap, ("Position", "Velocity", "ID"))
    # each particle's Lagrangian point q moves to R q: that grid cell is its new ID
    idx = parts["ID"].astype(np.int64) - 1
    q = np.stack([idx // (n * n), (idx // n) % n, idx % n], axis=1) * (box / n)
    cell = np.rint(transform_positions(q, g, box) / (box / n)).astype(np.int64) % n
    new_ids = (cell[:, 0] * n * n + cell[:, 1] * n + cell[:, 2] + 1).astype(np.uint64)
    new_pos = transform_positions(parts["Position"], g, box)
    new_vel = (parts["Velocity"] @ R.T.astype(np.float32)).astype(np.float32)
    np.testing.assert_array_equal(particles_to_grid(new_vel, new_ids, n), transform_field(vel, g))
    np.testing.assert_allclose(positions_to_displacement(new_pos, new_ids, n, box), transform_field(disp, g),
                               atol=1e-4)
    assert not np.array_equal(transform_field(vel, g), vel)  # the element acts


def test_cli_velocity_round_trip(tmp_path, mpgadget_dir):
    from srsim.cli import main

    snap = mpgadget_dir / "n16" / "output" / "PART_000"
    out, plain = tmp_path / "dv.h5", tmp_path / "d.h5"
    assert main(["displacement", str(snap), str(out), "--velocity"]) == 0
    assert main(["displacement", str(snap), str(plain)]) == 0
    vel, attrs = read_velocity(out)
    parts = read_particles(snap, ("Velocity", "ID"))
    order = np.argsort(parts["ID"])
    assert vel.dtype == np.float32 and vel.shape == (3, 16, 16, 16)
    np.testing.assert_array_equal(vel.reshape(3, -1).T, parts["Velocity"][order])
    assert attrs["velocity_units"] == "km/s"
    assert attrs["velocity_convention"].startswith("peculiar, a dx/dt") and str(snap.resolve()) in \
        attrs["velocity_convention"]
    # readers of `disp` see the same field as without --velocity
    np.testing.assert_array_equal(read_displacement(out)[0], read_displacement(plain)[0])
    with pytest.raises(SrsimError, match=r"d\.h5: no 'vel' dataset"):
        read_velocity(plain)


def test_velocity_refusals_leave_no_file(tmp_path, demo_cosmology, capsys):
    from srsim.cli import main

    n, box = 4, 10.0
    pos = (np.indices((n, n, n)).reshape(3, -1).T + 0.1) * (box / n)
    u = np.random.default_rng(2).normal(0, 50, size=(n ** 3, 3)).astype(np.float32)
    attrs = make_header(box_size=box, redshift=3.0, n_particles=n ** 3, cosmology=demo_cosmology)
    # no Velocity block (an SR snapshot): the error names the snapshot and the block; nothing is written
    write_snapshot(tmp_path / "novel", attrs, pos, grid_ids(n))
    assert main(["displacement", str(tmp_path / "novel"), str(tmp_path / "a.h5"), "--velocity"]) == 2
    err = capsys.readouterr().err
    assert "novel" in err and "1/Velocity" in err
    assert not (tmp_path / "a.h5").exists() and list(tmp_path.glob("*.h5*")) == []
    # a velocity convention the reader does not know is refused, naming the file and the attribute
    write_snapshot(tmp_path / "odd", dict(attrs, UsePeculiarVelocity=np.array([2], dtype=np.int32)), pos,
                   grid_ids(n), velocity=u)
    with pytest.raises(SrsimError, match=r"odd: snapshot Header UsePeculiarVelocity = 2: unknown velocity"):
        snapshot_fields(tmp_path / "odd", velocity=True)
    assert snapshot_fields(tmp_path / "odd")[1] is None  # its displacement still reads
    # Gadget's convention (u = v / sqrt(a)) is converted to peculiar km/s
    write_snapshot(tmp_path / "gadget", dict(attrs, UsePeculiarVelocity=np.array([0], dtype=np.int32)), pos,
                   grid_ids(n), velocity=u)
    _, vel, _ = snapshot_fields(tmp_path / "gadget", velocity=True)
    np.testing.assert_allclose(vel.reshape(3, -1).T, u * np.sqrt(0.25), rtol=1e-6)
    # the writer checks the velocity against the displacement
    disp = np.zeros((3, n, n, n), dtype=np.float32)
    kw = dict(box_size=box, redshift=3.0, cosmology=demo_cosmology, source="test", velocity_convention="peculiar")
    with pytest.raises(SrsimError, match="shape"):
        write_displacement(tmp_path / "b.h5", disp, velocity=np.zeros((3, n, n, n + 1)), **kw)
    with pytest.raises(SrsimError, match="NaN"):
        write_displacement(tmp_path / "b.h5", disp, velocity=np.full((3, n, n, n), np.nan), **kw)
    assert not (tmp_path / "b.h5").exists()
    write_displacement(tmp_path / "b.h5", disp, velocity=vel, **kw)
    with h5py.File(tmp_path / "b.h5") as f:
        assert f["vel"].dtype == np.float32 and f.attrs["velocity_units"] == "km/s"
