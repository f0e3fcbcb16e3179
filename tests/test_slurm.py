"""The slurm side on a real slurm: scripts/slurm-local.sh's one-node cluster, the profile, preemption.

Runs when SRSIM_TEST_SLURM=1 (then a cluster that is not up is started with scripts/slurm-local.sh,
which needs root, and stopped again at the end) or when a slurm cluster already answers `sinfo`;
SRSIM_TEST_SLURM=0 skips it. About 2 minutes, most of it waiting for slurm's time-limit timer.
"""

import json
import os
import re
import shutil
import subprocess
import sys
import time
import uuid
from pathlib import Path

import numpy as np
import pytest

REPO = Path(__file__).parent.parent
SCRIPT = REPO / "scripts" / "slurm-local.sh"
WF = REPO / "tests" / "data" / "slurm_wf"
SNAKEMAKE = [sys.executable, "-m", "snakemake"]
FINISHED = {"COMPLETED", "FAILED", "CANCELLED", "TIMEOUT", "OUT_OF_MEMORY", "NODE_FAIL", "BOOT_FAIL",
            "PREEMPTED", "DEADLINE"}


def _env():
    env = dict(os.environ)
    # jobs inherit this environment (sbatch --export=ALL): put this interpreter's `srsim` first
    env["PATH"] = f"{Path(sys.executable).parent}{os.pathsep}{env.get('PATH', '')}"
    env.setdefault("OMP_NUM_THREADS", "1")
    for key in ("SRSIM_SLURM_ACCOUNT", "SRSIM_SLURM_PARTITION", "SRSIM_SLURM_GPU_PARTITION", "SBATCH_ACCOUNT",
                "SBATCH_PARTITION"):
        env.pop(key, None)  # the local cluster has one default partition and no accounts
    env["SRSIM_SLURM_SITE"] = os.devnull
    return env


def _cluster_up() -> bool:
    if not shutil.which("sinfo"):
        return False
    try:
        out = subprocess.run(["sinfo", "-h", "-N", "-o", "%T"], capture_output=True, text=True, timeout=15)
    except subprocess.TimeoutExpired:
        return False
    return out.returncode == 0 and any(s.startswith(("idle", "mixed", "alloc")) for s in out.stdout.split())


_WANTED = os.environ.get("SRSIM_TEST_SLURM")
pytestmark = [
    pytest.mark.slurm,
    pytest.mark.skipif(_WANTED == "0" or (_WANTED != "1" and not _cluster_up()),
                       reason="no slurm cluster (set SRSIM_TEST_SLURM=1 to start one with scripts/slurm-local.sh)"),
]


@pytest.fixture(scope="module")
def cluster():
    """A usable slurm cluster; started (and stopped afterwards) by this module if it was not up."""
    started = False
    if not _cluster_up():
        out = subprocess.run(["bash", str(SCRIPT), "start"], capture_output=True, text=True, timeout=900)
        assert out.returncode == 0, f"scripts/slurm-local.sh start failed:\n{out.stderr}"
        started = True
    assert _cluster_up(), "slurm does not answer sinfo"
    yield
    if started:
        subprocess.run(["bash", str(SCRIPT), "stop"], capture_output=True, text=True, timeout=120)


@pytest.fixture
def workdir(cluster, tmp_path):
    """tmp_path as the jobs' working directory; jobs still queued or running there at the end (a failed
    or interrupted test) are cancelled, so that none outlives its test."""
    yield tmp_path
    out = subprocess.run(["squeue", "-h", "-o", "%i %Z"], capture_output=True, text=True, timeout=30)
    left = [line.split()[0] for line in out.stdout.splitlines()
            if len(line.split()) == 2 and Path(line.split()[1]).resolve() == tmp_path.resolve()]
    if left:
        subprocess.run(["scancel", *left], timeout=30)


def sbatch(*args, cwd) -> str:
    out = subprocess.run(["sbatch", "--parsable", *args], cwd=cwd, env=_env(), capture_output=True, text=True,
                         timeout=30)
    assert out.returncode == 0, out.stderr
    return out.stdout.strip().split(";")[0]


