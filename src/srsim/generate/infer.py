"""The model side of generation: the LR input read window by window, the generator (a checkpoint or the
trivial predictor) and its consistency checks, and SR displacements turned into particles.

Units: displacements in Mpc/h, positions in Mpc/h wrapped into [0, box), SR grid IDs
``i*n_hr^2 + j*n_hr + k + 1``. The generator's noise is keyed by global voxel indices, so what it returns
for a cell does not depend on the chunking (DESIGN.md invariant 3).
"""

from __future__ import annotations

import hashlib
import json
import os
from dataclasses import dataclass
from pathlib import Path
from typing import Sequence

import numpy as np

from srsim.errors import SrsimError
from srsim.fields import read_periodic

__all__ = ["LRInput", "Model", "load_model", "check_model_input", "check_scaling", "model_digest",
           "super_resolve", "trivial_predictor", "trivial_generator", "chunk_ids", "chunk_particles", "minimum_image_"]


class LRInput:
    """The LR displacement field (3, n, n, n) float32 Mpc/h, read window by window; with `velocity` also the
    peculiar velocity (3, n, n, n) float32 km/s, windows then (6, ...): displacement, velocity.

    path: an HDF5 displacement file (sliced lazily, so a 640^3 box is never loaded whole; the velocity is its
    ``vel`` dataset) or a snapshot directory (converted with positions_to_displacement, the velocity from its
    1/Velocity block; the whole LR field is then in memory). Without `velocity` a file's velocities are
    ignored. With it, an input that has none fails here (SrsimError naming the file and the dataset or
    block), before any output exists. Attributes: n, box_size (Mpc/h), redshift, cosmology (dict), path,
    channels (3 or 6), file_velocity (True when `path` is a displacement file holding ``vel``, read or not).
    """

    def __init__(self, path, velocity: bool = False):
        self.path = Path(path)
        self._file = None
        self._vel = None
        self.file_velocity = False
        if self.path.is_dir():
            from srsim.displacement import snapshot_fields

            disp, self._vel, attrs = snapshot_fields(self.path, velocity=velocity)
            self._data = disp
        else:
            from srsim.io.displacement import VELOCITY_DATASET, displacement_attrs, open_displacement

            attrs = displacement_attrs(self.path)
            self._file = open_displacement(self.path)
            self._data = self._file["disp"]
            self.file_velocity = VELOCITY_DATASET in self._file
            if velocity:
                if VELOCITY_DATASET not in self._file:
                    self.close()
                    raise SrsimError(f"{self.path}: no '{VELOCITY_DATASET}' dataset, which the 6-channel model "
                                     "needs as input: rewrite the LR file with `srsim displacement --velocity`")
                self._vel = self._file[VELOCITY_DATASET]
                if tuple(self._vel.shape) != tuple(self._data.shape):
                    self.close()
                    raise SrsimError(f"{self.path}: '{VELOCITY_DATASET}' has shape {self._vel.shape}, the "
                                     f"displacement {self._data.shape}")
        self.channels = 6 if velocity else 3
        self.n = int(self._data.shape[1])
        self.box_size = float(attrs["box_size"])
        self.redshift = float(attrs["redshift"])
        self.cosmology = dict(attrs.get("cosmology") or {})

    def window(self, origin: Sequence[int], size: int, pad: int) -> np.ndarray:
        """(C, size+2*pad, ...) float32: cells origin-pad .. origin+size+pad-1, periodically wrapped (C = 3,
        Mpc/h; or 6: then [3:] the velocity in km/s)."""
        block = read_periodic(self._data, [o - pad for o in origin], size + 2 * pad, self.n)
        if self._vel is not None:
            block = np.concatenate([block, read_periodic(self._vel, [o - pad for o in origin], size + 2 * pad,
                                                         self.n)])
        if not np.all(np.isfinite(block)):
            raise SrsimError(f"{self.path}: LR displacement contains NaN or inf near cell {tuple(origin)}")
        return block

    def close(self) -> None:
        if self._file is not None:
            self._file.close()
            self._file = None

    def __enter__(self):
        return self

    def __exit__(self, *exc):
        self.close()
        return False


