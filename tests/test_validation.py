"""Validation during training (srsim.validation): scores on known generators, val.csv in a Trainer run and on
resume, the curve's validation panel, and `srsim train --val`."""

import copy
import json
import math

import numpy as np
import pytest
import torch

from srsim.errors import SrsimError
from srsim.fields import read_periodic
from srsim.io.displacement import write_displacement
from srsim.model.generator import Generator
from srsim.train import Trainer
from srsim.validation import HaloBins, Validator, halo_counts, octave_bands
from test_train import BOX, COSMO, _smooth, _up_periodic, make_dataset, make_pairs, tiny_config

torch.set_num_threads(1)
N, SCALE, DISP_SCALE = 8, 4, 0.5


def val_pair(seed=5):
    """LR and an HR that is neither LR upsampled nor far from it: -(LR upsampled) plus small-scale structure,
    so the trivial predictor's error and power deficit are not 0 or 1 (the tests below could fail)."""
    lr = _smooth(N, seed)
    small = np.random.default_rng(seed).standard_normal((3,) + (N * SCALE,) * 3)  # white: power at every k
    hr = -_up_periodic(lr, SCALE) + 0.05 * small
    return lr, hr.astype(np.float32)


def trivial_generator():
    """An untrained generator whose rungs add nothing: its output is the upsampled LR (noise on)."""
    torch.manual_seed(0)
    gen = Generator([6, 6, 6])
    with torch.no_grad():
        for rung in gen.rungs:
            rung.proj.weight.zero_()
            rung.proj.bias.zero_()
    return gen.eval()


class HRGenerator(torch.nn.Module):
    """A stand-in 'generator' returning the HR crop (network units) that the output of each window covers."""

    scale, pad = SCALE, 3

    def __init__(self, hr):
        super().__init__()
        self.hr = hr / DISP_SCALE

    def forward(self, x, offset, seed=0, box_cells=None):
        m = x.shape[-1] - 2 * self.pad
        n_hr = self.hr.shape[1]
        return torch.stack([torch.from_numpy(read_periodic(self.hr, [self.scale * (o + self.pad) for o in off],
                                                           self.scale * m, n_hr)) for off in offset.tolist()])


def test_bands_are_octaves_between_the_lr_and_hr_particle_nyquist():
    edges = octave_bands(16, 128, 25.0)
    np.testing.assert_allclose(edges, np.pi * np.array([16, 32, 64, 128]) / 25.0)
    assert len(octave_bands(8, 32, 12.5)) == 3


def test_trivial_generator_scores_as_the_trivial_predictor(tmp_path):
    lr, hr = val_pair()
    v = Validator([(lr, hr)], BOX, DISP_SCALE, tmp_path / "val.csv", chunk=4, verbose=False)
    row = v.evaluate(trivial_generator())
    assert row["l2_trivial"] > 0.01
    assert row["l2_ratio"] == pytest.approx(1.0, abs=1e-6)
    for i in range(v.n_bands):
        assert row[f"band{i}_sr_hr"] == pytest.approx(row[f"band{i}_trivial_hr"], rel=1e-6)
        assert abs(row[f"band{i}_trivial_hr"] - 1) > 0.01  # HR has power the trivial predictor lacks


def test_hr_as_sr_scores_zero_error_and_hr_power(tmp_path):
    lr, hr = val_pair()
    v = Validator([(lr, hr)], BOX, DISP_SCALE, tmp_path / "val.csv", chunk=3, verbose=False)  # 3 does not divide 8
    row = v.evaluate(HRGenerator(hr))
    assert row["l2_sr"] == 0.0 and row["l2_ratio"] == 0.0
    for i in range(v.n_bands):
        assert row[f"band{i}_sr_hr"] == pytest.approx(1.0, rel=1e-9)


def test_scores_are_deterministic_and_independent_of_the_chunking(tmp_path):
    lr, hr = val_pair()
    torch.manual_seed(1)
    gen = Generator([6, 6, 6]).eval()
    with torch.no_grad():
        for rung in gen.rungs:  # noise on: the fixed seed and global noise keys make it reproducible
            rung.proj.weight.normal_(0.0, 0.1)
            rung.noise1.std.fill_(0.3)
            rung.noise2.std.fill_(0.3)
        whole = Validator([(lr, hr)], BOX, DISP_SCALE, tmp_path / "a.csv", chunk=8, verbose=False).evaluate(gen)
        v = Validator([(lr, hr)], BOX, DISP_SCALE, tmp_path / "b.csv", chunk=4, verbose=False)
        a, b = v.evaluate(gen), v.evaluate(gen)
    assert a == b
    assert abs(a["l2_ratio"] - 1) > 1e-3  # this generator is not the trivial predictor
    for key, value in whole.items():
        assert a[key] == pytest.approx(value, rel=1e-5), key


