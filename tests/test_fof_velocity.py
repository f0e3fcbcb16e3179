"""FOF halo velocities: bulk velocity and 1D dispersion, against a known answer, MP-Gadget's own FOF catalogues,
the domain decomposition and the catalogue files."""
from pathlib import Path

import bigfile
import numpy as np
import pytest

from srsim.analysis.fof import fof_groups, fof_snapshot, group_velocities, linking_length
from srsim.errors import SrsimError
from srsim.io.catalog import read_catalog, write_catalog
from srsim.io.snapshot import make_header, write_snapshot
from srsim.testing import clustered

DATA = Path(__file__).parent / "data" / "mpgadget"
COSMO = {"Omega_m": 0.3, "Omega_L": 0.7, "Omega_b": 0.05, "h": 0.7, "sigma8": 0.8, "n_s": 0.96}


def test_two_clumps_recover_bulk_velocity_and_dispersion():
    """Two clumps, bulk +100 and -50 km/s along x, Gaussian scatter 30 and 80 km/s; one straddles the box corner."""
    box, n = 50.0, 4000
    rng = np.random.default_rng(11)
    a = rng.normal(0.0, 0.05, (n, 3)) % box  # around the corner (0, 0, 0): crosses every periodic face
    b = rng.normal(25.0, 0.05, (n, 3))
    background = rng.uniform(0, box, (3000, 3))
    pos = np.concatenate([a, b, background])
    bulk = np.array([[100.0, 0.0, 0.0], [-50.0, 0.0, 0.0]])
    sigma = np.array([30.0, 80.0])
    vel = np.concatenate([bulk[0] + rng.normal(0, sigma[0], (n, 3)), bulk[1] + rng.normal(0, sigma[1], (n, 3)),
                          rng.normal(0, 500.0, (3000, 3))]).astype(np.float32)
    g = fof_groups(pos, 0.2, box_size=box, min_members=32)
    assert len(g.npart) == 2 and np.all(g.npart == n)  # equal sizes: ordered by min ID, clump a first
    v, s = group_velocities(g.labels, vel, len(g.npart))
    assert v.shape == (2, 3) and s.shape == (2,) and v.dtype == s.dtype == np.float64
    # recovered within 5 standard errors: sigma / sqrt(n) for the mean, sigma / sqrt(6 n) for the 1D dispersion
    assert np.all(np.abs(v - bulk) < 5 * sigma[:, None] / np.sqrt(n))
    assert np.all(np.abs(s - sigma) < 5 * sigma / np.sqrt(6 * n))
    # and exactly the direct numpy computation over each group's members
    for k in range(2):
        m = vel[g.labels == k].astype(np.float64)
        np.testing.assert_allclose(v[k], m.mean(0), rtol=1e-12)
        np.testing.assert_allclose(s[k], np.sqrt(((m - m.mean(0)) ** 2).sum() / (3 * len(m))), rtol=1e-12)
    # a dispersion far below the bulk velocity keeps its precision (two passes, not <v^2> - <v>^2)
    fast = vel[g.labels >= 0].astype(np.float64) * 1e-3 + 3e4
    _, s_fast = group_velocities(g.labels[g.labels >= 0], fast, 2)
    np.testing.assert_allclose(s_fast, s * 1e-3, rtol=1e-6)
    with pytest.raises(ValueError, match="shape"):
        group_velocities(g.labels, vel[:-1], 2)
    with pytest.raises(ValueError, match="outside"):
        group_velocities(g.labels, vel, 1)
    with pytest.raises(ValueError, match="no members"):
        group_velocities(g.labels, vel, 3)


def _mpgadget_members(pig):
    """(npart, MinID, member velocities (sum npart, 3) float64, offsets) of a PIG, whose 1/ is ordered by group."""
    length = pig["FOFGroups/LengthByType"][:][:, 1].astype(np.int64)
    gid = pig["1/GroupID"][:]
    off = np.concatenate([[0], np.cumsum(length)])
    np.testing.assert_array_equal(gid[:off[-1]], np.repeat(pig["FOFGroups/GroupID"][:], length))
    return length, pig["FOFGroups/MinID"][:], pig["1/Velocity"][:][:off[-1]].astype(np.float64), off


