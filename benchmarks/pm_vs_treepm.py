"""The embedded PM code against MP-Gadget's TreePM from the same initial conditions: P(k) and HMF ratios.

Our integrator and PM force (srsim.sims.pm, as `sims.backend: pm` runs them) start from MP-GenIC's own IC
of a real MP-Gadget run and stop at that run's snapshots (default: tests/data/mpgadget/n16 and n32, 16^3 and
32^3 particles in 100 Mpc/h, z = 99 -> 4, 2, 0, WMAP9). Both sides go through the same estimators:

- P(k): CIC on a mesh of 2x the particles per side, the ratio P_PM / P_TreePM averaged over the modes of
  each band of k / k_Nyq, with k_Nyq = pi n / box the particle Nyquist wavenumber;
- HMF: FOF (b = 0.2), the ratio of the halo counts N_PM / N_TreePM in bins of 20-40, 40-100 and over 100
  particles per halo (Poisson error of the ratio).

    python benchmarks/pm_vs_treepm.py [--runs DIR ...] [--steps 10 20] [--mesh-factor 2] [--out PATH]

Prints a table and writes JSON (default benchmarks/results/pm_vs_treepm.json). Deterministic: no timing.
"""

from __future__ import annotations

import argparse
import json
import math
import sys
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parent.parent
DEFAULT_RUNS = [ROOT / "tests/data/mpgadget/n16/output", ROOT / "tests/data/mpgadget/n32/output"]
#: the cosmology of the fixture runs (tests/data/mpgadget/README.md); the background is checked against headers
WMAP9 = {"Omega_m": 0.2814, "Omega_b": 0.0464, "Omega_L": 0.7186, "h": 0.697, "sigma8": 0.82, "n_s": 0.971}
K_BANDS = ((0.125, 0.25), (0.25, 0.5), (0.5, 1.0))  #: in units of the particle Nyquist wavenumber
#: halo bins in particles per halo (any box and resolution); masses = particles x the particle mass
NPART_EDGES = (20, 40, 100, 10**12)


def _snapshots(run: Path) -> list[tuple[float, Path]]:
    """(scale factor, path) of a run's snapshots, ascending: an MP-Gadget OutputDir's PART_nnn listed in its
    Snapshots.txt, or the outputs of an srsim simulation folder (`srsim simulate`, backend mpgadget)."""
    from srsim.sims.mpgadget import IC_BASE, SNAPSHOT_BASE, read_snapshot_list

    complete = run / "run" / "complete.json"
    if complete.is_file():
        mapping = json.loads(complete.read_text())
        out = [(float(m["a"]), run / name) for name, m in mapping.items() if name != IC_BASE]
    else:
        out = [(a, run / f"{SNAPSHOT_BASE}_{num:03d}") for num, a in read_snapshot_list(run)]
    if not out:
        sys.exit(f"{run}: no snapshots listed in Snapshots.txt")
    return sorted(out)


def _band_ratios(pos_pm, pos_ref, box: float, n: int) -> dict:
    from srsim.analysis.power import power_from_positions

    pm = power_from_positions([pos_pm], box, 2 * n)
    ref = power_from_positions([pos_ref], box, 2 * n)
    k_nyq = math.pi * n / box
    out = {}
    for lo, hi in K_BANDS:
        sel = (pm.k >= lo * k_nyq) & (pm.k < hi * k_nyq) & (pm.n_modes > 0)
        w = pm.n_modes[sel]
        out[f"{lo:g}-{hi:g}"] = float((pm.P[sel] * w).sum() / (ref.P[sel] * w).sum())
    return out


def _halo_counts(pos, ids, box: float) -> np.ndarray:
    from srsim.analysis.fof import fof_groups, linking_length

    g = fof_groups(pos, linking_length(0.2, box, len(pos)), box_size=box, ids=ids, min_members=NPART_EDGES[0])
    return np.histogram(g.npart, bins=NPART_EDGES)[0]


