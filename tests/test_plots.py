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
from srsim.plots.hmf import RATIO_CAP  # noqa: E402
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


@pytest.fixture
def drawn(monkeypatch):
    """The matplotlib Figures the figure functions hand to save_figure, captured as they are written: the
    tests read their axes, lines, labels and limits (what the figure shows), not only the file."""
    from srsim.plots import common

    figs = []
    real = common.save_figure

    def capture(fig, out, *args, **kwargs):
        figs.append(fig)
        return real(fig, out, *args, **kwargs)

    for module in ("slices", "power", "hmf", "bigbox"):
        monkeypatch.setattr(f"srsim.plots.{module}.save_figure", capture)
    return figs


def image_axes(fig):
    return [ax for ax in fig.axes if ax.images]


def labels(ax) -> set[str]:
    """Labels of the lines and error-bar series drawn on an axes (unlabelled ones left out)."""
    out = {line.get_label() for line in ax.get_lines()} | {c.get_label() for c in ax.containers}
    return {lab for lab in out if lab and not lab.startswith("_")}


def series(ax, label):
    """(x, y) of the line or error-bar series `label` on an axes."""
    for c in ax.containers:
        if c.get_label() == label:
            return c.lines[0].get_xdata(), c.lines[0].get_ydata()
    for line in ax.get_lines():
        if line.get_label() == label:
            return line.get_xdata(), line.get_ydata()
    raise AssertionError(f"no series {label!r} among {labels(ax)}")


def vlines(ax) -> list[float]:
    """x of the vertical lines (axvline) on an axes."""
    out = []
    for line in ax.get_lines():
        x = np.asarray(line.get_xdata(), dtype=float)
        if x.size == 2 and x[0] == x[1] and line.get_transform() != ax.transData:
            out.append(float(x[0]))
    return out


def is_uniform(ax) -> bool:
    """The panel's image is one colour."""
    rgb = np.asarray(ax.images[0].get_array())
    return float(np.ptp(rgb, axis=(0, 1)).max()) == 0.0


def panel_letter(ax) -> str:
    """The one-letter corner label of a panel ('' if it has none)."""
    return next((t.get_text() for t in ax.texts if len(t.get_text()) == 1), "")


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


def test_fig1(tmp_path, particles, drawn):
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
    # 3 columns (LR, HR, SR) of a slab, zoom A and zooms B-E, one image each; the slab shows the whole box
    (fig,) = drawn
    panels = image_axes(fig)
    assert len(panels) == 3 * 6 and all(len(ax.images) == 1 for ax in panels)
    slabs = [ax for ax in panels if ax.get_title()]
    assert [ax.get_title() for ax in slabs] == ["LR", "HR", "SR"]
    for ax in slabs:
        assert ax.get_xlim() == pytest.approx((0.0, BOX)) and ax.get_ylim() == pytest.approx((0.0, BOX))
    letters = sorted(panel_letter(ax) for ax in panels if ax not in slabs)
    assert letters == sorted("ABCDE" * 3)
    # zoom A is 4 Mpc/h across, centred on the most massive halo
    a = next(ax for ax in panels if ax not in slabs and panel_letter(ax) == "A")
    assert np.diff(a.get_xlim())[0] == pytest.approx(4.0)


def test_fig2(tmp_path, particles, drawn):
    import dataclasses

    from srsim.plots.common import read_png_info
    from srsim.plots.slices import fig2_region, plot_fig2

    lr = particles["lr"][0]
    region = fig2_region(BOX, lr, zoom=4.0, npix=40)
    # the centre is the densest spot of the LR: a clump planted there moves the region onto it
    clump = np.vstack([lr, np.full((30, 3), 7.3)])
    assert np.allclose(fig2_region(BOX, clump, zoom=4.0).center, 7.3, atol=BOX / 10 / 2 + 1e-9)
    proj = {n: render_particles(particles[n][0], BOX, [region], min_members=20)["zoom"] for n in ("lr", "hr", "sr")}
    # HR made recognisable in the drawn figure: a uniform image, where every SR realization has structure
    hr = dataclasses.replace(proj["hr"], density=np.ones_like(proj["hr"].density),
                             fof=np.zeros_like(proj["hr"].fof))
    out = tmp_path / "fig2.png"
    found = set()
    for seed in range(6):
        drawn.clear()
        _, answer = plot_fig2(proj["lr"], hr, [proj["sr"]] * 3, out, redshift=2.0, dpi=DPI, seed=seed, panel=2.0)
        check_png(out, 2.0 * 3 + 0.3, 2.0 * 2 + 0.9)
        (fig,) = drawn
        panels = [ax for ax in image_axes(fig) if panel_letter(ax)]
        assert len(image_axes(fig)) == 5 and len(panels) == 4
        uniform = [panel_letter(ax) for ax in panels if is_uniform(ax)]
        assert len(uniform) == 1  # the HR panel, found from what was drawn
        assert read_png_info(out)["hr_panel"] == answer == uniform[0]
        found.add(answer)
    assert len(found) >= 2  # the seed moves HR around
    # fewer realizations: the grid shrinks to what exists
    drawn.clear()
    _, answer = plot_fig2(proj["lr"], hr, [proj["sr"]], out, redshift=2.0, dpi=DPI, panel=2.0)
    check_png(out, 2.0 * 3 + 0.3, 2.0 * 1 + 0.9)
    (fig,) = drawn
    assert len(image_axes(fig)) == 3
    uniform = [panel_letter(ax) for ax in image_axes(fig)
               if panel_letter(ax) and is_uniform(ax)]
    assert read_png_info(out)["hr_panel"] == answer == uniform[0]


