"""Six-channel models (displacement + peculiar velocity, model.channels: 6): scaling, data, training,
chunked generation into an SR snapshot with 1/Velocity, and the refusals."""

from __future__ import annotations

import csv

import numpy as np
import pytest
import torch

from srsim.augment import ELEMENTS, transform_field
from srsim.config import validate_sections
from srsim.cosmology import Cosmology
from srsim.data import CropDataset, collate, open_pairs
from srsim.errors import SrsimError
from srsim.fields import read_periodic
from srsim.generate import GenerateSettings, generate, output_paths
from srsim.generate.infer import LRInput, super_resolve
from srsim.io.displacement import read_displacement, write_displacement
from srsim.io.snapshot import read_header, read_particles
from srsim.model import load_generator
from srsim.model.generator import Generator
from srsim.model.layers import lr_to_hr
from srsim.model.scaling import Scaling
from srsim.train import Trainer

torch.set_num_threads(1)
COSMO = {"Omega_m": 0.2814, "Omega_b": 0.0464, "Omega_L": 0.7186, "h": 0.697, "sigma8": 0.82, "n_s": 0.971}
BOX = 60.0
N = 6
Z = 2.0
MODEL6 = {"disp_scale": 6.0, "density": "log1p", "channels": 6}


def smooth(n: int, seed: int, amp: float) -> np.ndarray:
    """A smooth periodic random vector field (3, n, n, n) float32."""
    rng = np.random.default_rng(seed)
    white = rng.standard_normal((3, n, n, n))
    k = np.fft.fftfreq(n) * n
    k2 = k[:, None, None] ** 2 + k[None, :, None] ** 2 + k[None, None, :] ** 2
    f = np.fft.ifftn(np.fft.fftn(white, axes=(1, 2, 3)) * np.exp(-k2 / 8.0), axes=(1, 2, 3)).real
    return (amp * f / f.std()).astype(np.float32)


def write_lr(path, n=N, box=BOX, z=Z, velocity=True, seed=1):
    """An LR displacement file; with `velocity` its `vel` is a non-linear-looking field of ~300 km/s."""
    disp = smooth(n, seed, 1.5)
    vel = smooth(n, seed + 100, 300.0) if velocity else None
    write_displacement(path, disp, box_size=box, redshift=z, cosmology=COSMO, source="test",
                       velocity=vel, velocity_convention="test field" if velocity else None)
    return path


def six_channel_generator(seed=0, noise_std=0.5, trained=True) -> Generator:
    """A narrow 3-rung 6-channel generator with noise on; `trained`: random output projections."""
    torch.manual_seed(seed)
    gen = Generator(widths=(6, 4, 4, 4), in_channels=6, out_channels=6)
    with torch.no_grad():
        for name, p in gen.named_parameters():
            if name.endswith("std"):
                p.fill_(noise_std)
            elif ".proj." in name and trained:
                p.normal_(0.0, 0.3)
    return gen.eval()


def meta6(z=Z) -> dict:
    s = Scaling.for_data(MODEL6, COSMO, z)
    return {"disp_scale": s.disp_scale, "scaling": s.to_dict(), "redshift": z}


def by_id(path):
    p = read_particles(path, ("Position", "ID", "Velocity"))
    order = np.argsort(p["ID"])
    return p["ID"][order], p["Position"][order], p["Velocity"][order]


# ----------------------------------------------------------------------------------- model and scaling


def test_untrained_six_channel_generator_is_the_upsampled_lr_in_all_channels():
    gen = six_channel_generator(trained=False)  # zero output projections, noise amplitudes 0.5
    x = torch.from_numpy(np.stack([np.pad(np.concatenate([smooth(6, 3, 1.0), smooth(6, 4, 1.0)]),
                                          ((0, 0),) + ((3, 3),) * 3, mode="wrap")]))
    with torch.no_grad():
        y = gen(x, torch.zeros(1, 3, dtype=torch.int64), 5, (6, 6, 6))
    assert y.shape == (1, 6, 48, 48, 48)
    torch.testing.assert_close(y, lr_to_hr(x, 8, 3), rtol=0, atol=1e-6)


