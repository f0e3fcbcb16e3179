"""Speed and memory of one training step (one critic update + one generator update), per precision mode.

    python benchmarks/train_step.py                        # GPU: paper widths; CPU: narrow widths
    python benchmarks/train_step.py --modes fp32 bf16 compile --json out.json

Modes: fp32 (reference), bf16 (autocast), channels_last (3-D channels-last memory format), compile
(torch.compile of generator and critic; the gradient penalty's double backward stays eager). For each mode
it reports samples per second of an adversarial step without and with the gradient penalty (applied every
gp_every steps in training), peak memory (GPU: max allocated; CPU: growth of the process's max RSS), and
the agreement with fp32 on the same weights and inputs: relative L2 difference of the generator output
and of the critic scores. Prints a table and writes JSON.
"""

from __future__ import annotations

import argparse
import json
import os
import resource
import sys
import time
from pathlib import Path

import torch

from srsim.model.critic import assemble, critic_condition, critic_sample
from srsim.model.layers import lr_to_hr
from srsim.distributed import DistContext
from srsim.train import adversarial_step, build_models

PAPER = {"gen_widths": [512, 256, 128, 64], "critic_widths": [64, 128, 256, 512], "crop": 14}
NARROW = {"gen_widths": [16, 12, 8, 8], "critic_widths": [8, 8, 16, 16], "crop": 6}


def _sync(device):
    if device.type == "cuda":
        torch.cuda.synchronize(device)


def _batch(model_cfg, batch_size, device, seed=0):
    g = torch.Generator().manual_seed(seed)
    n, pad, s = model_cfg["crop"], 3, 8
    lr = 0.5 * torch.randn(batch_size, 3, n + 2 * pad, n + 2 * pad, n + 2 * pad, generator=g)
    hr = lr_to_hr(lr, s, pad) + 0.1 * torch.randn(batch_size, 3, s * n, s * n, s * n, generator=g)
    return {"lr": lr.to(device), "hr": hr.to(device), "offset": torch.zeros(batch_size, 3, dtype=torch.long),
            "box": torch.full((batch_size, 3), 64, dtype=torch.long)}


def _train_cfg(mode):
    return {"seed": 0, "lr": 1e-5, "betas": [0.0, 0.99], "bf16": mode == "bf16",
            "channels_last": mode == "channels_last", "compile": mode == "compile"}


def _outputs(models, batch, bf16, d2c):
    """Generator output and critic scores (real, fake) without updating anything."""
    with torch.no_grad(), torch.autocast(batch["lr"].device.type, dtype=torch.bfloat16, enabled=bf16):
        sr = models.gen_fwd(batch["lr"], batch["offset"], 1, batch["box"][0].tolist()).float()
        cond, shift = critic_condition(lr_to_hr(batch["lr"], 8, 3), d2c)
        x = torch.cat([assemble(critic_sample(batch["hr"], shift, d2c), cond),
                       assemble(critic_sample(sr, shift, d2c), cond)])
        scores = models.critic_fwd(x.contiguous(memory_format=models.memory_format)).float()
    return sr, scores


def _rel(a, b):
    return float((a.float() - b.float()).norm() / b.float().norm().clamp_min(1e-30))


def bench_mode(mode, model_cfg, batch_size, steps, device, reference=None):
    ctx = DistContext(device=device)
    cfg = {**model_cfg, "noise": True}
    models = build_models(cfg, _train_cfg(mode), device)
    for m in (models.gen, models.critic):
        for name, p in m.named_parameters():
            if name.endswith(".std"):
                p.data.fill_(0.1)
            elif ".proj." in name:
                p.data.normal_(0.0, 0.1)  # zero at initialisation; the timing should see a working rail
    batch = _batch(model_cfg, batch_size, device)
    if models.memory_format != torch.contiguous_format:
        batch = {k: (v.contiguous(memory_format=models.memory_format) if v.dim() == 5 else v) for k, v in batch.items()}
    bf16 = mode == "bf16"
    d2c = 5.0
    sr, scores = _outputs(models, batch, bf16, d2c)
    row = {"mode": mode}
    if reference is not None:
        row["gen_rel_diff_vs_fp32"] = _rel(sr, reference[0])
        row["critic_rel_diff_vs_fp32"] = _rel(scores, reference[1])

    def step(i, penalty):
        return adversarial_step(models, batch, seeds=[i] * batch_size, eps=torch.rand(batch_size, device=device),
                                penalty=penalty, gp_weight=160.0, disp_to_cells=d2c, ctx=ctx, bf16=bf16, step=i)

    if device.type == "cuda":
        torch.cuda.reset_peak_memory_stats(device)
    rss0 = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    t0 = time.perf_counter()
    step(0, True)  # warm-up (and compilation)
    _sync(device)
    row["first_step_s"] = time.perf_counter() - t0
    for penalty, key in ((False, "samples_per_s"), (True, "samples_per_s_gp")):
        _sync(device)
        t0 = time.perf_counter()
        for i in range(steps):
            step(i + 1, penalty)
        _sync(device)
        row[key] = batch_size * steps / (time.perf_counter() - t0)
    if device.type == "cuda":
        row["peak_mem_gib"] = torch.cuda.max_memory_allocated(device) / 2 ** 30
    else:
        row["peak_rss_growth_gib"] = (resource.getrusage(resource.RUSAGE_SELF).ru_maxrss - rss0) / 2 ** 20
    return row, (sr, scores)


