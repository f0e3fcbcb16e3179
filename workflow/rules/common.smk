# Shared names and helpers for every stage. No science here: paths, wildcards, config plumbing.
#
# Every helper function of the workflow lives in this file (the rule files only declare rules), and every
# path under the results folder comes from one path function below: the results layout is written once.
import os
import shlex

from srsim.config import sections_json
from srsim.sims.suite import simulation_names, zstr

R = config["results"]
ZS = [zstr(z) for z in config["redshifts"]]
_names = simulation_names(config)
TRAIN = _names["train"]
VAL = _names["val"]  # held-out pairs that training validates on (not analysed: never the test box)
TEST = _names["test"]
SIMULATED = TRAIN + VAL + TEST
BIGBOX = bool(_names["bigbox"])
BIGBOX_ZS = [zstr(z) for z in (config["bigbox"].get("redshifts", config["redshifts"]) if BIGBOX else [])]
REALIZATIONS = list(range(config["generate"]["realizations"]))
SR_KINDS = [f"sr{r}" for r in REALIZATIONS]
# the trivial predictor (LR displacement trilinearly upsampled, the untrained generator): the baseline every
# metric and Figs. 3 and 4 show beside LR, SR and HR
TRIVIAL = "trivial"
GEN_BIGBOX_JOBS = config["generate"]["bigbox_jobs"]
# sub-regions of the big box super-resolved on their own (bigbox.regions), by name
REGIONS = {reg["name"]: reg for reg in (config["bigbox"].get("regions", []) if BIGBOX else [])}
ANA = config["analysis"]
ANA_DOMAINS = ANA["fof_domains"]
# nbodykit (analysis.engine): every P(k) and FOF job is one MPI job, the big box's FOF included
ANA_MPI = ANA["engine"] == "nbodykit"
# the big box's FOF as partition + domain + merge jobs (srsim engine), or through rule fof like the rest
FOF_IN_DOMAINS = BIGBOX and ANA_DOMAINS > 1 and not ANA_MPI
ANA_PARTS = ANA["fof_partition_jobs"]
TRAIN_GPUS = config["train"]["gpus"]
# six-channel models predict velocities: their SR snapshots, like LR and HR, get velocity statistics
VELOCITY = config["model"]["channels"] == 6


wildcard_constraints:
    sim=r"(train|val|test)\d+|bigbox",
    pair=r"(train|val|test)\d+",
    kind=r"lr|hr|sr\d*|trivial",
    z=r"\d+(\.\d+)?",


def cfg_json(*sections):
    """Shell-quoted JSON of some config sections, for a subcommand's `--config`.

    Passing only the sections a stage reads means editing one section reruns only those stages.
    Returned as a function so that braces in config values are not taken for wildcards.
    """
    text = shlex.quote(sections_json(config, *sections))
    return lambda wildcards: text


# ---- results paths: each function takes names or wildcard patterns ("{sim}") alike -------------------


def linear_power_path():
    """The CAMB linear power spectrum of the configured cosmology (MP-GenIC's input table)."""
    return f"{R}/linear_power.txt"


def log_path(rule, name):
    return f"{R}/logs/{rule}/{name}.log"


def benchmark_path(rule, name):
    """Snakemake's benchmark table of one job (wall s, max RSS MB, I/O MB): benchmarks/generate.py --from-run reads them."""
    return f"{R}/benchmarks/{rule}/{name}.tsv"


def snapshot_dir(sim, kind, z):
    """bigfile snapshot at redshift z (the initial conditions: ic_dir)."""
    return f"{R}/snapshots/{sim}/{kind}/z{z}"


def ic_dir(sim, kind):
    return f"{R}/snapshots/{sim}/{kind}/IC"


def disp_path(sim, kind, z):
    return f"{R}/disp/{sim}/{kind}/z{z}.h5"


def model_file(z, name="model.pt"):
    """model.pt, losses.csv, val.csv or curve.png of the model of redshift z."""
    return f"{R}/models/z{z}/{name}"


def region_snapshot_dir(name, z):
    """SR snapshot of the big box's sub-region `name` (bigbox.regions) at redshift z."""
    return f"{R}/snapshots/bigbox/regions/{name}/z{z}"


def bigbox_job_done(z, job):
    return f"{R}/generate/bigbox/sr0/z{z}/job{job}of{GEN_BIGBOX_JOBS}.done"


def analysis_path(sim, kind, z, name):
    """power.txt, fof.h5 or hmf.txt of one snapshot (kind "sr": all SR realizations together)."""
    return f"{R}/analysis/{sim}/{kind}/z{z}/{name}"


def fof_part_dir(kind, z, part):
    return analysis_path("bigbox", kind, z, f"fof_parts/p{part}of{ANA_PARTS}")


def fof_part_index(kind, z):
    return analysis_path("bigbox", kind, z, f"fof_parts/index{ANA_PARTS}.json")


