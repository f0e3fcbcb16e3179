"""MP-Gadget backend: MP-GenIC initial conditions + an MP-Gadget TreePM run, driven from the config.

One module (about 600 lines) because its parts share one contract with the external binaries: the
parameter files it writes, the outputs and restart files those runs produce, and the checks and moves that
read them back; a change to one side of that contract is a change to the other.

`run(spec, outdir)` works in `outdir/run/`:

```
outdir/run/paramfile.genic      MP-GenIC parameters (Zel'dovich ICs at spec.z_init from linear_power.txt)
outdir/run/paramfile.gadget     MP-Gadget parameters (DM only, all physics off, on-the-fly FOF b = 0.2)
outdir/run/linear_power.txt     P_lin(k, z = 0): k [h/Mpc], P [(Mpc/h)^3] (srsim.cosmology, CAMB)
outdir/run/genic.log, gadget.log   stdout + stderr of every launch (appended)
outdir/run/output/              MP-Gadget's OutputDir: IC, PART_nnn, PIG_nnn (FOF), Snapshots.txt, ...
outdir/run/complete.json        written last: which PART/PIG became which output
```

and then moves the snapshots into our layout: `outdir/IC` and `outdir/z{zstr(z)}` (a rename on the same
filesystem, so nothing is copied and nothing half-written is ever visible there). The snapshot of each
output redshift is found by its `Header.Time`, never by its number: MP-Gadget numbers every snapshot it
writes, including the checkpoints it dumps when it stops at `TimeLimitCPU`. MP-Gadget's own FOF
catalogues stay in `outdir/run/output/PIG_nnn` (`complete.json` maps them to redshifts).

Restarts (MP-Gadget conventions, checked against its source): when a run gets close to `TimeLimitCPU`
MP-Gadget writes a checkpoint snapshot `PART_nnn`, appends it to `OutputDir/Snapshots.txt`, prints
"Stopping due to TimeLimitCPU" and exits with status 0. `MP-Gadget paramfile.gadget 1` resumes from the
last snapshot listed in `Snapshots.txt`. A snapshot is listed only once it is completely written, so a
run killed by the scheduler (preemption) also resumes from its last complete snapshot. `run()` therefore:

- skips MP-GenIC when `run/genic.done` exists (written after MP-GenIC succeeded and its IC was checked);
- starts MP-Gadget from the IC when `Snapshots.txt` is absent, and otherwise resumes it with
  `MP-Gadget paramfile.gadget 1`;
- raises SrsimError when MP-Gadget stopped before `TimeMax` (e.g. at TimeLimitCPU), naming the scale factor
  reached: the next invocation (a Snakemake retry or rerun) resumes from that checkpoint;
- starts over (deletes `run/output`) when the parameter files it would write differ from those on disk,
  so a changed config never resumes a run made with other parameters; a changed TimeLimitCPU,
  AutoSnapshotTime or MaxMemSizePerNode alone (RESOURCE_PARAMS) resumes, with the new values.

Periodic checkpoints against preemption without warning: `extra_gadget: {AutoSnapshotTime: <seconds>}`.

MP-Gadget rejects unknown parameters, so only parameters known to the MP-Gadget version of the fixtures
(5.0.1.dev1, tests/data/mpgadget) are written; `extra_genic` / `extra_gadget` add or override any.
Beyond the fixture files we set: `InputPowerRedshift = 0` (our table is P(k, z = 0); MP-GenIC normalises
it to `Sigma8` at z = 0 and scales it to `Redshift` with its linear growth factor), `CMBTemperature`
(config T_cmb), `UsePeculiarVelocity = 1` (velocities in km/s, peculiar, as our reader expects) and
`FOFHaloMinLength = 32` (the paper's catalogues; the fixtures used 20).
"""

from __future__ import annotations

import json
import os
import shlex
import shutil
import subprocess
import sys
import time
from pathlib import Path

from srsim.errors import SrsimError
from srsim.lock import locked
from srsim.sims.suite import SimSpec, fixed_amplitudes, zstr

