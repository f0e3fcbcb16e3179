"""Benchmark of the analysis stage: P(k) and FOF, side by side with independent implementations.

    OMP_NUM_THREADS=2 python benchmarks/analysis.py                # full: P(k) 128^3, 512^3 on 512^3; FOF 128^3, 256^3
    python benchmarks/analysis.py --quick                          # small sizes, a smoke run
    python benchmarks/analysis.py --fof 128 256 512 --json out.json
    python benchmarks/analysis.py --bigbox 128                     # per-particle rates -> the paper's 5120^3 box

P(k): ours (numba CIC in chunks + scipy FFT; and torch on the GPU when there is one) against Pylians3
(`MAS_library.MA` CIC + `Pk_library.Pk` with MAS='None', i.e. no deconvolution, the same estimator and
the same shells of width k_F). FOF (b = 0.2, >= 32 particles, periodic) of clustered particles against
kdcount's `cluster.fof` and scipy's cKDTree pairs + connected components. Comparators are optional: a
missing one is skipped with a note. Prints a table (seconds, ratios, agreement) and writes JSON.

--bigbox N: the per-particle rates of the big-box analysis jobs on a snapshot of N^3 clustered particles at
the paper's big-box particle spacing (f4 positions, as generated): `srsim power` (P(k) on the paper's
mesh, its fixed mesh + FFT cost measured apart), the FOF partition job and one `fof-domain` job (2^3
domains, ghost zone the paper's fraction of a domain), each with its peak resident memory. It projects
core-hours and peak memory per job for the paper's 5120^3 box with config/paper.yaml's power_mesh,
fof_domains, fof_ghost and fof_partition_jobs, and names the domain count a 256 GB node needs.

Engines (`--engines N ...`, with nbodykit's python from --nbodykit-python or $SRSIM_NBODYKIT_PYTHON): the same
particles written as a snapshot, then `srsim power` and `srsim fof` as a user runs them, once with the srsim
engine and once with `--engine nbodykit` on 1 and 2 MPI ranks: wall seconds (imports and snapshot reads
included, for both), particles per second per rank, and the peak RSS of the largest process.
"""
from __future__ import annotations

import argparse
import json
import os
import platform
import sys
import time
from pathlib import Path

import numpy as np

from srsim.device import available_host_bytes, cpu_model
from srsim.testing import clustered

BOX = 1000.0  # Mpc/h; only ratios matter
DEFAULT_JSON = str(Path(__file__).parent / "results" / "analysis.json")


def lattice_particles(n_side: int, box: float, seed: int = 0, chunk: int = 2**22):
    """Yield chunks of a displaced lattice (float32 (m, 3), Mpc/h): cheap 'simulation-like' particles."""
    rng = np.random.default_rng(seed)
    n = n_side**3
    cell = box / n_side
    for start in range(0, n, chunk):
        idx = np.arange(start, min(n, start + chunk), dtype=np.int64)
        i, j, k = idx // (n_side * n_side), (idx // n_side) % n_side, idx % n_side
        p = np.stack([i, j, k], 1).astype(np.float64) * cell
        p += rng.normal(0.0, 0.7 * cell, p.shape)
        yield np.mod(p, box).astype(np.float32)


def timed(fn, *a, **kw):
    t = time.perf_counter()
    out = fn(*a, **kw)
    return out, time.perf_counter() - t


# ------------------------------------------------------------------------------------------------ P(k)