@pytest.mark.parametrize("z", [0.0, 1.0, 2.0, 4.0])
def test_velocity_scaling_round_trips_and_matches_linear_theory(z, tmp_path):
    """Training divides the crops' velocities by vel_scale, generation divides its input and multiplies its
    output by the recorded scales: the two invert each other; a linear-theory velocity gets its
    displacement's normalised amplitude (O(1) at every z); the record survives the checkpoint meta."""
    s = Scaling.for_data(MODEL6, COSMO, z)
    a = 1.0 / (1.0 + z)
    cosmo = Cosmology.from_config(COSMO)
    psi = smooth(4, 9, 2.0)
    np.testing.assert_allclose(s.normalise_velocity(cosmo.linear_velocity(psi, a)), s.normalise(psi), rtol=1e-6)
    assert s.vel_scale == pytest.approx(s.disp_scale * 100 * a * cosmo.hubble(a) * cosmo.growth_rate_a(a), rel=1e-12)
    assert Scaling.from_meta({"scaling": s.to_dict()}) == s
    np.testing.assert_allclose(s.denormalise_velocity(s.normalise_velocity(psi)), psi, rtol=1e-6)
    # train side: the crop the dataset hands the networks
    write_lr(tmp_path / "lr.h5", n=4, z=z)
    hr_disp, hr_vel = smooth(16, 5, 1.0), smooth(16, 6, 300.0)
    write_displacement(tmp_path / "hr.h5", hr_disp, box_size=BOX, redshift=z, cosmology=COSMO, source="t",
                       velocity=hr_vel, velocity_convention="t")
    ds = CropDataset(open_pairs([(tmp_path / "lr.h5", tmp_path / "hr.h5")], scale=4, channels=6), 4, 1, 4,
                     s.disp_scale, 0, augment=False, vel_scale=s.vel_scale)
    sample = ds[0]
    # generate side: what a generator sees of the same LR window, and what comes back in physical units
    seen = []

    class Recorder(torch.nn.Module):
        scale, pad = 4, 1

        def forward(self, x, offset, seed, box):
            seen.append(x.clone())
            return lr_to_hr(x, 4, 1)

    with LRInput(tmp_path / "lr.h5", velocity=True) as src:
        window = src.window(sample["offset"] + 1, 4, 1)
    y = super_resolve(Recorder(), window[None], sample["offset"][None], 0, 4, s.channel_scales(), torch.device("cpu"))
    np.testing.assert_allclose(seen[0][0].numpy(), sample["lr"], rtol=1e-6, atol=1e-7)
    np.testing.assert_allclose(y[0].numpy(), lr_to_hr(torch.from_numpy(window[None]), 4, 1)[0].numpy(), rtol=1e-5,
                               atol=1e-4)


def test_three_channel_scaling_record_is_unchanged_and_old_records_read_as_three_channels():
    s3 = Scaling.for_data({"disp_scale": 6.0, "density": "log1p"}, COSMO, Z)
    assert set(s3.to_dict()) == {"disp_unit", "growth", "density", "redshift", "disp_scale"}
    assert Scaling.from_meta({"scaling": s3.to_dict()}) == s3 and s3.channels == 3 and s3.vel_scale is None
    with pytest.raises(SrsimError, match="channels 6 vs 3"):
        Scaling.for_data(MODEL6, COSMO, Z).check_matches(s3, "data")
    with pytest.raises(SrsimError, match="channels"):
        validate_sections({"model": {"channels": 4}}, "test")
    assert validate_sections({"model": {}}, "test")["model"]["channels"] == 3


# ----------------------------------------------------------------------------------- data