def compare(run: Path, steps: int, mesh_factor: int) -> list[dict]:
    """Rows {n, box, steps, z, power: {band: ratio}, hmf: [{npart, log10M, n_pm, n_treepm, ratio, err}]}."""
    import torch

    from srsim.cosmology import Cosmology
    from srsim.io.snapshot import read_header, read_particles
    from srsim.sims.pm import PMForce, evolve, time_steps

    h0 = read_header(run / "IC")
    for key, attr in (("Omega_m", "omega_m"), ("Omega_L", "omega_l"), ("h", "h")):
        if abs(getattr(h0, attr) - WMAP9[key]) > 1e-6:
            sys.exit(f"{run / 'IC'}: {attr} = {getattr(h0, attr)} is not the benchmark's WMAP9 {key} = {WMAP9[key]}")
    cosmo = Cosmology.from_config(WMAP9)
    box, a0 = h0.box_size, h0.time
    n = round(h0.n_particles ** (1 / 3))
    ic = read_particles(run / "IC", ("Position", "Velocity", "ID"))
    order = np.argsort(ic["ID"])
    pos = torch.as_tensor(ic["Position"][order].copy())
    p = torch.as_tensor(ic["Velocity"][order].astype(np.float64) * a0 / 100.0)  # v = 100 p / a km/s
    ids = ic["ID"][order]
    snaps = _snapshots(run)
    got = {}

    def on_step(i, a, pos, p):
        for a_out, _ in snaps:
            if abs(a - a_out) < 1e-9 * a_out:
                got[a_out] = pos.numpy().copy()

    evolve(pos, p, time_steps(a0, [a for a, _ in snaps], steps), PMForce(mesh_factor * n, box, cosmo.Omega_m, "cpu"),
           cosmo, on_step=on_step)
    rows = []
    for a, path in snaps:
        ref = read_particles(path, ("Position", "ID"))
        power = _band_ratios(got[a], ref["Position"], box, n)
        n_pm = _halo_counts(got[a], ids, box)
        n_ref = _halo_counts(ref["Position"], ref["ID"], box)
        hmf = []
        for i, (c_pm, c_ref) in enumerate(zip(n_pm, n_ref)):
            ratio = c_pm / c_ref if c_ref else None
            err = ratio * math.sqrt(1 / c_pm + 1 / c_ref) if c_ref and c_pm else None
            lo, hi = NPART_EDGES[i], NPART_EDGES[i + 1]
            hmf.append({"npart": [lo, hi], "log10M": [math.log10(lo * h0.particle_mass), math.log10(hi * h0.particle_mass)],
                        "n_pm": int(c_pm), "n_treepm": int(c_ref), "ratio": ratio, "err": err})
        rows.append({"run": str(run.relative_to(ROOT) if run.is_relative_to(ROOT) else run), "n": n, "box": box,
                     "steps": steps, "mesh_factor": mesh_factor, "z": round(1 / a - 1, 6), "power": power,
                     "hmf": hmf})
    return rows


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--runs", type=Path, nargs="+", default=DEFAULT_RUNS,
                        help="MP-Gadget OutputDirs (IC, PART_nnn, Snapshots.txt) or srsim simulation folders")
    parser.add_argument("--steps", type=int, nargs="+", default=[10, 20], help="PM steps from the IC to the last snapshot")
    parser.add_argument("--mesh-factor", type=int, default=2, help="PM mesh cells per particle per side")
    parser.add_argument("--out", type=Path, default=ROOT / "benchmarks/results/pm_vs_treepm.json")
    args = parser.parse_args(argv)

    rows = [row for run in args.runs for steps in args.steps
            for row in compare(run.resolve(), steps, args.mesh_factor)]
    bands = [f"{lo:g}-{hi:g}" for lo, hi in K_BANDS]
    print(f"P_PM / P_TreePM in bands of k / k_Nyq(particles); N_PM / N_TreePM of FOF halos by particles per halo; "
          f"PM mesh {args.mesh_factor}x")
    print(f"{'n':>4} {'box':>6} {'steps':>5} {'z':>4} " + " ".join(f"{b:>10}" for b in bands) + "   HMF")
    for r in rows:
        hmf = ", ".join(f"{h['npart'][0]}-{h['npart'][1] if h['npart'][1] < 10**12 else ''}: {h['n_pm']}/{h['n_treepm']}"
                        for h in r["hmf"] if h["n_treepm"] or h["n_pm"])
        print(f"{r['n']:>4} {r['box']:>6g} {r['steps']:>5} {r['z']:>4g} "
              + " ".join(f"{r['power'][b]:>10.3f}" for b in bands) + f"   {hmf or 'no halos'}")
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(json.dumps({"rows": rows, "k_bands": bands, "npart_edges": NPART_EDGES}, indent=1) + "\n")
    print(f"wrote {args.out}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