@pytest.mark.parametrize("snap,nmin", [("002", 32), ("001", 20)])
def test_bulk_velocity_and_dispersion_match_mpgadget(snap, nmin):
    """MP-Gadget's FOFGroups/MassCenterVelocity is the members' mean 1/Velocity, peculiar km/s, with no a or
    sqrt(a) factor (checked at z = 2, a = 1/3, where those would differ by 1.7 or 3): ours equals it to float32
    precision. MP-Gadget stores no dispersion: ours equals the direct numpy value over the PIG's members."""
    out = DATA / "n32" / "output"
    cat, attrs = fof_snapshot(out / f"PART_{snap}", b=0.2, min_members=nmin)
    assert attrs["has_velocity"] is True
    pig = bigfile.File(str(out / f"PIG_{snap}"))
    length, min_id, v, off = _mpgadget_members(pig)
    keep = np.flatnonzero(length >= nmin)
    assert len(keep) >= 2
    ours = {int(i): k for k, i in enumerate(cat["min_id"])}
    rows = np.array([ours[int(i)] for i in min_id[keep]])  # every MP-Gadget group is one of ours
    assert len(rows) == len(cat["npart"])
    np.testing.assert_array_equal(cat["npart"][rows], length[keep])
    mcv = pig["FOFGroups/MassCenterVelocity"][:][keep].astype(np.float64)
    np.testing.assert_allclose(cat["vel"][rows], mcv, rtol=1e-5, atol=1e-3)
    for r, g in zip(rows, keep):
        m = v[off[g]:off[g + 1]]
        np.testing.assert_allclose(cat["vel"][r], m.mean(0), rtol=1e-12, atol=1e-9)
        np.testing.assert_allclose(cat["sigma_v"][r], np.sqrt(((m - m.mean(0)) ** 2).sum() / (3 * len(m))),
                                   rtol=1e-10)
    assert np.all(cat["sigma_v"] > 10.0)  # virialised halos: tens to hundreds of km/s


def test_catalog_roundtrip_with_and_without_velocities(tmp_path):
    box = 60.0
    pos, ids = clustered(20, box, seed=2)
    vel = np.random.default_rng(2).normal(0, 300, pos.shape).astype(np.float32)
    header = make_header(box_size=box, redshift=0.5, n_particles=len(ids), cosmology=COSMO)
    write_snapshot(tmp_path / "v", header, pos, ids, velocity=vel)
    write_snapshot(tmp_path / "nv", header, pos, ids)
    with_v, attrs_v = fof_snapshot(tmp_path / "v", b=0.2, min_members=20, members=True)
    without, attrs_n = fof_snapshot(tmp_path / "nv", b=0.2, min_members=20)
    assert attrs_v["has_velocity"] is True and attrs_n["has_velocity"] is False
    assert "vel" not in without and "sigma_v" not in without  # absent, not NaN-filled
    np.testing.assert_array_equal(with_v["npart"], without["npart"])
    g = len(with_v["npart"])
    assert g > 10 and with_v["vel"].shape == (g, 3) and with_v["sigma_v"].shape == (g,)
    for name, cat, attrs in (("v", with_v, attrs_v), ("nv", without, attrs_n)):
        write_catalog(tmp_path / f"{name}.h5", cat, attrs)
        back, battrs = read_catalog(tmp_path / f"{name}.h5")
        assert set(back) == set(cat) and battrs["has_velocity"] == attrs["has_velocity"]
        for key in cat:
            np.testing.assert_array_equal(back[key], cat[key])
    # a catalogue written without the attribute (older writers, hand-made ones) gets it from its datasets
    write_catalog(tmp_path / "bare.h5", {k: with_v[k] for k in ("npart", "mass", "pos", "vel", "sigma_v")},
                  {"box_size": box, "redshift": 0.5})
    assert read_catalog(tmp_path / "bare.h5")[1]["has_velocity"]
    with pytest.raises(ValueError, match="together"):
        write_catalog(tmp_path / "x.h5", {k: with_v[k] for k in ("npart", "mass", "pos", "vel")}, attrs_v)
    with pytest.raises(ValueError, match="has_velocity"):
        write_catalog(tmp_path / "x.h5", without, attrs_v)
    with pytest.raises(ValueError, match="shape"):
        write_catalog(tmp_path / "x.h5", dict(with_v, sigma_v=with_v["sigma_v"][:-1]), attrs_v)
    assert not (tmp_path / "x.h5").exists()
    # the HMF reads catalogues with and without velocities alike
    from srsim.analysis.hmf import hmf_from_catalogs

    edges = np.linspace(12.0, 17.0, 11)
    h_v, h_n = (hmf_from_catalogs([tmp_path / f"{n}.h5"], edges) for n in ("v", "nv"))
    assert h_v["n_halos"].sum() == g
    np.testing.assert_array_equal(h_v["n_halos"], h_n["n_halos"])


