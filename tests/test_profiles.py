"""Snakemake profiles (profiles/slurm, profiles/local), per-redshift targets and the conda environments.

The paper's job set is checked by dry runs through the real slurm profile (no cluster needed):
per rule, the count that follows from config/paper.yaml, for every stage that exists in the workflow.
"""

import os
import re
import subprocess
from pathlib import Path

import pytest
import yaml

from dryrun import REPO, SITE_VARS, SNAKEMAKE, WATCHDOG_S, counts_of, dry_run_jobs, run
from dryrun import user_env as _env

SLURM = str(REPO / "profiles" / "slurm")
LOCAL = str(REPO / "profiles" / "local")


def snakemake(*args, env=None, check=True):
    return run([*SNAKEMAKE, *args], env=env, check=check)


def profile_args(profile: str, monkeypatch, **site) -> dict:
    """The command-line arguments a profile becomes (Snakemake's own parser) under environment `site`."""
    from snakemake.profiles import ProfileConfigFileParser

    for key in SITE_VARS:
        monkeypatch.delenv(key, raising=False)
    monkeypatch.setenv("SRSIM_SLURM_SITE", os.devnull)
    for key, value in site.items():
        monkeypatch.setenv(key, value)
    with open(profile) as fh:
        return dict(ProfileConfigFileParser().parse(fh))


def test_snakemake_reads_config_yaml_of_both_profiles():
    # Snakemake 8 reads only config.yaml; >= 9.19 prefers profile.yaml but falls back to config.yaml,
    # so the profiles ship config.yaml alone (a profile.yaml next to it would silently win on 9.x)
    from snakemake.cli import get_profile_dir

    for name in ("slurm", "local"):
        d = REPO / "profiles" / name
        assert get_profile_dir(str(d)) == (d, d / "config.yaml")
        assert not (d / "profile.yaml").exists()


def test_slurm_profile_takes_account_and_partitions_from_the_environment(monkeypatch):
    bare = profile_args(f"{SLURM}/config.yaml", monkeypatch)
    assert bare["executor"] == "slurm" and int(bare["retries"]) >= 1 and int(bare["latency-wait"]) >= 30
    assert not any(r.startswith(("slurm_account=", "slurm_partition=")) for r in bare["default-resources"])
    assert not any(":slurm_partition=" in r for r in bare["set-resources"])
    # the time-limit signal for the resumable stages: SIGTERM, 5 minutes ahead
    for rule in ("train", "generate_test", "generate_bigbox", "generate_region"):
        assert f"{rule}:slurm_extra='--signal=TERM@300'" in bare["set-resources"]

    site = profile_args(f"{SLURM}/config.yaml", monkeypatch, SRSIM_SLURM_ACCOUNT="astro42", SRSIM_SLURM_PARTITION="cpu",
                        SRSIM_SLURM_GPU_PARTITION="gpu-a100")
    assert "slurm_account=astro42" in site["default-resources"]
    assert "slurm_partition=cpu" in site["default-resources"]
    assert "train:slurm_partition=gpu-a100" in site["set-resources"]
    assert "generate_bigbox:slurm_partition=gpu-a100" in site["set-resources"]
    assert "generate_region:slurm_partition=gpu-a100" in site["set-resources"]

    # sbatch's own variables are the fallback; the GPU partition falls back to the CPU one
    fallback = profile_args(f"{SLURM}/config.yaml", monkeypatch, SBATCH_ACCOUNT="acc", SBATCH_PARTITION="batch")
    assert {"slurm_account=acc", "slurm_partition=batch"} <= set(fallback["default-resources"])
    assert "train:slurm_partition=batch" in fallback["set-resources"]


def test_slurm_profile_reads_a_site_file_and_rejects_a_bad_one(tmp_path, monkeypatch):
    site = tmp_path / "slurm.yaml"
    site.write_text("account: proj7\ngpu_partition: gpu\n")
    args = profile_args(f"{SLURM}/config.yaml", monkeypatch, SRSIM_SLURM_SITE=str(site))
    assert "slurm_account=proj7" in args["default-resources"]
    assert "train:slurm_partition=gpu" in args["set-resources"]
    # the environment wins over the file
    args = profile_args(f"{SLURM}/config.yaml", monkeypatch, SRSIM_SLURM_SITE=str(site), SRSIM_SLURM_ACCOUNT="other")
    assert "slurm_account=other" in args["default-resources"]

    site.write_text("acount: proj7\n")
    out = snakemake("-n", "--profile", SLURM, env=_env(SRSIM_SLURM_SITE=str(site)), check=False)
    assert out.returncode != 0
    assert str(site) in out.stdout + out.stderr and "account, partition, gpu_partition" in out.stdout + out.stderr


