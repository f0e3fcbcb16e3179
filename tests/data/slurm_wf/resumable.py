"""A stand-in for a long training run: counts steps, checkpoints, resumes.

Shows on a real slurm the contract `srsim train` keeps (docs/cluster.md): on SIGUSR1 or SIGTERM
(what slurm sends before a time limit) it finishes the current step, writes its checkpoint
atomically and exits with status 3; rerun, it continues from the checkpoint.

    python resumable.py --checkpoint ckpt.json --out done.txt --steps 40 --step-seconds 1

The checkpoint (JSON) holds the completed step count and one record per run: the step it started
from, the step it stopped at and why ("signal SIGUSR1", "finished"), and SLURM_JOB_ID.
The output, written only when all steps are done, is a copy of the final checkpoint.
"""
import argparse
import json
import os
import signal
import sys
import time


def save_atomic(path, state):
    tmp = f"{path}.tmp.{os.getpid()}"
    with open(tmp, "w") as fh:
        json.dump(state, fh, indent=1)
        fh.flush()
        os.fsync(fh.fileno())
    os.replace(tmp, path)


def main(argv=None):
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--checkpoint", required=True)
    ap.add_argument("--out", required=True)
    ap.add_argument("--steps", type=int, required=True)
    ap.add_argument("--step-seconds", type=float, default=1.0)
    ap.add_argument("--checkpoint-every", type=int, default=1000, help="periodic checkpoints (steps)")
    ap.add_argument("--checkpoint-seconds", type=float, default=2.0,
                    help="time a checkpoint takes to write (a big model's torch.save)")
    args = ap.parse_args(argv)

    state = {"step": 0, "runs": []}
    if os.path.exists(args.checkpoint):
        with open(args.checkpoint) as fh:
            state = json.load(fh)
    run = {"start_step": state["step"], "job": os.environ.get("SLURM_JOB_ID"), "pid": os.getpid()}
    print(f"resumable: starting at step {state['step']} (job {run['job']})", flush=True)

    stop = []
    for sig in (signal.SIGUSR1, signal.SIGTERM):
        signal.signal(sig, lambda s, f: stop.append(signal.Signals(s).name))

    os.makedirs(os.path.dirname(os.path.abspath(args.checkpoint)), exist_ok=True)
    while state["step"] < args.steps:
        if stop:
            print(f"resumable: got {stop[0]} at step {state['step']}; checkpointing", flush=True)
            time.sleep(args.checkpoint_seconds)
            state["runs"].append({**run, "stop_step": state["step"], "reason": f"signal {stop[0]}"})
            save_atomic(args.checkpoint, state)
            print("resumable: checkpoint written; exiting with 3", flush=True)
            return 3
        time.sleep(args.step_seconds)
        state["step"] += 1
        if state["step"] % args.checkpoint_every == 0:
            save_atomic(args.checkpoint, state)
    state["runs"].append({**run, "stop_step": state["step"], "reason": "finished"})
    save_atomic(args.checkpoint, state)
    save_atomic(args.out, state)
    print("resumable: finished", flush=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