def test_domain_pipeline_with_velocities_on_mpgadget(tmp_path):
    """fof-partition + fof-domain x 8 + fof-merge of MP-Gadget's z = 0 snapshot (which has velocities) equals
    `srsim fof` in every column, vel and sigma_v included; streamed chunks and partition files alike."""
    from srsim.cli import main

    snap = DATA / "n32" / "output" / "PART_002"
    cfg = '{"analysis": {"fof_domains": 2, "fof_ghost": 6.0, "fof_min_members": 20}}'
    assert main(["fof", str(snap), str(tmp_path / "whole.h5"), "--config", cfg]) == 0
    slices = [str(tmp_path / f"slice{s}") for s in range(2)]
    for s, d in enumerate(slices):
        assert main(["fof-partition", str(snap), d, "--part", str(s), "--n-parts", "2", "--config", cfg,
                     "--chunk-size", "5000"]) == 0
    assert (tmp_path / "slice0" / "d0.vel").is_file()
    for mode, extra in (("stream", ["--chunk-size", "3000"]), ("parts", ["--parts", *slices])):
        parts = [str(tmp_path / f"{mode}{d}.h5") for d in range(8)]
        for d, p in enumerate(parts):
            assert main(["fof-domain", str(snap), p, "--domain", str(d), "--config", cfg, *extra]) == 0
        assert main(["fof-merge", *parts, str(tmp_path / f"{mode}.h5")]) == 0
        a, aa = read_catalog(tmp_path / "whole.h5")
        b, ba = read_catalog(tmp_path / f"{mode}.h5")
        assert aa["has_velocity"] and ba["has_velocity"] and len(a["npart"]) > 50
        for key in ("npart", "min_id", "mass"):
            np.testing.assert_array_equal(a[key], b[key])
        np.testing.assert_allclose(b["vel"], a["vel"], rtol=1e-12, atol=1e-9)
        np.testing.assert_allclose(b["sigma_v"], a["sigma_v"], rtol=1e-12)


def test_merge_refuses_mixed_velocity_catalogues():
    from srsim.analysis.domains import fof_domain, merge_catalogs

    box = 60.0
    pos, ids = clustered(16, box, seed=6)
    vel = np.zeros(pos.shape, np.float32)
    link = linking_length(0.2, box, len(pos))
    parts = []
    for d in range(8):
        chunk = (pos, ids, vel) if d else (pos, ids)
        cat = fof_domain([chunk], box_size=box, index=d, n_domains=2, ghost=6.0, link=link, min_members=10)
        cat["mass"] = cat["npart"] * 1.0
        parts.append((cat, {"box_size": box, "redshift": 0.0, "n_domains": 2, "domain": d}))
    assert "vel" not in parts[0][0] and "vel" in parts[1][0]
    with pytest.raises(SrsimError, match="velocities"):
        merge_catalogs(parts)
    with pytest.raises(SrsimError, match="some particle chunks"):
        fof_domain([(pos, ids), (pos, ids, vel)], box_size=box, index=0, n_domains=2, ghost=6.0, link=link)


def test_partitions_must_carry_the_snapshots_velocities(tmp_path):
    """Partitions of a snapshot without velocities cannot stand in for one with them (nor the reverse)."""
    from srsim.analysis.domains import fof_domain_snapshot, partition_snapshot

    box = 60.0
    pos, ids = clustered(12, box, seed=8)
    vel = np.ones(pos.shape, np.float32)
    header = make_header(box_size=box, redshift=0.0, n_particles=len(ids), cosmology=COSMO)
    write_snapshot(tmp_path / "v", header, pos, ids, velocity=vel)
    write_snapshot(tmp_path / "nv", header, pos, ids)
    for name in ("v", "nv"):
        partition_snapshot(tmp_path / name, tmp_path / f"p_{name}", n_domains=2, ghost=5.0)
    cat, attrs = fof_domain_snapshot(tmp_path / "v", 0, 2, 5.0, min_members=5, partitions=[tmp_path / "p_v"])
    assert len(cat["npart"]) > 0 and attrs["has_velocity"] and np.allclose(cat["vel"], 1.0) and np.allclose(cat["sigma_v"], 0.0)
    with pytest.raises(SrsimError, match="without velocities"):
        fof_domain_snapshot(tmp_path / "v", 0, 2, 5.0, partitions=[tmp_path / "p_nv"])
    with pytest.raises(SrsimError, match="with velocities"):
        fof_domain_snapshot(tmp_path / "nv", 0, 2, 5.0, partitions=[tmp_path / "p_v"])
