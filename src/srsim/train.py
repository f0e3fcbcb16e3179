"""Training the SR generator: supervised L2 warm-up (Eq. 2), then WGAN-gp (Eq. 3), one model per redshift.

Small pieces, composed by ``Trainer``:

* ``srsim.distributed``: data parallelism across ``torchrun`` processes (explicit gradient all-reduce,
  since the gradient penalty's double backward rules out DistributedDataParallel's reducer).
* ``srsim.train_guard``: NaN/inf batches and losses, exploding losses.
* ``build_models``: generator, critic, Adam optimisers; optional channels-last and torch.compile.
* ``supervised_step``, ``critic_step``, ``generator_step``: one optimisation step each.
* ``LossLog``: per-step CSV (truncated to the checkpoint on resume; drawn by ``srsim.plots.curve``).
* ``Trainer``: the epoch/step loop, checkpoints (every N steps, every epoch, on preemption), resume,
  fine-tuning from ``train.init_from``, validation. It stays in this module with the step functions it
  composes (about 600 lines): the steps, the loop and the checkpoint layout change together.

Reproducibility: model initialisation is seeded; the data plan is a function of (seed, epoch); the noise
seeds and the gradient-penalty mixing weights of step t are hashes of (seed, step, rank). Nothing depends
on a stateful RNG carried between steps, so resuming from a checkpoint repeats an uninterrupted run
exactly (on CPU; on GPUs up to non-deterministic kernels). RNG states are saved and restored anyway.
"""

from __future__ import annotations

import csv
import math
import random
import signal
import sys
import time
from contextlib import nullcontext
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Callable

import numpy as np
import torch
import torch.distributed as dist

from srsim.device import resolve_device
from srsim.distributed import DistContext, any_rank, apply_update, broadcast_parameters, reduce_mean
from srsim.errors import SrsimError
from srsim.model.checkpoint import FORMAT, VERSION, load_checkpoint, save_checkpoint
from srsim.model.critic import Critic, assemble, critic_channels, critic_condition, critic_sample
from srsim.model.generator import Generator
from srsim.model.layers import NoiseInjection, lr_to_hr
from srsim.model.losses import critic_wgan_loss, generator_wgan_loss, gradient_penalty, l2_loss
from srsim.model.noise import hash32
from srsim.train_guard import ExplosionGuard, LossExploded, NonFiniteLoss, check_batch, check_finite

__all__ = ["Models", "build_models", "step_seeds", "supervised_step", "critic_step", "generator_step",
           "adversarial_step", "LossLog", "Trainer", "TrainingPreempted", "RESUME_KEYS", "install_signal_handlers",
           "init_weights_from"]

# train-section keys that must not change when resuming (they change what the run computes)
RESUME_KEYS = ("supervised_epochs", "adversarial_epochs", "batch_size", "lr", "betas", "gp_lambda", "gp_every",
               "seed", "init_from", "adv_l2_weight", "critic_lr", "critic_steps", "noise_lr")
#: values of RESUME_KEYS added later, as checkpoints written before them ran
RESUME_KEY_FORMER = {"critic_lr": None, "critic_steps": 1, "noise_lr": None}


class TrainingPreempted(Exception):
    """Raised after a checkpoint was written in response to SIGUSR1/SIGTERM."""


# ----------------------------------------------------------------------------------------- models

@dataclass
class Models:
    gen: Generator
    critic: Critic
    opt_g: torch.optim.Optimizer
    opt_c: torch.optim.Optimizer
    gen_fwd: Callable          # the generator's forward, compiled or not
    critic_fwd: Callable       # the critic's forward for plain scores (compiled or not)
    memory_format: torch.memory_format = torch.contiguous_format


