"""Shared code of the stand-ins for MP-GenIC and MP-Gadget used by tests/test_mpgadget.py.

They behave like the real programs as far as srsim's runner can tell: they parse the parameter file
(rejecting unknown and missing required parameters, as MP-Gadget does), write bigfile snapshots into
OutputDir with the real MP-Gadget fixture data (tests/data/mpgadget/n<Ngrid>) and Header Times set to
the requested scale factors, keep MP-Gadget's `Snapshots.txt` and resume with `MP-Gadget <params> 1`.
Failures are chosen by the environment variable FAKE_MPGADGET_MODE:

  genic_fail     MP-GenIC exits with status 1 after printing an error
  genic_no_ic    MP-GenIC exits with status 0 but writes nothing
  gadget_fail    MP-Gadget exits with status 2
  timelimit      a fresh (not resumed) MP-Gadget run writes the first output, then a checkpoint half-way
                 to the second, prints MP-Gadget's TimeLimitCPU messages and exits with status 0
  preempted      a fresh MP-Gadget run writes the first output, then is killed by SIGKILL
  early_stop     MP-Gadget writes only the first output and exits with status 0, with no message
  skip_output    MP-Gadget silently skips the second output of OutputList (a missing snapshot)
  truncated      MP-Gadget writes every output but cuts the last one's Position data in half

Every invocation appends its arguments to OutputDir/fake_calls.txt.
"""

from __future__ import annotations

import os
import sys
from pathlib import Path

import bigfile
import numpy as np

FIXTURES = Path(__file__).resolve().parent.parent / "data" / "mpgadget"

# Parameter names declared by MP-GenIC / MP-Gadget (libgenic/params.c, gadget/params.c of MP-Gadget 5);
# the subset a DM-only run can use. Names outside these sets are rejected as the real programs do.
GENIC_KNOWN = {
    "FileWithInputSpectrum", "OutputDir", "FileBase", "Omega0", "OmegaBaryon", "OmegaLambda", "HubbleParam",
    "ProduceGas", "BoxSize", "Redshift", "Nmesh", "Ngrid", "Seed", "UnitaryAmplitude", "WhichSpectrum",
    "DifferentTransferFunctions", "ScaleDepVelocity", "FileWithTransferFunction", "MaxMemSizePerNode",
    "CMBTemperature", "RadiationOn", "UsePeculiarVelocity", "SavePrePos", "InvertPhase", "PrimordialAmp",
    "Sigma8", "InputPowerRedshift", "PrimordialIndex", "UnitVelocity_in_cm_per_s", "UnitLength_in_cm",
    "UnitMass_in_g", "NumPartPerFile", "NumWriters", "ShowBacktrace", "PrePosGridCenter", "MakeGlassCDM",
}
GENIC_REQUIRED = {"FileWithInputSpectrum", "OutputDir", "FileBase", "Omega0", "OmegaBaryon", "OmegaLambda",
                  "HubbleParam", "ProduceGas", "BoxSize", "Redshift", "Ngrid", "Seed"}
GADGET_KNOWN = {
    "InitCondFile", "OutputDir", "SnapshotFileBase", "FOFFileBase", "OutputList", "Omega0", "CMBTemperature",
    "OmegaBaryon", "OmegaLambda", "HubbleParam", "MaxMemSizePerNode", "AutoSnapshotTime", "TimeMax",
    "TimeLimitCPU", "ErrTolIntAccuracy", "ErrTolForceAcc", "Asmth", "Nmesh", "MaxSizeTimestep",
    "MaxRMSDisplacementFac", "CoolingOn", "HydroOn", "DensityOn", "DensityIndependentSphOn", "TreeGravOn",
    "RadiationOn", "GravitySoftening", "PartAllocFactor", "SnapshotWithFOF", "FOFSaveParticles",
    "FOFHaloLinkingLength", "FOFHaloMinLength", "BlackHoleOn", "MetalReturnOn", "StarformationOn", "WindOn",
    "MassiveNuLinRespOn", "OutputPotential", "CpuFile", "RandomSeed",
}
GADGET_REQUIRED = {"InitCondFile", "OutputDir", "OutputList", "Omega0", "TimeLimitCPU", "CoolingOn",
                   "DensityIndependentSphOn", "SnapshotWithFOF", "BlackHoleOn", "MetalReturnOn",
                   "StarformationOn", "WindOn", "MassiveNuLinRespOn"}


def die(msg: str, status: int) -> None:
    print(f"Endrun called with an error level of {status}: {msg}", flush=True)
    sys.exit(status)


def mode() -> str:
    return os.environ.get("FAKE_MPGADGET_MODE", "ok")


def parse_paramfile(path: str, known: set, required: set) -> dict:
    """`Key = value` lines; '#' and '%' start comments. Unknown or missing required names are fatal."""
    try:
        text = Path(path).read_text()
    except OSError as exc:
        die(f"Could not read file: {path}: {exc}", 1)
    params = {}
    for lineno, raw in enumerate(text.splitlines()):
        line = raw
        for c in "#%":
            line = line.split(c, 1)[0]
        line = line.replace("=", " ", 1).strip()
        if not line:
            continue
        parts = line.split(None, 1)
        if len(parts) < 2:
            die(f"Line {lineno} : `{raw}` is malformed.", 1)
        if parts[0] not in known:
            die(f"Line {lineno}: Parameter `{parts[0]}` is unknown.", 1)
        params[parts[0]] = parts[1].strip()
    missing = sorted(required - set(params))
    if missing:
        die(f"Parameter `{missing[0]}` is required, but not set.", 1)
    return params


def set_header(path: Path, **attrs) -> None:
    with bigfile.File(str(path)) as f:
        with f["Header"] as block:
            for key, value in attrs.items():
                block.attrs[key] = np.array([value])


def header_time(path: Path) -> float:
    with bigfile.File(str(path)) as f:
        return float(f["Header"].attrs["Time"][0])


def fixture_dir(ngrid: int, box_kpc: float) -> Path:
    src = FIXTURES / f"n{ngrid}" / "output"
    if not src.is_dir() or abs(box_kpc - 100000.0) > 1e-6:
        die(f"fake MP-Gadget has fixtures for 16^3 and 32^3 in 100000 kpc/h only, not {ngrid}^3 in {box_kpc}", 3)
    return src


def record_call(outdir: Path, argv: list) -> None:
    outdir.mkdir(parents=True, exist_ok=True)
    with open(outdir / "fake_calls.txt", "a") as fh:
        fh.write(" ".join(argv[1:]) + "\n")
    # the OpenMP threads each rank would start (what srsim must set: MP-Gadget's default is every core)
    with open(outdir / "fake_threads.txt", "a") as fh:
        fh.write(os.environ.get("OMP_NUM_THREADS", "unset") + "\n")