@dataclass
class Model:
    """A generator ready for inference and what is known of its training data.

    gen: torch module on the run's device, in eval mode (attributes scale, pad, widths);
    meta: checkpoint metadata (may hold disp_scale, redshift, box_size, n_lr, n_hr, scaling);
    name: checkpoint path, or the module's class name; disp_scale: Mpc/h per network unit;
    scaling: the recorded ``srsim.model.scaling.Scaling`` (None for a bare module without one).
    """

    gen: object
    meta: dict
    name: str
    disp_scale: float
    scaling: object = None


def load_model(model, device) -> Model:
    """A checkpoint path, or a (module, meta) pair, as a Model on `device` (torch.device)."""
    if isinstance(model, (str, os.PathLike)):
        from srsim.model.checkpoint import load_generator

        gen, meta = load_generator(model, device=device)
        name = str(Path(model).resolve())
    else:
        gen, meta = model
        gen = gen.to(device).eval()
        name = type(gen).__name__
    meta = dict(meta or {})
    if "scaling" in meta or isinstance(model, (str, os.PathLike)):
        from srsim.model.scaling import Scaling

        scaling = Scaling.from_meta(meta, name)
        return Model(gen, meta, name, scaling.disp_scale, scaling)
    return Model(gen, meta, name, float(meta.get("disp_scale", 1.0)))


def check_model_input(meta: dict, src: LRInput, scale: int) -> None:
    """The model is resolution- and redshift-specific: refuse an LR input it was not trained for."""
    if "redshift" in meta and meta["redshift"] is not None and abs(float(meta["redshift"]) - src.redshift) > 1e-3:
        raise SrsimError(f"{src.path}: LR input is at z = {src.redshift:g} but the model was trained at "
                         f"z = {float(meta['redshift']):g}")
    if meta.get("box_size") and meta.get("n_lr"):
        trained = float(meta["box_size"]) / int(meta["n_lr"])
        cell = src.box_size / src.n
        if abs(cell / trained - 1) > 1e-3:
            raise SrsimError(f"{src.path}: LR cell of {cell:g} Mpc/h but the model was trained on "
                             f"{trained:g} Mpc/h cells (box {meta['box_size']}, n_lr {meta['n_lr']})")
    if meta.get("n_lr") and meta.get("n_hr") and int(meta["n_hr"]) // int(meta["n_lr"]) != scale:
        raise SrsimError(f"generate: model meta says n_hr/n_lr = {meta['n_hr']}/{meta['n_lr']} but the generator "
                         f"scale is {scale}")


def check_scaling(scaling, cosmo: dict, src: LRInput) -> None:
    """The model's D(z) scaling must be that of the LR input's cosmology and redshift."""
    from srsim.model.scaling import Scaling

    data = Scaling.for_data({"disp_scale": scaling.disp_unit, "density": scaling.density,
                             "channels": scaling.channels}, cosmo, src.redshift)
    scaling.check_matches(data, str(src.path))


def model_digest(gen) -> str:
    """SHA-256 (hex, 16 chars) of the generator's hyper-parameters and weights: resumed chunks must match."""
    h = hashlib.sha256()
    h.update(json.dumps(getattr(gen, "hyperparameters", lambda: {})(), sort_keys=True).encode())
    for name, t in sorted(gen.state_dict().items()):
        h.update(name.encode())
        h.update(t.detach().cpu().contiguous().numpy().tobytes())
    return h.hexdigest()[:16]


