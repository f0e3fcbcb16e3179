"""The `generate` driver: plan the chunks, open the store, super-resolve batch after batch, finish.

See the package docstring for the geometry, the output and how a run resumes.
"""

from __future__ import annotations

import sys
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Iterator, Sequence

import numpy as np

from srsim.device import resolve_device
from srsim.errors import SrsimError
from srsim.generate.infer import (LRInput, Model, check_model_input, check_scaling, load_model, minimum_image_,
                                  model_digest, super_resolve)
from srsim.generate.memory import WRITERS, auto_chunk_size
from srsim.generate.plan import Chunk, Plan, plan_chunks
from srsim.generate.profile import StageTimer, stage
from srsim.generate.store import ChunkStore, snapshot_attrs

__all__ = ["GenerateSettings", "GenerateResult", "generate"]


@dataclass(frozen=True)
class GenerateSettings:
    """How `generate` runs: one SR realization of one LR input (the CLI's flags and `generate` config).

    seed: noise seed (one SR realization per seed).
    chunk: window side in LR cells (None: the largest that fits the free memory); batch: windows per
        generator call.
    device: 'auto', 'cpu', 'cuda', 'cuda:N'; bf16: bfloat16 autocast in the generator.
    position_dtype: 'f8' or 'f4' storage of 1/Position.
    writers: background writer threads (None: WRITERS; they write raw block bytes side by side).
    region: (origin, extent) in LR cells (see region_from_cells / region_from_mpc); None = whole box.
    resume: reuse verified chunks of an interrupted run with the same settings (else start afresh).
    max_chunks: stop after generating this many chunks (time-limited jobs; a rerun continues).
    job, jobs: generate only share `job` of `jobs`; with jobs > 1 the output is completed by `finalize`.
    cosmology: cosmology entries missing from the LR input's attributes.
    progress: progress bars on stderr.
    """

    seed: int = 0
    chunk: int | None = None
    batch: int = 1
    device: str = "auto"
    bf16: bool = False
    position_dtype: str = "f8"
    writers: int | None = None
    region: tuple[Sequence[int], Sequence[int]] | None = None
    resume: bool = True
    max_chunks: int | None = None
    job: int = 0
    jobs: int = 1
    cosmology: dict | None = None
    progress: bool = True

    def check(self, out: Path, disp_out) -> None:
        """Refuse combinations that cannot work, before anything is read or written."""
        if self.position_dtype not in ("f4", "f8"):
            raise SrsimError(f"generate: position_dtype must be 'f4' or 'f8', got {self.position_dtype!r}")
        if self.jobs > 1 and not self.resume:
            raise SrsimError(f"{out}: resume=False would discard the other jobs' chunks (jobs = {self.jobs})")
        if self.jobs > 1 and disp_out is not None:
            raise SrsimError(f"{out}: the SR displacement file can only be written by a single job "
                             f"(jobs = {self.jobs})")


@dataclass
class GenerateResult:
    """What a call of `generate` did."""

    path: Path  #: the final snapshot (exists only if complete and finalized)
    complete: bool  #: every chunk of this job is written (and, for a single job, renamed into place)
    n_chunks: int  #: chunks of this job
    generated: int  #: chunks generated in this call
    skipped: int  #: chunks found verified from an earlier run
    particles: int  #: SR particles of the whole output
    seconds: float
    plan: dict = field(default_factory=dict)