#: MP-Gadget's OutputDir, relative to outdir/run (MP-Gadget and MP-GenIC run with cwd = outdir/run)
OUTPUT_DIR = "output"
IC_BASE = "IC"
SNAPSHOT_BASE = "PART"  #: MP-Gadget's default SnapshotFileBase
FOF_BASE = "PIG"  #: MP-Gadget's default FOFFileBase
POWER_TABLE = "linear_power.txt"
GENIC_PARAMS = "paramfile.genic"
GADGET_PARAMS = "paramfile.gadget"
#: internal units written to both parameter files (MP-Gadget's defaults): kpc/h, 1e10 Msun/h, km/s
UNITS = {"UnitLength_in_cm": 3.085678e21, "UnitMass_in_g": 1.989e43, "UnitVelocity_in_cm_per_s": 1e5}
FOF_LINKING_LENGTH = 0.2  #: in units of the mean particle separation (paper)
FOF_MIN_LENGTH = 32  #: particles per saved group (paper)
#: relative tolerance when matching a snapshot's Header.Time to an output scale factor (MP-Gadget's
#: integer timeline resolves a to ~1e-8; distinct outputs differ by far more)
TIME_RTOL = 1e-5
#: MP-Gadget's message when it stops for TimeLimitCPU (libgadget/hci.c, run.c)
TIMELIMIT_MARKERS = ("Stopping due to TimeLimitCPU", "before TimeLimitCPU is reached")
#: parameters that set what a launch may use, not what is computed: a run whose parameter files differ from
#: the last ones only in these resumes (e.g. a retry granted a longer TimeLimitCPU) instead of starting over
RESOURCE_PARAMS = frozenset({"TimeLimitCPU", "AutoSnapshotTime", "MaxMemSizePerNode"})


def _log(msg: str) -> None:
    print(f"srsim simulate (mpgadget): {msg}", file=sys.stderr, flush=True)


def options(spec: SimSpec) -> dict:
    """The `sims.mpgadget` options of `spec`, validated and with the schema's defaults filled in."""
    from srsim.config import validated

    return validated("sims.mpgadget", spec.options)


def scale_factors(redshifts) -> list[float]:
    """Output scale factors a = 1/(1+z), ascending, duplicates removed."""
    return sorted({1.0 / (1.0 + float(z)) for z in redshifts})


def _cosmo_params(cosmo: dict) -> dict:
    from srsim.cosmology import Cosmology

    return {
        "Omega0": float(cosmo["Omega_m"]),
        "OmegaLambda": float(cosmo["Omega_L"]),
        "OmegaBaryon": float(cosmo["Omega_b"]),
        "HubbleParam": float(cosmo["h"]),
        "CMBTemperature": Cosmology.from_config(cosmo).T_cmb,
    }


def _merge_extra(params: dict, extra: dict, key: str) -> dict:
    if not isinstance(extra, dict):
        raise SrsimError(f"sims.mpgadget.{key}: must be a mapping of parameter names to values")
    for name, value in extra.items():
        params[str(name)] = value
    return params