def build_models(model_cfg: dict, train_cfg: dict, device: torch.device, ctx: DistContext | None = None) -> Models:
    """Generator, critic and their Adam optimisers (lr, betas from ``train``), seeded by train.seed.

    ``model.channels`` (3 or 6) sets the generator's in/out channels and the critic's input (``critic_channels``).
    """
    torch.manual_seed(int(train_cfg["seed"]))
    channels = int(model_cfg["channels"])
    gen = Generator(model_cfg["gen_widths"], in_channels=channels, out_channels=channels,
                    noise=model_cfg.get("noise", True)).to(device)
    critic = Critic(model_cfg["critic_widths"], in_channels=critic_channels(channels)).to(device)
    fmt = torch.channels_last_3d if train_cfg.get("channels_last") else torch.contiguous_format
    gen.to(memory_format=fmt)
    critic.to(memory_format=fmt)
    if ctx is not None:
        broadcast_parameters(gen, ctx)
        broadcast_parameters(critic, ctx)
    betas = tuple(float(b) for b in train_cfg["betas"])
    # Adam moves a parameter by about lr per step, so noise amplitudes starting at 0 need ~1/lr steps to
    # reach O(1) and matter: train.noise_lr gives them their own rate (null: train.lr, one group as before).
    noise_lr = train_cfg.get("noise_lr")
    params = gen.parameters()
    if noise_lr is not None:
        noise = [m.std for m in gen.modules() if isinstance(m, NoiseInjection)]
        rest = [p for p in gen.parameters() if all(p is not q for q in noise)]
        params = [{"params": rest}, {"params": noise, "lr": float(noise_lr)}]
    opt_g = torch.optim.Adam(params, lr=float(train_cfg["lr"]), betas=betas)
    # A critic learning at the generator's rate stays nearly flat on small models (the demo's Wasserstein
    # estimate stayed below 0.01): train.critic_lr lets it learn faster (null: train.lr, the paper).
    critic_lr = train_cfg.get("critic_lr")
    opt_c = torch.optim.Adam(critic.parameters(), lr=float(train_cfg["lr"] if critic_lr is None else critic_lr),
                             betas=betas)
    gen_fwd, critic_fwd = gen, critic
    if train_cfg.get("compile"):
        # The generator compiles its body only (its position-keyed noise stays eager, so new offsets and
        # seeds never recompile); the gradient penalty's double backward, which compiled graphs do not
        # support, runs through the uncompiled critic (same parameters).
        gen.compile_ladder()
        critic_fwd = torch.compile(critic)
    return Models(gen, critic, opt_g, opt_c, gen_fwd, critic_fwd, fmt)


def step_seeds(seed: int, step: int, rank: int, batch_size: int) -> list[int]:
    """Noise seeds of the samples of one step on one rank (distinct across steps, ranks and samples)."""
    return [hash32(seed, step, rank * batch_size + b, 0x9015E) for b in range(batch_size)]


def _eps(seed: int, step: int, rank: int, batch_size: int, device) -> torch.Tensor:
    """Gradient-penalty mixing weights of one step: (B,) uniform [0, 1), from a hash-seeded generator."""
    g = torch.Generator().manual_seed(hash32(seed, step, rank, 0x6B))
    return torch.rand(batch_size, generator=g).to(device)


def _autocast(device: torch.device, bf16: bool):
    return torch.autocast(device.type, dtype=torch.bfloat16) if bf16 else nullcontext()


def _to_device(batch: dict, device, fmt) -> dict:
    out = {}
    for k, v in batch.items():
        v = v.to(device, non_blocking=True)
        if v.dim() == 5:
            v = v.contiguous(memory_format=fmt)
        out[k] = v
    return out


def _generate(m: Models, batch: dict, seeds, bf16: bool, device) -> torch.Tensor:
    with _autocast(device, bf16):
        sr = m.gen_fwd(batch["lr"], batch["offset"], seeds, batch["box"][0].tolist())
    return sr.float()


def supervised_step(m: Models, batch: dict, *, seeds, ctx: DistContext, bf16: bool, step: int) -> dict:
    """One generator update on the L2 loss (Eq. 2). Returns {'l2': value averaged over ranks}."""
    sr = _generate(m, batch, seeds, bf16, ctx.device)
    loss = l2_loss(sr, batch["hr"])
    values = reduce_mean({"l2": loss.item()}, ctx)
    check_finite(values, step, "supervised")
    apply_update(loss, m.gen, m.opt_g, ctx)
    return values


