"""Figures: projection rendering invariants, and every figure function writing a PNG of the expected size + PDF."""

import math

import matplotlib

matplotlib.use("Agg")

import matplotlib.image as mpimg  # noqa: E402
import numpy as np  # noqa: E402
import pytest  # noqa: E402

from plot_synthetic import clustered_particles, hmf_set, power_set, write_hmf_table  # noqa: E402
from srsim.analysis.fof import fof_groups, linking_length  # noqa: E402
from srsim.plots.projection import (  # noqa: E402
    ProjectionRenderer, Region, adaptive_smooth, deposit_cic, fof_member_mask, render_particles)
from srsim.plots.tables import hmf_item, power_item  # noqa: E402

BOX = 10.0
DPI = 40


def check_png(path, width_in, height_in, dpi=DPI):
    """The PNG has figsize * dpi pixels (+-1 for rounding), is not blank, and the PDF beside it exists."""
    img = mpimg.imread(path)
    assert abs(img.shape[1] - width_in * dpi) <= 1 and abs(img.shape[0] - height_in * dpi) <= 1, img.shape
    assert float(np.std(img[..., :3])) > 0.01  # something was drawn
    pdf = path.with_suffix(".pdf")
    assert pdf.stat().st_size > 1000 and pdf.read_bytes()[:4] == b"%PDF"


@pytest.fixture(scope="module")
def particles():
    """HR-like (24^3) and LR-like (6^3) particle sets in a 10 Mpc/h box, with clumps, and the HR FOF."""
    hr, ids = clustered_particles(24, BOX, seed=1, n_halos=12, halo_size=150)
    sr, _ = clustered_particles(24, BOX, seed=2, n_halos=12, halo_size=150)
    lr, lr_ids = clustered_particles(6, BOX, seed=3, n_halos=0)
    groups = fof_groups(hr, linking_length(0.2, BOX, len(hr)), box_size=BOX, ids=ids, min_members=20)
    return {"hr": (hr, ids), "sr": (sr, ids), "lr": (lr, lr_ids), "groups": groups}


def test_cic_deposit_conserves_weight_and_wraps():
    rng = np.random.default_rng(0)
    x, y = rng.uniform(0, BOX, (2, 500))
    img = deposit_cic(x, y, 2.0, (0, BOX, 0, BOX), (16, 20), periodic=(True, True))
    assert img.shape == (16, 20) and img.sum() == pytest.approx(1000.0)
    # open boundaries lose the weight that falls outside, never gain
    img = deposit_cic(x - 3.0, y, 1.0, (0, BOX, 0, BOX), (16, 20))
    assert img.sum() < np.sum(x - 3.0 > -BOX / 20) + 1e-9


def test_adaptive_smoothing_conserves_mass_and_fills_sparse_regions():
    rng = np.random.default_rng(1)
    counts = np.zeros((64, 64))
    counts[rng.integers(0, 64, 40), rng.integers(0, 64, 40)] += 1.0  # sparse particles
    counts[30:33, 30:33] += 50.0  # a dense clump
    sub = np.where(counts >= 50, counts, 0.0)
    out, (osub,) = adaptive_smooth(counts, [sub], 0.5, n_min=8, periodic=True)
    assert out.sum() == pytest.approx(counts.sum()) and osub.sum() == pytest.approx(sub.sum())
    assert np.mean(out > 1e-3) > 0.9  # sparse particles spread into a field
    assert out[31, 31] > 0.3 * counts[31, 31]  # the clump stays sharp
    fixed, _ = adaptive_smooth(counts, [], 0.5, n_min=0, periodic=True)
    assert np.mean(fixed > 1e-3) < 0.5


def test_local_fof_finds_the_clumps(particles):
    hr, ids = particles["hr"]
    mask = fof_member_mask(hr, linking_length(0.2, BOX, len(hr)), 20, box_size=BOX)
    assert np.array_equal(mask, particles["groups"].labels >= 0)
    assert mask.sum() >= 12 * 150 * 0.9