def fof_domain_catalog(kind, z, d):
    return analysis_path("bigbox", kind, z, f"fof_domains/d{d}of{ANA_DOMAINS}.h5")


def bigbox_hmf_paths(kind):
    """The big box's HMF tables of one kind ("lr" or "sr0") at every big-box redshift (none without a big box)."""
    return [analysis_path("bigbox", kind, z, "hmf.txt") for z in BIGBOX_ZS]


def figure_path(name, ext="png"):
    return f"{R}/figures/{name}.{ext}"


def metrics_path(ext):
    return f"{R}/metrics.{ext}"


# ---- targets: each stage registers z -> its final outputs at redshift z (z=None: all redshifts) -------

TARGETS = {}


def all_targets(z=None):
    return [path for stage in TARGETS.values() for path in stage(z)]


def _select(zs, z):
    return zs if z is None else [zz for zz in zs if zz == z]


def simulate_targets(z=None):
    out = [linear_power_path()] if z is None else []
    out += [snapshot_dir(p, k, zz) for p in SIMULATED for k in ("lr", "hr") for zz in _select(ZS, z)]
    out += [snapshot_dir("bigbox", "lr", zz) for zz in _select(BIGBOX_ZS, z)]
    return out


def displacement_targets(z=None):
    out = [disp_path(p, k, zz) for p in SIMULATED for k in ("lr", "hr") for zz in _select(ZS, z)]
    out += [disp_path("bigbox", "lr", zz) for zz in _select(BIGBOX_ZS, z)]
    return out


def train_targets(z=None):
    return [model_file(zz) for zz in _select(ZS, z)]


def generate_targets(z=None):
    out = []
    for sim in TEST:
        for zz in _select(ZS, z):
            for kind in SR_KINDS:
                out += [snapshot_dir(sim, kind, zz), disp_path(sim, kind, zz)]
            out.append(snapshot_dir(sim, TRIVIAL, zz))
    out += [snapshot_dir("bigbox", "sr0", zz) for zz in _select(BIGBOX_ZS, z)]
    out += [region_snapshot_dir(name, zz) for name in REGIONS for zz in _select(BIGBOX_ZS, z)]
    return out


def analysis_targets(z=None):
    """Every analysis output at redshift z (None: all redshifts)."""
    names = ("power.txt", "fof.h5", "hmf.txt")
    out = []
    for zz in _select(ZS, z):
        # the test boxes only: the figures and metrics compare SR with LR and HR there (the paper's test
        # set); the training pairs' statistics would cost a third of the demo's time and feed nothing
        for sim in TEST:
            for kind in ["lr", "hr"] + SR_KINDS + [TRIVIAL]:
                out += [analysis_path(sim, kind, zz, f) for f in names]
            out.append(analysis_path(sim, "sr", zz, "hmf.txt"))
            if VELOCITY:
                for kind in ["lr", "hr"] + SR_KINDS:
                    out += [analysis_path(sim, kind, zz, f) for f in ("power_rsd.txt", "power_momentum.txt")]
    for zz in _select(BIGBOX_ZS, z):
        for kind in ("lr", "sr0"):
            out += [analysis_path("bigbox", kind, zz, f) for f in names]
    return out


# ---- per-stage helpers ----------------------------------------------------------------------------


def sim_runtime(default_min):
    """Job runtime in minutes: MP-Gadget's TimeLimitCPU plus margin for MP-GenIC and I/O.

    MP-Gadget checkpoints and stops at its own limit before the scheduler kills the job; a retry or a
    rerun then resumes from its restart files.
    """
    if config["sims"]["backend"] == "mpgadget":
        return config["sims"]["mpgadget"]["time_limit_s"] // 60 + 30
    return default_min


def sim_tasks(wildcards):
    """MPI ranks of a simulation job (1 for the embedded PM code)."""
    if config["sims"]["backend"] == "mpgadget":
        return config["sims"]["mpgadget"]["ntasks"]
    return 1


def train_launcher():
    """`srsim`, or torchrun running one srsim process per GPU (data parallel)."""
    if TRAIN_GPUS > 1:
        return f"torchrun --standalone --nproc-per-node {TRAIN_GPUS} --no-python srsim"
    return "srsim"


def train_disp(kind):
    return lambda wildcards: [disp_path(sim, kind, wildcards.z) for sim in TRAIN]


def init_model(wildcards):
    """The checkpoint that train.init_from starts redshift z's training from (none when unset)."""
    init = config["train"]["init_from"]
    return [init.replace("{z}", wildcards.z)] if init else []


def train_data_arg(wildcards, input):
    return " ".join(f"{lr}:{hr}" for lr, hr in zip(input.lr, input.hr))


def val_disp(kind):
    return lambda wildcards: [disp_path(sim, kind, wildcards.z) for sim in VAL]