def main():
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--device", default="auto")
    ap.add_argument("--widths", choices=["auto", "paper", "narrow"], default="auto",
                    help="paper widths on GPU, narrow on CPU by default")
    ap.add_argument("--modes", nargs="+", default=None, choices=["fp32", "bf16", "channels_last", "compile"],
                    help="default: all on GPU; fp32 bf16 channels_last on CPU (compile takes minutes there)")
    ap.add_argument("--batch", type=int, default=1)
    ap.add_argument("--steps", type=int, default=None, help="timed steps per mode (default 10 GPU, 2 CPU)")
    ap.add_argument("--threads", type=int, default=None)
    ap.add_argument("--json", default=str(Path(__file__).parent / "results" / "train_step.json"))
    args = ap.parse_args()

    device = torch.device("cuda" if args.device == "auto" and torch.cuda.is_available() else
                          ("cpu" if args.device == "auto" else args.device))
    if args.threads:
        torch.set_num_threads(args.threads)
    widths = args.widths if args.widths != "auto" else ("paper" if device.type == "cuda" else "narrow")
    model_cfg = PAPER if widths == "paper" else NARROW
    modes = args.modes or (["fp32", "bf16", "channels_last", "compile"] if device.type == "cuda"
                           else ["fp32", "bf16", "channels_last"])
    if "fp32" not in modes:
        modes = ["fp32"] + modes
    steps = args.steps or (10 if device.type == "cuda" else 2)

    rows, reference = [], None
    for mode in modes:
        try:
            row, outs = bench_mode(mode, model_cfg, args.batch, steps, device, reference)
            if mode == "fp32":
                reference = outs
        except Exception as exc:  # report a mode that does not work here instead of aborting the table
            row = {"mode": mode, "error": f"{type(exc).__name__}: {exc}"[:300]}
        rows.append(row)
        print(json.dumps(row), file=sys.stderr)
        if device.type == "cuda":
            torch.cuda.empty_cache()

    mem_key = "peak_mem_gib" if device.type == "cuda" else "peak_rss_growth_gib"
    print(f"\ntrain step ({widths} widths, LR crop {model_cfg['crop']}^3 + 3 padding, batch {args.batch}, {device})")
    print(f"{'mode':<14}{'samples/s':>11}{'w/ GP':>9}{'first s':>9}{'mem GiB':>9}{'gen diff':>10}{'critic diff':>12}")
    for r in rows:
        if "error" in r:
            print(f"{r['mode']:<14} failed: {r['error']}")
            continue
        diffs = (f"{r['gen_rel_diff_vs_fp32']:>10.1e}{r['critic_rel_diff_vs_fp32']:>12.1e}"
                 if "gen_rel_diff_vs_fp32" in r else f"{'ref':>10}{'ref':>12}")
        print(f"{r['mode']:<14}{r['samples_per_s']:>11.3f}{r['samples_per_s_gp']:>9.3f}{r['first_step_s']:>9.1f}"
              f"{r[mem_key]:>9.2f}{diffs}")

    meta = {"device": str(device), "device_name": torch.cuda.get_device_name(device) if device.type == "cuda" else
            "cpu", "threads": torch.get_num_threads(), "torch": torch.__version__, "widths": widths,
            "model": model_cfg, "batch": args.batch, "steps": steps}
    out = Path(args.json)
    out.parent.mkdir(parents=True, exist_ok=True)
    tmp = out.with_name(f".{out.name}.tmp-{os.getpid()}")
    tmp.write_text(json.dumps({"meta": meta, "rows": rows}, indent=2))
    os.replace(tmp, out)
    print(f"wrote {out}")


if __name__ == "__main__":
    main()
