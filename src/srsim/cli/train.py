"""`srsim train`: train the SR generator of one redshift on LR/HR displacement pairs.

Single process:   srsim train --data LR.h5:HR.h5 ... --redshift Z --config CFG --out R/models/zZ/model.pt
Several GPUs:     torchrun --standalone --nproc-per-node N --no-python srsim train ... (same arguments)

The files of a run are laid out as `srsim.model.checkpoint` documents (TrainingFiles): intermediate
checkpoints (last.pt) and the running loss CSV go to OUT_DIR/checkpoints/ (not a workflow output, so they
survive a failed or preempted job); with --resume training continues from last.pt exactly.
On SIGUSR1 or SIGTERM the current step is finished, last.pt is written and the command exits with code 75
(EX_TEMPFAIL). At the end OUT (model.pt), the loss CSV and the training-curve plot are written atomically.

With --val LR.h5:HR.h5 (held-out pairs of the training pairs' box, grids and redshift) the generator
super-resolves them every train.val_every steps and at the end (srsim.validation): the scores go to
CHECKPOINT_DIR/val.csv, are copied to --val-csv (default OUT_DIR/val.csv) and drawn in the curve's third panel
(and, with train.val_halos, FOF halo counts in the HMF mass bins of the config's analysis section in a fourth).
"""

from __future__ import annotations

import argparse
import sys

COMMAND = "train"
HELP = "train the super-resolution GAN of one redshift (supervised warm-up, then WGAN-gp)"

EXIT_PREEMPTED = 75


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--data", nargs="+", required=True, metavar="LR.h5:HR.h5",
                        help="training pairs of LR and HR displacement files (same box, same redshift)")
    parser.add_argument("--redshift", type=float, required=True, help="redshift of the data (checked)")
    parser.add_argument("--config", required=True,
                        help="JSON string or YAML file with the 'model' and 'train' sections (and 'analysis', "
                             "'figures' for validation's halo counts; missing sections take the schema defaults)")
    parser.add_argument("--out", required=True, help="final model checkpoint (e.g. R/models/z0/model.pt)")
    parser.add_argument("--resume", action="store_true",
                        help="continue from CHECKPOINT_DIR/last.pt if it exists (else start fresh)")
    parser.add_argument("--checkpoint-dir", default=None, help="intermediate checkpoints (default OUT_DIR/checkpoints)")
    parser.add_argument("--log-csv", default=None, help="per-step losses copied here at the end (default OUT_DIR/losses.csv)")
    parser.add_argument("--plot", default=None, help="training curve PNG (default OUT_DIR/curve.png)")
    parser.add_argument("--val", nargs="+", default=None, metavar="LR.h5:HR.h5",
                        help="held-out validation pairs, scored every train.val_every steps (srsim.validation)")
    parser.add_argument("--val-csv", default=None,
                        help="validation scores copied here at the end (default OUT_DIR/val.csv)")
    parser.add_argument("--device", default=None, help="override train.device (auto, cpu, cuda)")
    parser.add_argument("--max-steps", type=int, default=None, help="override train.max_steps")
    parser.add_argument("--no-progress", action="store_true", help="no progress bar")


