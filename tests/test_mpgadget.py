"""MP-Gadget backend: parameter files, the runner (with stand-in executables), restarts and errors.

The stand-ins in tests/fake_mpgadget/ parse the parameter files as MP-Gadget does (unknown or missing
required parameters are fatal) and write the real MP-Gadget fixture data at the requested times, or fail
in the ways selected by FAKE_MPGADGET_MODE. The last test runs the real MP-GenIC and MP-Gadget on a
16^3 box when both are on PATH.
"""

import dataclasses
import json
import os
import shlex
import shutil
import sys
from pathlib import Path

import numpy as np
import pytest

from srsim.errors import SrsimError
from srsim.fields import positions_to_displacement
from srsim.io.snapshot import read_header, read_particles
from srsim.sims import mpgadget
from srsim.sims.suite import SimSpec

FAKES = Path(__file__).parent / "fake_mpgadget"
sys.path.insert(0, str(FAKES))
from _fake import GADGET_KNOWN, GENIC_KNOWN  # noqa: E402

WMAP9 = {"Omega_m": 0.2814, "Omega_b": 0.0464, "Omega_L": 0.7186, "h": 0.697, "sigma8": 0.82, "n_s": 0.971}
FIXTURE_SEED = 181170


def make_spec(n=16, seed=FIXTURE_SEED, redshifts=(4.0, 2.0, 0.0), **options) -> SimSpec:
    return SimSpec(name="test00", kind="lr", box_size=100.0, n_grid=n, seed=seed, noise_grid=n,
                   redshifts=tuple(redshifts), z_init=99.0, cosmology=dict(WMAP9), softening=1 / 30,
                   backend="mpgadget", options=options, amplitudes="fixed")  # as the fixture runs


def fake_options(**extra):
    """Options running the stand-ins through the venv's Python (the 'launcher')."""
    opts = {"genic": str(FAKES / "MP-GenIC"), "gadget": str(FAKES / "MP-Gadget"),
            "launcher": shlex.quote(sys.executable)}
    opts.update(extra)
    return opts


def as_numbers(params: dict) -> dict:
    out = {}
    for key, value in params.items():
        try:
            out[key] = [float(v) for v in str(value).split(",")]
        except ValueError:
            out[key] = str(value)
    return out


def calls(outdir: Path) -> list[str]:
    return (outdir / "run" / "output" / "fake_calls.txt").read_text().splitlines()


# ---------------------------------------------------------------------------------------------------------
# parameter files


def test_genic_params_reproduce_the_fixture_run(mpgadget_dir):
    spec = make_spec(16)
    ours = mpgadget.genic_params(spec, power_table="linear_power.txt", outdir="output")
    fixture = mpgadget.parse_params((mpgadget_dir / "n16" / "paramfile.genic").read_text())
    mine, theirs = as_numbers(mpgadget.parse_params(mpgadget.format_params(ours))), as_numbers(fixture)
    for key in fixture:
        if key == "FileWithInputSpectrum":
            continue
        assert mine[key] == pytest.approx(theirs[key], rel=1e-9) if isinstance(theirs[key], list) \
            else mine[key] == theirs[key], key
    assert ours["FileWithInputSpectrum"] == "linear_power.txt"
    assert set(ours) <= GENIC_KNOWN  # MP-GenIC rejects unknown parameters
    assert ours["InputPowerRedshift"] == 0 and ours["Sigma8"] == 0.82 and ours["UsePeculiarVelocity"] == 1
    # sims.amplitudes: the fixture's fixed amplitudes are UnitaryAmplitude = 1, Rayleigh ones 0
    rayleigh = dataclasses.replace(spec, amplitudes="rayleigh")
    assert mpgadget.genic_params(rayleigh, power_table="p", outdir="o")["UnitaryAmplitude"] == 0
    # the HR twin of a pair: same seed, finer grid and mesh
    hr = mpgadget.genic_params(make_spec(32), power_table="p", outdir="o")
    assert (hr["Seed"], hr["Ngrid"], hr["Nmesh"]) == (FIXTURE_SEED, 32, 64)
    assert mpgadget.genic_params(make_spec(32, genic_mesh_factor=3), power_table="p", outdir="o")["Nmesh"] == 96