# ------------------------------------------------------------------------------------------------ Trainer

def _validator(tmp_path, sub):
    lr, hr = val_pair()
    return Validator([(lr, hr)], BOX, DISP_SCALE, tmp_path / sub / "checkpoints" / "val.csv", verbose=False)


def _rows(path):
    import csv

    with open(path, newline="") as f:
        return [{k: v for k, v in r.items() if k != "seconds"} for r in csv.DictReader(f)]


def test_trainer_validates_every_val_every_steps_and_resumes_with_truncation(tmp_path):
    specs = make_pairs(tmp_path, n=8)
    cfg = tiny_config(max_steps=9, val_every=3, checkpoint_every=4)
    modes = []

    class Spy(Validator):
        def __call__(self, gen, step):
            modes.append((gen.training, torch.is_grad_enabled()))
            return super().__call__(gen, step)

    lr, hr = val_pair()
    spy = Spy([(lr, hr)], BOX, DISP_SCALE, tmp_path / "a" / "checkpoints" / "val.csv", verbose=False)
    ref = Trainer(copy.deepcopy(cfg), make_dataset(specs, cfg), tmp_path / "a" / "model.pt", progress=False,
                  validator=spy)
    ref.run()
    ref_rows = _rows(spy.path)
    assert [r["step"] for r in ref_rows] == ["0", "3", "6", "9"]  # row 0: the weights training starts from
    assert float(ref_rows[0]["l2_ratio"]) == pytest.approx(1.0, abs=1e-5)  # the untrained generator is trivial
    assert modes and all(m == (False, False) for m in modes)  # eval mode, no gradients
    assert ref.models.gen.training  # back in train mode
    # each row scores the weights of its step
    assert len({r["l2_ratio"] for r in ref_rows}) == 4

    # killed without a checkpoint after the validation at step 6: last.pt is from step 4
    out = tmp_path / "b" / "model.pt"
    tr = Trainer(copy.deepcopy(cfg), make_dataset(specs, cfg), out, progress=False,
                 validator=_validator(tmp_path, "b"))

    def crash(t, row):
        if row["step"] == 7:
            raise RuntimeError("killed")

    with pytest.raises(RuntimeError, match="killed"):
        tr.run(on_step=crash)
    assert [r["step"] for r in _rows(tr.validator.path)] == ["0", "3", "6"]
    tr2 = Trainer(copy.deepcopy(cfg), make_dataset(specs, cfg), out, progress=False,
                  validator=_validator(tmp_path, "b"))
    tr2.run(resume=True)
    rows = _rows(tr2.validator.path)
    assert [r["step"] for r in rows] == ["0", "3", "6", "9"]  # step 6 redone once, not duplicated
    for ra, rb in zip(ref_rows, rows):
        for key in ra:
            assert float(rb[key]) == pytest.approx(float(ra[key]), rel=1e-6, abs=1e-12), key
    # a finished run resumed validates nothing again
    tr3 = Trainer(copy.deepcopy(cfg), make_dataset(specs, cfg), out, progress=False,
                  validator=_validator(tmp_path, "b"))
    tr3.run(resume=True)
    assert _rows(tr3.validator.path) == rows

    # the export copies val.csv next to the model and the curve gets the validation panel
    figs = []
    import matplotlib.pyplot as plt

    real_close = plt.close

    def capture(fig=None):
        figs.append(fig)
        return real_close(fig)

    plt.close = capture
    try:
        tr3.export(log_csv=out.parent / "losses.csv", plot=out.parent / "curve.png", val_csv=out.parent / "val.csv")
    finally:
        plt.close = real_close
    assert (out.parent / "val.csv").read_text() == tr3.validator.path.read_text()
    (fig,) = figs
    titles = [ax.get_title() for ax in fig.axes]
    assert "validation (held-out pair)" in titles
    ax = fig.axes[titles.index("validation (held-out pair)")]
    (l2,) = [line for line in ax.get_lines() if line.get_label() == "L2 / L2 trivial"]
    np.testing.assert_array_equal(l2.get_xdata(), [0, 3, 6, 9])
    np.testing.assert_allclose(l2.get_ydata(), [float(r["l2_ratio"]) for r in rows])
    twin = [a for a in fig.axes if a is not ax and a.bbox.bounds == ax.bbox.bounds]
    band_lines = [line for a in twin for line in a.get_lines() if line.get_label().startswith("P_SR / P_HR, k ")]
    assert len(band_lines) == 2  # one octave per rung of the 4x generator
    np.testing.assert_allclose(band_lines[0].get_ydata(), [float(r["band0_sr_hr"]) for r in rows])