def bench_power(n_side: int, n_mesh: int, threads: int) -> dict:
    from srsim.analysis.power import power_from_positions

    pos = np.concatenate(list(lattice_particles(n_side, BOX)))
    chunks = lambda: (pos[i:i + 2**22] for i in range(0, len(pos), 2**22))  # noqa: E731
    power_from_positions([pos[:1000]], BOX, 8)  # compile / load the numba kernel outside the timing
    # Pylians' shells are [i, i+1) k_F (ours by default (i-1/2, i+1/2]); use its shells to compare bin by bin
    kf = 2 * np.pi / BOX
    edges = (np.arange(int(np.sqrt(3) * n_mesh / 2) + 3) - 1e-6) * kf
    ours, t_ours = timed(power_from_positions, chunks(), BOX, n_mesh, device="numpy", workers=threads, k_edges=edges)
    row = {"what": f"P(k) {n_side}^3 particles, {n_mesh}^3 mesh", "ours_s": t_ours, "n_bins": len(ours.k)}
    try:
        import torch

        if torch.cuda.is_available():
            power_from_positions([pos[:1000]], BOX, 8, device="cuda")
            torch.cuda.synchronize()
            gpu, t_gpu = timed(power_from_positions, chunks(), BOX, n_mesh, device="cuda", k_edges=edges)
            row["ours_gpu_s"] = t_gpu
            row["gpu_max_rel_diff"] = float(np.max(np.abs(gpu.P / ours.P - 1)))
        else:
            row["note_gpu"] = "no CUDA device: GPU P(k) not measured"
    except ImportError:
        row["note_gpu"] = "torch not installed"
    try:
        import MAS_library as MASL
        import Pk_library as PKL
    except ImportError as exc:
        row["note_pylians"] = f"Pylians not installed ({exc}); pip install Pylians"
        return row

    def pylians():
        delta = np.zeros((n_mesh,) * 3, dtype=np.float32)
        MASL.MA(pos, delta, BOX, "CIC", verbose=False)
        delta /= np.mean(delta, dtype=np.float64)
        delta -= 1.0
        return PKL.Pk(delta, BOX, axis=0, MAS="None", threads=threads, verbose=False)

    pk, t_pyl = timed(pylians)
    row["pylians_s"] = t_pyl
    row["ours_over_pylians"] = t_ours / t_pyl
    # bins [i, i+1) k_F with i + 1 <= n_mesh / 2 hold no Nyquist-plane modes (which the codes count differently)
    m = min(len(ours.k), len(pk.k3D), n_mesh // 2 - 1)
    if not np.allclose(ours.k[:m], pk.k3D[:m], rtol=1e-5):
        row["note_pylians_bins"] = "k of the bins differ: shells not aligned"
    sel = np.ones(m, bool)
    rel = np.abs(ours.P[:m] / pk.Pk[:m, 0] - 1)
    row["pylians_bins_compared"] = int(sel.sum())
    row["pylians_max_rel_diff"] = float(rel.max()) if sel.any() else float("nan")
    return row


# ------------------------------------------------------------------------------------------------- big box

BIG_N = 5120
PARTITION_CHUNK = 2**22  # partition_snapshot's default chunk: its memory is bound by this, not by its share
NODE_GB = 256


def _child(target, args, kwargs, conn):
    import time as _time

    fn = getattr(__import__(target[0], fromlist=[target[1]]), target[1])
    t0 = _time.perf_counter()  # the job's work, not the imports
    fn(*args, **kwargs)
    dt = _time.perf_counter() - t0
    # VmHWM: this process's own peak (getrusage's ru_maxrss survives exec, so it would report the parent's)
    with open("/proc/self/status") as f:
        hwm = next(int(line.split()[1]) * 1024 for line in f if line.startswith("VmHWM:"))
    conn.send((dt, hwm))


def in_child(target: tuple[str, str], *args, **kwargs) -> tuple[float, int]:
    """Run module.function `target` in a fresh process: (seconds, peak resident bytes of that process).

    A fresh process per job, as the workflow runs them, so one job's freed heap does not hide another's peak;
    `in_child(("os", "getpid"))` gives the baseline of an interpreter with nothing loaded.
    """
    import multiprocessing as mp

    ctx = mp.get_context("spawn")
    recv, send = ctx.Pipe(duplex=False)
    proc = ctx.Process(target=_child, args=(target, args, kwargs, send))
    proc.start()
    out = recv.recv()
    proc.join()
    if proc.exitcode != 0:
        raise RuntimeError(f"{target}: child process failed ({proc.exitcode})")
    return out


def paper_analysis_config() -> dict:
    """The analysis and big-box sections of config/paper.yaml (the numbers the projection is for)."""
    import yaml

    cfg = yaml.safe_load((Path(__file__).resolve().parents[1] / "config" / "paper.yaml").read_text())
    return {"box_size": float(cfg["bigbox"]["box_size"]), **{k: cfg["analysis"][k] for k in
            ("power_mesh", "fof_domains", "fof_ghost", "fof_partition_jobs", "fof_b", "fof_min_members")}}


def frac_ghost(paper: dict) -> float:
    """The paper's ghost zone as a fraction of its domain width (kept when the domains are scaled down)."""
    return paper["fof_ghost"] / (paper["box_size"] / paper["fof_domains"])


def bench_bigbox(n_side: int, threads: int, tmp: Path) -> dict:
    """Measured per-particle rates and memory of the big-box analysis jobs, projected to the paper's box."""
    from srsim.analysis.domains import fof_domain_snapshot, partition_snapshot
    from srsim.analysis.power import paint_numpy, power_spectrum_snapshot
    from srsim.io.snapshot import iter_particles, make_header, write_snapshot

    paper = paper_analysis_config()
    spacing = paper["box_size"] / BIG_N
    box, n = n_side * spacing, n_side**3
    cosmo = {"Omega_m": 0.2814, "Omega_b": 0.0464, "Omega_L": 0.7186, "h": 0.697, "sigma8": 0.82, "n_s": 0.971}
    pos, ids = clustered(n_side, box, seed=n_side, halo_fraction=0.5, per_halo=300)
    snap = tmp / "snap"
    write_snapshot(snap, make_header(box_size=box, redshift=0.0, n_particles=n, cosmology=cosmo), pos, ids,
                   position_dtype="f4")
    del pos, ids
    mesh = int(paper["power_mesh"])
    # the same jobs on a tiny box first: numba compiles into its on-disk cache, the timed children load it
    tiny_pos, tiny_ids = clustered(24, 24 * spacing, seed=1, halo_fraction=0.5, per_halo=300)
    write_snapshot(tmp / "tiny", make_header(box_size=24 * spacing, redshift=0.0, n_particles=24**3,
                                             cosmology=cosmo), tiny_pos, tiny_ids, position_dtype="f4")
    power_spectrum_snapshot(tmp / "tiny", 16, progress=False)
    partition_snapshot(tmp / "tiny", tmp / "tiny_part", n_domains=2, ghost=frac_ghost(paper) * 12 * spacing)
    fof_domain_snapshot(tmp / "tiny", 0, 2, frac_ghost(paper) * 12 * spacing, partitions=[tmp / "tiny_part"])
    _, base = in_child(("os", "getpid"))
    t_pk, peak_pk = in_child(("srsim.analysis.power", "power_spectrum_snapshot"), snap, mesh, progress=False)
    # the per-particle part (read + CIC paint) timed alone; the rest (FFT, shells) does not grow with N
    _, t_paint = timed(paint_numpy, (c["Position"] for c in iter_particles(snap, ("Position",))), mesh, box)
    pk_rate = n / t_paint
    t_fixed = max(t_pk - t_paint, 0.0)
    n_dom = 2
    ghost = frac_ghost(paper) * box / n_dom
    t_part, peak_part = in_child(("srsim.analysis.domains", "partition_snapshot"), snap, tmp / "part0",
                                 n_domains=n_dom, ghost=ghost)
    region = (tmp / "part0" / "d0.id").stat().st_size // 8
    t_fof, peak_fof = in_child(("srsim.analysis.domains", "fof_domain_snapshot"), snap, 0, n_dom, ghost,
                               b=paper["fof_b"], min_members=paper["fof_min_members"], partitions=[tmp / "part0"])
    _, peak_imports = in_child(("srsim.analysis.domains", "linking_length"), 0.2, 1.0, 8)  # numpy + numba loaded
    fof_bytes = (peak_fof - peak_imports) / region
    part_bytes = (peak_part - peak_imports) / min(n, PARTITION_CHUNK)  # per particle of one streamed chunk

    n_big = BIG_N**3
    nd = int(paper["fof_domains"])
    width = paper["box_size"] / nd
    region_big = n_big / nd**3 * ((width + 2 * paper["fof_ghost"]) / width) ** 3
    per_part_job = n_big / int(paper["fof_partition_jobs"])

    def fof_job_gb(domains: int) -> float:
        w = paper["box_size"] / domains
        return fof_bytes * n_big / domains**3 * ((w + 2 * paper["fof_ghost"]) / w) ** 3 / 1e9

    fits = next((d for d in range(nd, 4 * nd + 1) if fof_job_gb(d) < NODE_GB), None)
    pk_h = (t_fixed + n_big / pk_rate) / 3600
    proj = [
        {"job": f"power (P(k) {mesh}^3 mesh), 1 job", "jobs": 1, "hours": pk_h, "core_hours": pk_h * threads,
         "peak_gb": peak_pk / 1e9, "note": "mesh-bound memory, streamed particles"},
        {"job": f"fof-partition, {paper['fof_partition_jobs']} jobs", "jobs": int(paper["fof_partition_jobs"]),
         "hours": per_part_job / (n / t_part) / 3600,
         "core_hours": int(paper["fof_partition_jobs"]) * per_part_job / (n / t_part) / 3600 * threads,
         "peak_gb": (peak_imports + part_bytes * min(per_part_job, PARTITION_CHUNK)) / 1e9,
         "note": f"streams {PARTITION_CHUNK} particles at a time"},
        {"job": f"fof-domain, {nd}^3 jobs", "jobs": nd**3, "hours": region_big / (region / t_fof) / 3600,
         "core_hours": nd**3 * region_big / (region / t_fof) / 3600 * threads,
         "peak_gb": (peak_imports + fof_bytes * region_big) / 1e9,
         "note": f"{region_big:.2e} particles per domain"},
    ]
    return {"what": f"big-box analysis rates from {n_side}^3 particles", "n_side": n_side, "box": box,
            "threads": threads, "paper": paper,
            "measured": {"power_s": t_pk, "power_fixed_s": t_fixed, "power_particles_per_s": pk_rate,
                         "power_peak_gb": peak_pk / 1e9, "power_paint_s": t_paint,
                         "interpreter_peak_gb": base / 1e9, "imports_peak_gb": peak_imports / 1e9,
                         "partition_s": t_part, "partition_particles_per_s": n / t_part,
                         "partition_bytes_per_particle": part_bytes, "fof_domain_s": t_fof,
                         "fof_domain_particles": int(region), "fof_domain_particles_per_s": region / t_fof,
                         "fof_bytes_per_particle": fof_bytes},
            "projection_5120": proj, "fof_domains_for_256gb_node": fits}


def print_bigbox(r: dict, machine: str) -> None:
    m = r["measured"]
    print(f"\nbig-box analysis rates on {machine}, {r['threads']} threads, from {r['n_side']}^3 clustered "
          f"particles ({r['box']:.1f} Mpc/h, the paper's spacing):")
    print(f"  power: {m['power_particles_per_s']:.3e} particles/s read + painted (+ {m['power_fixed_s']:.2f} s FFT "
          f"and shells), "
          f"peak {m['power_peak_gb']:.2f} GB")
    print(f"  fof-partition: {m['partition_particles_per_s']:.3e} particles/s, "
          f"{m['partition_bytes_per_particle']:.0f} B/particle peak")
    print(f"  fof-domain: {m['fof_domain_particles_per_s']:.3e} particles/s over {m['fof_domain_particles']} "
          f"particles, {m['fof_bytes_per_particle']:.0f} B/particle peak")
    print(f"\nprojected for the paper's {BIG_N}^3 box (config/paper.yaml):")
    print(f"{'job':34s} {'jobs':>5s} {'h/job':>8s} {'core-h':>9s} {'peak GB/job':>11s}")
    for p in r["projection_5120"]:
        print(f"{p['job']:34s} {p['jobs']:>5d} {p['hours']:>8.2f} {p['core_hours']:>9.1f} {p['peak_gb']:>11.1f}")
    fits = r["fof_domains_for_256gb_node"]
    print(f"fof_domains for a {NODE_GB} GB node: {fits} (config: {r['paper']['fof_domains']})")


# ------------------------------------------------------------------------------------------------- FOF


def bench_fof(n_side: int, scipy_max: int) -> dict:
    from srsim.analysis.fof import fof_groups, linking_length

    n = n_side**3
    need_gb = 200 * n / 2**30
    row = {"what": f"FOF {n_side}^3 clustered particles"}
    free_gb = available_host_bytes() / 2**30
    if need_gb > 0.8 * free_gb:
        row["note"] = f"skipped: needs ~{need_gb:.0f} GB, {free_gb:.0f} GB available"
        return row
    pos, _ = clustered(n_side, BOX, seed=n_side, halo_fraction=0.5, per_halo=300, ids=False)
    link = linking_length(0.2, BOX, n)
    fof_groups(pos[:2000], link, box_size=BOX)  # load the numba kernels outside the timing
    g, t_ours = timed(fof_groups, pos, link, box_size=BOX, min_members=32)
    row.update(ours_s=t_ours, n_groups=len(g.npart), largest=int(g.npart[0]) if len(g.npart) else 0)
    try:
        from kdcount import cluster

        def kd():
            return cluster.fof(cluster.dataset(pos, boxsize=BOX), linking_length=link)

        res, t_kd = timed(kd)
        sizes = np.bincount(res.labels)
        big = np.sort(sizes[sizes >= 32])[::-1]
        row.update(kdcount_s=t_kd, ours_over_kdcount=t_ours / t_kd,
                   kdcount_same_groups=bool(np.array_equal(big, g.npart)))
    except ImportError as exc:
        row["note_kdcount"] = f"kdcount not installed ({exc})"
    if n_side <= scipy_max:
        from scipy.sparse import coo_matrix
        from scipy.sparse.csgraph import connected_components
        from scipy.spatial import cKDTree

        def sp():
            pairs = cKDTree(pos, boxsize=BOX).query_pairs(link, output_type="ndarray")
            graph = coo_matrix((np.ones(len(pairs), np.int8), (pairs[:, 0], pairs[:, 1])), (n, n))
            return connected_components(graph, directed=False)[1]

        lab, t_sp = timed(sp)
        sizes = np.bincount(lab)
        big = np.sort(sizes[sizes >= 32])[::-1]
        row.update(scipy_s=t_sp, ours_over_scipy=t_ours / t_sp, scipy_same_groups=bool(np.array_equal(big, g.npart)))
    else:
        row["note_scipy"] = f"scipy skipped above {scipy_max}^3: query_pairs materialises every pair (memory)"
    return row


# ------------------------------------------------------------------------------------- engines (CLI)

_PEAK = ("import resource, subprocess, sys; r = subprocess.run(sys.argv[1:]).returncode; "
         "print(resource.getrusage(resource.RUSAGE_CHILDREN).ru_maxrss); sys.exit(r)")


def _run_cli(python: str, args: list, ranks: int = 1, engine: str = "srsim") -> tuple[float, float]:
    """(wall seconds, peak RSS MB of the largest process) of one `srsim` command in a fresh interpreter."""
    import shutil
    import subprocess

    cli = "import sys; from srsim.cli import main; sys.exit(main(sys.argv[1:]))"
    cmd = [python, "-c", cli, *map(str, args), "--engine", engine]
    if ranks > 1:
        cmd = [shutil.which("mpiexec") or "mpiexec", "-n", str(ranks), *cmd]
    env = dict(os.environ, PYTHONPATH=str(Path(__file__).resolve().parents[1] / "src"), OMP_NUM_THREADS="1")
    t = time.perf_counter()
    out = subprocess.run([sys.executable, "-c", _PEAK, *cmd], env=env, capture_output=True, text=True)
    wall = time.perf_counter() - t
    if out.returncode != 0:
        raise RuntimeError(f"{' '.join(cmd)} failed: {out.stderr[-2000:]}")
    return wall, int(out.stdout.split()[-1]) / 1024


def bench_engines(n_side: int, n_mesh: int, ranks: list[int], nbk_python: str | None) -> list[dict]:
    """srsim against nbodykit, P(k) and FOF of one n_side^3 snapshot each, through the CLI."""
    import tempfile

    from srsim.io.catalog import read_catalog
    from srsim.io.power import read_power
    from srsim.io.snapshot import make_header, write_snapshot

    cosmo = {"Omega_m": 0.2814, "Omega_b": 0.0464, "Omega_L": 0.7186, "h": 0.697, "sigma8": 0.82, "n_s": 0.971}
    n = n_side**3
    rows = []
    with tempfile.TemporaryDirectory() as tmp:
        tmp = Path(tmp)
        lattice = np.concatenate(list(lattice_particles(n_side, BOX)))
        pos, ids = clustered(n_side, BOX, seed=n_side, halo_fraction=0.5, per_halo=300)
        attrs = make_header(box_size=BOX, redshift=0.0, n_particles=n, cosmology=cosmo)
        write_snapshot(tmp / "lattice", attrs, lattice, np.arange(1, n + 1, dtype=np.uint64), position_dtype="f4")
        write_snapshot(tmp / "clustered", attrs, pos, ids, position_dtype="f4")
        del lattice, pos, ids
        for what, cmd, out in (("P(k)", ["power", tmp / "lattice", None, "--mesh", n_mesh], "p"),
                               ("FOF", ["fof", tmp / "clustered", None], "f")):
            label = f"{what} {n_side}^3 particles" + (f", {n_mesh}^3 mesh" if what == "P(k)" else "") + " [CLI]"
            row = {"what": label, "particles": n}
            ext = ".txt" if what == "P(k)" else ".h5"
            args = [a if a is not None else tmp / f"{out}_srsim{ext}" for a in cmd]
            row["srsim_s"], row["srsim_peak_mb"] = _run_cli(sys.executable, args)
            if not nbk_python:
                row["note_nbodykit"] = "nbodykit not installed: set --nbodykit-python or $SRSIM_NBODYKIT_PYTHON"
                rows.append(row)
                continue
            for r in ranks:
                args = [a if a is not None else tmp / f"{out}_nbk{r}{ext}" for a in cmd]
                row[f"nbodykit_{r}_s"], row[f"nbodykit_{r}_peak_mb"] = _run_cli(nbk_python, args, r, "nbodykit")
                row[f"nbodykit_{r}_particles_per_s_per_rank"] = n / row[f"nbodykit_{r}_s"] / r
                if what == "P(k)":
                    (a, meta), (b, _) = read_power(tmp / f"p_srsim{ext}"), read_power(args[2])
                    m = a["k"] < meta["k_nyquist"]
                    row[f"nbodykit_{r}_max_rel_diff"] = float(np.max(np.abs(b["P"][m] / a["P"][m] - 1)))
                else:
                    (a, _), (b, _) = read_catalog(tmp / f"f_srsim{ext}"), read_catalog(args[2])
                    row[f"nbodykit_{r}_same_groups"] = bool(np.array_equal(a["npart"], b["npart"])
                                                            and np.array_equal(a["min_id"], b["min_id"]))
            row["srsim_particles_per_s"] = n / row["srsim_s"]
            rows.append(row)
    return rows


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--power", type=int, nargs="*", default=[128, 512], help="particles per side for P(k)")
    ap.add_argument("--mesh", type=int, default=512)
    ap.add_argument("--fof", type=int, nargs="*", default=[128, 256], help="particles per side for FOF")
    ap.add_argument("--scipy-max", type=int, default=128, help="largest FOF size given to scipy")
    ap.add_argument("--threads", type=int, default=2)
    ap.add_argument("--engines", type=int, nargs="*", default=[128],
                    help="particles per side of the srsim-vs-nbodykit CLI comparison (none: skip it)")
    ap.add_argument("--nbodykit-python", default=os.environ.get("SRSIM_NBODYKIT_PYTHON"),
                    help="python of the venv with nbodykit (default $SRSIM_NBODYKIT_PYTHON)")
    ap.add_argument("--ranks", type=int, nargs="+", default=[1, 2], help="MPI ranks of the nbodykit runs")
    ap.add_argument("--quick", action="store_true", help="small sizes (smoke run)")
    ap.add_argument("--bigbox", type=int, metavar="N",
                    help="only the big-box rates from N^3 particles (projected to the paper's 5120^3 box)")
    ap.add_argument("--json", default=DEFAULT_JSON)
    args = ap.parse_args(argv)
    if args.quick:
        args.power, args.mesh, args.fof, args.engines = [64], 128, [64], [48]
    if args.bigbox:
        import tempfile

        with tempfile.TemporaryDirectory() as tmp:
            r = bench_bigbox(args.bigbox, args.threads, Path(tmp))
        print_bigbox(r, cpu_model())
        out = Path(args.json if args.json != DEFAULT_JSON else str(Path(DEFAULT_JSON).with_name("analysis_bigbox.json")))
        out.parent.mkdir(parents=True, exist_ok=True)
        out.write_text(json.dumps({"machine": cpu_model(), **r}, indent=2))
        print(f"\nwritten {out}")
        return 0
    rows = []
    for n in args.power:
        rows.append(bench_power(n, args.mesh, args.threads))
        print(json.dumps(rows[-1]), file=sys.stderr)
    for n in args.fof:
        rows.append(bench_fof(n, args.scipy_max))
        print(json.dumps(rows[-1]), file=sys.stderr)
    for n in args.engines:
        for row in bench_engines(n, args.mesh if not args.quick else 64, args.ranks, args.nbodykit_python):
            rows.append(row)
            print(json.dumps(row), file=sys.stderr)
    print(f"\n{'benchmark':44s} {'ours s':>8s} {'other s':>8s} {'ours/other':>10s}  agreement / note")
    for r in rows:
        for other, key in (("pylians", "Pylians"), ("kdcount", "kdcount"), ("scipy", "scipy"), ("gpu", "GPU")):
            if other == "gpu" and "ours_gpu_s" in r:
                print(f"{r['what'] + ' [torch GPU]':44s} {r['ours_gpu_s']:8.2f} {r['ours_s']:8.2f} "
                      f"{r['ours_gpu_s'] / r['ours_s']:10.3f}  vs our CPU; max |dP/P| {r['gpu_max_rel_diff']:.1e}")
            elif f"{other}_s" in r:
                agree = (f"max |dP/P| {r['pylians_max_rel_diff']:.1e} over {r['pylians_bins_compared']} bins"
                         if other == "pylians" else f"same groups: {r.get(other + '_same_groups')}")
                print(f"{r['what'] + ' vs ' + key:44s} {r['ours_s']:8.2f} {r[other + '_s']:8.2f} "
                      f"{r['ours_s'] / r[other + '_s']:10.3f}  {agree}")
        for rk in (k for k in r if k.startswith("nbodykit_") and k.endswith("_s") and k.count("_") == 2):
            nr = rk.split("_")[1]
            agree = (f"max |dP/P| {r[f'nbodykit_{nr}_max_rel_diff']:.1e} below Nyquist"
                     if f"nbodykit_{nr}_max_rel_diff" in r else f"same groups: {r[f'nbodykit_{nr}_same_groups']}")
            print(f"{r['what'] + f' vs nbodykit x{nr}':44s} {r['srsim_s']:8.2f} {r[rk]:8.2f} "
                  f"{r['srsim_s'] / r[rk]:10.3f}  {agree}; peak MB {r['srsim_peak_mb']:.0f} vs "
                  f"{r[f'nbodykit_{nr}_peak_mb']:.0f} per rank")
        notes = [v for k, v in r.items() if k.startswith("note")]
        if "srsim_s" in r and not any(k.startswith("nbodykit_") for k in r):
            print(f"{r['what']:44s} {r['srsim_s']:8.2f} {'-':>8s} {'-':>10s}")
        if "ours_s" in r and not any(f"{o}_s" in r for o in ("pylians", "kdcount", "scipy")):
            print(f"{r['what']:44s} {r['ours_s']:8.2f} {'-':>8s} {'-':>10s}")
        for note in notes:
            print(f"{'':44s} note: {note}")
    meta = {"python": platform.python_version(), "machine": platform.machine(), "cpus": os.cpu_count(),
            "threads": args.threads, "box": BOX}
    out = Path(args.json)
    out.parent.mkdir(parents=True, exist_ok=True)
    tmp = out.with_name(out.name + ".tmp")
    tmp.write_text(json.dumps({"meta": meta, "rows": rows}, indent=2))
    os.replace(tmp, out)
    print(f"\nwritten {out}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