def test_member_ids_and_local_fof_highlight_the_same_particles(particles):
    """FOF-member images from the catalogue's member IDs equal those from a local FOF of each region (margin
    included), and chunked rendering equals one-shot rendering."""
    hr, ids = particles["hr"]
    g = particles["groups"]
    _, members = g.members(ids)
    regions = [Region("slab", [BOX / 2, BOX / 2, 3.0], [BOX, BOX, 3.0], 40),
               Region("zoom", g.pos[0], [4.0] * 3, 30)]
    kw = dict(b=0.2, min_members=20, smoothing=0.0, adaptive_count=0)
    by_ids = render_particles(hr, BOX, regions, ids=ids, member_ids=members, **kw)
    local = render_particles(hr, BOX, regions, ids=ids, **kw)
    assert local["zoom"].method == "local FOF" and by_ids["zoom"].method == "member IDs"
    for name in ("slab", "zoom"):
        assert by_ids[name].fof.sum() > 0
        np.testing.assert_allclose(by_ids[name].fof, local[name].fof, atol=1e-9)
        np.testing.assert_allclose(by_ids[name].density, local[name].density, atol=1e-9)
    rend = ProjectionRenderer(BOX, len(hr), regions, member_ids=members, min_members=20)
    for start in range(0, len(hr), 1000):
        rend.add(hr[start:start + 1000], ids[start:start + 1000])
    chunked = rend.finish(0.0, 0)
    for name in ("slab", "zoom"):
        np.testing.assert_allclose(chunked[name].fof, by_ids[name].fof, atol=1e-9)
    # a projection of the whole box has mean overdensity 1 (periodic deposit and smoothing conserve mass)
    whole = Region("box", [BOX / 2] * 3, [BOX] * 3, 32)
    proj = render_particles(hr, BOX, [whole], smoothing=0.05, adaptive_count=8, min_members=20)["box"]
    assert proj.density.mean() == pytest.approx(1.0, rel=1e-9)
    assert proj.fof.mean() == pytest.approx(np.mean(g.labels >= 0), rel=1e-9)


def test_halo_centre_fallback_for_big_regions(particles):
    hr, ids = particles["hr"]
    g = particles["groups"]
    region = Region("slab", [BOX / 2, BOX / 2, BOX / 2], [BOX, BOX, BOX], 20)
    proj = render_particles(hr, BOX, [region], halos=(g.pos, g.npart), collect_limit=10)["slab"]
    assert proj.method == "halo centres"
    mean = len(hr) / BOX**3 * (BOX / 20) ** 2 * BOX
    assert proj.fof.sum() * mean == pytest.approx(g.npart.sum())


def _render_fig1_inputs(particles):
    from srsim.plots.slices import fig1_regions

    g = particles["groups"]
    regions = fig1_regions(BOX, g.pos, g.npart * 1e10, slab_thickness=3.0, zoom=4.0, npix_slab=60, npix_zoom=50)
    cols = {name.upper(): render_particles(particles[name][0], BOX, regions, smoothing=0.01, min_members=20)
            for name in ("lr", "hr", "sr")}
    return regions, cols


def test_fig1(tmp_path, particles):
    from srsim.plots.slices import plot_fig1

    regions, cols = _render_fig1_inputs(particles)
    assert [r.name for r in regions] == ["slab", "A", "B", "C", "D", "E"]
    # A sits on the most massive halo; the slab is centred on A's depth
    assert np.allclose(regions[1].center, particles["groups"].pos[0])
    assert regions[0].center[2] == pytest.approx(regions[1].center[2])
    out = tmp_path / "fig1.png"
    paths = plot_fig1(cols, BOX, out, redshift=0.0, dpi=DPI, col_width=2.0)
    assert paths == [out, out.with_suffix(".pdf")]
    check_png(out, 3 * 2.0 + 0.4, 3 * 2.0 + 0.7)


def test_fig2(tmp_path, particles):
    from srsim.plots.slices import fig2_order, fig2_region, plot_fig2

    lr = particles["lr"][0]
    region = fig2_region(BOX, lr, zoom=4.0, npix=40)
    # the centre is the densest spot of the LR: a clump planted there moves the region onto it
    clump = np.vstack([lr, np.full((30, 3), 7.3)])
    assert np.allclose(fig2_region(BOX, clump, zoom=4.0).center, 7.3, atol=BOX / 10 / 2 + 1e-9)
    proj = {n: render_particles(particles[n][0], BOX, [region], min_members=20)["zoom"] for n in ("lr", "hr", "sr")}
    out = tmp_path / "fig2.png"
    _, answer = plot_fig2(proj["lr"], proj["hr"], [proj["sr"]] * 3, out, redshift=2.0, dpi=DPI, seed=5, panel=2.0)
    check_png(out, 2.0 * 3 + 0.3, 2.0 * 2 + 0.9)
    assert answer == "ABCD"[list(fig2_order(4, 5)).index(0)]
    # fewer realizations: the grid shrinks to what exists
    _, answer = plot_fig2(proj["lr"], proj["hr"], [proj["sr"]], out, redshift=2.0, dpi=DPI, panel=2.0)
    check_png(out, 2.0 * 3 + 0.3, 2.0 * 1 + 0.9)
    assert answer in "AB"


def test_fig3(tmp_path):
    from srsim.plots.power import plot_fig3, particle_nyquist

    ps = power_set(tmp_path, zs=(4, 2, 0), n_sr=2)
    groups = {z: {"lr": power_item(d["lr"]), "hr": power_item(d["hr"]), "sr": [power_item(p) for p in d["sr"]]}
              for z, d in ps.items()}
    assert particle_nyquist(groups[0]["hr"][1]) == pytest.approx(math.pi * 128 / 25.0)
    out = tmp_path / "fig3.png"
    plot_fig3(groups, out, k_max=16.0, tolerance=0.05, dpi=DPI, panel=(3.0, 4.0))
    check_png(out, 3 * 3.0 + 0.6, 4.0)


