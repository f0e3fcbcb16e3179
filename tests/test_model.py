"""Generator / critic architecture, position-keyed noise, translation equivariance, losses, precision modes."""

import numpy as np
import pytest
import torch

from srsim.errors import SrsimError
from srsim.model import Critic, Generator, load_generator, save_checkpoint
from srsim.model.critic import CRITIC_CHANNELS, assemble, critic_condition, critic_sample
from srsim.model.layers import interp_up, lr_to_hr, up2
from srsim.model.losses import gradient_penalty, l2_loss
from srsim.model.noise import hash32, mix32, position_noise, uniform_bits

torch.set_num_threads(1)


def _noisy(gen, seed=0):
    """Give every noise layer a random non-zero amplitude and every output projection random weights (both
    start at zero), so that the tests see what a trained network does."""
    g = torch.Generator().manual_seed(seed)
    for name, p in gen.named_parameters():
        if name.endswith(".std"):
            p.data = 0.5 + torch.rand(p.shape, generator=g)
        elif ".proj." in name:
            p.data = 0.3 * torch.randn(p.shape, generator=g)
    return gen


def _periodic_pad(lr, pad):
    return torch.from_numpy(np.pad(lr, ((0, 0),) + ((pad, pad),) * 3, mode="wrap"))


@pytest.mark.parametrize("widths", [(4, 3, 2, 2), (6, 5, 4, 3)])
def test_paper_sizes_any_width(widths):
    gen = Generator(widths)
    assert (gen.scale, gen.pad) == (8, 3)
    x = torch.randn(1, 3, 20, 20, 20)
    with torch.no_grad():
        y = gen(x, torch.zeros(1, 3, dtype=torch.long), 0, (64, 64, 64))
    assert y.shape == (1, 3, 112, 112, 112)
    assert gen.crop == 3  # the uncropped ladder output is 118^3 (20 -> 34 -> 62 -> 118), paper Fig. 7


def test_uncropped_ladder_is_118():
    gen = Generator((2, 2, 2, 2), noise=False)
    sizes = [20]
    h = torch.zeros(1, 2, 20, 20, 20)
    for rung in gen.rungs:
        h = rung.conv2(rung.conv1(up2(h)))
        sizes.append(h.shape[-1])
    assert sizes == [20, 34, 62, 118]


def test_critic_accepts_generator_output():
    gen = _noisy(Generator((4, 4, 4, 4)))
    critic = Critic((4, 4, 4, 4))
    # paper sizes: 20^3 LR -> 112^3 SR -> critic score
    x = torch.randn(1, 3, 20, 20, 20)
    with torch.no_grad():
        sr = gen(x, torch.zeros(1, 3, dtype=torch.long), 1, (64, 64, 64))
        lr_hr = lr_to_hr(x, 8, 3)
        assert lr_hr.shape == sr.shape
        cond, shift = critic_condition(lr_hr, 3.0)
        inp = assemble(critic_sample(sr, shift, 3.0), cond)
        assert inp.shape == (1, CRITIC_CHANNELS, 112, 112, 112)
        assert critic(inp).shape == (1,)
    # smaller crop, with gradients: they reach every generator weight, also through the painted density
    x = torch.randn(2, 3, 11, 11, 11)
    sr = gen(x, torch.zeros(2, 3, dtype=torch.long), 1, (64, 64, 64))
    cond, shift = critic_condition(lr_to_hr(x, 8, 3), 3.0)
    score = critic(assemble(critic_sample(sr, shift, 3.0), cond))
    assert score.shape == (2,)
    score.sum().backward()
    assert all(p.grad is not None and p.grad.abs().sum() > 0 for n, p in gen.named_parameters()
               if not n.endswith(".std"))


def test_critic_too_small_input_fails():
    critic = Critic((4, 4, 4, 4))
    assert critic.min_input_size() == 36
    with pytest.raises(ValueError, match="minimum 36"):
        critic(torch.zeros(1, 8, 32, 32, 32))


