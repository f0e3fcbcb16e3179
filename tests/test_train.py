"""Training data, the training loop, checkpoints, exact resume, preemption, NaN handling, DDP, the CLI."""

import copy
import json
import os
import signal
import socket

import numpy as np
import pytest
import torch

from srsim.config import validate_sections
from srsim.data import CropDataset, EpochPlan, open_pairs, parse_data_arg, rank_indices
from srsim.errors import SrsimError
from srsim.io.displacement import write_displacement
from srsim.model import load_generator
from srsim.model.layers import interp_up, lr_to_hr
from srsim.data import collate
from srsim.model.scaling import Scaling
from srsim.train import Trainer, TrainingPreempted, install_signal_handlers
from srsim.train_guard import ExplosionGuard, LossExploded, NonFiniteLoss

torch.set_num_threads(1)
BOX = 12.5
COSMO = {"Omega_m": 0.2814, "Omega_b": 0.0464, "Omega_L": 0.7186, "h": 0.697, "sigma8": 0.82, "n_s": 0.971}


def _smooth(n, seed, amp=0.4):
    rng = np.random.default_rng(seed)
    w = rng.standard_normal((3, n, n, n))
    k = np.fft.fftfreq(n) * n
    kk = np.sqrt(k[:, None, None] ** 2 + k[None, :, None] ** 2 + k[None, None, :] ** 2)
    f = np.fft.ifftn(np.fft.fftn(w, axes=(1, 2, 3)) * np.exp(-(kk / 2.5) ** 2), axes=(1, 2, 3)).real
    return (amp * f / f.std()).astype(np.float32)


def _up_periodic(lr, s):
    n = lr.shape[1]
    x = torch.from_numpy(np.pad(lr, ((0, 0),) + ((0, 1),) * 3, mode="wrap"))[None]
    return interp_up(x, s)[0, :, :s * n, :s * n, :s * n].numpy()


def make_pairs(tmp_path, n_pairs=1, n=8, scale=4, redshift=0.0):
    """Synthetic pairs with a learnable relation: HR = -(LR interpolated to the HR lattice)."""
    specs = []
    for i in range(n_pairs):
        lr = _smooth(n, i)
        hr = -_up_periodic(lr, scale)
        lp, hp = tmp_path / f"lr{i}.h5", tmp_path / f"hr{i}.h5"
        write_displacement(lp, lr, box_size=BOX, redshift=redshift, cosmology=COSMO, source="synthetic")
        write_displacement(hp, hr, box_size=BOX, redshift=redshift, cosmology=COSMO, source="synthetic")
        specs.append((str(lp), str(hp)))
    return specs


def tiny_config(**train):
    cfg = {"model": {"crop": 4, "pad": 3, "gen_widths": [6, 6, 6], "critic_widths": [4, 4, 4], "disp_scale": 0.5},
           "train": {"supervised_epochs": 1, "adversarial_epochs": 1, "checkpoint_every": 3, "gp_every": 2,
                     "lr": 1e-3, "device": "cpu", **train}}
    return validate_sections(cfg, "test")


def make_dataset(specs, cfg, **kw):
    pairs = open_pairs(specs, scale=4, redshift=0.0)
    return CropDataset(pairs, cfg["model"]["crop"], 3, 4, cfg["model"]["disp_scale"], cfg["train"]["seed"], **kw)


# ------------------------------------------------------------------------------------------------ data

