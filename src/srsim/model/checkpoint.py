"""Model checkpoints: one torch file holding everything needed to resume training or to generate.

Layout (a dict saved with torch.save):
    format: "srsim-sr-model", version: 1
    generator: {"hyperparameters": {...}, "state_dict": {...}}
    critic:    {"hyperparameters": {...}, "state_dict": {...}}      (absent in generator-only exports)
    opt_generator, opt_critic: optimizer state dicts
    state:  {"step", "epoch", "batch", "adv_steps", "finished"}
    rng:    {"torch", "cuda", "numpy", "python"}
    config: {"model": {...}, "train": {...}}                       (validated config sections)
    meta:   {"disp_scale", "redshift", "box_size", "n_lr", "n_hr", "data": [...], ...}

Files of one training run (`TrainingFiles`), around the final model OUT (e.g. R/models/z0/model.pt):
    OUT                          the final checkpoint (a workflow output)
    OUT_DIR/checkpoints/last.pt  the latest intermediate checkpoint (resume; not a workflow output, so it
                                 survives a failed or preempted job)
    OUT_DIR/checkpoints/losses.csv, val.csv   the running per-step losses and validation scores
    OUT_DIR/losses.csv, val.csv, curve.png    their copies and the training curve, written at the end
"""

from __future__ import annotations

import os
from dataclasses import dataclass
from pathlib import Path

import torch

from srsim.errors import SrsimError
from srsim.io.atomic import atomic_path

__all__ = ["FORMAT", "TrainingFiles", "save_checkpoint", "load_checkpoint", "load_generator"]

FORMAT = "srsim-sr-model"
VERSION = 1


@dataclass(frozen=True)
class TrainingFiles:
    """The files of one training run (layout in the module docstring); each may be placed elsewhere."""

    model: Path  #: the final checkpoint (.pt)
    checkpoint_dir: Path  #: last.pt and the running logs
    losses: Path  #: the per-step loss CSV copied here at the end
    curve: Path  #: the training-curve PNG
    val: Path  #: the validation scores copied here at the end

    @classmethod
    def of(cls, model, *, checkpoint_dir=None, losses=None, curve=None, val=None) -> "TrainingFiles":
        """The layout around `model`; an argument given (not None) replaces that file's default place."""
        model = Path(model)
        d = model.parent

        def place(value, default: Path) -> Path:
            return Path(value) if value else default

        return cls(model, place(checkpoint_dir, d / "checkpoints"), place(losses, d / "losses.csv"),
                   place(curve, d / "curve.png"), place(val, d / "val.csv"))

    @property
    def last(self) -> Path:
        """The latest intermediate checkpoint."""
        return self.checkpoint_dir / "last.pt"

    @property
    def running_val(self) -> Path:
        """The validation scores while training runs."""
        return self.checkpoint_dir / "val.csv"


def save_checkpoint(path, state: dict) -> None:
    """Write ``state`` with torch.save atomically (temporary sibling, fsync, rename)."""
    path = Path(path)
    with atomic_path(path) as tmp:
        with open(tmp, "wb") as f:
            torch.save(state, f)
            f.flush()
            os.fsync(f.fileno())


def load_checkpoint(path, device="cpu") -> dict:
    """Read a checkpoint written by ``save_checkpoint``; SrsimError if it is missing or not ours."""
    path = Path(path)
    if not path.is_file():
        raise SrsimError(f"{path}: model checkpoint not found")
    try:
        state = torch.load(path, map_location=device, weights_only=False)
    except Exception as exc:  # torch raises many types for corrupt files
        raise SrsimError(f"{path}: cannot read as a torch checkpoint: {exc}") from exc
    if not isinstance(state, dict) or state.get("format") != FORMAT:
        raise SrsimError(f"{path}: not an srsim model checkpoint (format {state.get('format') if isinstance(state, dict) else type(state).__name__!r})")
    if state.get("version", 0) > VERSION:
        raise SrsimError(f"{path}: checkpoint version {state['version']} is newer than this srsim ({VERSION})")
    return state


def load_generator(path, device="cpu"):
    """(Generator in eval mode on ``device``, meta dict) from a checkpoint.

    meta holds the generator hyper-parameters (widths, noise, in/out channels), its geometry (pad,
    scale), the training data description (disp_scale, redshift, box_size, n_lr, n_hr) and the training
    progress (step, epoch).
    """
    from srsim.model.generator import Generator

    state = load_checkpoint(path, device=device)
    hp = state["generator"]["hyperparameters"]
    gen = Generator(**hp)
    try:
        gen.load_state_dict(state["generator"]["state_dict"])
    except RuntimeError as exc:
        raise SrsimError(f"{path}: generator weights do not match its hyper-parameters: {exc}") from exc
    gen.to(device).eval()
    meta = dict(state.get("meta", {}))
    meta.update(hp)
    meta.update({"pad": gen.pad, "scale": gen.scale, "step": state["state"]["step"],
                 "epoch": state["state"]["epoch"], "finished": state["state"].get("finished", False),
                 "config": state.get("config", {})})
    return gen, meta
