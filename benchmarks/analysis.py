"""Benchmark of the analysis stage: P(k) and FOF, side by side with independent implementations.

    OMP_NUM_THREADS=2 python benchmarks/analysis.py                # full: P(k) 128^3, 512^3 on 512^3; FOF 128^3, 256^3
    python benchmarks/analysis.py --quick                          # small sizes, a smoke run
    python benchmarks/analysis.py --fof 128 256 512 --json out.json

P(k): ours (numba CIC in chunks + scipy FFT; and torch on the GPU when there is one) against Pylians3
(`MAS_library.MA` CIC + `Pk_library.Pk` with MAS='None', i.e. no deconvolution, the same estimator and
the same shells of width k_F). FOF (b = 0.2, >= 32 particles, periodic) of clustered particles against
kdcount's `cluster.fof` and scipy's cKDTree pairs + connected components. Comparators are optional: a
missing one is skipped with a note. Prints a table (seconds, ratios, agreement) and writes JSON.

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

from srsim.device import available_host_bytes
from srsim.testing import clustered

BOX = 1000.0  # Mpc/h; only ratios matter


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
    ap.add_argument("--json", default=str(Path(__file__).parent / "results" / "analysis.json"))
    args = ap.parse_args(argv)
    if args.quick:
        args.power, args.mesh, args.fof, args.engines = [64], 128, [64], [48]
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