def test_untrained_generator_is_the_trivial_predictor_with_noise_on():
    """A fresh generator returns the LR field interpolated onto the HR particles, whatever the noise: its
    output projections start at zero. Float32, as in training."""
    torch.manual_seed(0)
    gen = Generator((4, 3, 3, 3))
    with torch.no_grad():
        for name, p in gen.named_parameters():
            if name.endswith(".std"):
                p.fill_(1.0)  # noise switched on
    x = 2.0 * torch.randn(2, 3, 10, 10, 10)
    with torch.no_grad():
        y = gen(x, torch.tensor([[0, 0, 0], [5, -3, 7]]), [11, 12], (16, 16, 16))
    ref = lr_to_hr(x, 8, 3)
    assert y.dtype == torch.float32
    torch.testing.assert_close(y, ref, rtol=0, atol=1e-5)
    # HR sample 8*i is LR sample i (vertex alignment): no sub-cell shift
    torch.testing.assert_close(y[..., ::8, ::8, ::8], x[..., 3:7, 3:7, 3:7], rtol=0, atol=1e-5)
    # and the projections do learn: the gradient reaches them at the first step
    gen.zero_grad()
    gen(x).square().mean().backward()
    assert all(float(r.proj.weight.grad.abs().max()) > 0 for r in gen.rungs)


def test_interp_up_is_exact_linear():
    x = torch.arange(5, dtype=torch.float64).reshape(1, 1, 5, 1, 1).expand(1, 1, 5, 2, 2).contiguous()
    y = interp_up(x, 4)
    torch.testing.assert_close(y[0, 0, :, 0, 0], torch.arange(17, dtype=torch.float64) / 4)


def test_noise_hash_properties():
    # bijective mix on a sample of inputs, deterministic and seed/layer dependent
    v = torch.arange(0, 1 << 20, 7, dtype=torch.int64)
    assert torch.unique(mix32(v)).numel() == v.numel()
    assert int(mix32(torch.tensor(12345))) == mix32(12345)
    assert hash32(1, 2) != hash32(2, 1)
    a = position_noise(7, 0, (0, 0, 0), (32, 32, 32), None)
    b = position_noise(7, 0, (0, 0, 0), (32, 32, 32), None)
    assert torch.equal(a, b)
    assert not torch.equal(a, position_noise(8, 0, (0, 0, 0), (32, 32, 32), None))
    assert not torch.equal(a, position_noise(7, 1, (0, 0, 0), (32, 32, 32), None))
    # standard normal, white
    z = position_noise(3, 2, (5, -7, 11), (48, 48, 48), None).double()
    assert abs(z.mean()) < 0.01 and abs(z.std() - 1) < 0.01
    assert abs((z ** 4).mean() - 3) < 0.05
    for axis in (0, 1, 2):
        c = (z * torch.roll(z, 1, dims=axis)).mean()
        assert abs(c) < 0.01


def test_noise_planes_never_coincide_where_a_single_hash_chain_would():
    # find two i-planes whose single-chain states differ only in the low 4 bits: a plain i -> j -> k chain
    # maps plane i2 onto plane i1 with j replaced by j ^ d (a duplicated, shuffled noise plane)
    prefix = hash32(11, 0)
    i = torch.arange(1 << 17, dtype=torch.int64)
    key = mix32(i ^ prefix) >> 4
    order = torch.argsort(key)
    same = torch.nonzero(key[order][1:] == key[order][:-1]).flatten()
    assert same.numel() > 0  # such pairs exist at this size (about 2^34 * 2^-28 / 2 expected)
    i1, i2 = int(order[same[0]]), int(order[same[0] + 1])
    d = int(mix32(torch.tensor(i1) ^ prefix) ^ mix32(torch.tensor(i2) ^ prefix))
    j = torch.arange(16, dtype=torch.int64)
    k = torch.arange(64, dtype=torch.int64)
    single = lambda ii, jj: mix32(mix32(mix32(ii ^ prefix)[:, None] ^ jj[None, :])[:, :, None] ^ k[None, None, :])
    assert torch.equal(single(torch.tensor([i1]), j), single(torch.tensor([i2]), j ^ d))
    b1, _ = uniform_bits(prefix, torch.tensor([i1, i2]), j, k)
    plane1, plane2 = b1[0], b1[1][j ^ d]
    assert not torch.any(plane1 == plane2)


def test_noise_is_keyed_by_global_wrapped_position():
    period = (8, 12, 10)
    whole = position_noise(5, 3, (0, 0, 0), period, period)
    block = position_noise(5, 3, (-3, 10, 4), (6, 6, 6), period)
    idx = [np.arange(o, o + 6) % p for o, p in zip((-3, 10, 4), period)]
    ref = whole[idx[0][:, None, None], idx[1][None, :, None], idx[2][None, None, :]]
    assert torch.equal(block, ref)