def test_epoch_visits_every_crop_position_with_aligned_augmented_crops(tmp_path):
    specs = make_pairs(tmp_path, n_pairs=2, n=8)
    cfg = tiny_config()
    ds = make_dataset(specs, cfg)
    assert len(ds) == 2 * 2 ** 3
    for epoch in (0, 1):
        ds.set_epoch(epoch)
        plan = ds.plan
        seen = set()
        for p, s in zip(plan.pair, plan.start):
            seen.add((int(p),) + tuple(int(v) for v in (s - s % 4)))
        assert seen == {(p, i, j, k) for p in range(2) for i in (0, 4) for j in (0, 4) for k in (0, 4)}
        assert len(set(plan.element.tolist())) > 4  # random O_h elements
        for i in range(len(ds)):
            smp = ds[i]
            assert smp["lr"].shape == (3, 10, 10, 10) and smp["hr"].shape == (3, 16, 16, 16)
            # HR crop = -(LR crop interpolated): alignment holds through crop, padding and augmentation
            got = lr_to_hr(torch.from_numpy(smp["lr"])[None], 4, 3)[0].numpy()
            np.testing.assert_allclose(got, -smp["hr"], atol=1e-5)
    # plans are reproducible and differ between epochs
    a, b = EpochPlan(2, 8, 4, 0, 3), EpochPlan(2, 8, 4, 0, 3)
    assert np.array_equal(a.start, b.start) and np.array_equal(a.element, b.element)
    assert not np.array_equal(a.element, EpochPlan(2, 8, 4, 0, 4).element)


def test_rank_indices_partition_global_batches():
    full = rank_indices(17, 2, 0, 1)
    r0, r1 = rank_indices(17, 1, 0, 2), rank_indices(17, 1, 1, 2)
    assert full == list(range(16))
    assert sorted(r0 + r1) == list(range(16)) and r0[:2] == [0, 2] and r1[:2] == [1, 3]
    assert rank_indices(17, 2, 0, 1, start_batch=5) == list(range(10, 16))


def test_bad_data_fails_loudly(tmp_path):
    specs = make_pairs(tmp_path, n=8)
    with pytest.raises(SrsimError, match="redshift"):
        open_pairs(specs, scale=4, redshift=2.0)
    with pytest.raises(SrsimError, match="not 8 x"):
        open_pairs(specs, scale=8)
    with pytest.raises(SrsimError, match="LR.h5:HR.h5"):
        parse_data_arg(["only_one.h5"])
    with pytest.raises(SrsimError, match="not found"):
        open_pairs([(str(tmp_path / "nope.h5"), specs[0][1])], scale=4)


# ------------------------------------------------------------------------------------------------ training

def _l2_vs_trivial(gen, dataset) -> float:
    """Sum over a dataset's crops of L2(SR, HR) / the same for the trivial predictor (upsampled LR)."""
    num = den = 0.0
    gen.eval()
    with torch.no_grad():
        for i in range(len(dataset)):
            b = collate([dataset[i]])
            sr = gen(b["lr"], b["offset"], 0, b["box"][0].tolist())
            num += float(((sr - b["hr"]) ** 2).mean())
            den += float(((lr_to_hr(b["lr"], gen.scale, gen.pad) - b["hr"]) ** 2).mean())
    return num / den


def test_supervised_phase_beats_the_trivial_predictor_on_held_out_crops(tmp_path):
    """Training starts at the trivial predictor (ratio 1) and the L2 phase moves below it on a pair it
    never saw, so it learned the relation, not the training crops."""
    specs = make_pairs(tmp_path, n_pairs=2, n=8)
    # momentum (beta1 = 0.9 instead of the paper's 0) for a short, smooth test run
    cfg = tiny_config(supervised_epochs=14, adversarial_epochs=0, lr=1e-2, betas=[0.9, 0.99], checkpoint_every=1000)
    tr = Trainer(cfg, make_dataset(specs[:1], cfg), tmp_path / "m" / "model.pt", progress=False)
    held_out = make_dataset(specs[1:], cfg)
    assert _l2_vs_trivial(tr.models.gen, held_out) == pytest.approx(1.0, abs=1e-5)
    losses = []
    tr.run(on_step=lambda t, row: losses.append(row["l2"]))
    assert len(losses) == 14 * 8
    assert np.mean(losses[-16:]) < 0.7 * np.mean(losses[:8])
    assert _l2_vs_trivial(tr.models.gen, held_out) < 0.6