def test_fig3(tmp_path, drawn):
    from srsim.plots.power import plot_fig3, particle_nyquist

    ps = power_set(tmp_path, zs=(4, 2, 0), n_sr=2)
    groups = {z: {"lr": power_item(d["lr"]), "hr": power_item(d["hr"]), "sr": [power_item(p) for p in d["sr"]]}
              for z, d in ps.items()}
    assert particle_nyquist(groups[0]["hr"][1]) == pytest.approx(math.pi * 128 / 25.0)
    out = tmp_path / "fig3.png"
    plot_fig3(groups, out, k_max=16.0, tolerance=0.05, dpi=DPI, panel=(3.0, 4.0))
    check_png(out, 3 * 3.0 + 0.6, 4.0)
    # 3 rows (Delta^2, ratios, SR/HR magnified) x 3 redshifts, high z on the left
    (fig,) = drawn
    axes = np.array(fig.axes).reshape(3, 3)
    assert [ax.get_title() for ax in axes[0]] == ["z = 4", "z = 2", "z = 0"]
    assert axes[0, 0].get_ylabel() == r"$\Delta^2(k)$" and "k" in axes[2, 1].get_xlabel()
    for j, z in enumerate((4, 2, 0)):
        top, mid, fine = axes[:, j]
        assert {"LR", "HR", "SR (mean of 2)"} <= labels(top)
        assert {"LR / HR", "SR / HR"} <= labels(mid) and "SR / HR" in labels(fine)
        t_hr = groups[z]["hr"][0]
        k, d2 = series(top, "HR")
        np.testing.assert_allclose(d2, t_hr["Delta2"][np.isin(t_hr["k"], k)])
        # SR = HR (1 +- 1 %) alternating over two realizations: their mean sits within the magnified band
        _, ratio = series(fine, "SR / HR")
        assert np.all(np.abs(ratio - 1) < 0.02)
        _, lr_ratio = series(mid, "LR / HR")
        assert lr_ratio[-1] < 0.5  # LR loses power at high k
        assert fine.get_ylim() == pytest.approx((0.9, 1.1))  # +-2 tolerance
        # k_max, the mesh Nyquist and the LR particle Nyquist marked
        kn = groups[z]["hr"].meta["k_nyquist"]
        marks = vlines(top)
        assert any(abs(m - 16.0) < 1e-9 for m in marks) and any(abs(m - kn) < 1e-9 for m in marks)
        assert any(abs(m - math.pi * 16 / 25.0) < 1e-9 for m in marks)


def test_fig4(tmp_path, drawn):
    from srsim.plots.hmf import plot_fig4

    hs = hmf_set(tmp_path, zs=(4, 2, 0))
    groups = {z: {k: hmf_item(p) for k, p in d.items()} for z, d in hs.items()}
    out = tmp_path / "fig4.png"
    plot_fig4(groups, out, tolerance=0.1, min_halos=20, dpi=DPI, panel=(3.0, 4.0))
    check_png(out, 3 * 3.0 + 0.6, 4.0)
    (fig,) = drawn
    axes = np.array(fig.axes).reshape(2, 3)
    assert [ax.get_title() for ax in axes[0]] == ["z = 4", "z = 2", "z = 0"]
    for j, z in enumerate((4, 2, 0)):
        top, bot = axes[:, j]
        assert {"LR", "HR", "SR (3 realizations)"} <= labels(top) and {"LR / HR", "SR / HR"} <= labels(bot)
        assert top.get_xscale() == "log" and top.get_yscale() == "log" and bot.get_ylim()[0] == 0
        assert bot.get_ylim()[1] >= 2 and bot.get_ylim()[1] <= RATIO_CAP
        assert "M" in bot.get_xlabel()
        t_hr = groups[z]["hr"][0]
        m, dn = series(top, "HR")
        ok = t_hr["n_halos"] > 0
        np.testing.assert_allclose(m, 10 ** t_hr["log10M_mid"][ok])
        np.testing.assert_allclose(dn, t_hr["dn_dlog10M"][ok])
    # at z = 4 the synthetic LR has no halos: said on the panel, and no LR points drawn
    assert any("no LR halos" in t.get_text() for t in axes[0, 0].texts)
    assert len(series(axes[0, 0], "LR")[0]) == 0


