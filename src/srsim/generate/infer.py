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
           "super_resolve", "trivial_predictor", "trivial_generator", "chunk_particles", "minimum_image_"]


class LRInput:
    """The LR displacement field (3, n, n, n) float32 Mpc/h, read window by window.

    path: an HDF5 displacement file (sliced lazily, so a 640^3 box is never loaded whole) or a snapshot
    directory (converted with positions_to_displacement; the whole LR field is then in memory).
    Attributes: n, box_size (Mpc/h), redshift, cosmology (dict), path.
    """

    def __init__(self, path):
        self.path = Path(path)
        self._file = None
        if self.path.is_dir():
            from srsim.displacement import snapshot_displacement

            disp, attrs = snapshot_displacement(self.path)
            self._data = disp
        else:
            from srsim.io.displacement import displacement_attrs, open_displacement

            attrs = displacement_attrs(self.path)
            self._file = open_displacement(self.path)
            self._data = self._file["disp"]
        self.n = int(self._data.shape[1])
        self.box_size = float(attrs["box_size"])
        self.redshift = float(attrs["redshift"])
        self.cosmology = dict(attrs.get("cosmology") or {})

    def window(self, origin: Sequence[int], size: int, pad: int) -> np.ndarray:
        """(3, size+2*pad, ...) float32 Mpc/h: cells origin-pad .. origin+size+pad-1, periodically wrapped."""
        block = read_periodic(self._data, [o - pad for o in origin], size + 2 * pad, self.n)
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

    data = Scaling.for_data({"disp_scale": scaling.disp_unit, "density": scaling.density}, cosmo, src.redshift)
    scaling.check_matches(data, str(src.path))


def model_digest(gen) -> str:
    """SHA-256 (hex, 16 chars) of the generator's hyper-parameters and weights: resumed chunks must match."""
    h = hashlib.sha256()
    h.update(json.dumps(getattr(gen, "hyperparameters", lambda: {})(), sort_keys=True).encode())
    for name, t in sorted(gen.state_dict().items()):
        h.update(name.encode())
        h.update(t.detach().cpu().contiguous().numpy().tobytes())
    return h.hexdigest()[:16]


def super_resolve(gen, windows: np.ndarray, offsets: np.ndarray, seed: int, n_lr: int, disp_scale: float,
                  device, bf16: bool = False):
    """Run the generator on a batch of padded LR windows.

    windows: (B, 3, m, m, m) float32 LR displacement in Mpc/h including the periodic padding;
    offsets: (B, 3) int global LR cell of windows[:, :, 0, 0, 0]. Returns a (B, 3, scale*(m-2*pad), ...)
    float32 torch tensor on `device`, SR displacement in Mpc/h (network in/out are divided by disp_scale).
    """
    import torch

    x = torch.from_numpy(np.ascontiguousarray(windows))
    if device.type == "cuda":
        x = x.pin_memory()
    x = x.to(device, non_blocking=True)
    if disp_scale != 1.0:
        x = x / disp_scale
    off = torch.as_tensor(np.asarray(offsets), dtype=torch.int64)
    with torch.inference_mode(), torch.autocast(device.type, dtype=torch.bfloat16, enabled=bool(bf16)):
        y = gen(x, off, seed, (n_lr, n_lr, n_lr))
    y = y.float()
    if disp_scale != 1.0:
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


def chunk_particles(disp, hr_origin: Sequence[int], n_hr: int, box_size: float):
    """Positions and IDs of a block of SR particles (torch, on the block's device).

    disp: (3, A, B, C) SR displacement in Mpc/h of HR cells hr_origin + [0, (A, B, C)) (wrapped mod n_hr).
    Returns (pos (A*B*C, 3) float64 Mpc/h wrapped into [0, box), ids (A*B*C,) int64), C order.
    """
    import torch

    dev = disp.device
    cell = box_size / n_hr
    idx = [torch.remainder(torch.arange(s, dtype=torch.int64, device=dev) + int(o), n_hr)
           for o, s in zip(hr_origin, disp.shape[1:])]
    A, B, C = disp.shape[1:]
    pos = torch.empty((A, B, C, 3), dtype=torch.float64, device=dev)
    q = [i.double() * cell for i in idx]  # float64: an int64 tensor times a float would give float32
    pos[..., 0] = disp[0].double() + q[0][:, None, None]
    pos[..., 1] = disp[1].double() + q[1][None, :, None]
    pos[..., 2] = disp[2].double() + q[2][None, None, :]
    pos = torch.remainder(pos, box_size)
    pos = torch.where(pos >= box_size, pos - box_size, pos)  # remainder of tiny negatives rounds to box
    ids = (idx[0][:, None, None] * (n_hr * n_hr) + idx[1][None, :, None] * n_hr + idx[2][None, None, :] + 1)
    return pos.reshape(-1, 3), ids.reshape(-1)


def minimum_image_(disp, box_size: float):
    """Wrap displacements into [-box/2, box/2) in place, touching only the (rare) values outside."""
    import torch

    half = 0.5 * box_size
    bad = (disp < -half) | (disp >= half)
    if bool(bad.any()):
        disp[bad] = torch.remainder(disp[bad] + half, box_size) - half
    return disp