@pytest.mark.slow
def test_short_adversarial_phase_raises_small_scale_power_toward_hr(tmp_path, mpgadget_dir):
    """On a small real problem, the MP-Gadget 16^3 / 32^3 pair of one seed at z = 0 (100 Mpc/h, SR x2), a
    short WGAN-gp phase from the trivial predictor moves P_SR / P_HR between the LR and HR particle Nyquist
    wavenumbers (0.50-1.01 h/Mpc) up toward 1, while the L2 anchor (train.adv_l2_weight) keeps the
    displacements near the trivial predictor's accuracy."""
    from srsim.displacement import snapshot_to_displacement_file
    from srsim.io.displacement import read_displacement
    from srsim.validation import Validator

    spec = []
    for n in (16, 32):
        spec.append(str(snapshot_to_displacement_file(mpgadget_dir / f"n{n}" / "output" / "PART_002",
                                                     tmp_path / f"n{n}.h5")))
    (lr, a), (hr, _) = read_displacement(spec[0]), read_displacement(spec[1])
    assert a["redshift"] == pytest.approx(0.0, abs=1e-6) and lr.shape[1] == 16 and hr.shape[1] == 32
    cfg = validate_sections({"model": {"crop": 4, "pad": 2, "gen_widths": [16, 16], "critic_widths": [8, 16]},
                             "train": {"supervised_epochs": 0, "adversarial_epochs": 100, "max_steps": 300,
                                       "lr": 1e-4, "gp_every": 4, "adv_l2_weight": 10.0,
                                       "checkpoint_every": 1000, "device": "cpu"}}, "test")
    disp_scale = cfg["model"]["disp_scale"]  # at z = 0, D = 1: the network unit is disp_scale Mpc/h
    ds = CropDataset(open_pairs([tuple(spec)], scale=2, redshift=0.0), 4, 2, 2, disp_scale, 0)
    val = Validator([(lr, hr)], a["box_size"], disp_scale, tmp_path / "val.csv", verbose=False)
    assert val.n_bands == 1 and val.edges[0] == pytest.approx(np.pi * 16 / 100)

    tr = Trainer(cfg, ds, tmp_path / "m" / "model.pt", progress=False)

    def scores():
        tr.models.gen.eval()
        with torch.no_grad():
            return val.evaluate(tr.models.gen)

    before = scores()
    assert before["l2_ratio"] == pytest.approx(1.0, abs=1e-6)  # the trivial predictor
    assert before["band0_sr_hr"] < 0.6  # interpolated LR lacks the power between the two Nyquist scales
    tr.run()
    after = scores()
    assert after["band0_sr_hr"] > before["band0_sr_hr"] + 0.02, (before, after)
    assert abs(after["band0_sr_hr"] - 1) < abs(before["band0_sr_hr"] - 1)
    assert after["l2_ratio"] < 1.3, after


def _weights(tr):
    return {**{"g." + k: v for k, v in tr.models.gen.state_dict().items()},
            **{"c." + k: v for k, v in tr.models.critic.state_dict().items()}}


def _opt_tensors(opt):
    return [t for s in opt.state_dict()["state"].values() for t in s.values() if torch.is_tensor(t)]


def test_kill_resume_equals_uninterrupted(tmp_path):
    specs = make_pairs(tmp_path, n=8)
    cfg = tiny_config(max_steps=13)
    ds = make_dataset(specs, cfg)
    # uninterrupted: 8 supervised steps, then adversarial with the penalty every 2nd critic step
    ref = Trainer(copy.deepcopy(cfg), ds, tmp_path / "a" / "model.pt", progress=False)
    ref.run()
    assert ref.state.step == 13 and ref.state.adv_steps == 5

    # interrupted by SIGUSR1 during step 10, then resumed in a fresh trainer
    out = tmp_path / "b" / "model.pt"
    tr = Trainer(copy.deepcopy(cfg), make_dataset(specs, cfg), out, progress=False)
    old = {s: signal.getsignal(s) for s in (signal.SIGUSR1, signal.SIGTERM)}
    try:
        install_signal_handlers(tr)

        def kill(t, row):
            if row["step"] == 10:
                os.kill(os.getpid(), signal.SIGUSR1)

        with pytest.raises(TrainingPreempted, match="resume"):
            tr.run(on_step=kill)
    finally:
        for s, h in old.items():
            signal.signal(s, h)
    assert tr.state.step == 10
    tr2 = Trainer(copy.deepcopy(cfg), make_dataset(specs, cfg), out, progress=False)
    tr2.run(resume=True)
    assert tr2.state.step == 13
    wa, wb = _weights(ref), _weights(tr2)
    assert wa.keys() == wb.keys()
    for k in wa:
        assert torch.equal(wa[k], wb[k]), k
    for oa, ob in ((ref.models.opt_g, tr2.models.opt_g), (ref.models.opt_c, tr2.models.opt_c)):
        for ta, tb in zip(_opt_tensors(oa), _opt_tensors(ob)):
            assert torch.equal(ta, tb)
    # the loss log was continued, not duplicated
    rows_a, rows_b = ref.log.read(), tr2.log.read()
    assert [r["step"] for r in rows_b] == [str(i) for i in range(1, 14)]
    for ra, rb in zip(rows_a, rows_b):
        assert {k: v for k, v in ra.items() if k != "wall_s"} == {k: v for k, v in rb.items() if k != "wall_s"}