def critic_step(m: Models, sample_real: torch.Tensor, sample_fake: torch.Tensor, cond: torch.Tensor, *,
                eps: torch.Tensor, penalty: bool, gp_weight: float, ctx: DistContext, bf16: bool, step: int) -> dict:
    """One critic update on Eq. 3 (gradient penalty when ``penalty``, weighted by ``gp_weight``).

    sample_*: (B, C + 1, m, m, m) fields (C = 3 displacement, or 6 with velocity) + density channel (fake
    detached); cond: (B, C + 1, ...).
    Returns {'critic', 'wdist', 'gp'} averaged over ranks ('gp' NaN-free 0 when not applied).
    """
    B = sample_real.shape[0]
    with _autocast(ctx.device, bf16):
        x = torch.cat([assemble(sample_real, cond), assemble(sample_fake, cond)]).contiguous(memory_format=m.memory_format)
        scores = m.critic_fwd(x).float()
    real, fake = scores[:B], scores[B:]
    loss = critic_wgan_loss(fake, real)
    gp = torch.zeros((), device=ctx.device)
    if penalty:
        def score_fn(s):
            with _autocast(ctx.device, bf16):
                return m.critic(assemble(s, cond).contiguous(memory_format=m.memory_format)).float()
        gp = gradient_penalty(score_fn, sample_real, sample_fake, eps)
        loss = loss + gp_weight * gp
    values = reduce_mean({"critic": loss.item(), "wdist": (real.mean() - fake.mean()).item(), "gp": gp.item()}, ctx)
    check_finite(values, step, "critic")
    apply_update(loss, m.critic, m.opt_c, ctx)
    return values


def generator_step(m: Models, sr: torch.Tensor, shift: torch.Tensor, cond: torch.Tensor, disp_to_cells: float, *,
                   ctx: DistContext, bf16: bool, step: int, density: str = "log1p", hr: torch.Tensor | None = None,
                   l2_weight: float = 0.0) -> dict:
    """One generator update maximising the critic's score of ``sr`` (which carries the generator graph).

    With ``l2_weight`` > 0 the supervised L2 to ``hr`` (Eq. 2) is added to the adversarial loss with that
    weight (``train.adv_l2_weight``; the paper's Eq. 3 has none), anchoring large scales while the critic
    shapes small ones. The logged 'generator' value is the adversarial term alone.
    """
    for p in m.critic.parameters():
        p.requires_grad_(False)
    try:
        fake = critic_sample(sr, shift, disp_to_cells, density)
        with _autocast(ctx.device, bf16):
            score = m.critic_fwd(assemble(fake, cond).contiguous(memory_format=m.memory_format)).float()
        adv = generator_wgan_loss(score)
        loss = adv
        logged = {"generator": adv.item()}
        if l2_weight > 0:
            l2 = l2_loss(sr, hr)
            loss = adv + l2_weight * l2
            logged["l2"] = l2.item()
        values = reduce_mean(logged, ctx)
        check_finite(values, step, "generator")
        apply_update(loss, m.gen, m.opt_g, ctx)
    finally:
        for p in m.critic.parameters():
            p.requires_grad_(True)
    return values


def adversarial_step(m: Models, batch: dict, *, seeds, eps, penalty: bool, gp_weight: float, disp_to_cells: float,
                     ctx: DistContext, bf16: bool, step: int, density: str = "log1p",
                     l2_weight: float = 0.0, critic_steps: int = 1) -> dict:
    """``critic_steps`` critic updates, then one generator update, on the same batch.

    The generator runs forward once: every critic update sees the same real and (detached) fake sample,
    which keeps an extra critic update at the critic's cost alone. The gradient penalty, when due, is applied
    on the first. Logged critic values are the last update's.
    """
    sr = _generate(m, batch, seeds, bf16, ctx.device)
    with torch.no_grad():
        lr_hr = lr_to_hr(batch["lr"], m.gen.scale, m.gen.pad)
        cond, shift = critic_condition(lr_hr, disp_to_cells, density)
        real = critic_sample(batch["hr"], shift, disp_to_cells, density)
        fake = critic_sample(sr.detach(), shift, disp_to_cells, density)
    values = critic_step(m, real, fake, cond, eps=eps, penalty=penalty, gp_weight=gp_weight, ctx=ctx, bf16=bf16,
                         step=step)
    for _ in range(int(critic_steps) - 1):
        values.update(critic_step(m, real, fake, cond, eps=eps, penalty=False, gp_weight=gp_weight, ctx=ctx,
                                  bf16=bf16, step=step), gp=values["gp"])
    values.update(generator_step(m, sr, shift, cond, disp_to_cells, ctx=ctx, bf16=bf16, step=step, density=density,
                                 hr=batch["hr"], l2_weight=l2_weight))
    return values


