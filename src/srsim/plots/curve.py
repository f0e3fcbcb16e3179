"""The training curve of `srsim train`: losses (and validation scores) against the step."""

from __future__ import annotations

import csv
from pathlib import Path

import numpy as np

from srsim.io.atomic import atomic_path
from srsim.plots.common import plt


def plot_curve(csv_path, png_path, title: str = "", val_csv=None) -> None:
    """Training curve: supervised L2 and adversarial losses vs step, written atomically as a PNG (10 x 3.8 inches,
    15 x 3.8 with validation, 120 dpi).

    ``csv_path``: a ``srsim.train.LossLog`` CSV (step, epoch, phase and the losses).

    With ``val_csv`` (a ``srsim.validation`` log with rows) a third panel shows the validation scores, and a
    fourth (20 x 3.8 inches) its halo counts when it has them.
    """
    with open(csv_path, newline="") as f:
        rows = list(csv.DictReader(f))

    def series(phase, key):
        pts = [(int(r["step"]), float(r[key])) for r in rows if r["phase"] == phase and r[key] not in ("", None)]
        return np.array(pts).reshape(-1, 2)

    def smooth(y, w):
        """Running mean over w steps, edge-corrected (a zero-padded mean would dip at both ends)."""
        if len(y) < 2 * w or w < 2:
            return y
        ones = np.ones(len(y))
        return np.convolve(y, np.ones(w), mode="same") / np.convolve(ones, np.ones(w), mode="same")

    def empty(ax):
        # a fine-tuning run may have one phase only: say so instead of drawing bare unit axes
        ax.text(0.5, 0.5, "no steps of this phase in this run", transform=ax.transAxes, ha="center",
                va="center", color="0.4")
        ax.set_xticks([])
        ax.set_yticks([])

    val_rows = []
    if val_csv is not None and Path(val_csv).is_file():
        with open(val_csv, newline="") as f:
            val_rows = list(csv.DictReader(f))
    from srsim.validation import has_halo_scores

    panels = 2 + bool(val_rows) + has_halo_scores(val_rows)
    fig, axes = plt.subplots(1, panels, figsize=(5 * panels, 3.8))
    s = series("supervised", "l2")
    ax = axes[0]
    if len(s):
        ax.plot(s[:, 0], s[:, 1], lw=0.6, alpha=0.4, color="C0")
        ax.plot(s[:, 0], smooth(s[:, 1], max(1, len(s) // 50)), color="C0", label="L2 (Eq. 2)")
        ax.set_yscale("log")
        ax.legend()
    else:
        empty(ax)
    ax.set_xlabel("step")
    ax.set_title("supervised warm-up")
    ax = axes[1]
    for i, (key, label) in enumerate([("wdist", "W distance D(h) - D(G(l))"), ("generator", "generator loss -D(G(l))")]):
        a = series("adversarial", key)
        if len(a):
            ax.plot(a[:, 0], smooth(a[:, 1], max(1, len(a) // 50)), color=f"C{i + 1}", label=label)
    ax.set_xlabel("step")
    ax.set_title("WGAN-gp (Eq. 3)")
    if ax.lines:
        ax.legend(loc="upper left")
    else:
        empty(ax)
    gp = series("adversarial", "gp")
    gp = gp[np.isfinite(gp[:, 1])]
    if len(gp):  # the penalty (applied every gp_every critic steps) on its own axis
        ax2 = ax.twinx()
        ax2.plot(gp[:, 0], gp[:, 1], ".", ms=3, color="C3", label="gradient penalty")
        ax2.set_ylabel("gradient penalty")
        ax2.legend(loc="lower right")
    if val_rows:
        from srsim.validation import plot_validation, plot_validation_halos

        plot_validation(axes[2], val_rows)
        if panels == 4:
            plot_validation_halos(axes[3], val_rows)
    if title:
        fig.suptitle(title)
    fig.tight_layout()
    png_path = Path(png_path)
    png_path.parent.mkdir(parents=True, exist_ok=True)
    with atomic_path(png_path) as tmp:
        fig.savefig(tmp, format="png", dpi=120)
    plt.close(fig)