def test_gadget_params_reproduce_the_fixture_run(mpgadget_dir):
    ours = mpgadget.gadget_params(make_spec(16, time_limit_s=3600), outdir="output")
    fixture = mpgadget.parse_params((mpgadget_dir / "n16" / "paramfile.gadget").read_text())
    mine, theirs = as_numbers(mpgadget.parse_params(mpgadget.format_params(ours))), as_numbers(fixture)
    for key in fixture:
        if key == "FOFHaloMinLength":  # the fixtures kept groups of 20; the paper's catalogues need 32
            assert mine[key] == [32.0]
            continue
        assert mine[key] == pytest.approx(theirs[key], rel=1e-9) if isinstance(theirs[key], list) \
            else mine[key] == theirs[key], key
    assert set(ours) <= GADGET_KNOWN
    assert "Nmesh" not in ours  # MP-Gadget's default PM mesh unless pm_mesh is set


def test_gadget_params_from_options():
    spec = make_spec(16, redshifts=(0.0, 4.0, 0.5), pm_mesh=64, max_mem_mb=3000, time_limit_s=7200,
                     extra_gadget={"AutoSnapshotTime": 3600, "FOFHaloMinLength": 20})
    p = mpgadget.gadget_params(spec, outdir="out")
    assert [float(a) for a in p["OutputList"].split(",")] == pytest.approx([0.2, 1 / 1.5, 1.0], rel=1e-10)
    assert p["TimeMax"] == 1.0 and p["TimeLimitCPU"] == 7200 and p["MaxMemSizePerNode"] == 3000
    assert p["Nmesh"] == 64 and p["InitCondFile"] == "out/IC" and p["OutputDir"] == "out"
    assert p["AutoSnapshotTime"] == 3600 and p["FOFHaloMinLength"] == 20  # extra parameters win
    assert p["GravitySoftening"] == pytest.approx(1 / 30)
    assert (p["SnapshotWithFOF"], p["FOFHaloLinkingLength"]) == (1, 0.2)
    # the last output need not be z = 0
    assert mpgadget.gadget_params(make_spec(redshifts=(4.0, 2.0)), outdir="o")["TimeMax"] == pytest.approx(1 / 3)


def test_format_params_round_trip_and_bad_values():
    params = {"A": 1, "B": 0.1 + 0.2, "C": "output/IC", "D": [0.2, 1.0], "E": True, "F": 1.989e43}
    text = mpgadget.format_params(params)
    assert text.splitlines()[0] == "A = 1"
    back = mpgadget.parse_params("# comment\n\n" + text.replace("F = ", "F   =   ") + "G = 3 # trailing\n")
    assert back == {"A": "1", "B": "0.3", "C": "output/IC", "D": "0.2,1", "E": "1", "F": "1.989e+43", "G": "3"}
    for bad in ({"A": "x#y"}, {"A": ""}, {"A": "50%"}, {"A B": 1}, {"A": None}):
        with pytest.raises(SrsimError):
            mpgadget.format_params(bad)
    with pytest.raises(SrsimError, match="has no value"):
        mpgadget.parse_params("Seed =   # nothing\n", source="p.genic")


def test_bad_specs_fail_loudly():
    with pytest.raises(SrsimError, match="unknown option"):
        mpgadget.options(make_spec(nthreads=4))
    with pytest.raises(SrsimError, match="not after z_init"):
        mpgadget.gadget_params(make_spec(redshifts=(120.0, 0.0)), outdir="o")
    with pytest.raises(SrsimError, match="signed 32-bit"):
        mpgadget.genic_params(make_spec(seed=2**31), power_table="p", outdir="o")
    with pytest.raises(SrsimError, match="extra_genic"):
        mpgadget.genic_params(make_spec(extra_genic=[1, 2]), power_table="p", outdir="o")


# ---------------------------------------------------------------------------------------------------------
# executables and launcher