# ----------------------------------------------------------------------------------------- logging

COLUMNS = ("step", "epoch", "phase", "l2", "critic", "generator", "wdist", "gp", "wall_s")


class LossLog:
    """Per-step losses in a CSV file (columns ``COLUMNS``), appended and flushed every step."""

    def __init__(self, path):
        self.path = Path(path)
        self._fh = None

    def truncate(self, last_step: int) -> None:
        """Keep rows with step <= last_step (start over when 0), rewriting the file atomically."""
        from srsim.io.atomic import atomic_path

        rows = self.read() if self.path.is_file() and last_step > 0 else []
        rows = [r for r in rows if int(r["step"]) <= last_step]
        self.path.parent.mkdir(parents=True, exist_ok=True)
        with atomic_path(self.path) as tmp:
            with open(tmp, "w", newline="") as f:
                w = csv.DictWriter(f, COLUMNS)
                w.writeheader()
                w.writerows(rows)

    def read(self) -> list[dict]:
        with open(self.path, newline="") as f:
            return list(csv.DictReader(f))

    def append(self, row: dict) -> None:
        if self._fh is None:
            self._fh = open(self.path, "a", newline="")
            self._writer = csv.DictWriter(self._fh, COLUMNS)
        self._writer.writerow({k: row.get(k, "") for k in COLUMNS})
        self._fh.flush()

    def close(self) -> None:
        if self._fh is not None:
            self._fh.close()
            self._fh = None


# ----------------------------------------------------------------------------------------- trainer

@dataclass
class TrainState:
    step: int = 0        # optimisation steps done
    epoch: int = 0       # current epoch
    batch: int = 0       # batches of the current epoch done
    adv_steps: int = 0   # critic steps done (the gradient penalty is applied every gp_every of them)
    finished: bool = False


def _rng_state() -> dict:
    return {"torch": torch.get_rng_state(), "numpy": np.random.get_state(), "python": random.getstate(),
            "cuda": torch.cuda.get_rng_state_all() if torch.cuda.is_available() else None}


def _set_rng_state(s: dict) -> None:
    torch.set_rng_state(s["torch"].cpu())
    np.random.set_state(s["numpy"])
    random.setstate(s["python"])
    if s.get("cuda") is not None and torch.cuda.is_available() and len(s["cuda"]) == torch.cuda.device_count():
        torch.cuda.set_rng_state_all([t.cpu() for t in s["cuda"]])