def genic_params(spec: SimSpec, *, power_table: str, outdir: str) -> dict:
    """MP-GenIC parameters (insertion-ordered dict) for the ICs of `spec`.

    power_table: path of the P(k, z = 0) table as MP-GenIC will see it (relative to its working directory);
    outdir: MP-GenIC's OutputDir (the IC is written to `outdir/IC`). Lengths in kpc/h (BoxSize).
    """
    opts = options(spec)
    cosmo = spec.cosmology
    if not 0 <= int(spec.seed) < 2**31:
        raise SrsimError(f"simulation {spec.name}: seed {spec.seed} does not fit MP-GenIC's Seed (a signed "
                         f"32-bit int): use seeds below 2147483648 with the mpgadget backend")
    params = {
        "MaxMemSizePerNode": int(opts["max_mem_mb"]),  # MB; MP-Gadget reads values <= 1 as a fraction of RAM
        "OutputDir": outdir,
        "FileBase": IC_BASE,
        "Ngrid": int(spec.n_grid),
        "Nmesh": int(opts["genic_mesh_factor"]) * int(spec.n_grid),
        "BoxSize": float(spec.box_size) * 1000.0,  # kpc/h
        "ProduceGas": 0,
        **_cosmo_params(cosmo),
        "Redshift": float(spec.z_init),
        "WhichSpectrum": 2,  # tabulated P(k) (the built-in fit is not used)
        "FileWithInputSpectrum": power_table,
        "InputPowerRedshift": 0,  # the table is P(k, z = 0)
        "Sigma8": float(cosmo["sigma8"]),  # renormalise to sigma8 at z = 0, then scale to Redshift with D(a)
        "PrimordialIndex": float(cosmo["n_s"]),  # only used by analytic spectra; recorded for the reader
        "DifferentTransferFunctions": 0,  # 1 needs a CLASS transfer-function file; DM only here
        "ScaleDepVelocity": 0,  # Zel'dovich velocities v = a H f D psi
        "Seed": int(spec.seed),  # LR and HR of a pair share it: MP-GenIC then shares their large-scale modes
        "UnitaryAmplitude": 1 if fixed_amplitudes(spec) else 0,  # sims.amplitudes (1: |delta_k| fixed)
        "UsePeculiarVelocity": 1,  # Velocity block in peculiar km/s
        **UNITS,
    }
    return _merge_extra(params, opts["extra_genic"], "extra_genic")


def gadget_params(spec: SimSpec, *, outdir: str) -> dict:
    """MP-Gadget parameters (insertion-ordered dict): DM-only TreePM from `outdir/IC` to the last output.

    outdir: MP-Gadget's OutputDir (snapshots `outdir/PART_nnn`, FOF catalogues `outdir/PIG_nnn`).
    """
    opts = options(spec)
    a_init = 1.0 / (1.0 + float(spec.z_init))
    times = scale_factors(spec.redshifts)
    if not times:
        raise SrsimError(f"simulation {spec.name}: no output redshifts")
    if times[0] <= a_init * (1 + TIME_RTOL):
        raise SrsimError(f"simulation {spec.name}: output redshift {1 / times[0] - 1:g} is not after "
                         f"z_init = {spec.z_init:g}")
    params = {
        "MaxMemSizePerNode": int(opts["max_mem_mb"]),
        "InitCondFile": f"{outdir}/{IC_BASE}",
        "OutputDir": outdir,
        "OutputList": ",".join(f"{a:.10g}" for a in times),
        "TimeMax": float(f"{times[-1]:.10g}"),
        "TimeLimitCPU": int(opts["time_limit_s"]),  # seconds of wall time; MP-Gadget checkpoints and stops
        **_cosmo_params(spec.cosmology),
        "RadiationOn": 1,  # photons in H(a), as MP-GenIC's growth factor assumes by default
        "GravitySoftening": float(spec.softening),  # in units of the mean particle separation
    }
    if opts.get("pm_mesh") is not None:
        params["Nmesh"] = int(opts["pm_mesh"])
    params.update({
        "HydroOn": 0,
        "DensityIndependentSphOn": 0,
        "CoolingOn": 0,
        "StarformationOn": 0,
        "WindOn": 0,
        "BlackHoleOn": 0,
        "MetalReturnOn": 0,
        "MassiveNuLinRespOn": 0,
        "SnapshotWithFOF": 1,
        "FOFHaloLinkingLength": FOF_LINKING_LENGTH,
        "FOFHaloMinLength": FOF_MIN_LENGTH,
    })
    return _merge_extra(params, opts["extra_gadget"], "extra_gadget")


