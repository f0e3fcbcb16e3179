"""Training data: LR/HR displacement pairs, periodic crops and O_h augmentation.

A training sample is a crop of one pair, in a randomly transformed frame of the periodic box:
    lr     (3, n + 2*pad, ...)  float32 normalised LR displacement, ``n = crop`` plus periodic padding
    hr     (3, s*n, ...)        float32 normalised HR displacement of the same region (s = SR factor)
    offset (3,) int64           global LR index of lr[:, 0, 0, 0] in the transformed frame
    box    (3,) int64           LR cells per side of the box (noise keys wrap modulo it)
Displacements are divided by ``disp_scale`` (Mpc/h).

Six channels (``channels=6``, ``model.channels: 6``): lr and hr are (6, ...), the displacement [:3] then the
peculiar velocity [3:] (the files' ``vel`` datasets, km/s) divided by ``vel_scale`` (km/s,
``srsim.model.scaling``); the same O_h element maps both parts as vectors.

Epochs: every pair is tiled by ceil(N_lr / crop)^3 crop positions (the last ones wrap periodically); an
epoch visits each (pair, position) once, in a random order, with a random per-epoch, per-pair shift of the
tiling and a random O_h element per crop. Everything about sample i of epoch e is a pure function of
(seed, e, i), so an interrupted run resumes on exactly the same samples without saving loader state, and
data-parallel ranks agree on the plan without communicating.
"""

from __future__ import annotations

import math
import os
from dataclasses import dataclass
from pathlib import Path
from typing import Sequence

import numpy as np
import torch

from srsim.augment import ELEMENTS, transformed_block
from srsim.errors import SrsimError

__all__ = ["FieldSource", "Pair", "open_pairs", "CropDataset", "EpochPlan", "collate", "rank_indices",
           "parse_data_arg"]

# Fields smaller than this (all pairs together) are read into memory; larger ones are read crop by crop.
IN_MEMORY_BYTES = 4 << 30


class FieldSource:
    """A (3, N, N, N) field of a displacement file, read whole or block by block: the displacement (``disp``,
    Mpc/h) or, with dataset="vel", the velocity (km/s; SrsimError naming the file when it has none).

    The h5py file is opened lazily in the process that reads (data-loader workers fork), never shared.
    """

    def __init__(self, path, in_memory: bool, dataset: str = "disp"):
        from srsim.io.displacement import DATASET, VELOCITY_DATASET, displacement_attrs

        self.path = Path(path)
        self.dataset = dataset
        self.attrs = displacement_attrs(self.path)
        self.shape = tuple(self.attrs["shape"])
        self.n = self.shape[1]
        self._array = None
        self._file = None
        self._pid = None
        if dataset == VELOCITY_DATASET:
            from srsim.io.displacement import open_displacement

            with open_displacement(self.path) as f:
                if VELOCITY_DATASET not in f:
                    raise SrsimError(f"{self.path}: no '{VELOCITY_DATASET}' dataset, which a 6-channel model "
                                     "(model.channels: 6) trains on: rewrite it with `srsim displacement --velocity`")
                if tuple(f[VELOCITY_DATASET].shape) != self.shape:
                    raise SrsimError(f"{self.path}: '{VELOCITY_DATASET}' has shape {f[VELOCITY_DATASET].shape}, "
                                     f"the displacement {self.shape}")
        elif dataset != DATASET:
            raise ValueError(f"FieldSource: dataset must be {DATASET!r} or {VELOCITY_DATASET!r}, got {dataset!r}")
        if in_memory:
            from srsim.io.displacement import read_displacement, read_velocity

            self._array, _ = (read_velocity if dataset == VELOCITY_DATASET else read_displacement)(self.path)

    def nbytes(self) -> int:
        return int(np.prod(self.shape)) * 4

    def field(self):
        """The array (in memory) or the h5py dataset (opened in this process)."""
        if self._array is not None:
            return self._array
        if self._file is None or self._pid != os.getpid():
            from srsim.io.displacement import open_displacement

            self._file = open_displacement(self.path)
            self._pid = os.getpid()
        return self._file[self.dataset]

    def __getstate__(self):
        state = dict(self.__dict__)
        state["_file"] = None
        state["_pid"] = None
        return state


@dataclass
class Pair:
    lr: FieldSource
    hr: FieldSource
    box_size: float
    redshift: float
    lr_vel: FieldSource | None = None  #: the velocity fields of six-channel training, else None
    hr_vel: FieldSource | None = None


