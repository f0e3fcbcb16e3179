"""`srsim generate`: trained generator + LR box -> SR snapshot, chunk by chunk, streamed to disk.

    srsim generate --model R/models/z0/model.pt --lr R/disp/test00/lr/z0.h5 --out R/snapshots/test00/sr0/z0 \
        --disp-out R/disp/test00/sr0/z0.h5 --seed 0 --config '{"generate": {"chunk": 16}}'
    srsim generate --trivial --lr R/disp/test00/lr/z0.h5 --out R/snapshots/test00/trivial/z0 --config config.yaml

A rerun after an interruption verifies and reuses the chunks already written (journal next to the output);
on SIGUSR1/SIGTERM the current chunk is finished and the command exits with code 75. `--jobs J --job j`
splits the box into independent jobs that fill one partial snapshot; `srsim generate-merge` completes it.
"""

from __future__ import annotations

import argparse

COMMAND = "generate"
#: exit status of a run that stopped early (SIGUSR1/SIGTERM or --max-chunks): EX_TEMPFAIL, as `srsim train`
EXIT_INCOMPLETE = 75
HELP = ("super-resolve an LR box (or a region of it) with a trained generator into an SR snapshot "
        "(bigfile, MP-Gadget layout, no Velocity block), chunked and resumable")


def add_arguments(parser: argparse.ArgumentParser) -> None:
    which = parser.add_mutually_exclusive_group()
    which.add_argument("--model", help="model checkpoint (srsim train's model.pt)")
    which.add_argument("--trivial", action="store_true",
                       help="no network: SR = LR displacement trilinearly upsampled (the untrained generator's "
                       "output); scale and padding from the config's model.gen_widths; one seed only")
    parser.add_argument("--lr", required=True, help="LR displacement HDF5 file or LR snapshot directory")
    parser.add_argument("--out", required=True,
                        help="output SR snapshot directory; with several seeds it must contain '{seed}'")
    parser.add_argument("--disp-out", help="also write the SR displacement field (HDF5, whole box, single job); "
                        "'{seed}' is replaced")
    parser.add_argument("--seed", type=int, nargs="+", default=[0],
                        help="noise seed(s): one SR realization each (default %(default)s)")
    parser.add_argument("--region", type=float, nargs=6, metavar=("X0", "Y0", "Z0", "X1", "Y1", "Z1"),
                        help="super-resolve only [X0, X1) x [Y0, Y1) x [Z0, Z1) (periodic; Lagrangian positions), "
                        "with periodic context from the full LR box")
    parser.add_argument("--region-units", choices=("mpc", "cells"), default="mpc",
                        help="units of --region: Mpc/h (widened to whole LR cells) or LR cells (default mpc)")
    parser.add_argument("--region-centre", type=float, nargs=3, metavar=("X", "Y", "Z"),
                        help="instead of --region: the centre of the region, Mpc/h in [0, BoxSize) (with --region-size)")
    parser.add_argument("--region-size", type=float, nargs="+", metavar="S",
                        help="with --region-centre: the region's side (1 value) or sides (3 values), Mpc/h; widened "
                        "to whole LR cells, periodic across the box edge")
    parser.add_argument("--config", help="JSON string or YAML file with a 'generate' section (defaults for the "
                        "options below; command-line values win)")
    parser.add_argument("--chunk", type=int, help="LR cells per chunk side (default generate.chunk)")
    parser.add_argument("--batch", type=int, help="chunks per generator call (default generate.batch)")
    parser.add_argument("--device", help="auto, cpu, cuda, cuda:N (default generate.device)")
    parser.add_argument("--bf16", action=argparse.BooleanOptionalAction, default=None, help="bfloat16 autocast (default generate.bf16)")
    parser.add_argument("--position-dtype", choices=("f4", "f8"), help="storage type of 1/Position (default generate.position_dtype)")
    parser.add_argument("--writers", type=int, help="background writer threads (default generate.writers)")
    parser.add_argument("--no-resume", action="store_true",
                        help="discard the chunks of an interrupted run instead of verifying and reusing them")
    parser.add_argument("--max-chunks", type=int,
                        help="stop after generating this many chunks without finalizing (a rerun continues)")
    parser.add_argument("--jobs", type=int, default=1, help="split the chunks into this many independent jobs")
    parser.add_argument("--job", type=int, default=0, help="which job (0 .. jobs-1) this run is")
    parser.add_argument("--done", help="with --jobs > 1: write this marker file when the job's chunks are complete")
    parser.add_argument("--quiet", action="store_true", help="no progress bar")