def test_executables_and_launcher(tmp_path, monkeypatch):
    monkeypatch.setenv("PATH", str(tmp_path))
    with pytest.raises(SrsimError, match=r"sims.mpgadget.genic: executable 'MP-GenIC' not found on PATH"):
        mpgadget.find_executable("MP-GenIC", "genic")
    with pytest.raises(SrsimError, match="does not exist"):
        mpgadget.find_executable(str(tmp_path / "bin" / "MP-Gadget"), "gadget")
    plain = tmp_path / "MP-Gadget"
    plain.write_text("#!/bin/sh\n")
    with pytest.raises(SrsimError, match="not executable"):
        mpgadget.find_executable(str(plain), "gadget")
    with pytest.raises(SrsimError, match="launcher: 'mpirun'"):
        mpgadget.launcher_argv("mpirun -np {ntasks}", 4)
    (tmp_path / "mpirun").write_text("#!/bin/sh\n")
    (tmp_path / "mpirun").chmod(0o755)
    plain.chmod(0o755)
    assert mpgadget.find_executable("MP-Gadget", "gadget") == str(plain)
    assert mpgadget.launcher_argv("mpirun -np {ntasks} --bind-to none", 4) == ["mpirun", "-np", "4", "--bind-to", "none"]
    assert mpgadget.launcher_argv("", 4) == []
    with pytest.raises(SrsimError, match="only {ntasks}"):
        mpgadget.launcher_argv("mpirun -np {nodes}", 4)


def test_missing_binary_stops_before_anything_is_written(tmp_path, monkeypatch):
    monkeypatch.setenv("PATH", str(tmp_path / "empty"))
    with pytest.raises(SrsimError, match="MP-GenIC"):
        mpgadget.run(make_spec(launcher=""), tmp_path / "sim")
    assert not (tmp_path / "sim").exists()


# ---------------------------------------------------------------------------------------------------------
# the runner with the stand-ins


def test_run_exposes_snapshots_by_time(tmp_path, monkeypatch, mpgadget_dir):
    # binaries found on PATH under their default names
    monkeypatch.setenv("PATH", f"{FAKES}{os.pathsep}{os.environ['PATH']}")
    monkeypatch.delenv("FAKE_MPGADGET_MODE", raising=False)
    spec = make_spec(16, launcher=shlex.quote(sys.executable))
    out = tmp_path / "sim"
    mpgadget.run(spec, out)
    run = out / "run"
    for name in ("paramfile.genic", "paramfile.gadget", "linear_power.txt", "complete.json"):
        assert (run / name).is_file(), name
    k, p = np.loadtxt(run / "linear_power.txt", comments="#", unpack=True)
    assert k[0] <= 2 * np.pi / 100.0 / 2 and k[-1] >= np.sqrt(3) * np.pi * 32 / 100.0 and np.all(p > 0)
    fixture = mpgadget_dir / "n16" / "output"
    for name, src, z in (("IC", "IC", 99.0), ("z4", "PART_000", 4.0), ("z2", "PART_001", 2.0), ("z0", "PART_002", 0.0)):
        h = read_header(out / name)
        assert h.redshift == pytest.approx(z, abs=1e-8) and h.n_particles == 16**3 and h.box_size == 100.0
        got, ref = read_particles(out / name), read_particles(fixture / src)
        np.testing.assert_array_equal(got["ID"], ref["ID"])
        np.testing.assert_array_equal(got["Position"], ref["Position"])
    mapping = json.loads((run / "complete.json").read_text())
    assert mapping["z0"]["snapshot"] == "PART_002" and mapping["z0"]["fof"] == "run/output/PIG_002"
    assert calls(out) == ["paramfile.genic", "paramfile.gadget"]
    # a second invocation finds the run complete and launches nothing
    mpgadget.run(spec, out)
    assert calls(out) == ["paramfile.genic", "paramfile.gadget"]