def parse_data_arg(values: Sequence[str]) -> list[tuple[str, str]]:
    """['LR.h5:HR.h5', ...] -> [(LR, HR), ...]; SrsimError on a malformed entry."""
    pairs = []
    for v in values:
        parts = v.split(":")
        if len(parts) != 2 or not parts[0] or not parts[1]:
            raise SrsimError(f"--data {v!r}: expected LR.h5:HR.h5 (two displacement files joined by ':')")
        pairs.append((parts[0], parts[1]))
    if not pairs:
        raise SrsimError("--data: at least one LR.h5:HR.h5 pair is needed")
    return pairs


def open_pairs(specs: Sequence[tuple[str, str]], *, scale: int, redshift: float | None = None,
               in_memory: bool | None = None, channels: int = 3) -> list[Pair]:
    """Open and check LR/HR displacement pairs (with channels=6 also their ``vel`` velocity fields).

    Checks (SrsimError naming the file): shapes (3, N, N, N); N_hr = scale * N_lr; LR and HR box sizes and
    redshifts agree; the redshift equals ``redshift`` (when given); all pairs share box size and N_lr; with
    channels=6 every file has a ``vel`` dataset of the displacement's shape.
    """
    if channels not in (3, 6):
        raise SrsimError(f"model.channels: 3 or 6, got {channels!r}")
    pairs = []
    for lr_path, hr_path in specs:
        lr = FieldSource(lr_path, in_memory=False)
        hr = FieldSource(hr_path, in_memory=False)
        if hr.n != scale * lr.n:
            raise SrsimError(f"{hr_path}: HR grid {hr.n}^3 is not {scale} x the LR grid {lr.n}^3 of {lr_path} "
                             f"(the generator upsamples {scale}x)")
        for key in ("box_size", "redshift"):
            a, b = float(lr.attrs[key]), float(hr.attrs[key])
            if not math.isclose(a, b, rel_tol=1e-6, abs_tol=1e-6):
                raise SrsimError(f"{hr_path}: {key} {b} differs from {a} of {lr_path}")
        if redshift is not None and not math.isclose(float(lr.attrs["redshift"]), float(redshift),
                                                     rel_tol=1e-4, abs_tol=1e-4):
            raise SrsimError(f"{lr_path}: redshift {lr.attrs['redshift']} is not the requested {redshift}")
        pairs.append(Pair(lr, hr, float(lr.attrs["box_size"]), float(lr.attrs["redshift"])))
        if channels == 6:
            pairs[-1].lr_vel = FieldSource(lr_path, in_memory=False, dataset="vel")
            pairs[-1].hr_vel = FieldSource(hr_path, in_memory=False, dataset="vel")
    first = pairs[0]
    for (lr_path, _), p in zip(specs, pairs):
        if p.lr.n != first.lr.n or not math.isclose(p.box_size, first.box_size, rel_tol=1e-6):
            raise SrsimError(f"{lr_path}: grid {p.lr.n}^3 / box {p.box_size} differs from the first pair "
                             f"({first.lr.n}^3 / {first.box_size})")
    total = sum(p.lr.nbytes() + p.hr.nbytes() for p in pairs) * (channels // 3)
    if in_memory is None:
        in_memory = total <= IN_MEMORY_BYTES
    if in_memory:
        for (lr_path, hr_path), p in zip(specs, pairs):
            p.lr = FieldSource(lr_path, in_memory=True)
            p.hr = FieldSource(hr_path, in_memory=True)
            if channels == 6:
                p.lr_vel = FieldSource(lr_path, in_memory=True, dataset="vel")
                p.hr_vel = FieldSource(hr_path, in_memory=True, dataset="vel")
    return pairs


class EpochPlan:
    """The samples of one epoch: pair index, crop start (transformed frame) and O_h element per sample."""

    def __init__(self, n_pairs: int, n_lr: int, crop: int, seed: int, epoch: int):
        per_axis = -(-n_lr // crop)
        rng = np.random.default_rng([int(seed), int(epoch), 0x0DA7A])
        grid = np.stack(np.meshgrid(*(np.arange(per_axis),) * 3, indexing="ij"), -1).reshape(-1, 3)
        pair = np.repeat(np.arange(n_pairs), len(grid))
        cell = np.tile(grid, (n_pairs, 1)) * crop
        shift = rng.integers(0, crop, size=(n_pairs, 3))
        order = rng.permutation(len(pair))
        self.pair = pair[order]
        self.start = (cell + shift[pair])[order]
        self.element = rng.integers(0, len(ELEMENTS), size=len(pair))

    def __len__(self) -> int:
        return len(self.pair)


class CropDataset(torch.utils.data.Dataset):
    """Augmented crops of the training pairs; ``set_epoch`` selects the plan (see the module docstring).

    Args:
        pairs: from ``open_pairs``.
        crop: LR cells per side of a crop (without padding).
        pad: LR cells of periodic padding per side (the generator's ``pad``).
        scale: SR factor.
        disp_scale: Mpc/h per normalised displacement unit.
        seed: data seed.
        augment: apply random O_h elements (False: identity, for tests).
        vel_scale: km/s per normalised velocity unit: given, the samples have six channels (the pairs must
            carry velocities, ``open_pairs(channels=6)``); None, three.
    """

    def __init__(self, pairs: Sequence[Pair], crop: int, pad: int, scale: int, disp_scale: float, seed: int,
                 augment: bool = True, vel_scale: float | None = None):
        self.pairs = list(pairs)
        self.vel_scale = None if vel_scale is None else float(vel_scale)
        self.channels = 3 if vel_scale is None else 6
        if self.channels == 6:
            for p in self.pairs:
                if p.lr_vel is None or p.hr_vel is None:
                    raise SrsimError(f"{p.lr.path}: six-channel crops need the pair's velocity fields "
                                     "(open_pairs(..., channels=6))")
        self.crop, self.pad, self.scale = int(crop), int(pad), int(scale)
        self.disp_scale = float(disp_scale)
        self.seed = int(seed)
        self.augment = augment
        self.n_lr = self.pairs[0].lr.n
        self.n_hr = self.pairs[0].hr.n
        self.box_size = self.pairs[0].box_size
        if self.crop > self.n_lr:
            raise SrsimError(f"{self.pairs[0].lr.path}: crop {crop} exceeds the LR grid {self.n_lr}")
        self.plan = None
        self.set_epoch(0)

    @property
    def disp_to_cells(self) -> float:
        """HR mesh cells per normalised displacement unit."""
        return self.disp_scale * self.n_hr / self.box_size

    def set_epoch(self, epoch: int) -> None:
        self.epoch = int(epoch)
        self.plan = EpochPlan(len(self.pairs), self.n_lr, self.crop, self.seed, self.epoch)

    def __len__(self) -> int:
        return len(self.plan)

    def __getitem__(self, i: int) -> dict:
        p = self.pairs[int(self.plan.pair[i])]
        g = ELEMENTS[int(self.plan.element[i])] if self.augment else ELEMENTS[0]
        start = self.plan.start[i]
        lr_start = start - self.pad
        lr = transformed_block(p.lr.field(), g, lr_start, self.crop + 2 * self.pad)
        hr = transformed_block(p.hr.field(), g, self.scale * start, self.scale * self.crop)
        inv = np.float32(1.0 / self.disp_scale)
        lr, hr = lr * inv, hr * inv
        if self.channels == 6:
            # the velocity is a vector like the displacement: the same element maps it (vector=True)
            vinv = np.float32(1.0 / self.vel_scale)
            lr = np.concatenate([lr, transformed_block(p.lr_vel.field(), g, lr_start, self.crop + 2 * self.pad) * vinv])
            hr = np.concatenate([hr, transformed_block(p.hr_vel.field(), g, self.scale * start,
                                                       self.scale * self.crop) * vinv])
        return {"lr": lr, "hr": hr, "offset": lr_start.astype(np.int64),
                "box": np.full(3, self.n_lr, dtype=np.int64)}


def collate(samples: list[dict]) -> dict:
    """Stack samples into a batch of torch tensors."""
    return {k: torch.from_numpy(np.stack([s[k] for s in samples])) for k in samples[0]}


def rank_indices(n_samples: int, batch_size: int, rank: int, world: int, start_batch: int = 0) -> list[int]:
    """Sample indices of this rank, for the batches start_batch.. of an epoch.

    Global batch b holds samples [b*B*W, (b+1)*B*W); rank r takes the r-th slice of B. Incomplete global
    batches are dropped so that every rank takes the same number of steps.
    """
    per_step = batch_size * world
    n_batches = n_samples // per_step
    out = []
    for b in range(start_batch, n_batches):
        base = b * per_step + rank * batch_size
        out.extend(range(base, base + batch_size))
    return out