def test_oh_augmentation_maps_velocity_like_displacement(tmp_path):
    z = 0.5
    s = Scaling.for_data(MODEL6, COSMO, z)
    lr_path = write_lr(tmp_path / "lr.h5", n=4, z=z)
    hr_disp, hr_vel = smooth(8, 5, 1.0), smooth(8, 6, 300.0)
    write_displacement(tmp_path / "hr.h5", hr_disp, box_size=BOX, redshift=z, cosmology=COSMO, source="t",
                       velocity=hr_vel, velocity_convention="t")
    lr_disp, _ = read_displacement(lr_path)
    lr_vel = read_velocity_of(lr_path)
    ds = CropDataset(open_pairs([(lr_path, tmp_path / "hr.h5")], scale=2, channels=6), 2, 1, 2, s.disp_scale, 0,
                     vel_scale=s.vel_scale)
    seen = set()
    for epoch in range(3):
        ds.set_epoch(epoch)
        for i in range(len(ds)):
            g = ELEMENTS[int(ds.plan.element[i])]
            seen.add(int(ds.plan.element[i]))
            sample = ds[i]
            o = sample["offset"]
            assert sample["lr"].shape == (6, 4, 4, 4) and sample["hr"].shape == (6, 4, 4, 4)
            want_lr = np.concatenate([read_periodic(transform_field(lr_disp, g), o, 4) / s.disp_scale,
                                      read_periodic(transform_field(lr_vel, g), o, 4) / s.vel_scale])
            want_hr = np.concatenate([read_periodic(transform_field(hr_disp, g), 2 * (o + 1), 4) / s.disp_scale,
                                      read_periodic(transform_field(hr_vel, g), 2 * (o + 1), 4) / s.vel_scale])
            np.testing.assert_allclose(sample["lr"], want_lr, rtol=1e-6, atol=1e-7)
            np.testing.assert_allclose(sample["hr"], want_hr, rtol=1e-6, atol=1e-7)
    assert len(seen) > 5  # proper rotations and reflections were exercised


def read_velocity_of(path):
    from srsim.io.displacement import read_velocity

    return read_velocity(path)[0]


def test_six_channel_data_without_vel_fails_naming_the_file(tmp_path):
    lr = write_lr(tmp_path / "lr.h5", n=4, velocity=False)
    write_displacement(tmp_path / "hr.h5", smooth(8, 5, 1.0), box_size=BOX, redshift=Z, cosmology=COSMO, source="t")
    open_pairs([(lr, tmp_path / "hr.h5")], scale=2)  # three channels: fine
    with pytest.raises(SrsimError, match=rf"{lr}.*no 'vel' dataset"):
        open_pairs([(lr, tmp_path / "hr.h5")], scale=2, channels=6)


# ----------------------------------------------------------------------------------- generation


@pytest.fixture(scope="module")
def lr6(tmp_path_factory):
    return write_lr(tmp_path_factory.mktemp("lr6") / "lr.h5")


@pytest.fixture(scope="module")
def full6(lr6, tmp_path_factory):
    d = tmp_path_factory.mktemp("full6")
    res = generate((six_channel_generator(), meta6()), lr6, d / "sr",
                   GenerateSettings(seed=7, chunk=N, progress=False), disp_out=d / "sr.h5")
    assert res.complete and res.n_chunks == 1
    return d


@pytest.mark.parametrize("chunk,batch", [(3, 2), (4, 1)])  # 4 does not divide 6
def test_chunked_six_channel_sr_equals_whole_box_noise_included(lr6, full6, tmp_path, chunk, batch):
    res = generate((six_channel_generator(), meta6()), lr6, tmp_path / "sr",
                   GenerateSettings(seed=7, chunk=chunk, batch=batch, writers=3, progress=False))
    assert res.complete and res.n_chunks == 8
    ids, pos, vel = by_id(tmp_path / "sr")
    ids0, pos0, vel0 = by_id(full6 / "sr")
    assert np.array_equal(ids, ids0)
    d = np.mod(pos - pos0 + BOX / 2, BOX) - BOX / 2
    assert np.abs(d).max() < 1e-5 * BOX
    np.testing.assert_allclose(vel, vel0, rtol=0, atol=1e-5 * np.abs(vel0).max())
    assert np.abs(vel0).std() > 10.0  # real velocities, not zeros
    # another seed changes the small scales of the velocities too
    other = generate((six_channel_generator(), meta6()), lr6, tmp_path / "other",
                     GenerateSettings(seed=8, chunk=chunk, progress=False))
    assert other.complete and np.abs(by_id(tmp_path / "other")[2] - vel0).max() > 1e-3