def test_fig4(tmp_path):
    from srsim.plots.hmf import plot_fig4

    hs = hmf_set(tmp_path, zs=(4, 2, 0))
    groups = {z: {k: hmf_item(p) for k, p in d.items()} for z, d in hs.items()}
    out = tmp_path / "fig4.png"
    plot_fig4(groups, out, tolerance=0.1, min_halos=20, dpi=DPI, panel=(3.0, 4.0))
    check_png(out, 3 * 3.0 + 0.6, 4.0)


def test_fig5(tmp_path, particles):
    from srsim.plots.bigbox import fig5_regions, plot_fig5

    g = particles["groups"]
    regions = fig5_regions(BOX, g.pos, g.npart, slab_thickness=3.0, zoom=3.0, npix_slab=80, npix_zoom=30)
    sr = render_particles(particles["sr"][0], BOX, regions, min_members=20)
    lr = render_particles(particles["lr"][0], BOX, regions, min_members=20)
    out = tmp_path / "fig5.png"
    plot_fig5(sr, lr, BOX, out, redshift=2.0, halo_mass=2e14, dpi=DPI, size=4.0)
    check_png(out, 4.0, 4.0)


def test_fig6(tmp_path):
    from plot_synthetic import hmf_counts
    from srsim.plots.hmf import plot_fig6

    rng = np.random.default_rng(0)
    edges = np.linspace(10.5, 15.5, 11)
    lo, hi = edges[:-1], edges[1:]
    items = []
    for name, vol, mmin in (("lr", 1e9, 13.0), ("sr", 1e9, 0.0), ("hr", 1e6, 0.0)):
        items.append(hmf_item(write_hmf_table(tmp_path / f"{name}.txt", lo, hi, hmf_counts(lo, hi, vol, 2, rng, mmin),
                                              volume=vol, n_catalogs=1, redshift=2)))
    out = tmp_path / "fig6.png"
    plot_fig6(*items, out, dpi=DPI, size=(4.0, 4.5))
    check_png(out, 4.0, 4.5)


def test_figure_cli_on_snapshots(tmp_path, particles):
    """`srsim figure fig1` and `fig2` from bigfile snapshots and FOF catalogues (one with member IDs)."""
    from srsim.analysis.fof import fof_snapshot, write_catalog
    from srsim.cli import main
    from srsim.io.snapshot import make_header, write_snapshot

    cos = dict(Omega_m=0.3, Omega_b=0.05, Omega_L=0.7, h=0.7, sigma8=0.8, n_s=0.96)
    snaps = {}
    for name in ("lr", "hr", "sr"):
        x, ids = particles[name]
        n = round(len(x) ** (1 / 3))
        p = tmp_path / f"{name}_z0"
        write_snapshot(p, make_header(box_size=BOX, redshift=0.0, n_particles=len(x), cosmology=cos, n_grid=n), x, ids)
        cat, attrs = fof_snapshot(p, b=0.2, min_members=20, members=(name == "hr"))
        write_catalog(tmp_path / f"{name}.h5", cat, attrs)
        snaps[name] = p
    cfg = '{"figures": {"slab_thickness": 3.0, "zoom": 4.0, "dpi": 50}}'
    out = tmp_path / "figs" / "fig1.png"
    args = ["figure", "fig1", "--out", str(out), "--config", cfg]
    for name in ("lr", "hr", "sr"):
        args += [f"--{name}", str(snaps[name]), f"--{name}-fof", str(tmp_path / f"{name}.h5")]
    assert main(args) == 0
    check_png(out, 3 * 3.2 + 0.4, 3 * 3.2 + 0.7, dpi=50)
    out2 = tmp_path / "figs" / "fig2.png"
    assert main(["figure", "fig2", "--lr", str(snaps["lr"]), "--hr", str(snaps["hr"]), "--sr", str(snaps["sr"]),
                 str(snaps["sr"]), "--hr-fof", str(tmp_path / "hr.h5"), "--out", str(out2), "--config", cfg]) == 0
    check_png(out2, 3.0 * 3 + 0.3, 3.0 * 2 + 0.9, dpi=50)


def test_figure_cli_rejects_mixed_redshifts(tmp_path, capsys):
    from srsim.cli import main

    edges = np.linspace(11, 13, 5)
    paths = [write_hmf_table(tmp_path / f"{k}.txt", edges[:-1], edges[1:], np.array([50, 20, 5, 1]), volume=1e6,
                             n_catalogs=1, redshift=z) for k, z in (("lr", 2), ("sr", 2), ("hr", 0))]
    code = main(["figure", "fig6", "--lr", str(paths[0]), "--sr", str(paths[1]), "--hr", str(paths[2]),
                 "--out", str(tmp_path / "f6.png")])
    assert code == 2 and "different redshifts" in capsys.readouterr().err
    assert not (tmp_path / "f6.png").exists()