def expected_paper_counts(cfg: dict) -> dict[str, int]:
    """Jobs per rule of `all` for a config: the formulas the workflow's stages follow."""
    n_train, n_test = len(cfg["suite"]["train_seeds"]), len(cfg["suite"]["test_seeds"])
    n_val = len(cfg["suite"]["val_seeds"])  # simulated and converted for training's validation, not analysed
    n_pairs, n_z = n_train + n_test, len(cfg["redshifts"])
    big = cfg.get("bigbox")
    n_big_z = len(big.get("redshifts", cfg["redshifts"])) if big else 0
    n_real = cfg["generate"]["realizations"]
    n_jobs = cfg["generate"]["bigbox_jobs"]
    domains = cfg["analysis"]["fof_domains"]
    # analysed: LR, HR, SR and the trivial predictor of the test boxes; big box LR, SR (not the training pairs)
    n_snap = n_z * n_test * (2 + n_real + 1) + 2 * n_big_z
    return {
        "simulate_pair": 2 * (n_pairs + n_val),            # 36 small simulations (34 + a validation pair)
        "simulate_bigbox": 1 if big else 0,                # + the big LR box
        "displacement": 2 * (n_pairs + n_val) * n_z + n_big_z,  # every LR/HR snapshot, and the big box
        "train": n_z,                                      # one model per redshift
        "generate_test": n_test * n_z * n_real,            # SR of the test box, every realization
        "generate_trivial": n_test * n_z,                  # the trivial baseline of each test box (issue 10)
        "generate_bigbox": n_big_z * (n_jobs if n_jobs > 1 else 1),
        "merge_bigbox": n_big_z if n_jobs > 1 else 0,
        "generate_region": n_big_z * len(big.get("regions", [])) if big else 0,  # sub-regions of the big box
        "power": n_snap,
        "hmf": n_snap,
        "hmf_sr": n_test * n_z,                            # HMF of all SR realizations together
        "fof": n_snap - (2 * n_big_z if domains > 1 else 0),
        "fof_partition_index": 2 * n_big_z if domains > 1 else 0,  # one checked index of the slices
        "fof_domain": 2 * n_big_z * domains**3 if domains > 1 else 0,
        "fof_merge": 2 * n_big_z if domains > 1 else 0,
        **{f"fig{i}": 1 for i in range(1, 5)},
        **{f"fig{i}": (1 if big else 0) for i in (5, 6)},  # 6 figures
        "metrics": 1,
    }


@pytest.fixture(scope="module")
def paper_jobs() -> list[dict]:
    """Every job of `snakemake all -n --configfile config/paper.yaml --profile profiles/slurm` (one dry run)."""
    return _dry_run_jobs("all", "--configfile", "config/paper.yaml")


@pytest.mark.slow
def test_paper_job_set_through_the_slurm_profile(paper_jobs):
    """`snakemake all -n --configfile config/paper.yaml --profile profiles/slurm`: the paper's jobs."""
    from srsim.config import load_config

    cfg = load_config(REPO / "config" / "paper.yaml")  # validated, schema defaults filled in
    counts = counts_of(paper_jobs)
    expected = expected_paper_counts(cfg)
    for rule, n in expected.items():
        assert counts.get(rule, 0) == n, f"{rule}: {counts.get(rule, 0)} jobs, expected {n}"
    # the paper in numbers: 34 small simulations + the validation pair (ours, not the paper's) + the big LR
    # box, their displacement fields, 3 trainings, SR of the test box (3 realizations x 3 z) and of the big
    # box, the trivial predictor of the test box (3 z), analysis of 24 snapshots (the test pair x 2 x 3 z
    # + 9 SR + 3 trivial + big box LR and SR x 3 z; the training pairs are not analysed and the validation
    # pair is scored by training), 6 figures
    assert (counts["simulate_pair"], counts["simulate_bigbox"], counts["displacement"]) == (36, 1, 111)
    assert (counts["train"], counts["generate_test"], counts["power"], counts["hmf"]) == (3, 9, 24, 24)
    assert counts["generate_trivial"] == 3
    assert counts["generate_bigbox"] >= 3 and counts["fof"] + counts.get("fof_merge", 0) == 24
    assert sum(counts[f"fig{i}"] for i in range(1, 7)) == 6 and counts["metrics"] == 1
    assert counts["linear_power"] == 1
    unknown = set(counts) - set(expected) - {"all", "linear_power", "fof_partition"}
    assert not unknown, f"rules without an expected count here: {unknown}"