def test_time_limit_reported_then_resumed(tmp_path, monkeypatch, mpgadget_dir):
    monkeypatch.setenv("FAKE_MPGADGET_MODE", "timelimit")
    spec = make_spec(16, **fake_options(time_limit_s=600))
    out = tmp_path / "sim"
    with pytest.raises(SrsimError, match=r"TimeLimitCPU = 600 s .*a = 0\.266667.*resume") as err:
        mpgadget.run(spec, out)
    assert "before TimeMax a = 1" in str(err.value)
    assert not (out / "z4").exists() and not (out / "run" / "complete.json").exists()
    # the retry may be granted more time: a changed TimeLimitCPU alone resumes, it does not start over
    mpgadget.run(make_spec(16, **fake_options(time_limit_s=1200)), out)  # from the checkpoint PART_001 (a = 0.2667)
    assert calls(out) == ["paramfile.genic", "paramfile.gadget", "paramfile.gadget 1"]
    assert "TimeLimitCPU = 1200" in (out / "run" / "paramfile.gadget").read_text()
    mapping = json.loads((out / "run" / "complete.json").read_text())
    # snapshot numbers shifted by the checkpoint: outputs are matched by Header Time
    assert {k: v["snapshot"] for k, v in mapping.items()} == {"IC": "IC", "z4": "PART_000", "z2": "PART_002",
                                                             "z0": "PART_003"}
    assert read_header(out / "z2").time == pytest.approx(1 / 3, rel=1e-9)
    ref = read_particles(mpgadget_dir / "n16" / "output" / "PART_001")
    np.testing.assert_array_equal(read_particles(out / "z2")["Position"], ref["Position"])
    assert not (out / "run" / "output" / "PART_001").exists()  # the checkpoint is deleted once complete
    # and so is the FOF catalogue MP-Gadget wrote with it; the outputs' catalogues stay
    pigs = sorted(p.name for p in (out / "run" / "output").glob("PIG_*"))
    assert pigs == ["PIG_000", "PIG_002", "PIG_003"]
    assert {Path(v["fof"]).name for k, v in mapping.items() if k != "IC"} == set(pigs)


def test_preempted_run_resumes_from_last_snapshot(tmp_path, monkeypatch):
    monkeypatch.setenv("FAKE_MPGADGET_MODE", "preempted")
    out = tmp_path / "sim"
    with pytest.raises(SrsimError, match=r"(?s)MP-Gadget was killed by signal 9 .*resumes from PART_000, a = 0\.2"):
        mpgadget.run(make_spec(16, **fake_options()), out)
    monkeypatch.delenv("FAKE_MPGADGET_MODE")
    mpgadget.run(make_spec(16, **fake_options()), out)
    assert calls(out) == ["paramfile.genic", "paramfile.gadget", "paramfile.gadget 1"]
    assert [read_header(out / f"z{z}").redshift for z in (4, 2, 0)] == pytest.approx([4, 2, 0], abs=1e-8)


@pytest.mark.parametrize("mode, pattern", [
    ("genic_fail", r"MP-GenIC exited with status 1 .*fake MP-GenIC failure"),
    ("genic_no_ic", r"MP-GenIC exited with status 0 but wrote no IC"),
    ("gadget_fail", r"MP-Gadget exited with status 2 .*fake MP-Gadget failure"),
    ("early_stop", r"MP-Gadget exited with status 0 but stopped at a = 0\.2 .*before TimeMax"),
    ("skip_output", r"MP-Gadget wrote no snapshot at z = 2 \(a = 0\.333333\); complete snapshots: PART_000 "
                    r"\(a = 0\.2\), PART_001 \(a = 1\)"),
    ("truncated", r"PART_002/1/Position/000000: \d+ bytes, but its block header lists \d+ rows .*a truncated "
                  r"snapshot; the run is kept in .*gadget\.log"),
])
def test_failures_name_the_problem(tmp_path, monkeypatch, mode, pattern):
    monkeypatch.setenv("FAKE_MPGADGET_MODE", mode)
    out = tmp_path / "sim"
    with pytest.raises(SrsimError, match="(?s)" + pattern) as err:
        mpgadget.run(make_spec(16, **fake_options()), out)
    assert str(out / "run") in str(err.value)
    assert not (out / "run" / "complete.json").exists() and not (out / "z0").exists()