#: the options of the config's 'generate' section that the command line overrides (generate()'s keywords)
OVERRIDES = ("chunk", "batch", "device", "bf16", "position_dtype", "writers")


def run(args) -> int:
    import json
    import signal
    import sys
    from pathlib import Path

    from srsim.config import apply_overrides, load_config, section
    from srsim.errors import SrsimError
    from srsim.generate import (GenerateSettings, LRInput, generate, region_from_cells, region_from_centre,
                                 region_from_mpc)
    from srsim.io.atomic import atomic_path

    settings = apply_overrides(section(args.config, "generate"), args, OVERRIDES)
    opts = {key: settings[key] for key in OVERRIDES}
    if args.trivial:
        from srsim.generate import trivial_generator

        if not args.config:
            raise SrsimError("generate --trivial: needs --config with a 'model' section (gen_widths)")
        if len(args.seed) > 1:
            raise SrsimError(f"generate --trivial: the trivial predictor has no noise; give one --seed, not {args.seed}")
        model = (trivial_generator(load_config(args.config, partial=True).get("model", {})), {})
    elif args.model:
        model = args.model
    else:
        raise SrsimError("generate: give --model CHECKPOINT or --trivial")
    if len(args.seed) > 1 and "{seed}" not in args.out:
        raise SrsimError(f"--out {args.out}: several seeds need '{{seed}}' in the output path")
    if len(set(args.seed)) != len(args.seed):
        raise SrsimError(f"--seed: repeated seeds {args.seed}")
    if args.jobs > 1 and len(args.seed) > 1:
        raise SrsimError("--jobs > 1 takes a single --seed")
    region = None
    if (args.region_centre is None) != (args.region_size is None):
        raise SrsimError("generate: --region-centre and --region-size go together")
    if args.region_centre is not None:
        if args.region is not None:
            raise SrsimError("generate: give --region or --region-centre/--region-size, not both")
        if len(args.region_size) not in (1, 3):
            raise SrsimError(f"--region-size {args.region_size}: give 1 or 3 sides (Mpc/h)")
        with LRInput(args.lr) as src:
            region = region_from_centre(args.region_centre, args.region_size, src.box_size, src.n)
    elif args.region is not None:
        lo, hi = args.region[:3], args.region[3:]
        if args.region_units == "cells":
            if any(v != int(v) for v in args.region):
                raise SrsimError(f"--region {args.region}: LR cell indices must be integers")
            with LRInput(args.lr) as src:
                region = region_from_cells([int(v) for v in lo], [int(v) for v in hi], src.n)
        else:
            with LRInput(args.lr) as src:
                region = region_from_mpc(lo, hi, src.box_size, src.n)
    # slurm warns with SIGUSR1 before the time limit (and sends SIGTERM at it): finish the current chunk,
    # leave the journaled partial output and exit non-zero; the rerun resumes from there
    stopping = []

    def _stop(signum, frame):
        stopping.append(signum)

    for sig in (signal.SIGUSR1, signal.SIGTERM):
        signal.signal(sig, _stop)
    for seed in args.seed:
        out = args.out.replace("{seed}", str(seed))
        disp_out = args.disp_out.replace("{seed}", str(seed)) if args.disp_out else None
        settings = GenerateSettings(seed=seed, region=region, resume=not args.no_resume, max_chunks=args.max_chunks,
                                    job=args.job, jobs=args.jobs, progress=not args.quiet, **opts)
        res = generate(model, args.lr, out, settings, disp_out=disp_out, stop=lambda: bool(stopping))
        state = "complete" if res.complete else "incomplete (rerun to continue)"
        print(f"srsim generate: {out}: {state}; {res.generated} chunks generated, {res.skipped} reused of "
              f"{res.n_chunks}; {res.particles} SR particles in the output; {res.seconds:.1f} s", file=sys.stderr)
        if args.done and res.complete:
            with atomic_path(Path(args.done)) as tmp:
                Path(tmp).write_text(json.dumps({"out": out, "job": args.job, "jobs": args.jobs,
                                                 "plan": res.plan}, indent=1) + "\n")
        if not res.complete:
            return EXIT_INCOMPLETE
    return 0