def super_resolve(gen, windows: np.ndarray, offsets: np.ndarray, seed: int, n_lr: int, disp_scale,
                  device, bf16: bool = False, timer=None):
    """Run the generator on a batch of padded LR windows.

    windows: (B, C, m, m, m) float32 LR fields including the periodic padding (C = 3: displacement in Mpc/h;
    6: then the velocity in km/s); offsets: (B, 3) int global LR cell of windows[:, :, 0, 0, 0].
    disp_scale: physical units per network unit, one number (3 channels, Mpc/h) or one per channel
    (``Scaling.channel_scales``). Returns a (B, C, scale*(m-2*pad), ...) float32 torch tensor on `device`, in
    the windows' units (network in/out are divided by the scales).
    timer: optional srsim.generate.profile.StageTimer (charges 'h2d' and 'generator').
    """
    import torch

    from srsim.generate.profile import stage

    scale = int(getattr(gen, "scale", 1))
    sr_cells = int(windows.shape[0]) * (scale * (int(windows.shape[-1]) - 2 * int(getattr(gen, "pad", 0)))) ** 3
    with stage(timer, "h2d", sr_cells):
        x = torch.from_numpy(np.ascontiguousarray(windows))
        if device.type == "cuda":
            x = x.pin_memory()
        x = x.to(device, non_blocking=True)
    if not np.isscalar(disp_scale):  # per channel: a (1, C, 1, 1, 1) tensor broadcasts over the batch
        disp_scale = torch.tensor([float(v) for v in disp_scale], dtype=torch.float32,
                                  device=device).view(1, -1, 1, 1, 1)
    with stage(timer, "generator", sr_cells):
        if not isinstance(disp_scale, float) or disp_scale != 1.0:
            x = x / disp_scale
        off = torch.as_tensor(np.asarray(offsets), dtype=torch.int64)
        with torch.inference_mode(), torch.autocast(device.type, dtype=torch.bfloat16, enabled=bool(bf16)):
            y = gen(x, off, seed, (n_lr, n_lr, n_lr))
        y = y.float()
        if not isinstance(disp_scale, float) or disp_scale != 1.0:
            y = y * disp_scale
    return y


def trivial_predictor(levels: int):
    """Stand-in for the generator: SR = the LR displacement trilinearly upsampled onto the HR lattice.

    This is what the untrained generator returns (its output projections start at zero), so an SR snapshot
    made with it is the *trivial* baseline every metric is compared against. A torch module (class name
    ``TrivialPredictor``, recorded as the snapshot's ``SRModel``) with the interface of
    ``srsim.model.generator.Generator``: ``scale = 2**levels``, ``pad`` from ``generator_geometry(levels)``,
    ``widths``, forward(x, offset, seed, box_cells). No weights, no noise (one realization only).
    """
    import torch

    from srsim.model.generator import generator_geometry
    from srsim.model.layers import lr_to_hr

    if int(levels) < 1:
        raise SrsimError(f"generate --trivial: the generator needs >= 2 widths (>= 1 rung), got {levels} rungs")

    class TrivialPredictor(torch.nn.Module):
        def __init__(self):
            super().__init__()
            self.levels = int(levels)
            self.scale = 2 ** self.levels
            self.pad = int(generator_geometry(self.levels)[1])
            self.widths = (3,) * (self.levels + 1)  # memory estimate: only the 3-channel interpolated field

        def hyperparameters(self) -> dict:
            return {"trivial": True, "levels": self.levels, "scale": self.scale, "pad": self.pad}

        def forward(self, x, offset=None, seed=0, box_cells=None):
            """(B, C, n+2 pad, ...) padded LR crop -> (B, C, scale n, ...); sample 0 at HR cell scale (o+pad)."""
            return lr_to_hr(x, self.scale, self.pad)

    return TrivialPredictor()


def trivial_generator(model_cfg: dict):
    """The trivial predictor with the geometry the config's generator (``model.gen_widths``) would have."""
    widths = model_cfg.get("gen_widths") if model_cfg else None
    if not widths:
        raise SrsimError("generate --trivial: the config needs model.gen_widths to set the SR scale and padding")
    return trivial_predictor(len(widths) - 1)


