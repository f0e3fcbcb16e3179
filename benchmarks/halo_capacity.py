"""Can a generator form the halos of an HR crop it is trained on? Memorize one crop, count FOF halos.

    python benchmarks/halo_capacity.py --pair results/demo/disp/train00/lr/z0.h5:results/demo/disp/train00/hr/z0.h5 \
        --redshift 0 --config config/config.yaml --steps 600 --every 100 --json halo_capacity.json
    python benchmarks/halo_capacity.py ... --adversarial --init models/demo/z0/model.pt --lr 1e-4 \
        --critic-lr 1e-3 --critic-steps 4 --steps 400 --every 50

One training crop (``--crop-index`` of ``srsim.data.CropDataset``, no augmentation, ``model.crop`` LR cells
+ ``model.pad``) is fitted by a generator of ``model.gen_widths`` with Adam (``--lr``, betas (0.9, 0.99)) on
the supervised L2 (Eq. 2) alone, or with ``--density-weight`` w on L2 + w x mean (ln(1 + rho_SR) -
ln(1 + rho_HR))^2 of the crops' CIC densities (``srsim.model.lag2eul``, bulk LR flow removed). The noise
seed is fixed, so the target is a deterministic function of the input: no conditional-mean blurring. Every
``--every`` steps it counts FOF groups (b = ``analysis.fof_b``, >= ``analysis.fof_min_members``; open
boundaries: the crop is a piece of the box) of the SR crop's particles in member bins and prints them
beside HR's and the trivial predictor's (the untrained generator, trilinearly upsampled LR).

With ``--adversarial`` the same crop is fitted by the WGAN-gp step of training itself
(``srsim.train.adversarial_step``: the conditional critic of ``model.critic_widths`` sees displacement and
CIC density; Adam betas (0, 0.99), gradient penalty 10 every step, ``--critic-steps`` critic updates per
generator update at ``--critic-lr``, ``--l2-weight`` x L2 added to the generator's loss, noise amplitudes at
``--noise-lr``; the critic starts untrained): can the adversarial objective form the halos the L2 smooths
away?

It starts from the trivial predictor (zero output projections, ``srsim.model.generator``) unless
``--init`` names a checkpoint. A generator and objective that cannot reproduce the small halos of one
memorized crop cannot learn them from many. Prints a table and writes JSON; no verdict.
"""

from __future__ import annotations

import argparse
import json
import math
import sys
import time
from pathlib import Path

import numpy as np
import torch

from srsim.analysis.fof import fof_groups
from srsim.config import section
from srsim.data import CropDataset, open_pairs, parse_data_arg
from srsim.device import cpu_model
from srsim.model.checkpoint import load_generator
from srsim.distributed import DistContext
from srsim.model.generator import generator_geometry
from srsim.model.lag2eul import lag2eul_density
from srsim.model.layers import lr_to_hr
from srsim.model.scaling import Scaling
from srsim.train import adversarial_step, build_models

MEMBER_EDGES = (32, 100, 1000)  # FOF members: small, intermediate, large halos (and above the last)


def member_bins(npart: np.ndarray, edges=MEMBER_EDGES) -> list[int]:
    """Number of groups with edges[i] <= members < edges[i + 1] (the last bin open)."""
    bounds = list(edges) + [np.iinfo(np.int64).max]
    return [int(((npart >= a) & (npart < b)).sum()) for a, b in zip(bounds[:-1], bounds[1:])]