def test_threads_per_rank_from_the_job_or_the_slurm_allocation(tmp_path, monkeypatch):
    assert mpgadget.threads_per_rank(2, 2, {}) == 1  # the rule's 2 cores shared by 2 ranks
    assert mpgadget.threads_per_rank(8, 2, {}) == 4
    assert mpgadget.threads_per_rank(1, 4, {}) == 1 and mpgadget.threads_per_rank(None, 2, {}) == 1
    assert mpgadget.threads_per_rank(2, 2, {"SLURM_CPUS_PER_TASK": "3"}) == 3  # slurm's allocation wins
    # the launcher passes it to both programs
    monkeypatch.delenv("FAKE_MPGADGET_MODE", raising=False)
    monkeypatch.delenv("SLURM_CPUS_PER_TASK", raising=False)
    out = tmp_path / "sim"
    mpgadget.run(make_spec(16, **fake_options(ntasks=2)), out, threads=6)
    assert (out / "run" / "output" / "fake_threads.txt").read_text().split() == ["3", "3"]
    assert "OMP_NUM_THREADS=3" in (out / "run" / "gadget.log").read_text()


def test_failure_message_shows_the_error_lines_of_the_log(tmp_path):
    log = tmp_path / "gadget.log"
    noise = [f"[ 0 ] step {i}" for i in range(200)]
    log.write_text("\n".join(noise[:50] + ["ERROR: Task 1: ", "Requested k = 6.8e-05 h/Mpc for type 9"] + noise[50:])
                   + "\n")
    text = mpgadget._tail(log)
    assert "ERROR: Task 1:" in text and "Requested k = 6.8e-05" in text and text.endswith("step 199")


def test_power_table_reaches_far_below_the_fundamental_mode():
    """MP-GenIC's sigma8 integral asked for k = 6.8e-5 h/Mpc (a 16^3 suite): the table must reach it."""
    for n, box in ((16, 12.5), (16, 100.0), (640, 1000.0)):
        spec = dataclasses.replace(make_spec(n), box_size=box)
        kmin, kmax = mpgadget._power_table_range(spec, {"genic_mesh_factor": 2})
        assert kmin <= 6.8e-5 / 100 and kmax >= max(1e3, 2 * np.sqrt(3) * np.pi * 2 * n / box)


def test_changed_parameters_start_over(tmp_path, monkeypatch):
    monkeypatch.delenv("FAKE_MPGADGET_MODE", raising=False)
    out = tmp_path / "sim"
    mpgadget.run(make_spec(16, **fake_options()), out)
    assert calls(out) == ["paramfile.genic", "paramfile.gadget"]
    mpgadget.run(make_spec(16, seed=7, **fake_options()), out)  # another seed: nothing may be reused
    assert calls(out) == ["paramfile.genic", "paramfile.gadget"]  # output/ was rebuilt from scratch
    assert (out / "run" / "genic.log").read_text().count("=====") == 2
    assert "Seed = 7" in (out / "run" / "paramfile.genic").read_text()
    # outputs deleted behind our back (e.g. by a forced rerun): the completed run is redone
    shutil.rmtree(out / "z2")
    mpgadget.run(make_spec(16, seed=7, **fake_options()), out)
    assert read_header(out / "z2").time == pytest.approx(1 / 3)
    assert (out / "run" / "genic.log").read_text().count("=====") == 3


def test_cli_simulate_with_mpgadget_backend(tmp_path, monkeypatch):
    from srsim.cli import main

    monkeypatch.delenv("FAKE_MPGADGET_MODE", raising=False)
    cfg = {"cosmology": WMAP9, "redshifts": [4, 2, 0], "z_init": 99,
           "suite": {"box_size": 100.0, "n_lr": 16, "n_hr": 32, "train_seeds": [FIXTURE_SEED], "test_seeds": [1]},
           "sims": {"backend": "mpgadget", "mpgadget": fake_options(ntasks=1)}}
    out = tmp_path / "snapshots" / "train00" / "lr"
    assert main(["simulate", "--sim", "train00", "--kind", "lr", "--out", str(out), "--config", json.dumps(cfg)]) == 0
    assert "Seed = 181170" in (out / "run" / "paramfile.genic").read_text()
    assert sorted(p.name for p in out.iterdir()) == ["IC", "run", "z0", "z2", "z4"]
    cfg["sims"]["mpgadget"]["gadget"] = str(tmp_path / "nowhere" / "MP-Gadget")
    code = main(["simulate", "--sim", "train00", "--kind", "hr", "--out", str(tmp_path / "hr"),
                 "--config", json.dumps(cfg)])
    assert code == 2