def _chunked(gen, lr, chunk, seed):
    """SR of a periodic LR box assembled from chunks of `chunk` LR cells."""
    n = lr.shape[1]
    pad, s = gen.pad, gen.scale
    big = np.pad(lr, ((0, 0),) + ((pad, pad + chunk),) * 3, mode="wrap")
    out = torch.zeros(3, s * n, s * n, s * n, dtype=torch.float64)
    for i in range(0, n, chunk):
        for j in range(0, n, chunk):
            for k in range(0, n, chunk):
                x = torch.from_numpy(big[:, i:i + chunk + 2 * pad, j:j + chunk + 2 * pad, k:k + chunk + 2 * pad])
                off = torch.tensor([[i - pad, j - pad, k - pad]])
                y = gen(x[None], off, seed, (n, n, n))[0]
                out[:, s * i:s * (i + chunk), s * j:s * (j + chunk), s * k:s * (k + chunk)] = y
    return out


def test_chunked_equals_whole_including_noise():
    torch.manual_seed(0)
    gen = _noisy(Generator((3, 3, 3, 3))).double()
    n = 4
    lr = np.random.default_rng(1).standard_normal((3, n, n, n))
    with torch.no_grad():
        whole = gen(_periodic_pad(lr, 3)[None], torch.tensor([[-3, -3, -3]]), 11, (n, n, n))[0]
        chunked = _chunked(gen, lr, 2, 11)
        other_seed = gen(_periodic_pad(lr, 3)[None], torch.tensor([[-3, -3, -3]]), 12, (n, n, n))[0]
    assert whole.shape == (3, 32, 32, 32)
    torch.testing.assert_close(chunked, whole, rtol=1e-10, atol=1e-10)
    assert (other_seed - whole).abs().max() > 1e-2  # the noise matters


def test_translation_shifts_output_by_scale_times_cells():
    torch.manual_seed(1)
    gen = _noisy(Generator((3, 3, 3, 3)), seed=1).double()
    n = 4
    lr = np.random.default_rng(2).standard_normal((3, n, n, n))
    shift = (1, 3, 2)
    lr_shifted = np.roll(lr, shift, axis=(1, 2, 3))
    with torch.no_grad():
        sr = gen(_periodic_pad(lr, 3)[None], torch.tensor([[-3, -3, -3]]), 4, (n, n, n))[0]
        # the shifted box is the same universe seen from an origin moved by -shift: pass that offset
        sr_shifted = gen(_periodic_pad(lr_shifted, 3)[None], torch.tensor([[-3 - shift[0], -3 - shift[1], -3 - shift[2]]]),
                         4, (n, n, n))[0]
        sr_same_keys = gen(_periodic_pad(lr_shifted, 3)[None], torch.tensor([[-3, -3, -3]]), 4, (n, n, n))[0]
    expect = torch.roll(sr, tuple(8 * s for s in shift), dims=(1, 2, 3))
    torch.testing.assert_close(sr_shifted, expect, rtol=1e-10, atol=1e-10)
    assert (sr_same_keys - expect).abs().max() > 1e-2  # noise is attached to positions, not to the data


def test_translation_without_noise_is_plain_roll():
    torch.manual_seed(2)
    gen = _noisy(Generator((3, 3, 3, 3), noise=False)).double()
    n = 4
    lr = np.random.default_rng(3).standard_normal((3, n, n, n))
    with torch.no_grad():
        sr = gen(_periodic_pad(lr, 3)[None])[0]
        sr2 = gen(_periodic_pad(np.roll(lr, 1, axis=2), 3)[None])[0]
    torch.testing.assert_close(sr2, torch.roll(sr, 8, dims=2), rtol=1e-10, atol=1e-10)


