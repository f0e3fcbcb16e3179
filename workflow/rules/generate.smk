# Super-resolution: trained model + LR displacement -> SR snapshot (bigfile, MP-Gadget layout, no
# velocities) for every realization of every test box, and for the big box (paper Figs. 1-6).
# `srsim generate` streams chunks to a hidden partial output with a journal, so a job killed at its
# time limit (slurm sends SIGTERM first: it stops after the current chunk) resumes when rerun.

GEN_CFG = cfg_json("generate")
GEN_REALIZATIONS = list(range(config["generate"]["realizations"]))
GEN_BIGBOX_JOBS = config["generate"]["bigbox_jobs"]
# a GPU is requested only for an explicit CUDA device: with "auto" a CPU-only cluster would reject the job
GEN_GPU = 1 if config["generate"]["device"].startswith("cuda") else 0


def sr_snapshot(sim, r, z):
    return f"{R}/snapshots/{sim}/sr{r}/z{z}"


def sr_disp(sim, r, z):
    return f"{R}/disp/{sim}/sr{r}/z{z}.h5"


rule generate_test:
    conda:
        "../../envs/torch.yaml"
    input:
        lr=f"{R}/disp/{{sim}}/lr/z{{z}}.h5",
        model=f"{R}/models/z{{z}}/model.pt",
    output:
        snapshot=directory(f"{R}/snapshots/{{sim}}/sr{{r}}/z{{z}}"),
        disp=f"{R}/disp/{{sim}}/sr{{r}}/z{{z}}.h5",
    wildcard_constraints:
        sim=r"test\d+",
        r=r"\d+",
    params:
        cfg=GEN_CFG,
    log:
        log_path("generate", "{sim}_sr{r}_z{z}"),
    resources:
        gpu=GEN_GPU,
        runtime=120,
        mem_mb=8000,
    threads: 2
    shell:
        # realization r uses noise seed r (paper Fig. 2: several SR realizations of one LR box)
        "exec srsim generate --model {input.model} --lr {input.lr} --out {output.snapshot} "
        "--disp-out {output.disp} --seed {wildcards.r} --config {params.cfg} > {log} 2>&1"


if BIGBOX and GEN_BIGBOX_JOBS == 1:

    rule generate_bigbox:
        conda:
            "../../envs/torch.yaml"
        input:
            lr=f"{R}/disp/bigbox/lr/z{{z}}.h5",
            model=f"{R}/models/z{{z}}/model.pt",
        output:
            snapshot=directory(f"{R}/snapshots/bigbox/sr0/z{{z}}"),
        params:
            cfg=GEN_CFG,
        log:
            log_path("generate", "bigbox_sr0_z{z}"),
        resources:
            gpu=GEN_GPU,
            runtime=24 * 60,
            mem_mb=32000,
        threads: 8
        shell:
            "exec srsim generate --model {input.model} --lr {input.lr} --out {output.snapshot} --seed 0 "
            "--config {params.cfg} > {log} 2>&1"

elif BIGBOX:

    # The big box split into independent chunk jobs that fill one partial snapshot side by side
    # (each at its own particle slots, each with its own journal); merge_bigbox checks and renames.
    rule generate_bigbox:
        conda:
            "../../envs/torch.yaml"
        input:
            lr=f"{R}/disp/bigbox/lr/z{{z}}.h5",
            model=f"{R}/models/z{{z}}/model.pt",
        output:
            done=f"{R}/generate/bigbox/sr0/z{{z}}/job{{job}}of{GEN_BIGBOX_JOBS}.done",
        wildcard_constraints:
            job=r"\d+",
        params:
            cfg=GEN_CFG,
            out=lambda w: sr_snapshot("bigbox", 0, w.z),
        log:
            log_path("generate", f"bigbox_sr0_z{{z}}_job{{job}}of{GEN_BIGBOX_JOBS}"),
        resources:
            gpu=GEN_GPU,
            runtime=24 * 60,
            mem_mb=32000,
        threads: 8
        shell:
            "exec srsim generate --model {input.model} --lr {input.lr} --out {params.out} --seed 0 "
            f"--jobs {GEN_BIGBOX_JOBS} --job {{wildcards.job}} --done {{output.done}} "
            "--config {params.cfg} > {log} 2>&1"

    rule merge_bigbox:
        conda:
            "../../envs/torch.yaml"
        input:
            [
                f"{R}/generate/bigbox/sr0/z{{z}}/job{j}of{GEN_BIGBOX_JOBS}.done"
                for j in range(GEN_BIGBOX_JOBS)
            ],
        output:
            snapshot=directory(f"{R}/snapshots/bigbox/sr0/z{{z}}"),
        log:
            log_path("generate", "bigbox_sr0_z{z}_merge"),
        resources:
            runtime=60,
        shell:
            f"exec srsim generate-merge {{output.snapshot}} --jobs {GEN_BIGBOX_JOBS} > {{log}} 2>&1"


def generate_targets(z=None):
    out = []
    for sim in TEST:
        for zz in _select(ZS, z):
            for r in GEN_REALIZATIONS:
                out += [sr_snapshot(sim, r, zz), sr_disp(sim, r, zz)]
    out += [sr_snapshot("bigbox", 0, zz) for zz in _select(BIGBOX_ZS, z)]
    return out


TARGETS["generate"] = generate_targets