def run(args: argparse.Namespace) -> int:
    from pathlib import Path

    import torch
    import torch.distributed as dist

    from srsim.config import apply_overrides, section
    from srsim.data import CropDataset, open_pairs, parse_data_arg
    from srsim.cosmology import COSMOLOGY_KEYS
    from srsim.errors import SrsimError
    from srsim.model.checkpoint import TrainingFiles
    from srsim.model.generator import generator_geometry
    from srsim.model.scaling import Scaling
    from srsim.distributed import init_distributed
    from srsim.train import Trainer, TrainingPreempted, install_signal_handlers

    # sections left out of --config take their schema defaults
    cfg = {"model": section(args.config, "model"),
           "train": apply_overrides(section(args.config, "train"), args, ("device", "max_steps"))}
    # validation's halo counts use the analysis FOF and HMF bins and the figures' tested-bin threshold
    halo_config = (section(args.config, "analysis"), section(args.config, "figures")) \
        if cfg["train"]["val_halos"] else None
    train_cfg = cfg["train"]
    if train_cfg.get("threads"):
        torch.set_num_threads(int(train_cfg["threads"]))

    out = Path(args.out)
    if out.suffix != ".pt":
        raise SrsimError(f"{out}: the model file must end in .pt")
    files = TrainingFiles.of(out, checkpoint_dir=args.checkpoint_dir, losses=args.log_csv, curve=args.plot,
                             val=args.val_csv)

    levels = len(cfg["model"]["gen_widths"]) - 1
    scale = 2 ** levels
    pad = generator_geometry(levels)[1]
    channels = int(cfg["model"]["channels"])
    pairs = open_pairs(parse_data_arg(args.data), scale=scale, redshift=args.redshift, channels=channels)
    cosmology = pairs[0].lr.attrs.get("cosmology")
    if not cosmology:
        raise SrsimError(f"{pairs[0].lr.path}: no cosmology attribute; the displacement scaling needs D(z)")
    missing = [k for k in COSMOLOGY_KEYS if k not in cosmology]
    if missing:
        raise SrsimError(f"{pairs[0].lr.path}: its cosmology attribute lacks {', '.join(missing)} (a snapshot "
                         f"header without them, as MP-Gadget's): rewrite it with `srsim displacement --config` "
                         f"and the config's cosmology section")
    scaling = Scaling.for_data(cfg["model"], cosmology, args.redshift)  # attrs decode the cosmology JSON
    val_specs = parse_data_arg(args.val) if args.val else []
    if val_specs:
        check_val_pairs(open_pairs(val_specs, scale=scale, in_memory=False, channels=channels), pairs)
    dataset = CropDataset(pairs, cfg["model"]["crop"], pad, scale, scaling.disp_scale, train_cfg["seed"],
                          vel_scale=scaling.vel_scale)
    init_from = None
    if train_cfg.get("init_from"):
        init_from = Path(train_cfg["init_from"].replace("{z}", f"{args.redshift:g}"))

    ctx = init_distributed(train_cfg["device"])
    try:
        validator = None
        if val_specs and ctx.is_main:
            from srsim.validation import Validator

            # the network units of the training crops; P(k) on the training device
            power_device = "numpy" if ctx.device.type == "cpu" else str(ctx.device)
            scales = dataset.disp_scale if channels == 3 else scaling.channel_scales()  # six: Mpc/h, then km/s
            validator = Validator.from_files(val_specs, scales, files.running_val, halo_config=halo_config,
                                             seed=train_cfg["seed"], power_device=power_device)
            print(f"srsim train: validating on {len(val_specs)} pair(s) every {train_cfg['val_every']} steps, "
                  f"P(k) bands {[round(float(k), 3) for k in validator.edges]} h/Mpc", file=sys.stderr)
        meta = {"redshift": float(args.redshift), "data": list(args.data), "cosmology": cosmology}
        if val_specs:
            meta["val"] = list(args.val)
        trainer = Trainer(cfg, dataset, out, checkpoint_dir=files.checkpoint_dir, meta=meta, ctx=ctx,
                          progress=not args.no_progress, scaling=scaling, init_from=init_from,
                          validator=validator)
        install_signal_handlers(trainer)
        try:
            trainer.run(resume=args.resume)
        except TrainingPreempted as exc:
            if ctx.is_main:
                print(f"srsim train: {exc}", file=sys.stderr)
            return EXIT_PREEMPTED
        trainer.export(log_csv=files.losses, plot=files.curve, val_csv=files.val if val_specs else None)
        if ctx.is_main:
            print(f"srsim train: wrote {out} after {trainer.state.step} steps", file=sys.stderr)
        return 0
    finally:
        if ctx.distributed and dist.is_initialized():
            dist.destroy_process_group()


def check_val_pairs(val_pairs, train_pairs) -> None:
    """Validation pairs must be boxes like the training ones (box size, LR and HR grids, redshift); the
    SrsimError names the file and both values."""
    import math

    from srsim.errors import SrsimError

    ref = train_pairs[0]
    for p in val_pairs:
        for name, got, want in (("box_size", p.box_size, ref.box_size), ("n_lr", p.lr.n, ref.lr.n),
                                ("n_hr", p.hr.n, ref.hr.n), ("redshift", p.redshift, ref.redshift)):
            if not math.isclose(float(got), float(want), rel_tol=1e-6, abs_tol=1e-6):
                raise SrsimError(f"--val {p.lr.path}:{p.hr.path}: {name} {got:g} differs from the training "
                                 f"pairs' {want:g} ({ref.lr.path})")