def test_val_csv_with_other_bands_is_refused_on_resume(tmp_path):
    lr, hr = val_pair()
    path = tmp_path / "val.csv"
    v = Validator([(lr, hr)], BOX, DISP_SCALE, path, verbose=False)
    v(trivial_generator(), 3)
    v.close()
    other = Validator([(lr, hr)], BOX, DISP_SCALE, path, edges=[2.0, 3.0, 4.0, 6.0], verbose=False)
    with pytest.raises(SrsimError, match="move it away"):
        other.truncate(3)
    assert len(_rows(path)) == 1  # left as it was


# ------------------------------------------------------------------------------------------------ CLI

def _write_val(tmp_path, box=BOX, redshift=0.0, n=N):
    lr = _smooth(n, 7)
    hr = -_up_periodic(lr, SCALE)
    lp, hp = tmp_path / f"val_lr_{box}_{redshift}_{n}.h5", tmp_path / f"val_hr_{box}_{redshift}_{n}.h5"
    write_displacement(lp, lr, box_size=box, redshift=redshift, cosmology=COSMO, source="synthetic")
    write_displacement(hp, hr, box_size=box, redshift=redshift, cosmology=COSMO, source="synthetic")
    return f"{lp}:{hp}"


def test_cli_train_with_val_writes_val_csv(tmp_path):
    from srsim.cli import main

    specs = make_pairs(tmp_path, n=8)
    cfg = tiny_config(max_steps=4, val_every=2)
    out = tmp_path / "models" / "z0" / "model.pt"
    args = ["train", "--data", *[f"{a}:{b}" for a, b in specs], "--redshift", "0", "--config", json.dumps(cfg),
            "--out", str(out), "--val", _write_val(tmp_path), "--no-progress"]
    assert main(args) == 0
    rows = _rows(out.parent / "val.csv")
    assert [r["step"] for r in rows] == ["0", "2", "4"]
    assert (out.parent / "checkpoints" / "val.csv").is_file()


@pytest.mark.parametrize("kw, name", [({"box": 25.0}, "box_size"), ({"redshift": 2.0}, "redshift"),
                                      ({"n": 4}, "n_lr")])
def test_cli_train_rejects_a_mismatched_val_pair(tmp_path, capsys, kw, name):
    from srsim.cli import main

    specs = make_pairs(tmp_path, n=8)
    cfg = tiny_config(max_steps=2)
    out = tmp_path / "models" / "z0" / "model.pt"
    args = ["train", "--data", *[f"{a}:{b}" for a, b in specs], "--redshift", "0", "--config", json.dumps(cfg),
            "--out", str(out), "--val", _write_val(tmp_path, **kw), "--no-progress"]
    assert main(args) == 2
    err = capsys.readouterr().err
    assert f"{name} " in err and "differs from the training pairs'" in err
    assert not out.exists()


def test_a_collapsed_generator_is_logged_as_nan_not_painted(tmp_path, capsys):
    lr, hr = val_pair()

    class NaNGenerator(HRGenerator):
        def forward(self, *args, **kwargs):
            out = super().forward(*args, **kwargs)
            out[:, 0, 0, 0, 0] = float("nan")
            return out

    v = Validator([(lr, hr)], BOX, DISP_SCALE, tmp_path / "val.csv", verbose=False)
    row = v(NaNGenerator(hr), 5)
    assert math.isnan(row["l2_ratio"]) and math.isnan(row["band0_sr_hr"])
    assert math.isfinite(row["band0_trivial_hr"]) and "NaN/inf" in capsys.readouterr().err
    assert _rows(v.path)[0]["l2_ratio"] == "nan"


# ------------------------------------------------------------------------------------------------ halos