def test_fig5(tmp_path, particles, drawn):
    from srsim.plots.bigbox import fig5_regions, plot_fig5

    g = particles["groups"]
    regions = fig5_regions(BOX, g.pos, g.npart, slab_thickness=3.0, zoom=3.0, npix_slab=80, npix_zoom=30)
    sr = render_particles(particles["sr"][0], BOX, regions, min_members=20)
    lr = render_particles(particles["lr"][0], BOX, regions, min_members=20)
    out = tmp_path / "fig5.png"
    plot_fig5(sr, lr, BOX, out, redshift=2.0, halo_mass=2e14, dpi=DPI, size=4.0)
    check_png(out, 4.0, 4.0)
    # the SR slab filling the figure, the LR inset and the SR and LR zooms
    (fig,) = drawn
    panels = image_axes(fig)
    assert len(panels) == 4
    assert panels[0].get_position().width == pytest.approx(1.0)
    assert panels[0].get_xlim() == pytest.approx((0.0, BOX))
    names = sorted(t.get_text() for ax in panels[1:] for t in ax.texts if "Mpc/h" not in t.get_text())
    assert names == ["LR", "LR zoom", "SR zoom"]
    assert any("z = 2" in t.get_text() for t in panels[0].texts)


def test_fig6(tmp_path, drawn):
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
    (fig,) = drawn
    top, bot = fig.axes
    assert {lab.split(" (")[0] for lab in labels(top)} == {"LR", "SR", "HR"}
    assert labels(bot) >= {"SR / HR", "SR / LR"} and bot.get_ylim()[0] == 0 and bot.get_ylim()[1] >= 2
    # LR has no halos below 10^13 (its resolution limit here): its points start there
    m, _ = series(top, next(lab for lab in labels(top) if lab.startswith("LR")))
    assert m.min() > 1e13


def test_fig6_ratio_panel_shows_ratios_above_two(tmp_path, drawn):
    """SR/HR of 3 and 40 (the demo's big box has 2.6 and 10): the panel grows to show the first, and the one beyond
    RATIO_CAP is marked at the top edge with its value, never clipped out of sight."""
    from srsim.plots.hmf import plot_fig6

    lo, hi = np.array([10.5, 11.0, 11.5]), np.array([11.0, 11.5, 12.0])
    counts = {"lr": [0, 0, 4], "sr": [300, 400, 40], "hr": [100, 10, 40]}
    items = [hmf_item(write_hmf_table(tmp_path / f"{k}.txt", lo, hi, np.array(v), volume=1e6, n_catalogs=1,
                                      redshift=2)) for k, v in counts.items()]
    plot_fig6(*items, tmp_path / "fig6.png", dpi=DPI, size=(4.0, 4.5))
    (fig,) = drawn
    bot = fig.axes[1]
    m, r = series(bot, "SR / HR")
    np.testing.assert_allclose(r, [3.0, 40.0, 1.0])
    assert bot.get_ylim() == (0, RATIO_CAP)
    marks = [ln for ln in bot.get_lines() if ln.get_marker() == "^"]
    assert len(marks) == 1 and marks[0].get_xdata()[0] == pytest.approx(m[1])
    assert any(t.get_text() == "40" for t in bot.texts)


def test_figure_cli_on_snapshots(tmp_path, particles):
    """`srsim figure fig1` and `fig2` from bigfile snapshots and FOF catalogues (one with member IDs)."""
    from srsim.analysis.fof import fof_snapshot
    from srsim.io.catalog import write_catalog
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