def generate(model, lr, out, settings: GenerateSettings = GenerateSettings(), *, disp_out=None,
             stop=None, timer: StageTimer | None = None) -> GenerateResult:
    """Super-resolve an LR box (or a region of it) chunk by chunk into an SR snapshot.

    model: checkpoint path, or a (Generator, meta) pair (meta may hold disp_scale, redshift, box_size, n_lr;
        missing keys skip the corresponding consistency checks).
    lr: LR displacement HDF5 file or LR snapshot directory. A 6-channel model (displacement + velocity) also
        reads its velocities (the file's `vel`, the snapshot's 1/Velocity) and writes 1/Velocity; without
        them it fails before any output exists. A trained 3-channel model given a displacement file with
        velocities (`vel`) fails likewise (the file was made for a 6-channel model); it uses an LR snapshot's
        positions whatever velocities it has, and the trivial predictor takes either.
    out: output snapshot directory (bigfile, MP-Gadget layout; appears only when complete).
    settings: see GenerateSettings.
    disp_out: optional HDF5 path for the SR displacement field (whole box only, single job; displacements
        only, also for a 6-channel model).
    stop: optional callable; when it returns True the run stops after the current batch, leaving a
        resumable partial output (the CLI sets it from SIGUSR1/SIGTERM, e.g. slurm's time-limit warning).
    timer: optional StageTimer charged with each stage's time (benchmarks/generate.py --profile); its
        ``loop_seconds`` is set to the wall time of the chunk loop, writers included.
    """
    from tqdm import tqdm

    t0, s, out = time.perf_counter(), settings, Path(out)
    s.check(out, disp_out)
    dev = resolve_device(s.device, what="generate")
    m = load_model(model, dev)
    # a 6-channel model needs the LR velocities (refused here, before any output, when the input has none)
    with LRInput(lr, velocity=_channels(m) == 6) as src:
        _refuse_unused_velocities(m, src)
        plan = _plan(m, src, s, dev)
        if disp_out is not None and not plan.full_box:
            raise SrsimError(f"{disp_out}: the SR displacement file needs the whole box, not a region")
        with _open_store(m, src, plan, s, dev, out, disp_out, timer) as store:
            todo = store.schedule(s.batch, s.max_chunks)
            with tqdm(total=len(store.chunks), initial=len(store.done), unit="chunk", desc=f"generate {out.name}",
                      disable=not s.progress, file=sys.stderr, dynamic_ncols=True,
                      mininterval=0.5 if sys.stderr.isatty() else 30) as bar:  # log files: a line every 30 s
                t_loop = time.perf_counter()
                for group in _batches(todo, s.batch):
                    if stop is not None and stop():
                        break
                    for c, block in zip(group, _sr_blocks(m, src, plan, group, s, dev, timer)):
                        store.put(c, block)
                    bar.update(len(group))
                    rate = store.written / max(time.perf_counter() - t_loop, 1e-9)
                    bar.set_postfix_str(f"{rate / 1e6:.2f} Mpart/s written", refresh=False)
        if timer is not None:  # the writers have finished on leaving the store
            timer.loop_seconds = time.perf_counter() - t_loop
    return GenerateResult(path=out, complete=store.complete, n_chunks=len(store.chunks),
                          generated=store.generated, skipped=len(store.done), particles=plan.n_particles,
                          seconds=time.perf_counter() - t0, plan=plan.describe())


def _refuse_unused_velocities(m: Model, src: LRInput) -> None:
    """The reverse of the 6-channel refusal: a trained 3-channel model given an LR displacement file that
    holds velocities (`vel`, written by `srsim displacement --velocity` for 6-channel runs) fails here,
    before any output, rather than silently dropping them: such a file was made for a 6-channel model.

    Not refused: LR snapshot directories (MP-Gadget snapshots always carry 1/Velocity, and a 3-channel model
    legitimately uses their positions alone) and the trivial predictor (`srsim generate --trivial`, the
    displacement-only baseline that the workflow also runs on a 6-channel run's LR files)."""
    if _channels(m) != 3 or not src.file_velocity or _is_trivial(m):
        return
    raise SrsimError(f"{src.path}: the LR displacement file has velocities (dataset 'vel') but the model {m.name} "
                     "is 3-channel (displacement only) and would ignore them; recompute the LR displacement "
                     "without --velocity (`srsim displacement SNAPSHOT OUT.h5`), or use a 6-channel model "
                     "(model.channels: 6)")


def _is_trivial(m: Model) -> bool:
    """Whether the generator is the trivial predictor (`trivial_predictor`: hyperparameters()['trivial'])."""
    hyper = getattr(m.gen, "hyperparameters", None)
    return bool(callable(hyper) and hyper().get("trivial"))


def _channels(m: Model) -> int:
    """3 (displacement) or 6 (displacement + velocity): the generator's input channels."""
    channels = int(getattr(m.gen, "in_channels", 3))
    if channels not in (3, 6):
        raise SrsimError(f"{m.name}: a generator of {channels} input channels (srsim models have 3 or 6)")
    if channels == 6 and (m.scaling is None or m.scaling.channels != 6):
        raise SrsimError(f"{m.name}: a 6-channel generator needs a recorded 6-channel scaling (its velocity scale)")
    return channels


def _scales(m: Model):
    """What super_resolve divides the network's input (and multiplies its output) by: disp_scale, or per channel."""
    return m.disp_scale if _channels(m) == 3 else m.scaling.channel_scales()


