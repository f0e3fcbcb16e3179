# Super-resolution: trained model + LR displacement -> SR snapshot (bigfile, MP-Gadget layout, no
# velocities) for every realization of every test box, and for the big box (paper Figs. 1-6).
# `srsim generate` streams chunks to a hidden partial output with a journal, so a job killed at its
# time limit (slurm sends SIGTERM first: it stops after the current chunk) resumes when rerun.

GEN_CFG = cfg_json("generate")
# a GPU is requested only for an explicit CUDA device: with "auto" a CPU-only cluster would reject the job
GEN_GPU = 1 if config["generate"]["device"].startswith("cuda") else 0


rule generate_test:
    input:
        lr=disp_path("{sim}", "lr", "{z}"),
        model=model_file("{z}"),
    output:
        snapshot=directory(snapshot_dir("{sim}", "sr{r}", "{z}")),
        disp=disp_path("{sim}", "sr{r}", "{z}"),
    log:
        log_path("generate", "{sim}_sr{r}_z{z}"),
    wildcard_constraints:
        sim=r"test\d+",
        r=r"\d+",
    conda:
        "../../envs/torch.yaml"
    threads: 2
    resources:
        gpu=GEN_GPU,
        runtime=120,
        mem_mb=8000,
    params:
        cfg=GEN_CFG,
    shell:
        # realization r uses noise seed r (paper Fig. 2: several SR realizations of one LR box)
        "exec srsim generate --model {input.model} --lr {input.lr} --out {output.snapshot} "
        "--disp-out {output.disp} --seed {wildcards.r} --config {params.cfg} > {log} 2>&1"


# The trivial predictor of each test box: no model, the LR displacement trilinearly upsampled with the
# geometry (scale, padding) of the config's generator, written through the same chunked path as SR.
rule generate_trivial:
    input:
        lr=disp_path("{sim}", "lr", "{z}"),
    output:
        snapshot=directory(snapshot_dir("{sim}", TRIVIAL, "{z}")),
    log:
        log_path("generate", f"{{sim}}_{TRIVIAL}_z{{z}}"),
    wildcard_constraints:
        sim=r"test\d+",
    conda:
        "../../envs/torch.yaml"
    threads: 2
    resources:
        gpu=GEN_GPU,
        runtime=60,
        mem_mb=8000,
    params:
        cfg=cfg_json("generate", "model"),
    shell:
        "exec srsim generate --trivial --lr {input.lr} --out {output.snapshot} --seed 0 "
        "--config {params.cfg} > {log} 2>&1"


if BIGBOX and GEN_BIGBOX_JOBS == 1:

    rule generate_bigbox:
        input:
            lr=disp_path("bigbox", "lr", "{z}"),
            model=model_file("{z}"),
        output:
            snapshot=directory(snapshot_dir("bigbox", "sr0", "{z}")),
        log:
            log_path("generate", "bigbox_sr0_z{z}"),
        benchmark:
            benchmark_path("generate", "bigbox_sr0_z{z}")
        conda:
            "../../envs/torch.yaml"
        threads: config["generate"]["bigbox_threads"]
        resources:
            gpu=GEN_GPU,
            runtime=config["generate"]["bigbox_runtime"],
            mem_mb=config["generate"]["bigbox_mem_mb"],
        params:
            cfg=GEN_CFG,
        shell:
            "exec srsim generate --model {input.model} --lr {input.lr} --out {output.snapshot} --seed 0 "
            "--config {params.cfg} > {log} 2>&1"

elif BIGBOX:

    # The big box split into independent chunk jobs that fill one partial snapshot side by side
    # (each at its own particle slots, each with its own journal); merge_bigbox checks and renames.
    rule generate_bigbox:
        input:
            lr=disp_path("bigbox", "lr", "{z}"),
            model=model_file("{z}"),
        output:
            done=bigbox_job_done("{z}", "{job}"),
        log:
            log_path("generate", f"bigbox_sr0_z{{z}}_job{{job}}of{GEN_BIGBOX_JOBS}"),
        benchmark:
            benchmark_path("generate", f"bigbox_sr0_z{{z}}_job{{job}}of{GEN_BIGBOX_JOBS}")
        wildcard_constraints:
            job=r"\d+",
        conda:
            "../../envs/torch.yaml"
        threads: config["generate"]["bigbox_threads"]
        resources:
            gpu=GEN_GPU,
            runtime=config["generate"]["bigbox_runtime"],
            mem_mb=config["generate"]["bigbox_mem_mb"],
        params:
            cfg=GEN_CFG,
            out=lambda w: snapshot_dir("bigbox", "sr0", w.z),
        shell:
            "exec srsim generate --model {input.model} --lr {input.lr} --out {params.out} --seed 0 "
            f"--jobs {GEN_BIGBOX_JOBS} --job {{wildcards.job}} --done {{output.done}} "
            "--config {params.cfg} > {log} 2>&1"

    rule merge_bigbox:
        input:
            [bigbox_job_done("{z}", j) for j in range(GEN_BIGBOX_JOBS)],
        output:
            snapshot=directory(snapshot_dir("bigbox", "sr0", "{z}")),
        log:
            log_path("generate", "bigbox_sr0_z{z}_merge"),
        benchmark:
            benchmark_path("generate", "bigbox_sr0_z{z}_merge")
        conda:
            "../../envs/torch.yaml"
        resources:
            runtime=60,
        params:
            verify="--verify" if config["generate"]["bigbox_merge_verify"] else "",
        shell:
            f"exec srsim generate-merge {{output.snapshot}} --jobs {GEN_BIGBOX_JOBS} {{params.verify}} > {{log}} 2>&1"


if REGIONS:

    # A sub-region of the big box on its own (the paper: "only a region, e.g. around a cluster"), with the
    # full box's model and noise seed and periodic context from the whole LR box: its particles are those
    # of the full-box SR (chunk invariance), at a fraction of the cost.
    rule generate_region:
        input:
            lr=disp_path("bigbox", "lr", "{z}"),
            model=model_file("{z}"),
        output:
            snapshot=directory(region_snapshot_dir("{region}", "{z}")),
        log:
            log_path("generate", "bigbox_region_{region}_z{z}"),
        wildcard_constraints:
            region="|".join(REGIONS),
        conda:
            "../../envs/torch.yaml"
        threads: 2
        resources:
            gpu=GEN_GPU,
            runtime=120,
            mem_mb=8000,
        params:
            cfg=GEN_CFG,
            where=region_args,
        shell:
            "exec srsim generate --model {input.model} --lr {input.lr} --out {output.snapshot} --seed 0 "
            "{params.where} --config {params.cfg} > {log} 2>&1"


TARGETS["generate"] = generate_targets