def crop_groups(disp: np.ndarray, cell: float, b: float, min_members: int) -> np.ndarray:
    """FOF member counts of the particles of a displacement crop (3, m, m, m) in Mpc/h on a lattice of
    spacing cell (Mpc/h); open boundaries."""
    m = disp.shape[1]
    q = np.stack(np.meshgrid(*[np.arange(m) * cell] * 3, indexing="ij"))
    pos = (q + disp.astype(np.float64)).reshape(3, -1).T
    return fof_groups(pos, b * cell, min_members=min_members).npart


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--pair", required=True, metavar="LR.h5:HR.h5", help="a training pair's displacement files")
    ap.add_argument("--redshift", type=float, required=True)
    ap.add_argument("--config", required=True, help="YAML/JSON with model (and analysis) sections")
    ap.add_argument("--crop-index", type=int, default=0)
    ap.add_argument("--init", default=None, help="start from this checkpoint's generator (default: trivial)")
    ap.add_argument("--steps", type=int, default=600)
    ap.add_argument("--every", type=int, default=100)
    ap.add_argument("--lr", type=float, default=1e-3)
    ap.add_argument("--density-weight", type=float, default=0.0)
    ap.add_argument("--adversarial", action="store_true", help="WGAN-gp steps instead of the L2 fit")
    ap.add_argument("--l2-weight", type=float, default=0.0, help="--adversarial: L2 weight in the generator loss")
    ap.add_argument("--critic-lr", type=float, default=None, help="--adversarial: critic Adam lr (default --lr)")
    ap.add_argument("--critic-steps", type=int, default=1)
    ap.add_argument("--noise-lr", type=float, default=None, help="noise amplitudes' Adam lr (default --lr)")
    ap.add_argument("--threads", type=int, default=1)
    ap.add_argument("--json", default=None)
    args = ap.parse_args(argv)
    torch.set_num_threads(args.threads)

    model, analysis = section(args.config, "model"), section(args.config, "analysis")
    levels = len(model["gen_widths"]) - 1
    scale, pad = 2**levels, generator_geometry(levels)[1]
    pairs = open_pairs(parse_data_arg([args.pair]), scale=scale, redshift=args.redshift)
    scaling = Scaling.for_data(model, pairs[0].lr.attrs["cosmology"], args.redshift)
    ds = CropDataset(pairs, model["crop"], pad, scale, scaling.disp_scale, 0, augment=False)
    ds.set_epoch(0)
    s = ds[args.crop_index]
    lr, hr = torch.from_numpy(s["lr"])[None], torch.from_numpy(s["hr"])[None]
    offset, box = torch.from_numpy(s["offset"])[None], s["box"].tolist()
    cell = pairs[0].box_size / pairs[0].hr.n  # Mpc/h
    to_mpc = float(ds.disp_scale)

    train = dict(section(args.config, "train"), lr=args.lr, seed=0, critic_lr=args.critic_lr,
                 noise_lr=args.noise_lr, betas=[0.0, 0.99] if args.adversarial else [0.9, 0.99],
                 channels_last=False, compile=False)
    models = build_models(dict(model, noise=True), train, torch.device("cpu"))
    gen = models.gen
    if args.init:
        gen.load_state_dict(load_generator(args.init)[0].state_dict())
    gen.train()
    opt = models.opt_g
    batch = {"lr": lr, "hr": hr, "offset": offset, "box": torch.tensor([box])}
    ctx = DistContext(device=torch.device("cpu"))

    def groups(d):
        return member_bins(crop_groups(d[0].detach().numpy() * to_mpc, cell, analysis["fof_b"],
                                       analysis["fof_min_members"]))

    trivial = lr_to_hr(lr, scale, pad)
    l2_trivial = float(((trivial - hr) ** 2).mean())
    to_cells = to_mpc / cell
    shift = (lr[:, :, pad:-pad, pad:-pad, pad:-pad].mean(dim=(2, 3, 4)) * to_cells).detach()
    rho_hr = torch.log1p(lag2eul_density(hr, None, disp_to_cells=to_cells, shift=shift))
    ref = {"hr": groups(hr), "trivial": groups(trivial)}
    labels = [f"{a}-{b - 1}" for a, b in zip(MEMBER_EDGES[:-1], MEMBER_EDGES[1:])] + [f">={MEMBER_EDGES[-1]}"]
    print(f"crop {args.crop_index} of {args.pair}: {hr.shape[-1]}^3 HR particles, cell {cell:.4g} Mpc/h, "
          f"widths {model['gen_widths']}, lr {args.lr:g}, "
          + (f"WGAN-gp, L2 weight {args.l2_weight:g}, critic lr {args.critic_lr or args.lr:g} x "
             f"{args.critic_steps}, noise lr {args.noise_lr or args.lr:g}" if args.adversarial
             else f"L2, density weight {args.density_weight:g}"), file=sys.stderr)
    header = f"{'step':>7} {'L2/L2_triv':>10} " + " ".join(f"{'N ' + l:>10}" for l in labels) + "   seconds"
    print(header)
    for name in ("hr", "trivial"):
        print(f"{name:>7} {'':>10} " + " ".join(f"{n:>10d}" for n in ref[name]))
    rows, t0 = [], time.perf_counter()
    for step in range(args.steps + 1):
        if args.adversarial and 0 < step:
            adversarial_step(models, batch, seeds=[0], eps=torch.rand(1), penalty=True, gp_weight=10.0,
                             disp_to_cells=to_cells, ctx=ctx, bf16=False, step=step, density=model["density"],
                             l2_weight=args.l2_weight, critic_steps=args.critic_steps)
        with torch.set_grad_enabled(not args.adversarial):
            sr = gen(lr, offset, 0, box)
        l2 = ((sr - hr) ** 2).mean()
        loss = l2
        if args.density_weight > 0:
            rho = torch.log1p(lag2eul_density(sr, None, disp_to_cells=to_cells, shift=shift))
            loss = l2 + args.density_weight * ((rho - rho_hr) ** 2).mean()
        if not math.isfinite(loss.item()):
            print(f"halo_capacity: non-finite loss at step {step}", file=sys.stderr)
            return 1
        if step % args.every == 0 or step == args.steps:
            row = {"step": step, "l2_ratio": l2.item() / l2_trivial, "groups": groups(sr),
                   "seconds": round(time.perf_counter() - t0, 1)}
            rows.append(row)
            print(f"{step:>7} {row['l2_ratio']:>10.3f} " + " ".join(f"{n:>10d}" for n in row["groups"])
                  + f"   {row['seconds']:>7.1f}", flush=True)
        if step < args.steps and not args.adversarial:
            opt.zero_grad()
            loss.backward()
            opt.step()
    if args.json:
        out = {"pair": args.pair, "crop_index": args.crop_index, "widths": model["gen_widths"], "lr": args.lr,
               "density_weight": args.density_weight, "init": args.init, "adversarial": args.adversarial,
               "l2_weight": args.l2_weight, "critic_lr": args.critic_lr, "critic_steps": args.critic_steps,
               "noise_lr": args.noise_lr, "member_bins": labels,
               "hr": ref["hr"], "trivial": ref["trivial"], "rows": rows,
               "machine": cpu_model(), "threads": args.threads}
        Path(args.json).write_text(json.dumps(out, indent=1))
    return 0


if __name__ == "__main__":
    sys.exit(main())
