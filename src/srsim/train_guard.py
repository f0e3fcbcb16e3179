"""Stopping a training run that has gone wrong, before the bad step is checkpointed.

``check_batch``: NaN/inf in a batch's LR or HR crops; ``check_finite``: a NaN/inf loss; ``ExplosionGuard``:
a finite loss far above its recent values. Each raises an ``SrsimError`` naming the step and the phase;
the trainer has not yet moved its step counter, so the last checkpoint on disk is the last good one.
"""

from __future__ import annotations

import math

import numpy as np
import torch

from srsim.errors import SrsimError

__all__ = ["NonFiniteLoss", "LossExploded", "check_finite", "check_batch", "ExplosionGuard"]


class NonFiniteLoss(SrsimError):
    """A loss or a batch became NaN or inf; the last good checkpoint is left in place."""


class LossExploded(SrsimError):
    """A loss grew far beyond its recent values; the last good checkpoint is left in place."""


def check_finite(values: dict, step: int, phase: str) -> None:
    bad = {k: v for k, v in values.items() if not math.isfinite(v)}
    if bad:
        raise NonFiniteLoss(f"step {step} ({phase}): non-finite loss {bad}; stopping. The last good checkpoint "
                            "was kept: lower train.lr, check the data (disp_scale) or resume from it")


def check_batch(batch: dict, step: int, phase: str) -> None:
    """NonFiniteLoss naming the step and phase when an input or target holds NaN or inf."""
    for key in ("lr", "hr"):
        if not bool(torch.isfinite(batch[key]).all()):
            raise NonFiniteLoss(f"step {step} ({phase}): the batch's {key.upper()} displacement holds NaN or "
                                "inf; stopping. The last good checkpoint was kept: check the training data")


class ExplosionGuard:
    """Stops a run whose loss explodes: |loss| above ``factor`` x the median |loss| of the last ``window``
    steps of the same phase and key (after ``window // 4`` steps of history).

    A ratio to the run's own recent values, not an absolute threshold: losses differ by orders of
    magnitude between phases, redshifts and widths. Factor 0 switches the guard off.
    """

    KEYS = {"supervised": ("l2",), "adversarial": ("critic", "generator")}
    FLOOR = 1e-3  # network units: the losses of O(1) normalised fields

    def __init__(self, factor: float, window: int = 200):
        self.factor = float(factor)
        self.window = int(window)
        self.history: dict = {}

    def check(self, values: dict, step: int, phase: str, kind: str = "") -> None:
        """kind: steps of one phase whose losses differ by construction (e.g. 'gp': critic steps carrying
        the lazy gradient penalty, about gp_lambda x gp_every above the others while the critic's gradient
        norm is far from 1) are compared only with their own kind."""
        if self.factor <= 0:
            return
        for key in self.KEYS.get(phase, ()):
            v = values.get(key)
            if v is None or not math.isfinite(v):
                continue
            hist = self.history.setdefault((phase, kind, key), [])
            if len(hist) >= max(4, self.window // 4):
                # the floor keeps a WGAN loss that hovers about zero from reading as an explosion
                ref = max(float(np.median(np.abs(hist))), self.FLOOR)
                if abs(v) > self.factor * ref:
                    raise LossExploded(
                        f"step {step} ({phase}): {key} loss {v:.4g} is {abs(v) / ref:.3g} x its median "
                        f"|{key}| = {ref:.4g} over the last {len(hist)} steps (train.explode = {self.factor:g}); "
                        "stopping. The last good checkpoint was kept: lower train.lr or resume from it")
            hist.append(v)
            del hist[:-self.window]