def train_val_outputs():
    """The train rule's val.csv output, only when there are validation pairs."""
    return {"val": model_file("{z}", "val.csv")} if VAL else {}


def train_val_arg(wildcards, input, output):
    """`--val LR:HR ... --val-csv OUT` for `srsim train`, or nothing without validation pairs."""
    if not VAL:
        return ""
    pairs = " ".join(f"{lr}:{hr}" for lr, hr in zip(input.val_lr, input.val_hr))
    return f"--val {pairs} --val-csv {output.val}"


def particles_per_side(sim, kind):
    """Particles per side of a snapshot, for memory requests."""
    suite = config["suite"]
    factor = suite["n_hr"] // suite["n_lr"]
    if sim == "bigbox":
        n = config["bigbox"]["n_lr"]
        return n if kind == "lr" else n * factor
    return suite["n_lr"] if kind == "lr" else suite["n_hr"]


def power_mem_mb(wildcards):
    if ANA_MPI:
        return ana_tasks(wildcards) * ANA["nbodykit"]["mem_mb_per_task"]
    # float64 mesh + its complex FFT + one chunk of 2^22 particles
    n = ANA["power_mesh"]
    return int(2.2 * 8 * n**3 / 2**20) + 512


def fof_mem_mb(wildcards):
    if ANA_MPI:
        return ana_tasks(wildcards) * ANA["nbodykit"]["mem_mb_per_task"]
    # ~160 bytes per particle (positions, sorted copy, IDs, cell keys, union-find forest, labels)
    n = particles_per_side(wildcards.sim, wildcards.kind)
    return int(160 * n**3 / 2**20) + 512


def ana_tasks(wildcards):
    """MPI ranks of a P(k) or FOF job: analysis.nbodykit.ntasks (bigbox_ntasks for the big box) with the
    nbodykit engine, else 1."""
    if not ANA_MPI:
        return 1
    nbk = ANA["nbodykit"]
    return nbk["bigbox_ntasks"] or nbk["ntasks"] if wildcards.sim == "bigbox" else nbk["ntasks"]


def ana_launch(wildcards):
    """The MPI launcher prefix of a P(k) or FOF job with the nbodykit engine ("mpirun -np 4", "srun"), else ""."""
    return ANA["nbodykit"]["launcher"].replace("{ntasks}", str(ana_tasks(wildcards))) if ANA_MPI else ""


def fof_domain_mem_mb(wildcards):
    n = particles_per_side("bigbox", wildcards.kind)
    box = config["bigbox"]["box_size"]
    frac = min(1.0, (1.0 / ANA_DOMAINS + 2 * ANA["fof_ghost"] / box)) ** 3
    return int(200 * frac * n**3 / 2**20) + 1024


def fof_part_dirs(wildcards):
    return [fof_part_dir(wildcards.kind, wildcards.z, p) for p in range(ANA_PARTS)]


def region_args(wildcards):
    """`--region-centre X Y Z --region-size S [S S]` (Mpc/h) of the sub-region named by the wildcard."""
    reg = REGIONS[wildcards.region]
    size = reg["size"] if isinstance(reg["size"], list) else [reg["size"]]
    words = ["--region-centre", *map(float, reg["centre"]), "--region-size", *map(float, size)]
    return " ".join(map(str, words))


def metrics_bigbox_arg(wildcards, input):
    """`--bigbox-hmf-lr ... --bigbox-hmf-sr ...` for `srsim metrics` (Fig. 6's claim), or nothing without a big box."""
    if not BIGBOX_ZS:
        return ""
    return f"--bigbox-hmf-lr {' '.join(input.bigbox_hmf_lr)} --bigbox-hmf-sr {' '.join(input.bigbox_hmf_sr)}"


def velocity_paths(name, kinds):
    """The first test box's analysis file `name` (power_rsd.txt, power_momentum.txt, or fof.h5 for the halo
    velocities) of `kinds` at every redshift; none without velocities (model.channels 3). The trivial
    predictor is never among `kinds`: its snapshots have no velocities."""
    if not VELOCITY:
        return []
    return [analysis_path(TEST[0], k, z, name) for z in ZS for k in kinds]


def metrics_velocity_arg(wildcards, input):
    """`--rsd-lr ... --momentum-sr ... --fof-lr ... --fof-sr ...` for `srsim metrics` (six-channel runs), or nothing."""
    if not VELOCITY:
        return ""
    return " ".join(
        f"--{stat}-{who} {' '.join(input[f'{stat}_{who}'])}"
        for stat in ("rsd", "momentum", "fof")
        for who in ("lr", "hr", "sr")
    )


def fig_z(zs, target):
    """The redshift string of zs closest to target (ties: the lower redshift)."""
    return min(zs, key=lambda z: (abs(float(z) - target), float(z)))