def test_resume_refuses_changed_hyperparameters(tmp_path):
    specs = make_pairs(tmp_path, n=8)
    cfg = tiny_config(max_steps=2)
    out = tmp_path / "m" / "model.pt"
    Trainer(cfg, make_dataset(specs, cfg), out, progress=False).run()
    cfg2 = tiny_config(max_steps=4, lr=5e-4)
    with pytest.raises(SrsimError, match="train.lr"):
        Trainer(cfg2, make_dataset(specs, cfg2), out, progress=False).run(resume=True)


def test_critic_lr_and_critic_steps(tmp_path):
    """train.critic_lr sets the critic's Adam rate alone; train.critic_steps updates the critic that many times
    per generator update (the generator's weights then match a run whose critic differs only in how it moved)."""
    specs = make_pairs(tmp_path, n=8)
    base = dict(supervised_epochs=0, max_steps=2, gp_every=1)
    cfg = tiny_config(**base, critic_lr=3e-3)
    tr = Trainer(cfg, make_dataset(specs, cfg), tmp_path / "a" / "model.pt", progress=False)
    assert tr.models.opt_c.param_groups[0]["lr"] == 3e-3 and tr.models.opt_g.param_groups[0]["lr"] == 1e-3
    runs = {}
    for n in (1, 3):
        cfg = tiny_config(**base, critic_steps=n)
        t = Trainer(cfg, make_dataset(specs, cfg), tmp_path / f"s{n}" / "model.pt", progress=False)
        t.run()
        runs[n] = t
    # Adam took 3 critic steps per generator step: its step counter says so, the generator's does not
    c1 = runs[1].models.opt_c.state_dict()["state"][0]["step"]
    c3 = runs[3].models.opt_c.state_dict()["state"][0]["step"]
    g3 = runs[3].models.opt_g.state_dict()["state"][0]["step"]
    assert float(c1) == 2 and float(c3) == 6 and float(g3) == 2
    w1, w3 = _weights(runs[1]), _weights(runs[3])
    assert any(not torch.equal(w1[k], w3[k]) for k in w1 if k.startswith("c."))
    # a run with critic_steps changed cannot resume the checkpoint
    cfg = tiny_config(**dict(base, max_steps=3), critic_steps=2)
    with pytest.raises(SrsimError, match="train.critic_steps"):
        Trainer(cfg, make_dataset(specs, cfg), tmp_path / "s3" / "model.pt", progress=False).run(resume=True)