# ---------------------------------------------------------------------------------------------------------
# the real programs


needs_binaries = pytest.mark.skipif(not (shutil.which("MP-GenIC") and shutil.which("MP-Gadget")),
                                    reason="MP-GenIC and MP-Gadget are not on PATH")


def real_launcher() -> str:
    return "mpirun -np {ntasks}" if shutil.which("mpirun") else ""


@needs_binaries
def test_real_mpgadget_16cubed(tmp_path, mpgadget_dir):
    """The real programs on the fixture's 16^3 run, stopped by TimeLimitCPU and resumed by srsim."""
    spec = make_spec(16, launcher=real_launcher(), ntasks=2, max_mem_mb=1024, time_limit_s=3600)
    out = tmp_path / "sim"
    # TimeLimitCPU = 3 s (below the schema's 60 s minimum, hence extra_gadget): this run takes about a minute
    # on 2 cores, so MP-Gadget writes a checkpoint after its first steps and stops
    stopped = dataclasses.replace(spec, options={**spec.options, "extra_gadget": {"TimeLimitCPU": 3}})
    with pytest.raises(SrsimError, match=r"MP-Gadget stopped at TimeLimitCPU = 3 s .*checkpoint is kept"):
        mpgadget.run(stopped, out)
    checkpoint = mpgadget.read_snapshot_list(out / "run" / "output")
    assert checkpoint and 1 / 100 <= checkpoint[-1][1] < 1 / 5  # a restart before the first output (z = 4)
    assert not (out / "run" / "complete.json").exists() and not (out / "z0").exists()
    # the rerun (as a Snakemake retry would, with the config's time limit) resumes from that checkpoint
    mpgadget.run(spec, out)
    log = (out / "run" / "gadget.log").read_text()
    assert log.count("=====") == 2 and "MP-Gadget paramfile.gadget 1 " in log
    assert "TimeLimitCPU = 3600" in (out / "run" / "paramfile.gadget").read_text()
    mapping = json.loads((out / "run" / "complete.json").read_text())
    assert read_header(out / "z0").time == pytest.approx(1.0, rel=1e-6)
    # the checkpoint and its FOF catalogue are gone, the outputs' catalogues stay
    names = {p.name for p in (out / "run" / "output").iterdir() if p.name.startswith(("PART_", "PIG_"))}
    assert names == {Path(m["fof"]).name for k, m in mapping.items() if k != "IC"}
    rms = []
    for name, z in (("IC", 99.0), ("z4", 4.0), ("z2", 2.0), ("z0", 0.0)):
        h = read_header(out / name)
        assert h.redshift == pytest.approx(z, abs=1e-6) and h.n_particles == 16**3
        p = read_particles(out / name)
        disp = positions_to_displacement(p["Position"], p["ID"], 16, 100.0, source=name)
        rms.append(float(np.sqrt(np.mean(disp.astype(np.float64) ** 2))))
        if name == "IC":
            ref = read_particles(mpgadget_dir / "n16" / "output" / "IC")
            ref_disp = positions_to_displacement(ref["Position"], ref["ID"], 16, 100.0)
            # same Seed and grid as the fixture run, our CAMB table instead of its CLASS one
            assert np.corrcoef(disp.ravel(), ref_disp.ravel())[0, 1] > 0.95
            assert rms[0] == pytest.approx(float(np.sqrt(np.mean(ref_disp.astype(np.float64) ** 2))), rel=0.1)
    assert rms == sorted(rms)
    assert (out / "run" / "output" / "PIG_002" / "FOFGroups").is_dir()