@pytest.mark.slow
def test_demo_and_paper_write_to_separate_results(paper_jobs):
    """The two configs plan disjoint outputs, each under its own `results:` folder: a paper run started
    after the demo never plans against the demo's files."""
    demo_jobs = _dry_run_jobs("all", "--configfile", "config/config.yaml")
    outputs = {}
    roots = {}
    for name, configfile, jobs in (("demo", "config.yaml", demo_jobs), ("paper", "paper.yaml", paper_jobs)):
        roots[name] = yaml.safe_load((REPO / "config" / configfile).read_text())["results"].rstrip("/") + "/"
        outputs[name] = {path for job in jobs for path in job["output"]}
        assert len(outputs[name]) > 100, name
        assert all(path.startswith(roots[name]) for path in outputs[name]), (name, roots[name])
    assert not outputs["demo"] & outputs["paper"]
    assert not roots["demo"].startswith(roots["paper"]) and not roots["paper"].startswith(roots["demo"])


def _small_paper_config(tmp_path) -> Path:
    """config/paper.yaml with fewer boxes and redshifts (same stages, big box, domain FOF): a fast DAG."""
    cfg = yaml.safe_load((REPO / "config" / "paper.yaml").read_text())
    cfg["results"] = str(tmp_path / "results")
    cfg["redshifts"] = [2, 0]
    cfg["suite"]["train_seeds"] = cfg["suite"]["train_seeds"][:1]
    cfg["bigbox"]["redshifts"] = [2, 0]
    cfg.setdefault("generate", {})["bigbox_jobs"] = 2
    cfg.setdefault("analysis", {})["fof_domains"] = 2
    path = tmp_path / "small.yaml"
    path.write_text(yaml.safe_dump(cfg))
    return path


def _dry_run_jobs(*args):
    """[{rule, wildcards, output}] of a dry run through the slurm profile."""
    return dry_run_jobs(snakemake(*args, "--profile", SLURM, "-n").stdout)


def test_tiny_workflow_jobs_fit_the_ci_slurm_node():
    """Every job of the tiny config asks slurm for at most CI's 2 cores and 16 GB: a request above the node
    (the big-box generation's paper-sized 8 cores / 32 GB did) pends forever as PartitionConfig, and the
    slurm end-to-end test hangs instead of failing."""
    jobs = _dry_run_jobs("all", "--configfile", ".test/config/config.yaml", "--forceall")
    assert {"generate_bigbox", "fof_domain", "fig5"} <= {j["rule"] for j in jobs}
    too_big = [(j["rule"], j["threads"], j["mem_mb"]) for j in jobs
               if j["threads"] > 2 or (j["mem_mb"] or 0) > 16384]
    assert not too_big, too_big


def test_per_redshift_target_asks_only_for_that_redshift(tmp_path):
    """`snakemake --profile profiles/slurm z0`: everything of z = 0 and nothing of the other redshifts,
    except the simulations, which write every redshift's snapshot in one run (and the linear P(k))."""
    jobs = _dry_run_jobs("z0", "--configfile", str(_small_paper_config(tmp_path)))
    for job in jobs:
        if job["rule"] in ("simulate_pair", "simulate_bigbox", "linear_power", "z0"):
            continue
        assert job["wildcards"].get("z", "0") == "0", job
        assert all("/z0" in path and "/z2" not in path for path in job["output"]), job
    rules = {j["rule"] for j in jobs}
    assert {"simulate_pair", "displacement", "train", "generate_test", "power", "fof", "hmf"} <= rules
    assert not rules & {"fig1", "fig2", "fig3", "fig4", "fig5", "fig6", "metrics"}