def test_noise_lr_gives_the_noise_amplitudes_their_own_rate(tmp_path):
    """train.noise_lr: the noise amplitudes form their own Adam group at that rate. Adam moves a parameter by
    about its lr per step, so in two adversarial steps from zero (the first moves only the zero-initialised
    output projections, behind which the amplitudes get no gradient) each amplitude moves by about noise_lr,
    the other weights by about lr."""
    specs = make_pairs(tmp_path, n=8)
    cfg = tiny_config(supervised_epochs=0, max_steps=2, noise_lr=0.05)
    tr = Trainer(cfg, make_dataset(specs, cfg), tmp_path / "n" / "model.pt", progress=False)
    groups = tr.models.opt_g.param_groups
    assert [g["lr"] for g in groups] == [1e-3, 0.05]
    names = [n for n, _ in tr.models.gen.named_parameters() if n.endswith("std")]
    assert len(groups[1]["params"]) == len(names) == 2 * len(tr.models.gen.rungs)
    before = {k: v.clone() for k, v in tr.models.gen.state_dict().items()}
    tr.run()
    after = tr.models.gen.state_dict()
    moved = {k: float((after[k] - before[k]).abs().max()) for k in before}
    assert all(0.02 < moved[k] < 0.2 for k in names), {k: moved[k] for k in names}
    assert max(v for k, v in moved.items() if k not in names) < 4e-3
    # the default keeps one group at train.lr
    cfg = tiny_config(supervised_epochs=0, max_steps=1)
    tr = Trainer(cfg, make_dataset(specs, cfg), tmp_path / "d" / "model.pt", progress=False)
    assert [g["lr"] for g in tr.models.opt_g.param_groups] == [1e-3]


class _PoisonedDataset(CropDataset):
    def __getitem__(self, i):
        s = super().__getitem__(i)
        if self.epoch == 0 and i == 4:
            s["hr"] = s["hr"] * np.float32("nan")
        return s


def test_nan_loss_stops_and_keeps_last_good_checkpoint(tmp_path):
    specs = make_pairs(tmp_path, n=8)
    cfg = tiny_config(checkpoint_every=2)
    pairs = open_pairs(specs, scale=4, redshift=0.0)
    ds = _PoisonedDataset(pairs, 4, 3, 4, 0.5, 0, augment=False)
    ds.set_epoch(0)
    ds.plan.start[:] = ds.plan.start[0]  # irrelevant which crop: sample 4 of epoch 0 is poisoned
    tr = Trainer(cfg, ds, tmp_path / "m" / "model.pt", progress=False)
    with pytest.raises(NonFiniteLoss, match=r"step 5 \(supervised\).*HR displacement holds NaN"):
        tr.run()
    ckpt = torch.load(tr.last_path, weights_only=False)
    assert ckpt["state"]["step"] == 4  # written after step 4; the NaN came at step 5 and was not saved
    for v in ckpt["generator"]["state_dict"].values():
        assert torch.isfinite(v).all()


class _ExplodingDataset(CropDataset):
    def __getitem__(self, i):
        s = super().__getitem__(i)
        if self.epoch == 1 and i == 2:
            s["hr"] = s["hr"] * np.float32(1e4)  # finite, but the loss jumps by ~1e8
        return s


def test_exploding_loss_stops_naming_step_and_phase_and_keeps_last_good_checkpoint(tmp_path):
    specs = make_pairs(tmp_path, n=8)
    cfg = tiny_config(supervised_epochs=3, adversarial_epochs=0, checkpoint_every=4)
    pairs = open_pairs(specs, scale=4, redshift=0.0)
    tr = Trainer(cfg, _ExplodingDataset(pairs, 4, 3, 4, 0.5, 0), tmp_path / "m" / "model.pt", progress=False)
    tr.guard = ExplosionGuard(cfg["train"]["explode"], window=16)  # judge after 4 steps, not 50
    with pytest.raises(LossExploded, match=r"step 11 \(supervised\): l2 loss .* x its median"):
        tr.run()
    assert torch.load(tr.last_path, weights_only=False)["state"]["step"] == 8  # epoch 1 began at step 8


def test_explosion_guard_ignores_noise_and_can_be_switched_off():
    rng = np.random.default_rng(0)
    guard = ExplosionGuard(1000.0, window=40)
    for step in range(200):  # a WGAN loss wandering about zero, with outliers 100x its median
        guard.check({"critic": float(rng.normal(0, 0.01)) * (100 if step % 37 == 0 else 1)}, step, "adversarial")
    with pytest.raises(LossExploded, match="critic"):
        guard.check({"critic": 1e3}, 201, "adversarial")
    off = ExplosionGuard(0.0)
    for step in range(100):
        off.check({"l2": 10.0 ** step}, step, "supervised")