def job_state(job: str) -> tuple[str, str]:
    """(state, exit code) of a job: from sacct, as the slurm executor plugin reads it, else squeue."""
    out = subprocess.run(["sacct", "-X", "-n", "-P", "-j", job, "-o", "State,ExitCode"],
                         capture_output=True, text=True, timeout=30)
    if out.returncode == 0 and out.stdout.strip():
        state, code = out.stdout.strip().splitlines()[-1].split("|")
        return state.split()[0], code
    out = subprocess.run(["squeue", "-h", "-t", "all", "-j", job, "-o", "%T"], capture_output=True, text=True,
                         timeout=30)
    return (out.stdout.strip() or "UNKNOWN"), ""


def wait_job(job: str, timeout=120) -> tuple[str, str]:
    t0 = time.time()
    while time.time() - t0 < timeout:
        state, code = job_state(job)
        if state in FINISHED:
            return state, code
        time.sleep(0.5)
    subprocess.run(["scancel", job], timeout=30)
    raise AssertionError(f"job {job} did not finish within {timeout} s (state {state})")


def wait_for(predicate, timeout, what):
    t0 = time.time()
    while time.time() - t0 < timeout:
        if predicate():
            return
        time.sleep(0.2)
    raise AssertionError(f"timed out after {timeout} s waiting for {what}")


def test_sbatch_job_runs_and_sacct_reports_it(workdir):
    tmp_path = workdir
    name = f"srsim-smoke-{uuid.uuid4().hex[:8]}"
    job = sbatch("-J", name, "-t", "2", "-n", "1", "--wrap", "echo job=$SLURM_JOB_ID ntasks=$SLURM_NTASKS > out.txt",
                 cwd=tmp_path)
    assert wait_job(job, 60) == ("COMPLETED", "0:0")
    assert (tmp_path / "out.txt").read_text().split() == [f"job={job}", "ntasks=1"]

    # the status query of the slurm executor plugin (by job name) sees the finished job
    def plugin_query_sees_it():
        q = subprocess.run(["sacct", "-X", "--parsable2", "--noheader", "--format=JobIdRaw,State", "--name", name,
                            "--starttime", "now-1hours", "--endtime", "now"], capture_output=True, text=True,
                           timeout=30)
        assert q.returncode == 0, q.stderr
        return f"{job}|COMPLETED" in q.stdout.split()

    wait_for(plugin_query_sees_it, 30, "sacct --name to report the job")


def test_tiny_workflow_through_the_slurm_profile_resumes_after_the_time_limit_signal(workdir):
    """profiles/slurm on a real slurm: plain, MPI and signalled-then-resumed jobs (tests/data/slurm_wf)."""
    tmp_path = workdir
    cmd = [*SNAKEMAKE, "-s", str(WF / "Snakefile"), "-d", str(tmp_path), "--profile", str(REPO / "profiles/slurm"),
           # test speed only: first status check after 2 s instead of 40 s, outputs are local
           "--slurm-init-seconds-before-status-checks", "2", "--latency-wait", "10"]
    out = subprocess.run(cmd, cwd=REPO, env=_env(), capture_output=True, text=True, timeout=600)
    assert out.returncode == 0, out.stdout[-4000:] + out.stderr[-4000:]

    # plain jobs ran as slurm jobs of their own
    jobs = set()
    for i in range(2):
        fields = dict(f.split("=", 1) for f in (tmp_path / f"parts/{i}.txt").read_text().split())
        assert fields["part"] == str(i) and fields["job"].isdigit()
        jobs.add(fields["job"])
    assert len(jobs) == 2

    # the MPI job: the rule's own `srun` ran one task per requested MPI task in one allocation
    ranks = (tmp_path / "mpi_ranks.txt").read_text().splitlines()
    parsed = [dict(f.split("=", 1) for f in line.split()) for line in ranks]
    assert sorted(p["rank"] for p in parsed) == ["0", "1"]
    assert {p["ntasks"] for p in parsed} == {"2"} and len({p["job"] for p in parsed}) == 1

    # the long job: slurm signalled the first attempt before its time limit, it checkpointed and
    # failed; the retry (a new slurm job) resumed exactly where the checkpoint left off
    state = json.loads((tmp_path / "trained.json").read_text())
    assert state["step"] == 40
    first, second = state["runs"]
    assert first["reason"] == "signal SIGTERM", first
    assert 0 < first["stop_step"] < 40
    assert second["start_step"] == first["stop_step"] and second["reason"] == "finished"
    assert first["job"] != second["job"]
    assert wait_job(first["job"], 30)[0] == "FAILED"
    assert wait_job(second["job"], 30) == ("COMPLETED", "0:0")