def test_sr_snapshot_positions_and_velocities_are_the_generator_output_exactly(lr6, full6):
    """The stored f4 km/s velocities (ID order = SR grid order) are bit for bit the generator's velocity
    channels times vel_scale, and the stored positions are grid + the SR displacement file."""
    gen, m = six_channel_generator(), meta6()
    with LRInput(lr6, velocity=True) as src:
        window = src.window((0, 0, 0), N, 3)
    s = Scaling.from_meta(m)
    y = super_resolve(gen, window[None], np.array([[-3, -3, -3]]), 7, N, s.channel_scales(), torch.device("cpu"))[0]
    ids, pos, vel = by_id(full6 / "sr")
    n_hr = 8 * N
    assert np.array_equal(ids, np.arange(1, n_hr**3 + 1))
    want_vel = y[3:].numpy().reshape(3, -1).T
    assert vel.dtype == np.float32 and np.array_equal(vel, want_vel)
    disp, _ = read_displacement(full6 / "sr.h5")
    np.testing.assert_array_equal(disp, y[:3].numpy())  # (small displacements: no minimum-image wrap)
    q = np.stack(np.meshgrid(*(np.arange(n_hr) * (BOX / n_hr),) * 3, indexing="ij")).reshape(3, -1)
    want_pos = np.mod(disp.reshape(3, -1).astype(np.float64) + q, BOX).T
    np.testing.assert_allclose(pos, want_pos, rtol=0, atol=1e-9 * BOX)
    h = read_header(full6 / "sr")
    assert "1/Velocity = generated peculiar velocity in km/s" in str(h.attrs["SRNote"])
    assert h.velocity_factor == 1.0


def test_six_channel_model_refuses_lr_without_velocity_before_any_output(tmp_path):
    lr = write_lr(tmp_path / "lr.h5", velocity=False)
    out = tmp_path / "sr"
    with pytest.raises(SrsimError, match=rf"{lr}: no 'vel' dataset"):
        generate((six_channel_generator(), meta6()), lr, out, GenerateSettings(seed=1, chunk=3, progress=False))
    assert not out.exists() and not any(p.exists() for p in output_paths(out).values() if p != out)
    assert sorted(p.name for p in tmp_path.iterdir()) == ["lr.h5"]


def test_three_channel_model_refuses_lr_file_with_velocities_before_any_output(tmp_path):
    torch.manual_seed(0)
    gen3 = Generator(widths=(6, 4, 4, 4)).eval()
    with_vel, without = write_lr(tmp_path / "a.h5"), write_lr(tmp_path / "b.h5", velocity=False)
    out = tmp_path / "sa"
    with pytest.raises(SrsimError) as err:
        generate((gen3, {}), with_vel, out, GenerateSettings(seed=1, chunk=N, progress=False))
    msg = str(err.value)
    assert msg.startswith(f"{with_vel}: ") and "'vel'" in msg and "3-channel" in msg
    assert "without --velocity" in msg and "6-channel model" in msg
    assert not out.exists() and not any(p.exists() for p in output_paths(out).values() if p != out)
    assert sorted(p.name for p in tmp_path.iterdir()) == ["a.h5", "b.h5"]
    # the same field without 'vel': displacement only, no velocity block
    assert generate((gen3, {}), without, tmp_path / "sb", GenerateSettings(seed=1, chunk=N, progress=False)).complete
    assert not (tmp_path / "sb" / "1" / "Velocity").exists()
    # an SR snapshot (no 1/Velocity) as the LR input of a 6-channel model is refused naming the block
    with pytest.raises(SrsimError, match=r"no '1/Velocity' block"):
        LRInput(tmp_path / "sb", velocity=True)


def test_trivial_predictor_takes_lr_file_with_velocities_and_ignores_them(tmp_path):
    """The workflow's trivial baseline of a 6-channel run reads the LR file written with --velocity."""
    from srsim.generate import trivial_generator

    triv = trivial_generator({"gen_widths": [6, 4, 4, 4]})
    with_vel, without = write_lr(tmp_path / "a.h5"), write_lr(tmp_path / "b.h5", velocity=False)
    for lr, out in ((with_vel, tmp_path / "ta"), (without, tmp_path / "tb")):
        assert generate((triv, {}), lr, out, GenerateSettings(seed=0, chunk=N, progress=False)).complete
    pa, pb = (read_particles(p, ("Position", "ID")) for p in (tmp_path / "ta", tmp_path / "tb"))
    assert np.array_equal(pa["Position"], pb["Position"]) and np.array_equal(pa["ID"], pb["ID"])
    assert not (tmp_path / "ta" / "1" / "Velocity").exists()