def _format_value(key: str, value) -> str:
    if isinstance(value, bool):
        text = "1" if value else "0"
    elif isinstance(value, int):
        text = str(value)
    elif isinstance(value, float):
        text = f"{value:.10g}"
    elif isinstance(value, (list, tuple)):
        text = ",".join(_format_value(key, v) for v in value)
    elif isinstance(value, (str, os.PathLike)):
        text = str(value).strip()
    else:
        raise SrsimError(f"MP-Gadget parameter {key}: unsupported value {value!r} ({type(value).__name__})")
    # MP-Gadget's parser ends a value at '#' or '%' and rejects empty values
    if not text or any(c in text for c in "#%\n\r"):
        raise SrsimError(f"MP-Gadget parameter {key}: value {text!r} is empty or contains '#', '%' or a newline")
    return text


def format_params(params: dict) -> str:
    """`Key = value` lines (the format of MP-Gadget parameter files), in the dict's order."""
    lines = []
    for key, value in params.items():
        if not key or not key.replace("_", "").isalnum():
            raise SrsimError(f"MP-Gadget parameter name {key!r} is not a plain identifier")
        lines.append(f"{key} = {_format_value(key, value)}")
    return "\n".join(lines) + "\n"


def parse_params(text: str, *, source: str = "parameter file") -> dict:
    """Inverse of `format_params` (values as strings): comments (`#`, `%`) and blank lines ignored."""
    out = {}
    for lineno, raw in enumerate(text.splitlines(), 1):
        line = raw
        for c in "#%":
            line = line.split(c, 1)[0]
        line = line.strip()
        if not line:
            continue
        key, sep, value = line.partition("=")
        if not sep:
            parts = line.split(None, 1)
            key, value = parts[0], parts[1] if len(parts) > 1 else ""
        key, value = key.strip(), value.strip()
        if not value:
            raise SrsimError(f"{source}:{lineno}: parameter {key!r} has no value")
        out[key] = value
    return out


# ---------------------------------------------------------------------------------------------------------
# executables


def find_executable(name: str, key: str) -> str:
    """Absolute path of executable `name` (a path, or a name on PATH); SrsimError naming config key `key`."""
    if not name:
        raise SrsimError(f"sims.mpgadget.{key}: no executable given")
    if os.sep in name or name.startswith("~"):
        path = Path(name).expanduser()
        if not path.is_file():
            raise SrsimError(f"sims.mpgadget.{key}: executable '{name}' does not exist")
        if not os.access(path, os.X_OK):
            raise SrsimError(f"sims.mpgadget.{key}: '{name}' is not executable")
        return str(path.absolute())
    found = shutil.which(name)
    if found is None:
        raise SrsimError(f"sims.mpgadget.{key}: executable '{name}' not found on PATH; build MP-Gadget "
                         f"(github.com/MP-Gadget/MP-Gadget) and put its binaries on PATH, or set "
                         f"sims.mpgadget.{key} to the binary's path")
    return str(Path(found).absolute())


def launcher_argv(launcher: str, ntasks: int) -> list[str]:
    """The launcher prefix as an argument list: '{ntasks}' replaced; '' runs the binaries directly."""
    try:
        text = launcher.format(ntasks=int(ntasks))
    except (KeyError, IndexError, ValueError) as exc:
        raise SrsimError(f"sims.mpgadget.launcher: cannot format {launcher!r} (only {{ntasks}} is "
                         f"substituted): {exc}") from exc
    argv = shlex.split(text)
    if argv and shutil.which(argv[0]) is None:
        raise SrsimError(f"sims.mpgadget.launcher: '{argv[0]}' (from {launcher!r}) not found on PATH")
    return argv


def _tail(path: Path, start: int = 0, lines: int = 40) -> str:
    """The last `lines` lines of a log from byte `start`, preceded by every line that reports an error
    (MPI ranks interleave their output, so an abort's message is often far from the end)."""
    try:
        with open(path, "rb") as fh:
            fh.seek(start)
            text = fh.read().decode(errors="replace")
    except OSError:
        return ""
    all_lines = text.splitlines()
    last = all_lines[-lines:]
    errors = []
    for i, line in enumerate(all_lines[:-lines] if len(all_lines) > lines else []):
        if "ERROR" in line or "endrun" in line or "Abort" in line:
            errors += all_lines[i:i + 2]
    head = ["[error lines earlier in the log:]", *errors[:40], "[...]"] if errors else []
    return "\n".join(head + last)