def _synthetic_pair(tmp_path, n=8, scale=4):
    """An LR/HR displacement pair (smooth random fields) in the files `srsim train` reads."""
    from srsim.io.displacement import write_displacement

    rng = np.random.default_rng(5)
    k = np.fft.fftfreq(n * scale) * n * scale
    kk = np.sqrt(k[:, None, None] ** 2 + k[None, :, None] ** 2 + k[None, None, :] ** 2)
    w = rng.standard_normal((3, n * scale, n * scale, n * scale))
    hr = np.fft.ifftn(np.fft.fftn(w, axes=(1, 2, 3)) * np.exp(-(kk / 3.0) ** 2), axes=(1, 2, 3)).real
    hr = (0.3 * hr / hr.std()).astype(np.float32)
    lr = np.ascontiguousarray(hr[:, ::scale, ::scale, ::scale])
    cosmo = {"Omega_m": 0.2814}
    lp, hp = tmp_path / "lr.h5", tmp_path / "hr.h5"
    write_displacement(lp, lr, box_size=12.5, redshift=0.0, cosmology=cosmo, source="synthetic")
    write_displacement(hp, hr, box_size=12.5, redshift=0.0, cosmology=cosmo, source="synthetic")
    return f"{lp}:{hp}"


def test_srsim_train_stopped_by_slurm_signal_resumes_from_its_checkpoint(workdir):
    """`srsim train` in a slurm job step gets the time-limit signal, checkpoints, exits 75; a new job resumes."""
    tmp_path = workdir
    pytest.importorskip("torch")
    if not (REPO / "src/srsim/cli/train.py").is_file():
        pytest.skip("srsim train is not there yet")
    import torch

    cfg = {"model": {"crop": 4, "pad": 3, "gen_widths": [4, 4, 4], "critic_widths": [4, 4, 4], "disp_scale": 0.5},
           "train": {"supervised_epochs": 1, "adversarial_epochs": 100000, "checkpoint_every": 2, "gp_every": 2,
                     "lr": 1e-4, "device": "cpu", "threads": 1}}
    (tmp_path / "train.json").write_text(json.dumps(cfg))
    out = tmp_path / "models" / "model.pt"
    last = out.parent / "checkpoints" / "last.pt"
    train = (f"srsim train --data {_synthetic_pair(tmp_path)} --redshift 0 --config {tmp_path / 'train.json'} "
             f"--out {out} --resume --no-progress")
    # a job step `srun -n1 <command>` like the plugin's jobs; the command is exec'd, as the workflow's
    # rules do, so that the signal reaches `srsim train` and nothing in between dies before it
    (tmp_path / "train.sh").write_text(f"exec {train} \"$@\"\n")

    job = sbatch("-J", "srsim-train-signal", "-t", "10", "-o", "train1.log", "--wrap", "srun -n1 bash train.sh",
                 cwd=tmp_path)
    wait_for(lambda: last.is_file() or job_state(job)[0] in FINISHED, 120, "the first checkpoint")
    assert job_state(job)[0] == "RUNNING", (tmp_path / "train1.log").read_text()
    # what slurm does with --signal=TERM@300 before the time limit: signal every process of the job's steps
    subprocess.run(["scancel", "--signal=TERM", job], check=True, timeout=30)
    state, code = wait_job(job, 120)
    log1 = (tmp_path / "train1.log").read_text()
    assert (state, code) == ("FAILED", "75:0"), log1
    assert "received SIGTERM" in log1, log1
    k = int(torch.load(last, map_location="cpu", weights_only=False)["state"]["step"])
    assert k >= 2
    assert not out.exists()

    # the retry: same command (plus a step budget so the test ends), resumes at step k
    job2 = sbatch("-J", "srsim-train-resume", "-t", "10", "-o", "train2.log",
                  "--wrap", f"srun -n1 bash train.sh --max-steps {k + 3}", cwd=tmp_path)
    state2 = wait_job(job2, 180)
    log2 = (tmp_path / "train2.log").read_text()
    assert state2 == ("COMPLETED", "0:0"), log2
    assert re.search(rf"resumed from .*last\.pt at step {k}\b", log2), log2
    from srsim.model import load_generator

    assert load_generator(out)[1]["step"] == k + 3
    rows = (out.parent / "losses.csv").read_text().splitlines()
    assert len(rows) == 1 + k + 3  # header + one row per step: nothing repeated, nothing lost