def chunk_ids(hr_origin: Sequence[int], shape: Sequence[int], n_hr: int, device=None):
    """SR grid IDs ``i*n_hr^2 + j*n_hr + k + 1`` of the HR cells hr_origin + [0, shape) (wrapped mod n_hr).

    A pure function of the block's place in the grid: (A*B*C,) int64 torch tensor on `device`, C order,
    built from per-axis index vectors in one pass over the particles.
    """
    import torch

    idx = [torch.remainder(torch.arange(int(s), dtype=torch.int64, device=device) + int(o), n_hr)
           for o, s in zip(hr_origin, shape)]
    plane = idx[0][:, None, None] * (n_hr * n_hr) + idx[1][None, :, None] * n_hr + 1  # (A, B, 1): small
    return (plane + idx[2][None, None, :]).reshape(-1)


def chunk_particles(disp, hr_origin: Sequence[int], n_hr: int, box_size: float, position_dtype: str = "f8"):
    """Positions and IDs of a block of SR particles, as stored in the snapshot (torch, on the block's device).

    disp: (3, A, B, C) float32 SR displacement in Mpc/h of HR cells hr_origin + [0, (A, B, C)) (wrapped
    mod n_hr). Returns (pos (A*B*C, 3) kpc/h of `position_dtype` ('f4' or 'f8') wrapped into [0, BoxSize),
    ids (A*B*C,) int64 (`chunk_ids`)), C order.

    Each coordinate is the float64 sum grid point + displacement (Mpc/h), wrapped into the box, times
    1000, rounded once to the stored dtype: bit for bit what SnapshotWriter.write stores for the float64
    positions in Mpc/h, without an (N, 3) float64 array or a host pass. A value that rounds to BoxSize
    itself is stored as 0.
    """
    import torch

    from srsim.io.snapshot import KPC_PER_MPC

    if position_dtype not in ("f4", "f8"):
        raise SrsimError(f"chunk_particles: position_dtype must be 'f4' or 'f8', got {position_dtype!r}")
    dev, shape = disp.device, tuple(int(s) for s in disp.shape[1:])
    out_dtype = torch.float32 if position_dtype == "f4" else torch.float64
    pos = torch.empty(shape + (3,), dtype=out_dtype, device=dev)
    cell = box_size / n_hr
    view = [(-1, 1, 1), (1, -1, 1), (1, 1, -1)]
    for c, (o, s) in enumerate(zip(hr_origin, shape)):
        i = torch.remainder(torch.arange(s, dtype=torch.int64, device=dev) + int(o), n_hr)
        q = (i.double() * cell).view(view[c])  # float64: an int64 tensor times a float would give float32
        x = disp[c] + q  # float32 + float64 -> float64, one pass
        lo, hi = torch.aminmax(x)
        if bool(lo < 0) or bool(hi >= box_size):  # rare: only particles displaced across the box edge
            bad = (x < 0) | (x >= box_size)
            w = torch.remainder(x[bad], box_size) + 0.0  # + 0.0: remainder(-box, box) is -0.0, store +0.0
            x[bad] = torch.where(w >= box_size, w - box_size, w)  # remainder of tiny negatives rounds to box
        x.mul_(KPC_PER_MPC)
        pos[..., c].copy_(x)
    edge = torch.tensor(box_size * KPC_PER_MPC, dtype=torch.float64).to(out_dtype).item()
    pos.masked_fill_(pos >= edge, 0)  # rounding to the stored dtype landed on BoxSize: that is 0
    return pos.reshape(-1, 3), chunk_ids(hr_origin, shape, n_hr, dev)


def minimum_image_(disp, box_size: float):
    """Wrap displacements into [-box/2, box/2) in place, touching only the (rare) values outside."""
    import torch

    half = 0.5 * box_size
    lo, hi = torch.aminmax(disp)
    if bool(lo < -half) or bool(hi >= half):
        bad = (disp < -half) | (disp >= half)
        disp[bad] = torch.remainder(disp[bad] + half, box_size) - half
    return disp