@needs_binaries
@pytest.mark.parametrize("amplitudes", ["rayleigh", "fixed"])
def test_real_mpgenic_ic_amplitudes_match_the_pm_backend(tmp_path, amplitudes):
    """sims.amplitudes means the same in both backends: |delta_k|^2 / P(k) of MP-GenIC's IC particles has the
    distribution of the PM backend's ICs from the same spec (no scatter when fixed, Exp(1) when Rayleigh).

    genic_mesh_factor 1: with MP-GenIC's Nmesh = 2 Ngrid (the default 2) its modes above the particle Nyquist
    alias onto the particle lattice, which scatters even fixed amplitudes (std 0.07 below half the Nyquist
    frequency, 32^3 in 100 Mpc/h)."""
    import scipy.stats

    from srsim.cosmology import Cosmology
    from srsim.sims.ics import initial_conditions
    from test_ics import mode_power_ratios

    spec = dataclasses.replace(make_spec(32, launcher=real_launcher(), ntasks=2, genic_mesh_factor=1),
                               amplitudes=amplitudes)
    run = tmp_path / "run"
    run.mkdir()
    mpgadget.write_power_table(spec, run / mpgadget.POWER_TABLE)
    params = mpgadget.genic_params(spec, power_table=mpgadget.POWER_TABLE, outdir="output")
    (run / mpgadget.GENIC_PARAMS).write_text(mpgadget.format_params(params))
    argv = mpgadget.launcher_argv(spec.options["launcher"], 2) + [mpgadget.find_executable("MP-GenIC", "genic"),
                                                                   mpgadget.GENIC_PARAMS]
    mpgadget._launch(argv, run, run / "genic.log", "MP-GenIC", dict(os.environ, OMP_NUM_THREADS="1"))
    ic = read_particles(run / "output" / "IC", ("Position", "ID"))
    cosmo = Cosmology.from_config(WMAP9)
    r_genic = mode_power_ratios(positions_to_displacement(ic["Position"], ic["ID"], 32, 100.0), 100.0, cosmo)
    pm_spec = dataclasses.replace(spec, backend="pm", options={})
    r_pm = mode_power_ratios(initial_conditions(pm_spec, lpt_order=1)[0].numpy(), 100.0, cosmo)
    assert len(r_genic) == len(r_pm) > 1000
    for r in (r_genic, r_pm):
        if amplitudes == "fixed":
            assert r.std() < 1e-3
        else:
            assert r.std() == pytest.approx(1.0, abs=0.2) and np.mean(r > 1) == pytest.approx(np.exp(-1), abs=0.05)
    if amplitudes == "rayleigh":  # two realisations of one distribution
        assert scipy.stats.ks_2samp(r_genic, r_pm).pvalue > 1e-3


def _pig_groups(pig: Path, min_length: int) -> dict:
    """MP-Gadget's FOF catalogue `pig` (PIG_nnn): {MinID: (length, mass Msun/h, sorted member IDs)} of its
    groups with at least `min_length` particles."""
    import bigfile

    f = bigfile.File(str(pig))
    length = f["FOFGroups/LengthByType"][:][:, 1].astype(np.int64)
    min_id = f["FOFGroups/MinID"][:].astype(np.uint64)
    mass = f["FOFGroups/Mass"][:].astype(np.float64) * 1e10  # 1e10 Msun/h, float32
    gid, pid = f["1/GroupID"][:], f["1/ID"][:].astype(np.uint64)
    out = {}
    for g in np.nonzero(length >= min_length)[0]:
        members = np.sort(pid[gid == f["FOFGroups/GroupID"][g:g + 1][0]])
        assert len(members) == length[g], f"{pig}: group {g} lists {len(members)} of {length[g]} members"
        out[int(min_id[g])] = (int(length[g]), float(mass[g]), members)
    return out


@pytest.mark.slow
@needs_binaries
def test_real_mpgadget_workflow(tmp_path):
    """The tiny workflow with the real MP-GenIC + MP-Gadget (.test/config/mpgadget.yaml): simulate ->
    displacement -> train -> generate -> analyze, then MP-Gadget's outputs against ours."""
    import subprocess

    import yaml

    from dryrun import REPO, SNAKEMAKE, WATCHDOG_S, user_env

    cfg_path = REPO / ".test/config/mpgadget.yaml"
    cfg = yaml.safe_load(cfg_path.read_text())
    assert cfg["sims"]["backend"] == "mpgadget"
    results = tmp_path / "results"
    cmd = [*SNAKEMAKE, "all", "--configfile", str(cfg_path), "--cores", "2", "--config", f"results={results}"]
    run = subprocess.run(cmd, cwd=REPO, env=user_env(), capture_output=True, text=True, timeout=WATCHDOG_S)
    assert run.returncode == 0, run.stderr[-5000:]
    check_mpgadget_results(results, cfg)


