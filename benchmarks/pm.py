"""Benchmark the embedded PM code: wall time and peak memory of a run (ICs + steps, no I/O).

Each case runs in a fresh subprocess so peak memory (max RSS; on CUDA also torch's peak allocation)
belongs to that case alone. Default cases: 64^3 and 128^3 particles, mesh 2x, 10 steps, z = 99 -> 0,
WMAP9, 100 Mpc/h, on the CPU and, when CUDA is available, on the GPU.

    python benchmarks/pm.py [--sizes 64 128] [--steps 10] [--threads 2] [--devices cpu cuda] [--out PATH]

Prints a table and writes JSON (default benchmarks/results/pm.json).
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import subprocess
import sys
import time
from pathlib import Path

_CHILD = r"""
import json, resource, sys, time
import torch
from srsim.sims.pm import simulate
from srsim.sims.suite import SimSpec
n, steps, device, threads, box = int(sys.argv[1]), int(sys.argv[2]), sys.argv[3], int(sys.argv[4]), float(sys.argv[5])
cosmo = dict(Omega_m=0.2814, Omega_b=0.0464, Omega_L=0.7186, h=0.697, sigma8=0.82, n_s=0.971)
from srsim.cosmology import Cosmology
Cosmology.from_config(cosmo).linear_power([0.1])  # CAMB once, outside the timing
spec = SimSpec(name="bench", kind="hr", box_size=box, n_grid=n, seed=1, noise_grid=n, redshifts=(0.0,),
               z_init=99.0, cosmology=cosmo,
               options=dict(mesh_factor=2, steps=steps, lpt_order=2, device=device, threads=threads))
if device.startswith("cuda"):
    torch.cuda.reset_peak_memory_stats()
stats = simulate(spec, None, progress=False)
stats["max_rss_mb"] = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024.0
if device.startswith("cuda"):
    stats["cuda_peak_mb"] = torch.cuda.max_memory_allocated() / 2**20
    stats["gpu"] = torch.cuda.get_device_name()
stats["torch_threads"] = torch.get_num_threads()
print("RESULT " + json.dumps(stats))
"""


def _cuda_available() -> bool:
    try:
        import torch

        return torch.cuda.is_available()
    except ImportError:
        return False


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--sizes", type=int, nargs="+", default=[64, 128], help="particles per side")
    parser.add_argument("--steps", type=int, default=10)
    parser.add_argument("--threads", type=int, default=0, help="torch CPU threads (0 = torch default)")
    parser.add_argument("--box", type=float, default=100.0, help="box side in Mpc/h")
    parser.add_argument("--devices", nargs="+", default=None,
                        help="devices to run (default: cpu, plus cuda when available)")
    parser.add_argument("--out", default=str(Path(__file__).parent / "results" / "pm.json"))
    args = parser.parse_args(argv)
    devices = args.devices or (["cpu", "cuda"] if _cuda_available() else ["cpu"])
    env = dict(os.environ)
    src = str(Path(__file__).resolve().parents[1] / "src")
    env["PYTHONPATH"] = src + (os.pathsep + env["PYTHONPATH"] if env.get("PYTHONPATH") else "")
    rows = []
    for device in devices:
        for n in args.sizes:
            t0 = time.perf_counter()
            proc = subprocess.run([sys.executable, "-c", _CHILD, str(n), str(args.steps), device, str(args.threads),
                                   str(args.box)], capture_output=True, text=True, env=env)
            wall = time.perf_counter() - t0
            line = [ln for ln in proc.stdout.splitlines() if ln.startswith("RESULT ")]
            if proc.returncode != 0 or not line:
                print(f"case n={n} device={device} failed:\n{proc.stderr[-2000:]}", file=sys.stderr)
                return 1
            stats = json.loads(line[-1][len("RESULT "):])
            stats.update(n_particles=n ** 3, steps_requested=args.steps, process_wall_s=wall)
            rows.append(stats)
    header = f"{'device':<8}{'N':>6}{'mesh':>6}{'steps':>6}{'ICs s':>9}{'steps s':>9}{'s/step':>8}{'total s':>9}{'RSS MB':>9}{'GPU MB':>9}"
    print(header)
    print("-" * len(header))
    for r in rows:
        gpu = f"{r['cuda_peak_mb']:9.0f}" if "cuda_peak_mb" in r else f"{'-':>9}"
        print(f"{r['device']:<8}{r['n_grid']:>6}{r['n_mesh']:>6}{r['n_steps']:>6}{r['ics_s']:9.2f}{r['steps_s']:9.2f}"
              f"{r['steps_s'] / r['n_steps']:8.2f}{r['total_s']:9.2f}{r['max_rss_mb']:9.0f}{gpu}")
    out = Path(args.out)
    out.parent.mkdir(parents=True, exist_ok=True)
    payload = dict(benchmark="pm", host=platform.node(), machine=platform.machine(), cpu_count=os.cpu_count(),
                   python=platform.python_version(), box_size=args.box, z_init=99.0, results=rows)
    tmp = out.with_name(f".{out.name}.tmp")
    tmp.write_text(json.dumps(payload, indent=2) + "\n")
    os.replace(tmp, out)
    print(f"wrote {out}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