@pytest.mark.slow
def test_rerun_script_redoes_one_redshift_or_the_figures_and_nothing_else(tmp_path):
    """scripts/rerun.sh on a finished run: z0 forces exactly the z = 0 jobs; figures only the figures."""
    config = str(_small_paper_config(tmp_path))
    summary = snakemake("all", "--configfile", config, "--summary").stdout.splitlines()
    rows = [line.split("\t") for line in summary[1:] if "\t" in line]
    assert len(rows) > 50
    # a finished run: every output present (snapshots are directories), then Snakemake's own touch
    # to give them a consistent order of modification times
    for path, *_ in rows:
        p = Path(path)
        if p.suffix in (".h5", ".txt", ".pt", ".csv", ".png", ".pdf", ".json", ".done"):
            p.parent.mkdir(parents=True, exist_ok=True)
            p.touch()
        else:
            p.mkdir(parents=True, exist_ok=True)
    snakemake("all", "--configfile", config, "--touch", "--cores", "1")
    # (were anything not up to date, the dry runs below would list simulations and figures too)

    env = _env(SNAKEMAKE=" ".join(SNAKEMAKE))

    def rerun(target):
        out = subprocess.run(["bash", str(REPO / "scripts" / "rerun.sh"), target, "--configfile", config, "-n"],
                             cwd=REPO, env=env, capture_output=True, text=True, timeout=WATCHDOG_S)
        assert out.returncode == 0, out.stdout[-3000:] + out.stderr[-3000:]
        return [(m.group(1), m.group(2)) for m in
                re.finditer(r"^(?:local)?rule (\S+):\n(?:    .*\n)*?    output: (.*)$", out.stdout, re.M)]

    z0 = rerun("z0")
    rules = {rule for rule, _ in z0}
    assert {"displacement", "train", "generate_test", "generate_bigbox", "merge_bigbox", "power", "fof",
            "fof_domain", "fof_merge", "hmf", "hmf_sr"} <= rules
    assert not rules & {"simulate_pair", "simulate_bigbox", "linear_power", "fig1", "fig4", "metrics"}
    for rule, outputs in z0:
        assert "/z2" not in outputs and "/z0" in outputs, (rule, outputs)

    figures = rerun("figures")
    assert {rule for rule, _ in figures} == {"fig1", "fig2", "fig3", "fig4", "fig5", "fig6", "metrics"}
    out = subprocess.run(["bash", str(REPO / "scripts" / "rerun.sh"), "z7", "--configfile", config], cwd=REPO,
                         env=env, capture_output=True, text=True, timeout=WATCHDOG_S)
    assert out.returncode == 2 and "z0 z2" in out.stderr


def test_local_profile_runs_the_tiny_config_dry(monkeypatch):
    out = snakemake("all", "--profile", LOCAL, "--configfile", ".test/config/config.yaml", "-n", "--quiet", "rules",
                    env=_env(SRSIM_CORES="3", SRSIM_MEM_MB="5000"))
    assert "total" in out.stdout
    args = profile_args(f"{LOCAL}/config.yaml", monkeypatch, SRSIM_CORES="3", SRSIM_MEM_MB="5000", SRSIM_GPUS="2")
    assert args["cores"] == "3" and args["resources"] == ["mem_mb=5000", "gpu=2"]
    args = profile_args(f"{LOCAL}/config.yaml", monkeypatch, SRSIM_CORES="3", SRSIM_MEM_MB="5000", SRSIM_GPUS="0")
    assert args["resources"] == ["mem_mb=5000"]


def test_conda_environments_cover_the_package_dependencies():
    """envs/*.yaml: valid conda files whose packages satisfy what each stage's code imports."""
    import tomllib

    deps = tomllib.loads((REPO / "pyproject.toml").read_text())["project"]["dependencies"]
    pinned_torch = next(d for d in deps if d.startswith("torch")).split("==")[1]
    needs = {"sims": {"pytorch", "numpy", "scipy", "h5py", "bigfile", "camb", "pyyaml", "jsonschema", "tqdm"},
             "torch": {"pytorch", "numpy", "h5py", "bigfile", "numba", "python-isal", "matplotlib-base", "pyyaml",
                       "jsonschema", "tqdm"},
             "analysis": {"pytorch", "numpy", "scipy", "h5py", "bigfile", "numba", "matplotlib-base", "camb",
                          "pyyaml", "jsonschema", "tqdm"}}
    needs["nbodykit"] = needs["analysis"] | {"mpich", "mpi4py", "gsl"}
    for name, need in needs.items():
        env = yaml.safe_load((REPO / "envs" / f"{name}.yaml").read_text())
        assert env["channels"][0] == "conda-forge"
        names = {re.split(r"[=<>! ]", d, maxsplit=1)[0]: d for d in env["dependencies"] if isinstance(d, str)}
        assert need <= set(names), f"envs/{name}.yaml lacks {need - set(names)}"
        assert names["python"] == "python=3.11"
        assert names["pytorch"] == f"pytorch={pinned_torch}", "keep the conda pin equal to pyproject.toml's"
        deploy = REPO / "envs" / f"{name}.post-deploy.sh"
        assert deploy.is_file() and os.access(deploy, os.X_OK)
        assert "pip install --no-deps" in deploy.read_text()
    nbk_deps = yaml.safe_load((REPO / "envs/nbodykit.yaml").read_text())["dependencies"]
    pip = next(d for d in nbk_deps if isinstance(d, dict))
    assert {"nbodykit==0.3.16", "pandas==2.3.3"} <= set(pip["pip"])  # the pins scripts/nbodykit-install.sh tests