def check_mpgadget_results(results: Path, cfg: dict) -> None:
    """What test_real_mpgadget_workflow asserts about the finished run in `results` (config `cfg`)."""
    from srsim.analysis.fof import fof_snapshot
    from srsim.io.catalog import read_catalog

    n_lr, n_hr, box = cfg["suite"]["n_lr"], cfg["suite"]["n_hr"], cfg["suite"]["box_size"]
    nmin = cfg["analysis"]["fof_min_members"]
    assert nmin == mpgadget.FOF_MIN_LENGTH  # the catalogues compare one to one
    assert (results / "models/z0/model.pt").is_file() and (results / "metrics.json").is_file()
    assert read_header(results / "snapshots/test00/sr0/z0").n_particles == n_hr**3

    for pair in ("train00", "test00"):
        ics = {}
        for kind, n in (("lr", n_lr), ("hr", n_hr)):
            sim = results / "snapshots" / pair / kind
            output = sim / "run" / "output"
            mapping = json.loads((sim / "run" / "complete.json").read_text())
            assert set(mapping) == {"IC", "z0"}
            # every snapshot and FOF catalogue MP-Gadget left is an output, and each one reads
            left = {p.name for p in output.iterdir() if p.name.startswith(("PART_", "PIG_"))}
            assert left == {Path(mapping["z0"]["fof"]).name}, left  # the snapshot itself moved to z0
            assert [mpgadget.SNAPSHOT_BASE + f"_{num:03d}" for num, _ in mpgadget.read_snapshot_list(output)] \
                == [mapping["z0"]["snapshot"]]
            for name, z in (("IC", cfg["z_init"]), ("z0", 0.0)):
                h = read_header(sim / name)
                assert h.redshift == pytest.approx(z, abs=1e-6) and h.n_particles == n**3 and h.box_size == box
                p = read_particles(sim / name, ("Position", "ID"))
                assert np.array_equal(np.sort(p["ID"]), np.arange(1, n**3 + 1, dtype=p["ID"].dtype))
                if name == "IC":
                    ics[kind] = positions_to_displacement(p["Position"], p["ID"], n, box, source=str(sim / name))
            pig = sim / mapping["z0"]["fof"]
            theirs = _pig_groups(pig, nmin)
            # our FOF: the workflow's catalogue of this snapshot (test box), and the member lists of the library
            ours, attrs = fof_snapshot(sim / "z0", b=0.2, min_members=nmin, members=True)
            assert attrs["min_members"] == nmin
            assert sorted(theirs) == sorted(int(i) for i in ours["min_id"])
            for g, key in enumerate(ours["min_id"]):
                length, mass, members = theirs[int(key)]
                assert ours["npart"][g] == length
                assert ours["mass"][g] == pytest.approx(mass, rel=1e-6)
                np.testing.assert_array_equal(
                    ours["members_id"][ours["members_offset"][g]:ours["members_offset"][g + 1]], members)
            if pair == "test00":
                cat, _ = read_catalog(results / f"analysis/test00/{kind}/z0/fof.h5")
                np.testing.assert_array_equal(np.sort(cat["npart"]), np.sort(ours["npart"]))
                np.testing.assert_allclose(np.sort(cat["mass"]), np.sort(ours["mass"]), rtol=1e-12)
            if kind == "hr":
                assert len(theirs) >= 5, f"{pig}: {len(theirs)} groups of >= {nmin} particles"
        # LR and HR of a pair share their large-scale modes: the HR grid points with even indices are the LR grid
        step = n_hr // n_lr
        for c in range(3):
            assert np.corrcoef(ics["lr"][c].ravel(), ics["hr"][c][::step, ::step, ::step].ravel())[0, 1] > 0.95
        assert abs(np.corrcoef(ics["lr"][0].ravel(), ics["hr"][1][::step, ::step, ::step].ravel())[0, 1]) < 0.3