def test_explosion_guard_compares_gradient_penalty_steps_with_their_own_kind(tmp_path):
    """A fresh critic's loss is ~1e-3 but ~gp_lambda x gp_every (~40-160) on the steps carrying the lazy
    gradient penalty: a real paper-sized run reached its first penalised step after 50 steps of history and
    was stopped as 'exploded'. Penalised steps are judged against penalised steps only."""
    rng = np.random.default_rng(1)
    guard = ExplosionGuard(1000.0, window=40)
    for step in range(400):
        penalty = step % 4 == 0
        loss = 40.0 + rng.normal(0, 1) if penalty else float(rng.normal(0, 1e-3))
        guard.check({"critic": loss}, step, "adversarial", "gp" if penalty else "")
    with pytest.raises(LossExploded, match="critic"):
        guard.check({"critic": 1e6}, 401, "adversarial", "gp")

    # the same through the trainer: a fresh critic and the penalty on every 2nd step, judged after 4 steps
    specs = make_pairs(tmp_path, n=8)
    cfg = tiny_config(supervised_epochs=0, adversarial_epochs=3, gp_every=2, checkpoint_every=1000)
    tr = Trainer(cfg, make_dataset(specs, cfg), tmp_path / "m" / "model.pt", progress=False)
    tr.guard = ExplosionGuard(cfg["train"]["explode"], window=16)
    rows = []
    tr.run(on_step=lambda t, row: rows.append(row))
    assert len(rows) == 3 * 8
    gp_steps = [r["critic"] for r in rows if np.isfinite(r["gp"])]
    plain = [r["critic"] for r in rows if not np.isfinite(r["gp"])]
    assert np.median(np.abs(gp_steps)) > 100 * max(np.median(np.abs(plain)), ExplosionGuard.FLOOR)

def test_checkpoint_records_scaling_and_init_from_fine_tunes(tmp_path):
    specs = make_pairs(tmp_path, n=8, redshift=2.0)
    cfg = tiny_config(max_steps=3)
    scaling = Scaling.for_data(cfg["model"], COSMO, 2.0)
    assert scaling.disp_scale == pytest.approx(0.5 * 0.42719, rel=1e-4)  # disp_scale x D(z = 2), WMAP9
    pairs = open_pairs(specs, scale=4, redshift=2.0)
    ds = CropDataset(pairs, 4, 3, 4, scaling.disp_scale, 0)
    first = tmp_path / "a" / "model.pt"
    tr = Trainer(cfg, ds, first, progress=False, scaling=scaling)
    tr.run()
    tr.export()
    gen, meta = load_generator(first)
    assert Scaling.from_meta(meta) == scaling
    # a second run starts from the first's weights (fresh optimiser), and records where they came from
    cfg2 = tiny_config(max_steps=1, init_from=str(first))
    tr2 = Trainer(cfg2, ds, tmp_path / "b" / "model.pt", progress=False, scaling=scaling, init_from=first)
    tr2.initialise()
    for k, v in tr2.models.gen.state_dict().items():
        torch.testing.assert_close(v, gen.state_dict()[k], rtol=0, atol=0)
    assert tr2.meta["init_from"]["step"] == 3
    # preempted and resumed, the fine-tuned model still says where its weights came from
    tr2.save()
    tr2b = Trainer(cfg2, ds, tmp_path / "b" / "model.pt", progress=False, scaling=scaling, init_from=first)
    tr2b.run(resume=True)
    tr2b.export()
    assert load_generator(tmp_path / "b" / "model.pt")[1]["init_from"] == tr2.meta["init_from"]
    # other data (z = 0: another growth factor) is refused, with both values named
    other = Scaling.for_data(cfg["model"], COSMO, 0.0)
    ds0 = CropDataset(pairs, 4, 3, 4, other.disp_scale, 0)
    tr3 = Trainer(cfg2, ds0, tmp_path / "c" / "model.pt", progress=False, scaling=other, init_from=first)
    with pytest.raises(SrsimError, match=r"growth D\(z\) 0.42719 vs 1 \(z = 2 vs 0\)"):
        tr3.initialise()
    # and so is another architecture
    cfg4 = tiny_config(max_steps=1)
    cfg4["model"]["gen_widths"] = [6, 5, 6]
    tr4 = Trainer(cfg4, ds, tmp_path / "d" / "model.pt", progress=False, scaling=scaling, init_from=first)
    with pytest.raises(SrsimError, match="its generator has"):
        tr4.initialise()


