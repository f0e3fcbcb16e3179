# Training: one SR model per redshift on all training pairs (paper: 5 supervised + 150 WGAN-gp epochs).
# `srsim train` keeps its own checkpoints in R/models/z{z}/checkpoints/ (not a declared output, so they
# survive a failed or preempted job); the rule always passes --resume, so rerunning a job that hit its time
# limit continues exactly where it stopped. On slurm, ask for a warning signal before the limit (SIGUSR1 or
# SIGTERM, e.g. --signal=TERM@300; with several GPUs use TERM, which torchrun forwards to its workers).

TRAIN_CFG = cfg_json("model", "train")
TRAIN_GPUS = config["train"]["gpus"]


def train_launcher():
    """`srsim`, or torchrun running one srsim process per GPU (data parallel)."""
    if TRAIN_GPUS > 1:
        return f"torchrun --standalone --nproc-per-node {TRAIN_GPUS} --no-python srsim"
    return "srsim"


def train_disp(kind):
    return lambda wildcards: [f"{R}/disp/{sim}/{kind}/z{wildcards.z}.h5" for sim in TRAIN]


def train_data_arg(wildcards, input):
    return " ".join(f"{lr}:{hr}" for lr, hr in zip(input.lr, input.hr))


rule train:
    conda:
        "../../envs/torch.yaml"
    input:
        lr=train_disp("lr"),
        hr=train_disp("hr"),
    output:
        model=f"{R}/models/z{{z}}/model.pt",
        losses=f"{R}/models/z{{z}}/losses.csv",
        curve=f"{R}/models/z{{z}}/curve.png",
    params:
        cfg=TRAIN_CFG,
        data=train_data_arg,
        launcher=train_launcher(),
    log:
        log_path("train", "z{z}"),
    threads: max(1, config["train"]["threads"] or 2) * max(1, TRAIN_GPUS)
    resources:
        gpu=TRAIN_GPUS,
        runtime=config["train"]["runtime"],
        mem_mb=config["train"]["mem_mb"],
    shell:
        # exec: slurm's time-limit SIGTERM reaches the trainer, which checkpoints and exits 75
        "exec {params.launcher} train --data {params.data} --redshift {wildcards.z} --config {params.cfg} "
        "--out {output.model} --log-csv {output.losses} --plot {output.curve} --resume > {log} 2>&1"


def train_targets(z=None):
    return [f"{R}/models/z{zz}/model.pt" for zz in _select(ZS, z)]


TARGETS["train"] = train_targets