def test_three_channel_model_uses_an_lr_snapshots_positions_despite_its_velocities(mpgadget_dir, tmp_path):
    """MP-Gadget snapshots always carry 1/Velocity: a 3-channel model takes them (positions only)."""
    from srsim.displacement import snapshot_to_displacement_file
    from srsim.generate import region_from_cells

    snap = mpgadget_dir / "n16" / "output" / "PART_001"
    snapshot_to_displacement_file(snap, tmp_path / "lr.h5")  # no --velocity: no 'vel'
    torch.manual_seed(0)
    gen3 = Generator(widths=(6, 4, 4, 4)).eval()
    region = region_from_cells((14, 0, 5), (17, 2, 7), 16)
    for name, src in (("a", snap), ("b", tmp_path / "lr.h5")):
        res = generate((gen3, {}), src, tmp_path / name,
                       GenerateSettings(seed=2, chunk=2, region=region, cosmology=COSMO, progress=False))
        assert res.complete and not (tmp_path / name / "1" / "Velocity").exists()
    for b in ("Position", "ID"):
        assert (tmp_path / "a" / "1" / b / "000000").read_bytes() == (tmp_path / "b" / "1" / b / "000000").read_bytes()


def test_interrupted_six_channel_run_resumes_to_identical_bytes(lr6, tmp_path):
    gen, m = six_channel_generator(), meta6()
    ref = generate((gen, m), lr6, tmp_path / "ref", GenerateSettings(seed=3, chunk=2, writers=1, progress=False))
    out = tmp_path / "sr"
    first = generate((gen, m), lr6, out, GenerateSettings(seed=3, chunk=2, max_chunks=10, writers=3, progress=False))
    assert ref.complete and not first.complete
    with open(output_paths(out)["partial"] / "1" / "Velocity" / "000000", "r+b") as f:
        f.seek(24)  # damage a journaled chunk's velocities only: the checksum must catch it
        f.write(b"\x00" * 12)
    second = generate((gen, m), lr6, out, GenerateSettings(seed=3, chunk=2, writers=2, progress=False))
    assert second.complete and second.skipped == 9
    for b in ("Position", "ID", "Velocity"):
        assert (out / "1" / b / "000000").read_bytes() == (tmp_path / "ref" / "1" / b / "000000").read_bytes()


# ----------------------------------------------------------------------------------- training, end to end


def tiny_pairs(tmp_path, n=8, scale=4, z=Z):
    """HR = -(LR interpolated), for displacement and velocity alike: a relation the generator can learn."""
    from srsim.model.layers import interp_up

    def _up_periodic(f, s):
        x = torch.from_numpy(np.pad(f, ((0, 0),) + ((0, 1),) * 3, mode="wrap"))[None]
        return interp_up(x, s)[0, :, :s * n, :s * n, :s * n].numpy()

    lr_d, lr_v = smooth(n, 1, 0.17), smooth(n, 2, 17.0)  # both ~0.8 network units at z = 2
    lr_p, hr_p = tmp_path / "lr.h5", tmp_path / "hr.h5"
    write_displacement(lr_p, lr_d, box_size=12.5, redshift=z, cosmology=COSMO, source="t", velocity=lr_v,
                       velocity_convention="t")
    write_displacement(hr_p, -_up_periodic(lr_d, scale), box_size=12.5, redshift=z, cosmology=COSMO, source="t",
                       velocity=-_up_periodic(lr_v, scale), velocity_convention="t")
    return [(str(lr_p), str(hr_p))]


def six_channel_trainer(tmp_path, **train):
    cfg = validate_sections({"model": {"crop": 4, "pad": 3, "gen_widths": [6, 6, 6],
                                       "critic_widths": [4, 4, 4], "disp_scale": 0.5, "channels": 6},
                             "train": {"device": "cpu", "lr": 1e-2, "betas": [0.9, 0.99], "checkpoint_every": 1000,
                                       **train}}, "test")
    s = Scaling.for_data(cfg["model"], COSMO, Z)
    pairs = open_pairs(tiny_pairs(tmp_path), scale=4, redshift=Z, channels=6)
    ds = CropDataset(pairs, 4, 3, 4, s.disp_scale, 0, vel_scale=s.vel_scale)
    return Trainer(cfg, ds, tmp_path / "m" / "model.pt", progress=False, scaling=s, meta={"redshift": Z}), ds