def _plan(m: Model, src: LRInput, s: GenerateSettings, dev) -> Plan:
    """The chunking of the run: the region (a whole-box region is the whole box) in windows that fit."""
    check_model_input(m.meta, src, int(m.gen.scale))
    n, region = src.n, s.region
    if region is not None and tuple(int(e) for e in region[1]) == (n, n, n):
        region = None  # the whole box, whatever the origin: store it in the standard chunk order
    extent = n if region is None else max(int(e) for e in region[1])
    scale, pad = int(m.gen.scale), int(m.gen.pad)
    size = s.chunk or auto_chunk_size(getattr(m.gen, "widths", (64,)), scale, pad, extent, dev, s.batch,
                                      int(s.writers or WRITERS), velocity=_channels(m) == 6)
    return plan_chunks(n, size, scale, pad, region)


def _open_store(m: Model, src: LRInput, plan: Plan, s: GenerateSettings, dev, out: Path, disp_out,
                timer: StageTimer | None = None) -> ChunkStore:
    """The ChunkStore of this run, with the settings fingerprint a resumed chunk must match."""
    cosmo = {**(s.cosmology or {}), **src.cosmology}
    if "scaling" in m.meta and cosmo:  # recorded scalings only: pre-scaling checkpoints used a fixed unit
        check_scaling(m.scaling, cosmo, src)
    velocity = _channels(m) == 6
    attrs = snapshot_attrs(plan, src, seed=s.seed, model=m.name, cosmology=cosmo, velocity=velocity)
    fingerprint = {"plan": plan.describe(), "seed": int(s.seed), "model": model_digest(m.gen),
                   "lr": _file_identity(src.path), "position_dtype": s.position_dtype, "bf16": bool(s.bf16),
                   "batch": int(s.batch), "device": dev.type, "disp": disp_out is not None,
                   "disp_scale": m.disp_scale}
    if velocity:  # the key only where there are velocities: a 3-channel run's fingerprint is what it was
        fingerprint["vel_scale"] = m.scaling.vel_scale
    disp_attrs = {"box_size": src.box_size, "redshift": src.redshift, "cosmology": cosmo, "seed": int(s.seed),
                  "source": f"srsim generate: model {m.name}, LR {src.path}"}
    return ChunkStore(out, plan, attrs, fingerprint, box_size=src.box_size, job=s.job, jobs=s.jobs,
                      resume=s.resume, position_dtype=s.position_dtype, disp_path=disp_out, disp_attrs=disp_attrs,
                      writers=s.writers, pin=dev.type == "cuda", progress=s.progress, timer=timer,
                      velocity=velocity)


def _sr_blocks(m: Model, src: LRInput, plan: Plan, group: list[Chunk], s: GenerateSettings, dev,
               timer: StageTimer | None = None) -> Iterator:
    """SR displacement of each chunk's kept cells, in turn: (C, scale*a, ...) float32 torch tensors on `dev`,
    [:3] Mpc/h, minimum-image wrapped, [3:] (6-channel models) peculiar velocity km/s; one generator call
    for the group. Refuses a generator output of the wrong
    shape, and a chunk with NaN/inf (the chunks before it are queued for writing by then)."""
    import torch

    scale, pad = plan.scale, plan.pad
    with stage(timer, "lr_read", len(group) * (scale * plan.size) ** 3, sync=False):
        windows = np.stack([src.window(c.window, plan.size, pad) for c in group])
    offsets = np.array([[w - pad for w in c.window] for c in group], dtype=np.int64)
    y = super_resolve(m.gen, windows, offsets, s.seed, src.n, _scales(m), dev, s.bf16, timer)
    expect = (len(group), src.channels) + (scale * plan.size,) * 3
    if tuple(y.shape) != expect:
        raise SrsimError(f"{m.name}: generator returned shape {tuple(y.shape)}, expected {expect}")
    for c, yc in zip(group, y):
        with stage(timer, "particles"):  # its particles are counted once, in ChunkStore.put
            block = plan.kept(c, yc).contiguous()
            # min and max are NaN if any value is, +-inf if any is: one pass where isfinite().all() took a
            # slow strided one
            if not bool(torch.isfinite(torch.stack(torch.aminmax(block))).all()):
                raise SrsimError(f"{m.name}: generator produced NaN/inf in chunk {c.index} "
                                 f"(LR window {c.window}, seed {s.seed})")
            minimum_image_(block[:3], src.box_size)  # in place, the displacement only (block[:3] is a view)
        yield block


def _file_identity(path: Path) -> dict:
    """What identifies the LR input a resumed run must share: resolved path, size, modification time."""
    st = path.stat()
    return {"path": str(path.resolve()), "size": st.st_size, "mtime_ns": st.st_mtime_ns}


def _batches(chunks: list[Chunk], batch: int) -> Iterator[list[Chunk]]:
    for i in range(0, len(chunks), max(1, batch)):
        yield chunks[i:i + batch]
