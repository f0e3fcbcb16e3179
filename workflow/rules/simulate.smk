# Simulations: LR/HR pairs sharing their initial conditions, and the optional big LR box.
# Backend (embedded PM or MP-Gadget) from config["sims"]["backend"].

SIM_SECTIONS = ("cosmology", "redshifts", "z_init", "suite", "bigbox", "sims")
SIM_MPI = config["sims"]["backend"] == "mpgadget"


rule simulate_pair:
    output:
        ic=directory(ic_dir("{pair}", "{kind}")),
        snapshots=[directory(snapshot_dir("{pair}", "{kind}", z)) for z in ZS],
    log:
        log_path("simulate", "{pair}_{kind}"),
    wildcard_constraints:
        kind="lr|hr",
    conda:
        "../../envs/sims.yaml"
    threads: 2
    resources:
        mpi=SIM_MPI,
        tasks=sim_tasks,
        runtime=lambda w: sim_runtime(240 if w.kind == "hr" else 30),
    params:
        # the run's folder: the parent of its snapshots
        out=lambda w, output: os.path.dirname(output.ic),
        cfg=cfg_json(*SIM_SECTIONS),
    shell:
        "exec srsim simulate --sim {wildcards.pair} --kind {wildcards.kind} --out {params.out} "
        "--threads {threads} --config {params.cfg} > {log} 2>&1"


rule simulate_bigbox:
    output:
        ic=directory(ic_dir("bigbox", "lr")),
        snapshots=[directory(snapshot_dir("bigbox", "lr", z)) for z in BIGBOX_ZS],
    log:
        log_path("simulate", "bigbox_lr"),
    conda:
        "../../envs/sims.yaml"
    threads: 2
    resources:
        mpi=SIM_MPI,
        tasks=sim_tasks,
        runtime=sim_runtime(60 * 24),
    params:
        out=lambda w, output: os.path.dirname(output.ic),
        cfg=cfg_json(*SIM_SECTIONS),
    shell:
        "exec srsim simulate --sim bigbox --kind lr --out {params.out} --threads {threads} "
        "--config {params.cfg} > {log} 2>&1"


ruleorder: simulate_bigbox > simulate_pair


rule linear_power:
    output:
        linear_power_path(),
    log:
        log_path("linear_power", "z0"),
    conda:
        "../../envs/sims.yaml"
    resources:
        runtime=10,
    params:
        cfg=cfg_json("cosmology"),
    shell:
        "exec srsim linear-power --config {params.cfg} --out {output} > {log} 2>&1"


TARGETS["simulate"] = simulate_targets