def test_supervised_six_channel_steps_reduce_l2_and_the_model_generates_velocities(tmp_path):
    tr, ds = six_channel_trainer(tmp_path, supervised_epochs=14, adversarial_epochs=0)
    assert tr.models.gen.in_channels == 6 and tr.models.critic.in_channels == 14
    losses = []
    tr.run(on_step=lambda t, row: losses.append(row["l2"]))
    assert len(losses) == 14 * 8
    assert np.mean(losses[-16:]) < 0.85 * np.mean(losses[:8])
    # per part: the velocity channels learned too
    batch = collate([ds[i] for i in range(len(ds))])
    with torch.no_grad():
        sr = tr.models.gen(batch["lr"], batch["offset"], list(range(len(ds))), [8, 8, 8])
    trivial = lr_to_hr(batch["lr"], 4, 3)
    for part in (slice(0, 3), slice(3, 6)):
        err = ((sr[:, part] - batch["hr"][:, part]) ** 2).mean()
        assert err < 0.8 * ((trivial[:, part] - batch["hr"][:, part]) ** 2).mean()
    tr.export()
    gen, meta = load_generator(tmp_path / "m" / "model.pt")
    assert Scaling.from_meta(meta) == tr.scaling and meta["scaling"]["channels"] == 6
    res = generate(tmp_path / "m" / "model.pt", ds.pairs[0].lr.path, tmp_path / "sr",
                   GenerateSettings(seed=1, chunk=4, progress=False))
    assert res.complete
    vel = read_particles(tmp_path / "sr", ("Velocity",))["Velocity"]
    assert vel.shape == (32**3, 3) and np.all(np.isfinite(vel)) and vel.std() > 10.0


def test_adversarial_six_channel_steps_run(tmp_path):
    tr, _ = six_channel_trainer(tmp_path, supervised_epochs=0, adversarial_epochs=1, max_steps=3, gp_every=2)
    rows = []
    tr.run(on_step=lambda t, row: rows.append(row))
    assert [r["phase"] for r in rows] == ["adversarial"] * 3
    assert all(np.isfinite(r["critic"]) and np.isfinite(r["generator"]) for r in rows)
    assert np.isfinite(rows[0]["gp"])  # the gradient penalty through the 14-channel critic
    three = type("ThreeChannelValidator", (), {"channels": 3})()
    with pytest.raises(SrsimError, match="validation pairs have 3 channels, the model 6"):
        Trainer({"model": tr.model_cfg, "train": tr.train_cfg}, tr.dataset,
                tmp_path / "v" / "model.pt", progress=False, scaling=tr.scaling, validator=three)


def test_cli_trains_a_six_channel_model_and_generates_a_snapshot_with_velocities(tmp_path, capfd):
    import json

    from srsim.cli import main

    (lr, hr), = tiny_pairs(tmp_path)
    cfg = {"model": {"crop": 4, "pad": 3, "gen_widths": [6, 6, 6], "critic_widths": [4, 4, 4], "disp_scale": 0.5,
                     "channels": 6},
           "train": {"supervised_epochs": 1, "adversarial_epochs": 1, "max_steps": 10, "device": "cpu"}}
    out = tmp_path / "m" / "model.pt"
    base = ["train", "--data", f"{lr}:{hr}", "--redshift", str(Z), "--config", json.dumps(cfg), "--no-progress"]
    assert main(base + ["--out", str(out)]) == 0
    gen, meta = load_generator(out)
    assert gen.in_channels == 6 and meta["scaling"]["channels"] == 6 and meta["step"] == 10
    assert meta["scaling"]["vel_scale"] == pytest.approx(Scaling.for_data(MODEL6, COSMO, Z).vel_scale / 12)  # 0.5 / 6
    # validation of a six-channel run: the displacement scores plus the velocity's L2 against the trivial one
    val = tmp_path / "v" / "val.csv"
    assert main(base + ["--out", str(tmp_path / "v" / "model.pt"), "--val", f"{lr}:{hr}", "--val-csv", str(val)]) == 0
    with open(val) as f:
        rows = list(csv.DictReader(f))
    assert [int(r["step"]) for r in rows][0] == 0 and int(rows[-1]["step"]) == 10
    # step 0 is init: the untrained generator is the trivial predictor in both parts
    assert float(rows[0]["l2_ratio"]) == pytest.approx(1.0, abs=1e-5)
    assert float(rows[0]["l2v_ratio"]) == pytest.approx(1.0, abs=1e-5)
    assert all(np.isfinite(float(r["l2v_ratio"])) and float(r["l2v_trivial"]) > 0 for r in rows)
    # a validation file without velocities: refused up front, naming it
    bare_hr = tmp_path / "bare_hr.h5"
    write_displacement(bare_hr, read_displacement(hr)[0], box_size=12.5, redshift=Z, cosmology=COSMO, source="t")
    assert main(base + ["--out", str(tmp_path / "w" / "model.pt"), "--val", f"{lr}:{bare_hr}"]) == 2
    assert f"{bare_hr}: no 'vel' dataset" in capfd.readouterr().err and not (tmp_path / "w").exists()
    assert main(["generate", "--model", str(out), "--lr", lr, "--out", str(tmp_path / "sr"), "--chunk", "4",
                 "--quiet"]) == 0
    p = read_particles(tmp_path / "sr", ("ID", "Velocity"))
    assert p["Velocity"].shape == (32**3, 3) and np.all(np.isfinite(p["Velocity"]))
    # an LR file without velocities: refused, naming it, before any output
    bare = write_lr(tmp_path / "bare.h5", n=8, box=12.5, velocity=False)
    assert main(["generate", "--model", str(out), "--lr", str(bare), "--out", str(tmp_path / "sr2"), "--quiet"]) == 2
    assert f"{bare}: no 'vel' dataset" in capfd.readouterr().err
    assert not any(q.name.startswith((".sr2", "sr2")) for q in tmp_path.iterdir())
    # the reverse: a 3-channel model given the LR file with velocities, refused before any output
    cfg3 = {**cfg, "model": {**cfg["model"], "channels": 3}}
    out3 = tmp_path / "m3" / "model.pt"
    lr3 = tmp_path / "lr3.h5"
    write_displacement(lr3, read_displacement(lr)[0], box_size=12.5, redshift=Z, cosmology=COSMO, source="t")
    assert main(["train", "--data", f"{lr3}:{bare_hr}", "--redshift", str(Z), "--config", json.dumps(cfg3),
                 "--no-progress", "--out", str(out3)]) == 0
    capfd.readouterr()
    assert main(["generate", "--model", str(out3), "--lr", lr, "--out", str(tmp_path / "sr3"), "--quiet"]) == 2
    err = capfd.readouterr().err
    assert f"{lr}: the LR displacement file has velocities" in err and "3-channel" in err, err
    assert not any(q.name.startswith((".sr3", "sr3")) for q in tmp_path.iterdir())


