"""Shared plotting helpers: headless backend, the paper's colours, atomic PNG + PDF output."""

from __future__ import annotations

import os
import textwrap
from pathlib import Path

import matplotlib

matplotlib.use("Agg")  # figures are made on headless nodes; never open a window

import matplotlib.pyplot as plt  # noqa: E402

from srsim.io.atomic import temporary_sibling  # noqa: E402

#: the paper's line colours (Figs. 3, 4): LR purple, HR blue, SR black; Fig. 6 uses LR blue, HR orange
COLORS = {"lr": "#8e44ad", "hr": "#1f77b4", "sr": "black", "orange": "#ff7f0e", "trivial": "0.6"}


def save_figure(fig, out, dpi: int = 150, pdf: bool = True, info: dict[str, str] | None = None) -> list[Path]:
    """Write `fig` to `out` (PNG, size = figsize * dpi exactly: no tight bounding box) and, with pdf, to the
    same stem with .pdf. Each file is written under a temporary name and renamed. Closes the figure.

    `info` is stored as PNG text chunks (read back with :func:`read_png_info`): facts fixed when the figure
    was drawn, such as which panel of Fig. 2 is HR."""
    out = Path(out)
    if out.suffix.lower() != ".png":
        out = out.with_suffix(".png")
    out.parent.mkdir(parents=True, exist_ok=True)
    written = []
    try:
        for path, fmt in ((out, "png"), (out.with_suffix(".pdf"), "pdf"))[: 2 if pdf else 1]:
            tmp = temporary_sibling(path)
            try:
                meta = {f"srsim:{k}": str(v) for k, v in (info or {}).items()} if fmt == "png" else None
                fig.savefig(tmp, format=fmt, dpi=dpi, metadata=meta)
                os.replace(tmp, path)
            finally:
                if tmp.exists():
                    tmp.unlink()
            written.append(path)
    finally:
        plt.close(fig)
    return written


def read_png_info(path) -> dict[str, str]:
    """The `info` that :func:`save_figure` stored in a PNG."""
    from PIL import Image

    with Image.open(path) as img:
        return {k[len("srsim:"):]: v for k, v in img.text.items() if k.startswith("srsim:")}


def zlabel(z: float) -> str:
    """'z = 2' for a panel title."""
    return f"z = {float(z):g}"


def figure_note(fig, *parts: str, tolerance: float | None = None) -> None:
    """One grey line of small print at the top of ``fig``: the given parts, then the tolerance band
    (a fraction, drawn as +-100 x tolerance %) when one is set; empty parts are skipped."""
    items = [p for p in parts if p]
    if tolerance:
        items.insert(1, f"grey band: +-{100 * tolerance:g}%")
    # wrapped to the figure's width (7 pt characters average about 0.6 em): a one-column figure keeps it all
    per_line = max(20, int(fig.get_figwidth() * 72 / (7 * 0.62)))
    text = textwrap.fill("; ".join(items), per_line)
    fig.text(0.5, 0.99, text, ha="center", va="top", fontsize=7, color="0.3")
