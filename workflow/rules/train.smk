# Training: one SR model per redshift on all training pairs (paper: 5 supervised + 150 WGAN-gp epochs).
# With suite.val_seeds, every train.val_every steps it super-resolves the validation pairs (val.csv, curve.png).
# `srsim train` keeps its own checkpoints in R/models/z{z}/checkpoints/ (not a declared output, so they
# survive a failed or preempted job); the rule always passes --resume, so rerunning a job that hit its time
# limit continues exactly where it stopped. On slurm, ask for a warning signal before the limit (SIGUSR1 or
# SIGTERM, e.g. --signal=TERM@300; with several GPUs use TERM, which torchrun forwards to its workers).


rule train:
    input:
        lr=train_disp("lr"),
        hr=train_disp("hr"),
        val_lr=val_disp("lr"),
        val_hr=val_disp("hr"),
        init=init_model,
    output:
        **train_val_outputs(),
        model=model_file("{z}"),
        losses=model_file("{z}", "losses.csv"),
        curve=model_file("{z}", "curve.png"),
    log:
        log_path("train", "z{z}"),
    conda:
        "../../envs/torch.yaml"
    threads: max(1, config["train"]["threads"] or 2) * max(1, TRAIN_GPUS)
    resources:
        gpu=TRAIN_GPUS,
        runtime=config["train"]["runtime"],
        mem_mb=config["train"]["mem_mb"],
    params:
        cfg=cfg_json("model", "train", "analysis", "figures"),  # the last two: validation's halo counts
        data=train_data_arg,
        val=train_val_arg,
        launcher=train_launcher(),
    shell:
        # exec: slurm's time-limit SIGTERM reaches the trainer, which checkpoints and exits 75
        "exec {params.launcher} train --data {params.data} --redshift {wildcards.z} --config {params.cfg} "
        "--out {output.model} --log-csv {output.losses} --plot {output.curve} {params.val} --resume > {log} 2>&1"


TARGETS["train"] = train_targets