def _clumped(n, block, box):
    """(3, n, n, n) Mpc/h displacement moving every particle of each block^3 cube of the Lagrangian grid
    onto the cube's centre: (n / block)^3 point halos of block^3 members each, far apart (block cells)."""
    q = (np.arange(n) + 0.5) * box / n
    centre = (np.arange(n) // block + 0.5) * block * box / n
    return np.stack(np.meshgrid(*[centre - q] * 3, indexing="ij")).astype(np.float32)


def _halo_bins(m_p, min_halos=50):
    # 64-member halos fall in the first bin, none in the second
    edges = (math.log10(32 * m_p), math.log10(100 * m_p), math.log10(1000 * m_p))
    return HaloBins(b=0.2, min_members=32, edges=edges, particle_mass=m_p, min_halos=min_halos)


def test_halo_counts_find_the_clumps_and_none_on_the_uniform_grid():
    n, m_p = N * SCALE, 1e9
    bins = _halo_bins(m_p)
    np.testing.assert_array_equal(halo_counts(_clumped(n, 4, BOX), BOX, bins), [(n // 4) ** 3, 0])
    assert halo_counts(np.zeros((3, n, n, n), np.float32), BOX, bins).sum() == 0
    # 2^3 = 8-member clumps are below min_members
    assert halo_counts(_clumped(n, 2, BOX), BOX, bins).sum() == 0


def test_validator_halo_scores_of_hr_and_of_the_trivial_generator(tmp_path):
    lr = _smooth(N, 5)
    hr = _clumped(N * SCALE, 4, BOX)  # 512 halos of 64 members; the smooth LR upsampled has none
    bins = _halo_bins(1e9)
    v = Validator([(lr, hr)], BOX, DISP_SCALE, tmp_path / "val.csv", chunk=4, halos=bins, verbose=False)
    assert list(v.halo_bins) == [0]  # the empty second bin is not scored
    assert "halo0_sr_hr" in v.columns and "halo1_sr_hr" not in v.columns
    row = v.evaluate(HRGenerator(hr))
    assert row["halo0_sr_hr"] == 1.0 and row["halo0_n_hr"] == 512
    assert row["halo0_log10m_lo"] == pytest.approx(bins.edges[0])
    row = v.evaluate(trivial_generator())
    assert row["halo0_sr_hr"] == row["halo0_trivial_hr"] == 0.0
    # too few HR halos for the threshold: no bin is scored, the other scores are unchanged
    few = Validator([(lr, hr)], BOX, DISP_SCALE, tmp_path / "few.csv", chunk=4, halos=_halo_bins(1e9, 513),
                    verbose=False)
    assert not any(c.startswith("halo") for c in few.columns)


def test_cli_train_logs_and_plots_halo_counts(tmp_path):
    from srsim.cli import main
    from srsim.io.snapshot import particle_mass

    specs = make_pairs(tmp_path, n=8)
    n_hr = N * SCALE
    m_p = particle_mass(BOX, n_hr**3, COSMO["Omega_m"])
    edges = [math.log10(32 * m_p), math.log10(100 * m_p)]
    cfg = tiny_config(max_steps=2, val_every=2)
    cfg["analysis"] = {"hmf_log10m_min": edges[0], "hmf_log10m_max": edges[1], "hmf_bins": 1}
    cfg["figures"] = {"hmf_min_halos": 100}
    lp, hp = tmp_path / "vlr.h5", tmp_path / "vhr.h5"
    write_displacement(lp, _smooth(N, 7), box_size=BOX, redshift=0.0, cosmology=COSMO, source="synthetic")
    write_displacement(hp, _clumped(n_hr, 4, BOX), box_size=BOX, redshift=0.0, cosmology=COSMO,
                       source="synthetic")
    out = tmp_path / "models" / "z0" / "model.pt"
    args = ["train", "--data", *[f"{a}:{b}" for a, b in specs], "--redshift", "0", "--config", json.dumps(cfg),
            "--out", str(out), "--val", f"{lp}:{hp}", "--no-progress"]
    assert main(args) == 0
    rows = _rows(out.parent / "val.csv")
    assert [int(r["halo0_n_hr"]) for r in rows] == [512, 512]
    assert all(float(r["halo0_trivial_hr"]) == 0.0 for r in rows)
    from PIL import Image

    assert Image.open(out.parent / "curve.png").size == (2400, 456)  # four panels of 5 x 3.8 inches, 120 dpi
    # with val_halos off the columns are absent
    cfg["train"]["val_halos"] = False
    out2 = tmp_path / "models2" / "z0" / "model.pt"
    args[args.index("--config") + 1] = json.dumps(cfg)
    args[args.index("--out") + 1] = str(out2)
    assert main(args) == 0
    assert not any(k.startswith("halo") for k in _rows(out2.parent / "val.csv")[0])