def test_gradient_penalty_hand_computation():
    torch.manual_seed(3)
    real = torch.randn(3, 2, 4, 4, 4, dtype=torch.float64)
    fake = torch.randn(3, 2, 4, 4, 4, dtype=torch.float64)
    eps = torch.tensor([0.1, 0.5, 0.9], dtype=torch.float64)
    a = torch.rand(2, 4, 4, 4, dtype=torch.float64, requires_grad=True)

    def quad(s):  # D(i) = sum a * i^2  ->  grad = 2 a i
        return (a * s ** 2).flatten(1).sum(1)

    gp = gradient_penalty(quad, real, fake, eps)
    r, f, e, an = real.numpy(), fake.numpy(), eps.numpy(), a.detach().numpy()
    hand = 0.0
    for b in range(3):
        i = e[b] * r[b] + (1 - e[b]) * f[b]
        hand += (np.sqrt(np.sum((2 * an * i) ** 2)) - 1) ** 2
    assert gp.item() == pytest.approx(hand / 3, rel=1e-12)
    gp.backward()  # differentiable w.r.t. the critic parameters (double backward)
    assert a.grad is not None and torch.isfinite(a.grad).all()

    # a linear 1^3-conv critic averaged over V voxels: |grad| = |w| / sqrt(V) for every sample
    conv = torch.nn.Conv3d(2, 1, 1).double()
    gp2 = gradient_penalty(lambda s: conv(s).mean(dim=(1, 2, 3, 4)), real, fake, eps)
    w = conv.weight.detach().flatten().norm().item()
    assert gp2.item() == pytest.approx((w / np.sqrt(64) - 1) ** 2, rel=1e-12)


def test_l2_loss():
    a, b = torch.ones(2, 3, 4, 4, 4), torch.zeros(2, 3, 4, 4, 4)
    assert l2_loss(a, 3 * a).item() == pytest.approx(4.0)
    assert l2_loss(a, b).item() == pytest.approx(1.0)


def test_bf16_and_channels_last_match_fp32():
    torch.manual_seed(4)
    gen = _noisy(Generator((8, 8, 8, 8)))
    critic = Critic((8, 8, 8))
    x = torch.randn(1, 3, 11, 11, 11)
    off = torch.tensor([[0, 0, 0]])
    with torch.no_grad():
        ref = gen(x, off, 1, (16, 16, 16))
        c_ref = critic(torch.randn(1, 8, 40, 40, 40, generator=torch.Generator().manual_seed(0)))
        with torch.autocast("cpu", dtype=torch.bfloat16):
            y16 = gen(x, off, 1, (16, 16, 16)).float()
        gen_cl = gen.to(memory_format=torch.channels_last_3d)
        ycl = gen_cl(x.contiguous(memory_format=torch.channels_last_3d), off, 1, (16, 16, 16))
        critic_cl = critic.to(memory_format=torch.channels_last_3d)
        c_cl = critic_cl(torch.randn(1, 8, 40, 40, 40, generator=torch.Generator().manual_seed(0))
                         .contiguous(memory_format=torch.channels_last_3d))
    rel16 = ((y16 - ref).norm() / ref.norm()).item()
    assert rel16 < 0.03
    torch.testing.assert_close(ycl, ref, rtol=1e-4, atol=1e-5)
    torch.testing.assert_close(c_cl, c_ref, rtol=1e-4, atol=1e-5)


def test_checkpoint_roundtrip_and_errors(tmp_path):
    gen = _noisy(Generator((4, 3, 2)))
    state = {"format": "srsim-sr-model", "version": 1,
             "generator": {"hyperparameters": gen.hyperparameters(), "state_dict": gen.state_dict()},
             "state": {"step": 5, "epoch": 1}, "meta": {"disp_scale": 2.0, "redshift": 0.0, "box_size": 25.0,
                                                        "n_lr": 16, "n_hr": 64}}
    path = tmp_path / "m.pt"
    save_checkpoint(path, state)
    assert sorted(p.name for p in tmp_path.iterdir()) == ["m.pt"]  # no temporary left behind
    gen2, meta = load_generator(path)
    assert (meta["scale"], meta["pad"], meta["widths"], meta["disp_scale"], meta["step"]) == (4, 3, [4, 3, 2], 2.0, 5)
    x = torch.randn(1, 3, 9, 9, 9)
    with torch.no_grad():
        torch.testing.assert_close(gen2(x, None, 3, None), gen(x, None, 3, None))
    bad = tmp_path / "bad.pt"
    bad.write_bytes(b"not a checkpoint")
    with pytest.raises(SrsimError, match="bad.pt"):
        load_generator(bad)
    with pytest.raises(SrsimError, match="not found"):
        load_generator(tmp_path / "missing.pt")