class Trainer:
    """Runs the training of one model (one redshift).

    Args:
        config: validated config with sections ``model`` and ``train``.
        dataset: a ``srsim.data.CropDataset`` (its pad/scale must match the generator).
        out: final checkpoint path (model.pt); intermediate ones go to ``checkpoint_dir``.
        checkpoint_dir: directory for last.pt and the running losses.csv (default: out.parent/checkpoints).
        meta: extra metadata stored in checkpoints (redshift, data files, ...).
        ctx: distributed context (default: single process on train.device).
        progress: show a tqdm bar (main rank only).
        validator: optional ``srsim.validation.Validator`` (or anything with its ``__call__(gen, step)``,
            ``truncate``, ``close`` and ``path``), run every ``train.val_every`` steps and at the end.
        scaling: the networks' normalisation (``srsim.model.scaling.Scaling``), recorded in every
            checkpoint; its disp_scale must be the dataset's. None: the dataset's disp_scale at growth 1.
        init_from: checkpoint whose generator (and critic) weights start a fresh run (``train.init_from``,
            already resolved to a path); ignored when resuming from last.pt, which holds them.
    """

    def __init__(self, config: dict, dataset, out, *, checkpoint_dir=None, meta: dict | None = None,
                 ctx: DistContext | None = None, progress: bool = True, validator=None, scaling=None,
                 init_from=None):
        self.model_cfg = dict(config["model"])
        self.train_cfg = dict(config["train"])
        self.ctx = ctx or DistContext(
            device=resolve_device(self.train_cfg.get("device", "auto"), local_rank=0, what="train.device"))
        self.dataset = dataset
        self.out = Path(out)
        self.checkpoint_dir = Path(checkpoint_dir) if checkpoint_dir else self.out.parent / "checkpoints"
        self.last_path = self.checkpoint_dir / "last.pt"
        self.log = LossLog(self.checkpoint_dir / "losses.csv")
        self.progress = progress
        self.validator = validator
        self.stop_requested = False
        self.state = TrainState()
        self.models = build_models(self.model_cfg, self.train_cfg, self.ctx.device, self.ctx)
        gen = self.models.gen
        if gen.pad != self.model_cfg["pad"]:
            raise SrsimError(f"model.pad: a generator with {len(gen.widths)} widths needs pad = {gen.pad}, "
                             f"the config has {self.model_cfg['pad']}")
        if dataset.pad != gen.pad or dataset.scale != gen.scale:
            raise SrsimError(f"data: crops have pad {dataset.pad}, scale {dataset.scale}; the generator needs "
                             f"pad {gen.pad}, scale {gen.scale}")
        hr_side = gen.scale * dataset.crop
        if self.models.critic.output_size(hr_side) < 1:
            raise SrsimError(f"model.crop: HR crops of {hr_side}^3 are too small for a critic with "
                             f"{len(self.models.critic.widths) - 1} residual blocks (minimum "
                             f"{self.models.critic.min_input_size()}^3): raise crop or drop critic widths")
        self.steps_per_epoch = len(dataset) // (self.train_cfg["batch_size"] * self.ctx.world)
        if self.steps_per_epoch < 1:
            raise SrsimError(f"train.batch_size: {len(dataset)} crops per epoch cannot fill one step of "
                             f"{self.train_cfg['batch_size']} x {self.ctx.world} processes")
        from srsim.model.scaling import Scaling

        if scaling is None:
            scaling = Scaling(dataset.disp_scale, 1.0, self.model_cfg["density"])
        if abs(scaling.disp_scale / dataset.disp_scale - 1) > 1e-6:
            raise SrsimError(f"data: crops are divided by {dataset.disp_scale:g} Mpc/h but the scaling says "
                             f"{scaling.disp_scale:g} Mpc/h")
        channels = int(self.model_cfg["channels"])
        data_channels = getattr(dataset, "channels", 3)
        if data_channels != channels or scaling.channels != channels:
            raise SrsimError(f"model.channels = {channels}, but the crops have {data_channels} channels and the "
                             f"scaling {scaling.channels}")
        v_channels = getattr(validator, "channels", channels)  # a duck-typed validator is trusted
        if validator is not None and v_channels != channels:
            raise SrsimError(f"validation pairs have {v_channels} channels, the model {channels}")
        if channels == 6 and abs(scaling.vel_scale / dataset.vel_scale - 1) > 1e-6:
            raise SrsimError(f"data: velocities are divided by {dataset.vel_scale:g} km/s but the scaling says "
                             f"{scaling.vel_scale:g} km/s")
        self.scaling = scaling
        self.meta = {"disp_scale": dataset.disp_scale, "box_size": dataset.box_size, "n_lr": dataset.n_lr,
                     "n_hr": dataset.n_hr, "crop": dataset.crop, "scaling": scaling.to_dict(), **(meta or {})}
        self.init_from = None if init_from is None else Path(init_from)
        self.guard = ExplosionGuard(float(self.train_cfg["explode"]))

    # --- bookkeeping
    @property
    def total_epochs(self) -> int:
        return self.train_cfg["supervised_epochs"] + self.train_cfg["adversarial_epochs"]

    def total_steps(self) -> int:
        total = self.total_epochs * self.steps_per_epoch
        if self.train_cfg.get("max_steps"):
            total = min(total, int(self.train_cfg["max_steps"]))
        return total

    def phase(self, epoch: int) -> str:
        return "supervised" if epoch < self.train_cfg["supervised_epochs"] else "adversarial"

    # --- checkpoints
    def state_dict(self) -> dict:
        m = self.models
        return {
            "format": FORMAT, "version": VERSION,
            "generator": {"hyperparameters": m.gen.hyperparameters(), "state_dict": m.gen.state_dict()},
            "critic": {"hyperparameters": m.critic.hyperparameters(), "state_dict": m.critic.state_dict()},
            "opt_generator": m.opt_g.state_dict(), "opt_critic": m.opt_c.state_dict(),
            "state": asdict(self.state), "rng": _rng_state(),
            "config": {"model": self.model_cfg, "train": self.train_cfg},
            "meta": dict(self.meta, steps_per_epoch=self.steps_per_epoch, world=self.ctx.world),
        }

    def load_state_dict(self, ckpt: dict, where: str) -> None:
        old_model = ckpt["config"]["model"]
        if "channels" not in old_model:  # written before six-channel models: a displacement-only model
            old_model = dict(old_model, channels=3)
        if old_model != self.model_cfg:
            raise SrsimError(f"{where}: checkpoint model section {old_model} differs from the config "
                             f"{self.model_cfg}; delete {self.checkpoint_dir} to start over")
        old_train = ckpt["config"]["train"]
        changed = [k for k in RESUME_KEYS if old_train.get(k, RESUME_KEY_FORMER.get(k)) != self.train_cfg.get(k)]
        if changed:
            raise SrsimError(f"{where}: train.{', train.'.join(changed)} changed since the checkpoint; "
                             f"delete {self.checkpoint_dir} to start over")
        if ckpt["meta"].get("steps_per_epoch") != self.steps_per_epoch:
            raise SrsimError(f"{where}: the checkpoint has {ckpt['meta'].get('steps_per_epoch')} steps per epoch, "
                             f"this run {self.steps_per_epoch} (different data or process count)")
        m = self.models
        m.gen.load_state_dict(ckpt["generator"]["state_dict"])
        m.critic.load_state_dict(ckpt["critic"]["state_dict"])
        m.opt_g.load_state_dict(ckpt["opt_generator"])
        m.opt_c.load_state_dict(ckpt["opt_critic"])
        self.state = TrainState(**ckpt["state"])
        _set_rng_state(ckpt["rng"])
        if "init_from" in ckpt["meta"]:
            # the provenance of a fine-tuning run survives preemption: resuming does not reload init_from
            self.meta["init_from"] = ckpt["meta"]["init_from"]

    def save(self, path=None) -> None:
        """Checkpoint (main rank writes, every rank waits)."""
        if self.ctx.is_main:
            save_checkpoint(path or self.last_path, self.state_dict())
        if self.ctx.distributed:
            dist.barrier()

    def resume(self) -> bool:
        """Load checkpoint_dir/last.pt if present; returns whether training resumed."""
        if not self.last_path.is_file():
            return False
        ckpt = load_checkpoint(self.last_path, device=self.ctx.device)
        self.load_state_dict(ckpt, str(self.last_path))
        return True

    def initialise(self) -> None:
        """Start a fresh run from ``init_from``'s weights (fine-tuning), checked against this run."""
        if self.init_from is None:
            return
        info = init_weights_from(self.models, self.init_from, self.scaling, self.meta)
        self.meta["init_from"] = info
        if self.ctx.is_main:
            print(f"srsim train: starting from the weights of {self.init_from} (step {info['step']})",
                  file=sys.stderr)

    # --- data
    def batches(self, epoch: int, start_batch: int):
        from srsim.data import collate, rank_indices

        self.dataset.set_epoch(epoch)
        idx = rank_indices(len(self.dataset), self.train_cfg["batch_size"], self.ctx.rank, self.ctx.world,
                           start_batch)
        workers = int(self.train_cfg.get("workers", 0))
        loader = torch.utils.data.DataLoader(self.dataset, batch_size=self.train_cfg["batch_size"], sampler=idx,
                                             num_workers=workers, collate_fn=collate,
                                             pin_memory=self.ctx.device.type == "cuda",
                                             prefetch_factor=2 if workers else None)
        return loader

    # --- the loop
    def validate(self) -> None:
        """Run the validator on the current generator (main rank only: the others wait at their next
        all-reduce), in eval mode without gradients, then back to train mode."""
        if self.validator is None or not self.ctx.is_main:
            return
        gen = self.models.gen
        gen.eval()
        try:
            with torch.no_grad():
                self.validator(gen, self.state.step)
        finally:
            gen.train()

    def train_step(self, batch: dict) -> dict:
        """One optimisation step of the current phase on a batch; updates self.state."""
        cfg, st, ctx = self.train_cfg, self.state, self.ctx
        batch = _to_device(batch, ctx.device, self.models.memory_format)
        B = batch["lr"].shape[0]
        seeds = step_seeds(cfg["seed"], st.step, ctx.rank, B)
        bf16 = bool(cfg.get("bf16"))
        phase = self.phase(st.epoch)
        check_batch(batch, st.step + 1, phase)
        self.models.gen.train()
        self.models.critic.train()
        penalty = False
        if phase == "supervised":
            values = supervised_step(self.models, batch, seeds=seeds, ctx=ctx, bf16=bf16, step=st.step + 1)
        else:
            every = int(cfg["gp_every"])
            penalty = cfg["gp_lambda"] > 0 and st.adv_steps % every == 0
            eps = _eps(cfg["seed"], st.step, ctx.rank, B, ctx.device)
            values = adversarial_step(self.models, batch, seeds=seeds, eps=eps, penalty=penalty,
                                      gp_weight=cfg["gp_lambda"] * every, disp_to_cells=self.dataset.disp_to_cells,
                                      ctx=ctx, bf16=bf16, step=st.step + 1, density=self.scaling.density,
                                      l2_weight=float(cfg["adv_l2_weight"]),
                                      critic_steps=int(cfg["critic_steps"]))
            if not penalty:
                values["gp"] = float("nan")
            st.adv_steps += 1
        # before the step counter moves: an exploded step is never checkpointed
        self.guard.check(values, st.step + 1, phase, "gp" if penalty else "")
        st.step += 1
        st.batch += 1
        return dict(values, phase=phase)

    def run(self, *, resume: bool = False, on_step: Callable[["Trainer", dict], None] | None = None) -> TrainState:
        """Train to the end (or max_steps); checkpoints as configured; raises TrainingPreempted on a signal."""
        if resume and self.resume():
            if self.ctx.is_main:
                print(f"srsim train: resumed from {self.last_path} at step {self.state.step} "
                      f"(epoch {self.state.epoch}, batch {self.state.batch})", file=sys.stderr)
        elif self.state.step == 0:
            self.initialise()
        if self.ctx.is_main:
            self.log.truncate(self.state.step)
            if self.validator is not None:
                self.validator.truncate(self.state.step)
        if self.state.step == 0:
            self.validate()  # the starting point (the trivial predictor, or init_from's weights) is row 0
        total = self.total_steps()
        every = int(self.train_cfg["checkpoint_every"])
        val_every = int(self.train_cfg.get("val_every") or 1000)
        bar = None
        if self.progress and self.ctx.is_main:
            from tqdm import tqdm

            bar = tqdm(total=total, initial=min(self.state.step, total), unit="step", file=sys.stderr,
                       dynamic_ncols=True, desc=f"train z={self.meta.get('redshift', '?')}")
        t0 = time.time()
        try:
            while self.state.step < total:
                st = self.state
                if st.batch >= self.steps_per_epoch:
                    st.epoch += 1
                    st.batch = 0
                    self.save()  # epoch checkpoint
                    continue
                for batch in self.batches(st.epoch, st.batch):
                    values = self.train_step(batch)
                    row = dict(values, step=st.step, epoch=st.epoch, wall_s=round(time.time() - t0, 3))
                    if self.ctx.is_main:
                        self.log.append(row)
                    if bar is not None:
                        bar.update(1)
                        bar.set_postfix({k: f"{v:.3g}" for k, v in values.items()
                                         if k != "phase" and isinstance(v, float) and math.isfinite(v)})
                    if on_step is not None:
                        on_step(self, row)
                    if st.step % val_every == 0:
                        self.validate()  # before the checkpoint: a resumed run has the rows up to its step
                    if any_rank(self.stop_requested, self.ctx):
                        self.save()
                        raise TrainingPreempted(
                            f"stopped by a signal after step {st.step}; checkpoint {self.last_path} written; "
                            "rerun with --resume to continue")
                    if st.step % every == 0:
                        self.save()
                    if st.step >= total:
                        break
            self.validate()  # the final weights (the validator skips a step it has logged)
            self.state.finished = True
            self.save()
        finally:
            if bar is not None:
                bar.close()
            self.log.close()
            if self.validator is not None:
                self.validator.close()
        return self.state

    def export(self, log_csv=None, plot=None, val_csv=None) -> None:
        """Write the final model (out), and copies of the loss CSV, the validation CSV (with a validator)
        and the training curve (main rank)."""
        if not self.ctx.is_main:
            return
        from srsim.io.atomic import atomic_path

        save_checkpoint(self.out, self.state_dict())
        val_log = self.validator.path if self.validator is not None else None
        for src, dst in ((self.log.path, log_csv), (val_log, val_csv)):
            if src and dst:
                dst = Path(dst)
                dst.parent.mkdir(parents=True, exist_ok=True)
                with atomic_path(dst) as tmp:
                    tmp.write_bytes(Path(src).read_bytes())
        if plot:
            from srsim.plots.curve import plot_curve

            plot_curve(self.log.path, plot, title=f"SR training, z = {self.meta.get('redshift', '?')}",
                       val_csv=val_log)


