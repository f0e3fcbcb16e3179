"""Halo mass function: normalisation, Poisson errors, several catalogues, file formats."""
import numpy as np
import pytest

from srsim.analysis.hmf import hmf_from_catalogs, mass_function
from srsim.io.catalog import write_catalog
from srsim.io.hmf import read_hmf, write_hmf
from srsim.errors import SrsimError


def _masses(n, seed):
    rng = np.random.default_rng(seed)
    return 10 ** rng.uniform(10.2, 14.8, n)


def test_integrates_back_to_number_of_halos():
    m = _masses(5000, 0)
    edges = np.linspace(10.5, 14.5, 17)
    t = mass_function([m], 100.0**3, edges)
    dlog = edges[1:] - edges[:-1]
    inside = np.sum((np.log10(m) >= edges[0]) & (np.log10(m) < edges[-1]))
    assert np.sum(t["dn_dlog10M"] * dlog) * 100.0**3 == pytest.approx(inside, rel=1e-12)
    assert t.meta["n_below"] + t.meta["n_above"] + inside == len(m)
    np.testing.assert_allclose(t["log10M_mid"], 0.5 * (edges[1:] + edges[:-1]))


def test_bins_are_half_open_at_the_top_edge_too():
    """A halo exactly on the upper edge is above the range, not in the last bin (counted once)."""
    t = mass_function([np.array([1e12, 1e13, 1e14])], 1.0, np.array([11.0, 13.0, 14.0]))
    np.testing.assert_array_equal(t["n_halos"], [1, 1])
    assert t.meta["n_above"] == 1
    assert t["n_halos"].sum() + t.meta["n_below"] + t.meta["n_above"] == t.meta["n_total"]


def test_poisson_errors_and_several_catalogues():
    edges = np.linspace(11.0, 14.0, 7)
    vol = 50.0**3
    a, b = _masses(800, 1), _masses(1200, 2)
    one = mass_function([a], vol, edges)
    np.testing.assert_allclose(one["err"], np.sqrt(one["n_halos"]) / (vol * 0.5), rtol=1e-12)
    both = mass_function([a, b], vol, edges)
    assert both.meta["n_catalogs"] == 2
    np.testing.assert_array_equal(both["n_halos"], one["n_halos"] + mass_function([b], vol, edges)["n_halos"])
    np.testing.assert_allclose(both["err"], np.sqrt(both["n_halos"]) / (vol * 2 * 0.5), rtol=1e-12)
    # the same catalogue twice: same abundance, errors smaller by sqrt(2)
    twice = mass_function([a, a], vol, edges)
    np.testing.assert_allclose(twice["dn_dlog10M"], one["dn_dlog10M"], rtol=1e-12)
    nz = one["n_halos"] > 0
    np.testing.assert_allclose(twice["err"][nz], one["err"][nz] / np.sqrt(2), rtol=1e-12)
    with pytest.raises(SrsimError, match="increasing"):
        mass_function([a], vol, [12.0, 11.0])


def _write(path, masses, box=100.0, z=0.0):
    n = len(masses)
    write_catalog(path, {"npart": np.full(n, 40), "mass": masses, "pos": np.zeros((n, 3))},
                  {"box_size": box, "redshift": z, "particle_mass": 1e10, "min_members": 32})


def test_files_and_cli(tmp_path):
    from srsim.cli import main

    paths = []
    for r in range(3):
        paths.append(tmp_path / f"sr{r}.h5")
        _write(paths[-1], _masses(300 + 100 * r, 10 + r))
    out = tmp_path / "hmf.txt"
    cfg = '{"analysis": {"hmf_log10m_min": 11.0, "hmf_log10m_max": 14.0, "hmf_bins": 6}}'
    assert main(["hmf", *map(str, paths), str(out), "--config", cfg]) == 0
    table, meta = read_hmf(out)
    assert meta["n_catalogs"] == 3 and meta["volume"] == pytest.approx(1e6) and meta["redshift"] == 0
    assert len(table["n_halos"]) == 6
    direct = hmf_from_catalogs(paths, np.linspace(11, 14, 7))
    np.testing.assert_allclose(table["dn_dlog10M"], direct["dn_dlog10M"], rtol=1e-9)
    np.testing.assert_allclose(table["err"], direct["err"], rtol=1e-9)
    write_hmf(tmp_path / "again.txt", direct)
    t2, _ = read_hmf(tmp_path / "again.txt")
    np.testing.assert_array_equal(t2["n_halos"], direct["n_halos"])
    # catalogues of different boxes or redshifts cannot be combined; the message names the file
    _write(tmp_path / "other.h5", _masses(10, 0), box=200.0)
    with pytest.raises(SrsimError, match="other.h5"):
        hmf_from_catalogs([paths[0], tmp_path / "other.h5"], np.linspace(11, 14, 7))
    _write(tmp_path / "zero.h5", np.r_[_masses(10, 0), 0.0])
    with pytest.raises(SrsimError, match="zero.h5: halo masses"):
        hmf_from_catalogs([paths[0], tmp_path / "zero.h5"], np.linspace(11, 14, 7))
    _write(tmp_path / "z2.h5", _masses(10, 0), z=2.0)
    assert main(["hmf", str(paths[0]), str(tmp_path / "z2.h5"), str(tmp_path / "bad.txt")]) == 2
    assert not (tmp_path / "bad.txt").exists()


def test_hmf_of_mpgadget_catalogue(tmp_path):
    """HMF of our FOF of the real MP-Gadget snapshot counts exactly its halos."""
    from pathlib import Path

    from srsim.analysis.fof import fof_snapshot

    snap = Path(__file__).parent / "data" / "mpgadget" / "n32" / "output" / "PART_002"
    cat, attrs = fof_snapshot(snap, min_members=20)
    write_catalog(tmp_path / "fof.h5", cat, attrs)
    lo = np.log10(cat["mass"].min()) - 0.01
    t = hmf_from_catalogs([tmp_path / "fof.h5"], np.linspace(lo, lo + 3, 13))
    assert t["n_halos"].sum() == len(cat["mass"]) == 86
    assert np.sum(t["dn_dlog10M"] * 0.25) * 100.0**3 == pytest.approx(86)