def test_lr_snapshot_input_with_velocities_equals_its_displacement_file(mpgadget_dir, tmp_path):
    """A real MP-Gadget LR snapshot (16^3, z = 2, UsePeculiarVelocity = 0 storage) as a 6-channel model's
    input, directly or through `srsim displacement --velocity`: the same bytes, velocities included."""
    from srsim.displacement import snapshot_to_displacement_file
    from srsim.generate import region_from_cells

    snap = mpgadget_dir / "n16" / "output" / "PART_001"
    snapshot_to_displacement_file(snap, tmp_path / "lr.h5", velocity=True)
    region = region_from_cells((14, 0, 5), (17, 2, 7), 16)  # wraps on x
    meta = dict(meta6(), box_size=100.0, n_lr=16)
    for name, src in (("a", snap), ("b", tmp_path / "lr.h5")):
        res = generate((six_channel_generator(), meta), src, tmp_path / name,  # sigma8, n_s: not in the header
                       GenerateSettings(seed=2, chunk=2, region=region, cosmology=COSMO, progress=False))
        assert res.complete
    for b in ("Position", "ID", "Velocity"):
        assert (tmp_path / "a" / "1" / b / "000000").read_bytes() == (tmp_path / "b" / "1" / b / "000000").read_bytes()
    v = read_particles(tmp_path / "a", ("Velocity",))["Velocity"]
    assert 10.0 < v.std() < 2000.0  # km/s of a z = 2 box, through the network's velocity scale and back


def test_split_six_channel_jobs_then_merge_equal_single_run(lr6, tmp_path):
    from srsim.generate import finalize

    gen, m = six_channel_generator(), meta6()
    assert generate((gen, m), lr6, tmp_path / "one", GenerateSettings(seed=4, chunk=3, progress=False)).complete
    out = tmp_path / "split"
    for job in range(2):
        res = generate((gen, m), lr6, out, GenerateSettings(seed=4, chunk=3, job=job, jobs=2, progress=False))
        assert not res.path.exists()
    finalize(out, 2, verify=True, progress=False)
    for b in ("Position", "ID", "Velocity"):
        assert (out / "1" / b / "000000").read_bytes() == (tmp_path / "one" / "1" / b / "000000").read_bytes()