def init_weights_from(models: Models, path, scaling, meta: dict) -> dict:
    """Load the generator (and, if present, critic) weights of checkpoint ``path`` into ``models``.

    The architecture, the scaling and the LR/HR resolution must match this run's (``scaling``, ``meta``
    with box_size, n_lr, n_hr); SrsimError names both values otherwise. Optimiser states start fresh.
    Returns a provenance record {'path', 'step', 'redshift', 'critic'} for the new checkpoints' meta.
    """
    from srsim.model.scaling import Scaling

    path = Path(path)
    ckpt = load_checkpoint(path, device="cpu")
    where = f"train.init_from {path}"
    for name, net in (("generator", models.gen), ("critic", models.critic)):
        if name not in ckpt:
            continue
        if ckpt[name]["hyperparameters"] != net.hyperparameters():
            raise SrsimError(f"{where}: its {name} has {ckpt[name]['hyperparameters']}, this run "
                             f"{net.hyperparameters()}")
    old = ckpt.get("meta", {})
    Scaling.from_meta(old, where).check_matches(scaling, where)
    for key, label in (("n_lr", "LR"), ("n_hr", "HR")):
        if old.get(key) and old.get("box_size"):
            cell_old = float(old["box_size"]) / int(old[key])
            cell_new = float(meta["box_size"]) / int(meta[key])
            if abs(cell_old / cell_new - 1) > 1e-6:
                raise SrsimError(f"{where}: trained on {label} cells of {cell_old:g} Mpc/h, this run's data has "
                                 f"{cell_new:g} Mpc/h")
    models.gen.load_state_dict(ckpt["generator"]["state_dict"])
    if "critic" in ckpt:
        models.critic.load_state_dict(ckpt["critic"]["state_dict"])
    return {"path": str(path), "step": int(ckpt["state"]["step"]), "redshift": old.get("redshift"),
            "critic": "critic" in ckpt}


def install_signal_handlers(trainer: Trainer) -> None:
    """SIGUSR1 / SIGTERM (slurm's warning before the time limit): finish the step, checkpoint, exit."""
    def handler(signum, frame):
        trainer.stop_requested = True
        print(f"srsim train: received {signal.Signals(signum).name}; stopping after the current step",
              file=sys.stderr)

    for sig in (signal.SIGUSR1, signal.SIGTERM):
        signal.signal(sig, handler)