def threads_per_rank(job_threads: int | None, ntasks: int, environ=os.environ) -> int:
    """OpenMP threads of each MPI rank: slurm's cpus-per-task inside an allocation, else the job's cores
    (the rule's `threads`) shared among its ranks. MP-Gadget otherwise starts one thread per core in every
    rank: 2 ranks x 2 threads on 2 cores ran a 16^3 simulation about 6x slower than 2 x 1."""
    cpt = environ.get("SLURM_CPUS_PER_TASK")
    if cpt and cpt.strip().isdigit() and int(cpt) > 0:
        return int(cpt)
    if job_threads:
        return max(1, int(job_threads) // max(1, int(ntasks)))
    return 1


def _launch(argv: list[str], cwd: Path, log: Path, what: str, env: dict | None = None) -> int:
    """Run argv in cwd, appending stdout+stderr to log; returns the log offset where this launch began."""
    with open(log, "ab") as fh:
        start = fh.tell()
        omp = f" OMP_NUM_THREADS={env['OMP_NUM_THREADS']}" if env and "OMP_NUM_THREADS" in env else ""
        fh.write(f"\n===== {time.strftime('%Y-%m-%d %H:%M:%S')}{omp} {shlex.join(argv)} (cwd {cwd})\n".encode())
        fh.flush()
        _log(f"{what}:{omp} {shlex.join(argv)} (log {log})")
        try:
            proc = subprocess.run(argv, cwd=cwd, stdout=fh, stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL,
                                  env=env)
        except OSError as exc:
            raise SrsimError(f"{what}: cannot start {shlex.join(argv)}: {exc}") from exc
    if proc.returncode != 0:
        how = (f"was killed by signal {-proc.returncode}" if proc.returncode < 0
               else f"exited with status {proc.returncode}")
        raise SrsimError(f"{what} {how} ({shlex.join(argv)} in {cwd}); log {log}, last lines:\n"
                         f"{_tail(log, start)}")
    return start


# ---------------------------------------------------------------------------------------------------------
# outputs


def read_snapshot_list(output_dir: Path) -> list[tuple[int, float]]:
    """(number, scale factor) of each complete snapshot listed in MP-Gadget's `Snapshots.txt` (may be [])."""
    path = Path(output_dir) / "Snapshots.txt"
    if not path.is_file():
        return []
    out = []
    for lineno, line in enumerate(path.read_text().splitlines(), 1):
        parts = line.split()
        if not parts:
            continue
        try:
            out.append((int(parts[0]), float(parts[1])))
        except (ValueError, IndexError) as exc:
            raise SrsimError(f"{path}:{lineno}: expected '<number> <scale factor>', got {line!r}") from exc
    return out


def _check_snapshot(path: Path, spec: SimSpec, a: float, what: str):
    from srsim.io.snapshot import check_blocks_complete, read_header

    h = read_header(path)
    check_blocks_complete(path)
    if abs(h.time - a) > TIME_RTOL * a:
        raise SrsimError(f"{path}: {what} has Header Time a = {h.time:.8g}, expected {a:.8g}")
    if h.n_particles != spec.n_grid**3:
        raise SrsimError(f"{path}: {what} has {h.n_particles} particles, expected {spec.n_grid}^3")
    if abs(h.box_size - spec.box_size) > 1e-9 * spec.box_size:
        raise SrsimError(f"{path}: {what} has BoxSize {h.box_size} Mpc/h, expected {spec.box_size}")
    return h


def _snapshot_times(output: Path) -> dict[int, float]:
    """{number: Header Time} of the complete snapshots still present in `output`."""
    from srsim.io.snapshot import read_header

    times = {}
    for num, _ in read_snapshot_list(output):
        path = output / f"{SNAPSHOT_BASE}_{num:03d}"
        if (path / "Header").is_dir():
            times[num] = read_header(path).time
    return times


def _expected(spec: SimSpec) -> list[tuple[str, float, str]]:
    """(name in outdir, scale factor, description) of every output, the IC first."""
    out = [(IC_BASE, 1.0 / (1.0 + float(spec.z_init)), f"initial conditions (z = {spec.z_init:g})")]
    for z in sorted(set(map(float, spec.redshifts)), reverse=True):
        out.append((f"z{zstr(z)}", 1.0 / (1.0 + z), f"snapshot at z = {z:g}"))
    return out


def _outputs_present(spec: SimSpec, outdir: Path) -> bool:
    for name, a, what in _expected(spec):
        try:
            _check_snapshot(outdir / name, spec, a, what)
        except SrsimError:
            return False
    return True


def _expose(spec: SimSpec, outdir: Path, rundir: Path) -> dict:
    """Move the IC and the snapshot of each output redshift (matched by Header.Time) into outdir.

    Every source is found and checked before anything moves, so a missing snapshot leaves outdir as it was.
    """
    from srsim.io.atomic import replace_path

    output = rundir / OUTPUT_DIR
    times = _snapshot_times(output)
    moves, mapping = [], {}
    for name, a, what in _expected(spec):
        dst = outdir / name
        if name == IC_BASE:
            src, num = output / IC_BASE, None
        else:
            matches = sorted(n for n, t in times.items() if abs(t - a) <= TIME_RTOL * a)
            num = matches[-1] if matches else None  # the latest, should a checkpoint coincide with an output
            src = output / f"{SNAPSHOT_BASE}_{num:03d}" if num is not None else None
        fof = output / f"{FOF_BASE}_{num:03d}" if num is not None else None
        entry = {"a": a, "snapshot": src.name if src is not None else None,
                 "fof": str(fof.relative_to(outdir)) if fof is not None and fof.is_dir() else None}
        if src is None or not (src / "Header").is_dir():
            # moved here by an earlier invocation that stopped before finishing?
            if (dst / "Header").is_dir():
                _check_snapshot(dst, spec, a, what)
                mapping[name] = entry
                continue
            listed = ", ".join(f"{SNAPSHOT_BASE}_{n:03d} (a = {t:.6g})" for n, t in sorted(times.items())) or "none"
            raise SrsimError(f"{output}: MP-Gadget wrote no {what} (a = {a:.6g}); complete snapshots: {listed}; "
                             f"check OutputList in {rundir / GADGET_PARAMS} and {rundir / 'gadget.log'}")
        try:
            _check_snapshot(src, spec, a, what)
        except SrsimError as err:
            raise SrsimError(f"{err}; the run is kept in {rundir} (see {rundir / 'gadget.log'})") from None
        moves.append((src, dst))
        mapping[name] = entry
    for src, dst in moves:
        replace_path(src, dst)
    # checkpoints that are no outputs are only needed to resume, and the run is complete
    exposed = {m["snapshot"] for m in mapping.values()}
    for num, t in times.items():
        path = output / f"{SNAPSHOT_BASE}_{num:03d}"
        if path.name not in exposed and path.is_dir():
            _log(f"removing checkpoint {path} (a = {t:.6g}): the run is complete")
            shutil.rmtree(path)
    # MP-Gadget runs FOF at every snapshot it writes, checkpoints included: keep the outputs' catalogues only
    kept = {Path(m["fof"]).name for m in mapping.values() if m["fof"]}
    for path in sorted(output.glob(f"{FOF_BASE}_*")):
        if path.is_dir() and path.name not in kept:
            _log(f"removing {path}: the FOF catalogue of a checkpoint, not of an output")
            shutil.rmtree(path)
    return mapping


# ---------------------------------------------------------------------------------------------------------
# the run


def _write_text(path: Path, text: str) -> None:
    from srsim.io.atomic import atomic_path

    with atomic_path(path) as tmp:
        tmp.write_text(text)


#: lowest k [h/Mpc] of the table for MP-GenIC. Its sigma8 integral is adaptive quadrature from k = 0 and samples
#: k far below the fundamental mode (6.8e-5 h/Mpc in a 16^3 suite, under the old 1e-4 edge); MP-GenIC aborts
#: on any k more than 0.1 dex below the table. Below CAMB's range the table follows P ~ k^n_s.
POWER_TABLE_KMIN = 1e-8


def _power_table_range(spec: SimSpec, opts: dict) -> tuple[float, float]:
    """k range [h/Mpc] the table must cover: far below the fundamental mode (the sigma8 integral), above the
    corner of MP-GenIC's mesh (MP-GenIC sets P = 0 outside the table) and the sigma8 integral's top."""
    import math

    k_fund = 2 * math.pi / spec.box_size
    k_corner = math.sqrt(3) * math.pi * opts["genic_mesh_factor"] * spec.n_grid / spec.box_size
    return min(POWER_TABLE_KMIN, 1e-4 * k_fund), max(1e3, 2 * k_corner)


def write_power_table(spec: SimSpec, path: Path) -> None:
    """P_lin(k, z = 0) for MP-GenIC (srsim.cosmology: CAMB normalised to sigma8), checked after writing."""
    import numpy as np

    from srsim.cosmology import Cosmology, write_power_table as _write
    from srsim.io.power import read_linear_power

    kmin, kmax = _power_table_range(spec, options(spec))
    _write(path, Cosmology.from_config(spec.cosmology), kmin, kmax, 2000)
    table = read_linear_power(path)
    if table.shape[1] != 2 or np.any(np.diff(table[:, 0]) <= 0) or np.any(table[:, 1] <= 0):
        raise SrsimError(f"{path}: power table is not two columns with increasing k and positive P")
    if table[0, 0] > kmin * (1 + 1e-6) or table[-1, 0] < kmax * (1 - 1e-6):
        raise SrsimError(f"{path}: power table covers k = [{table[0, 0]:g}, {table[-1, 0]:g}] h/Mpc, "
                         f"MP-GenIC needs [{kmin:g}, {kmax:g}]")


def _physics(params: dict) -> dict:
    """`params` without RESOURCE_PARAMS: what decides whether a run on disk may be resumed."""
    return {k: v for k, v in params.items() if k not in RESOURCE_PARAMS}


def _reset(rundir: Path, outdir: Path, spec: SimSpec, why: str) -> None:
    _log(f"starting {spec.name}/{spec.kind} over: {why}")
    shutil.rmtree(rundir / OUTPUT_DIR, ignore_errors=True)
    for name in ("genic.done", "complete.json"):
        (rundir / name).unlink(missing_ok=True)
    for name, _, _ in _expected(spec):
        if (outdir / name).is_dir():
            shutil.rmtree(outdir / name)


def run(spec: SimSpec, outdir: Path, threads: int | None = None) -> None:
    """Run MP-GenIC and MP-Gadget for `spec`; leave `outdir/IC` and `outdir/z{z}` (bigfile snapshots).

    threads: CPU cores of the whole job (the rule's `threads`); each MPI rank gets :func:`threads_per_rank`
    OpenMP threads (OMP_NUM_THREADS).

    Resumes an interrupted run (see the module docstring). SrsimError on a missing binary or launcher,
    a failed launch (exit status and the log's last lines), a run that stopped before its last output
    (TimeLimitCPU), or a missing or inconsistent snapshot.
    """
    outdir = Path(outdir)
    opts = options(spec)
    genic_exe = find_executable(opts["genic"], "genic")
    gadget_exe = find_executable(opts["gadget"], "gadget")
    launcher = launcher_argv(opts["launcher"], opts["ntasks"])
    rundir = outdir / "run"
    rundir.mkdir(parents=True, exist_ok=True)
    output = rundir / OUTPUT_DIR
    env = dict(os.environ, OMP_NUM_THREADS=str(threads_per_rank(threads, opts["ntasks"])))

    gparams = genic_params(spec, power_table=POWER_TABLE, outdir=OUTPUT_DIR)
    sparams = gadget_params(spec, outdir=OUTPUT_DIR)
    header = f"# written by srsim for simulation {spec.name} ({spec.kind}, {spec.n_grid}^3, box {spec.box_size:g} Mpc/h)\n"
    texts = {GENIC_PARAMS: header + format_params(gparams), GADGET_PARAMS: header + format_params(sparams)}
    a_final = scale_factors(spec.redshifts)[-1]

    with locked(rundir / ".lock", busy=f"{rundir}: another process is running this simulation (lock held)"):
        changed = [name for name, text in texts.items() if (rundir / name).is_file()
                   and _physics(parse_params((rundir / name).read_text())) != _physics(parse_params(text))]
        if changed:
            _reset(rundir, outdir, spec, f"{', '.join(changed)} changed since the last run")
        complete = rundir / "complete.json"
        if complete.is_file():
            if _outputs_present(spec, outdir):
                _log(f"{outdir}: already complete")
                return
            _reset(rundir, outdir, spec, "outputs of the completed run are missing")
        for name, text in texts.items():
            _write_text(rundir / name, text)

        done = rundir / "genic.done"
        if not done.is_file():
            shutil.rmtree(output, ignore_errors=True)  # whatever a killed MP-GenIC left; MP-Gadget needs its IC
            write_power_table(spec, rundir / POWER_TABLE)
            _launch(launcher + [genic_exe, GENIC_PARAMS], rundir, rundir / "genic.log", "MP-GenIC", env)
            ic = output / IC_BASE
            if not (ic / "Header").is_dir():
                raise SrsimError(f"{ic}: MP-GenIC exited with status 0 but wrote no IC; see {rundir / 'genic.log'}")
            _check_snapshot(ic, spec, 1.0 / (1.0 + float(spec.z_init)), "MP-GenIC's IC")
            _write_text(done, "ok\n")
        else:
            _log(f"{output / IC_BASE}: MP-GenIC already done")

        snaps = read_snapshot_list(output)
        if not snaps or max(t for _, t in snaps) < a_final * (1 - TIME_RTOL):
            args = [gadget_exe, GADGET_PARAMS]
            if snaps:
                num, t = snaps[-1]
                _log(f"resuming MP-Gadget from {SNAPSHOT_BASE}_{num:03d} (a = {t:.6g}, z = {1 / t - 1:.4g})")
                args.append("1")  # RestartFlag 1: continue from the last snapshot in Snapshots.txt
            try:
                start = _launch(launcher + args, rundir, rundir / "gadget.log", "MP-Gadget", env)
            except SrsimError as exc:
                last = read_snapshot_list(output)
                if last:
                    num, t = last[-1]
                    raise SrsimError(f"{exc}\n(the next invocation resumes from {SNAPSHOT_BASE}_{num:03d}, "
                                     f"a = {t:.6g})") from exc
                raise
            snaps = read_snapshot_list(output)
            reached = max((t for _, t in snaps), default=None)
            if reached is None or reached < a_final * (1 - TIME_RTOL):
                log_text = _tail(rundir / "gadget.log", start, lines=10**9)
                where = "no snapshot" if reached is None else f"a = {reached:.6g} (z = {1 / reached - 1:.4g})"
                if any(m in log_text for m in TIMELIMIT_MARKERS):
                    raise SrsimError(
                        f"{rundir}: MP-Gadget stopped at TimeLimitCPU = {sparams['TimeLimitCPU']} s (sims.mpgadget."
                        f"time_limit_s or extra_gadget) at {where}, before TimeMax a = {a_final:.6g}; its checkpoint "
                        f"is kept: run the same command again to resume from it")
                raise SrsimError(f"{rundir}: MP-Gadget exited with status 0 but stopped at {where}, before "
                                 f"TimeMax a = {a_final:.6g}; rerun to resume, or see {rundir / 'gadget.log'}:\n"
                                 f"{_tail(rundir / 'gadget.log', start)}")
        else:
            _log("MP-Gadget already reached TimeMax")

        mapping = _expose(spec, outdir, rundir)
        _write_text(complete, json.dumps(mapping, indent=1, sort_keys=True) + "\n")
        _log(f"{outdir}: done ({', '.join(mapping)})")