# ------------------------------------------------------------------------------------------------ DDP

def _ddp_worker(rank, world, port, specs, cfg, out, result):
    os.environ.update(MASTER_ADDR="127.0.0.1", MASTER_PORT=str(port), WORLD_SIZE=str(world), RANK=str(rank),
                      LOCAL_RANK=str(rank))
    torch.set_num_threads(1)
    from srsim.distributed import init_distributed

    ctx = init_distributed("cpu")
    tr = Trainer(cfg, make_dataset(specs, cfg), out, ctx=ctx, progress=False)
    tr.run()
    torch.save(tr.models.gen.state_dict(), result)
    torch.distributed.destroy_process_group()


def test_data_parallel_two_processes_match_one_process_with_twice_the_batch(tmp_path):
    specs = make_pairs(tmp_path, n=8)
    cfg = tiny_config(supervised_epochs=1, adversarial_epochs=0, batch_size=1, max_steps=3)
    cfg["model"]["noise"] = False  # per-rank noise seeds differ from one process by design
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    ctx = torch.multiprocessing.get_context("spawn")
    files = [tmp_path / f"rank{r}.pt" for r in range(2)]
    procs = [ctx.Process(target=_ddp_worker, args=(r, 2, port, specs, cfg, str(tmp_path / "ddp" / "model.pt"),
                                                   str(files[r]))) for r in range(2)]
    for p in procs:
        p.start()
    for p in procs:
        p.join(120)
        assert p.exitcode == 0
    results = [torch.load(f) for f in files]
    cfg1 = copy.deepcopy(cfg)
    cfg1["train"]["batch_size"] = 2
    single = Trainer(cfg1, make_dataset(specs, cfg1), tmp_path / "one" / "model.pt", progress=False)
    single.run()
    for k, v in single.models.gen.state_dict().items():
        assert torch.equal(results[0][k], results[1][k]), k  # ranks stay in sync
        torch.testing.assert_close(results[0][k], v, rtol=1e-5, atol=1e-6)


# ------------------------------------------------------------------------------------------------ CLI

def test_cli_train_writes_model_log_and_plot(tmp_path):
    from srsim.cli import main

    specs = make_pairs(tmp_path, n=8)
    cfg = tiny_config(max_steps=10)
    out = tmp_path / "models" / "z0" / "model.pt"
    args = ["train", "--data", *[f"{a}:{b}" for a, b in specs], "--redshift", "0", "--config", json.dumps(cfg),
            "--out", str(out), "--resume", "--no-progress"]
    assert main(args) == 0
    gen, meta = load_generator(out)
    assert (meta["scale"], meta["pad"], meta["step"], meta["redshift"], meta["n_lr"], meta["n_hr"]) == (4, 3, 10, 0.0, 8, 32)
    assert meta["disp_scale"] == 0.5 and meta["box_size"] == BOX and meta["finished"]  # D(0) = 1
    assert meta["scaling"] == {"disp_unit": 0.5, "growth": 1.0, "density": "log1p", "redshift": 0.0, "disp_scale": 0.5}
    rows = (out.parent / "losses.csv").read_text().splitlines()
    assert rows[0].startswith("step,epoch,phase") and len(rows) == 11
    assert (out.parent / "curve.png").stat().st_size > 1000
    assert (out.parent / "checkpoints" / "last.pt").is_file()
    # a finished run resumed does no more steps
    assert main(args) == 0
    assert load_generator(out)[1]["step"] == 10
    assert main(["train", "--data", f"{specs[0][0]}:{specs[0][1]}", "--redshift", "2", "--config", json.dumps(cfg),
                 "--out", str(out)]) == 2