def test_fig3_and_fig4_draw_the_trivial_predictor_as_a_thin_grey_line(tmp_path, drawn):
    from matplotlib.colors import to_rgb

    from srsim.plots.hmf import plot_fig4
    from srsim.plots.power import plot_fig3

    ps = power_set(tmp_path, zs=(2, 0), n_sr=1)
    hs = hmf_set(tmp_path, zs=(2, 0))
    # the LR tables stand in for the trivial predictor: known curves to compare with
    p_groups = {z: {"lr": power_item(d["lr"]), "hr": power_item(d["hr"]), "sr": [power_item(p) for p in d["sr"]],
                    "trivial": power_item(d["lr"])} for z, d in ps.items()}
    h_groups = {z: {**{k: hmf_item(p) for k, p in d.items()}, "trivial": hmf_item(d["hr"])} for z, d in hs.items()}
    plot_fig3(p_groups, tmp_path / "fig3.png", k_max=16.0, tolerance=0.05, dpi=DPI, panel=(3.0, 4.0))
    plot_fig4(h_groups, tmp_path / "fig4.png", tolerance=0.1, min_halos=20, dpi=DPI, panel=(3.0, 4.0))
    fig3, fig4 = drawn

    def grey_thin(ax, label):
        (line,) = [ln for ln in ax.get_lines() if ln.get_label() == label]
        r, g, b = to_rgb(line.get_color())
        assert r == g == b and 0.3 < r < 0.9 and line.get_linewidth() < 1.0
        return line.get_xydata()

    axes3 = np.array(fig3.axes).reshape(3, 2)
    axes4 = np.array(fig4.axes).reshape(2, 2)
    for j, z in enumerate((2, 0)):
        t_lr = p_groups[z]["lr"][0]
        xy = grey_thin(axes3[0, j], "trivial")
        np.testing.assert_allclose(xy[:, 1], t_lr["Delta2"][np.isin(t_lr["k"], xy[:, 0])])
        np.testing.assert_allclose(grey_thin(axes3[1, j], "trivial / HR").T, np.array(series(axes3[1, j], "LR / HR")))
        grey_thin(axes3[2, j], "trivial / HR")
        t_hr = h_groups[z]["hr"][0]
        xy = grey_thin(axes4[0, j], "trivial")
        np.testing.assert_allclose(xy[:, 1], t_hr["dn_dlog10M"][t_hr["n_halos"] > 0])
        np.testing.assert_allclose(grey_thin(axes4[1, j], "trivial / HR")[:, 1], 1.0)  # trivial = HR here
    # without a trivial entry nothing grey is drawn (old callers)
    for z in p_groups:
        p_groups[z]["trivial"] = None
    plot_fig3(p_groups, tmp_path / "fig3b.png", dpi=DPI, panel=(3.0, 4.0))
    assert not any("trivial" in labels(ax) for ax in drawn[-1].axes)


def test_figure_cli_passes_trivial_tables_to_fig4(tmp_path, drawn, capsys):
    from srsim.cli import main

    hs = hmf_set(tmp_path, zs=(2, 0))
    args = ["figure", "fig4", "--out", str(tmp_path / "f4.png")]
    for kind in ("lr", "hr", "sr"):
        args += [f"--{kind}", *(str(hs[z][kind]) for z in hs)]
    assert main(args + ["--trivial", *(str(hs[z]["lr"]) for z in hs)]) == 0
    assert all("trivial" in labels(ax) for ax in np.array(drawn[-1].axes).reshape(2, 2)[0])
    # a trivial table for only one of the redshifts fails loudly
    assert main(args + ["--trivial", str(hs[0]["lr"])]) == 2
    assert "no trivial table at z = 2" in capsys.readouterr().err


def test_training_curve_says_when_a_phase_has_no_steps(tmp_path, monkeypatch):
    """A fine-tuning run with the adversarial phase only: the supervised panel says it is empty."""
    import srsim.plots.curve as curve

    log = tmp_path / "losses.csv"
    rows = ["step,epoch,phase,l2,critic,generator,wdist,gp,wall_s"]
    rows += [f"{i},0,adversarial,0.01,-0.1,0.2,0.05,{'1.0' if i % 4 == 0 else 'nan'},{i}" for i in range(1, 41)]
    log.write_text("\n".join(rows) + "\n")
    figs = []
    monkeypatch.setattr(curve.plt, "close", lambda fig=None: figs.append(fig))
    curve.plot_curve(log, tmp_path / "curve.png", title="z = 0")
    assert (tmp_path / "curve.png").stat().st_size > 0
    (fig,) = figs
    sup, adv = fig.axes[0], fig.axes[1]
    assert [t.get_text() for t in sup.texts] == ["no steps of this phase in this run"]
    assert not adv.texts and len(adv.lines) == 2  # W distance and generator loss are drawn
