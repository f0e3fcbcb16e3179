# Simulations: LR/HR pairs sharing their initial conditions, and the optional big LR box.
# Backend (embedded PM or MP-Gadget) from config["sims"]["backend"].

SIM_SECTIONS = ("cosmology", "redshifts", "z_init", "suite", "bigbox", "sims")


def sim_runtime(default_min):
    """Job runtime in minutes: MP-Gadget's TimeLimitCPU plus margin for MP-GenIC and I/O.

    MP-Gadget checkpoints and stops at its own limit before the scheduler kills the job; a retry or a
    rerun then resumes from its restart files.
    """
    if config["sims"]["backend"] == "mpgadget":
        return config["sims"]["mpgadget"]["time_limit_s"] // 60 + 30
    return default_min


def snapshot_dir(sim, kind, z):
    return f"{R}/snapshots/{sim}/{kind}/z{z}"


rule simulate_pair:
    conda:
        "../../envs/sims.yaml"
    output:
        ic=directory(f"{R}/snapshots/{{pair}}/{{kind}}/IC"),
        snapshots=[directory(f"{R}/snapshots/{{pair}}/{{kind}}/z{z}") for z in ZS],
    wildcard_constraints:
        kind="lr|hr",
    params:
        out=lambda w: f"{R}/snapshots/{w.pair}/{w.kind}",
        cfg=cfg_json(*SIM_SECTIONS),
    log:
        log_path("simulate", "{pair}_{kind}"),
    resources:
        mpi=lambda w: config["sims"]["backend"] == "mpgadget",
        tasks=lambda w: config["sims"].get("mpgadget", {}).get("ntasks", 1)
        if config["sims"]["backend"] == "mpgadget"
        else 1,
        runtime=lambda w: sim_runtime(240 if w.kind == "hr" else 30),
    threads: 2
    shell:
        "exec srsim simulate --sim {wildcards.pair} --kind {wildcards.kind} --out {params.out} "
        "--config {params.cfg} > {log} 2>&1"


rule simulate_bigbox:
    conda:
        "../../envs/sims.yaml"
    output:
        ic=directory(f"{R}/snapshots/bigbox/lr/IC"),
        snapshots=[directory(f"{R}/snapshots/bigbox/lr/z{z}") for z in BIGBOX_ZS],
    params:
        out=f"{R}/snapshots/bigbox/lr",
        cfg=cfg_json(*SIM_SECTIONS),
    log:
        log_path("simulate", "bigbox_lr"),
    resources:
        mpi=lambda w: config["sims"]["backend"] == "mpgadget",
        tasks=lambda w: config["sims"].get("mpgadget", {}).get("ntasks", 1)
        if config["sims"]["backend"] == "mpgadget"
        else 1,
        runtime=sim_runtime(60 * 24),
    threads: 2
    shell:
        "exec srsim simulate --sim bigbox --kind lr --out {params.out} --config {params.cfg} > {log} 2>&1"


ruleorder: simulate_bigbox > simulate_pair


rule linear_power:
    conda:
        "../../envs/sims.yaml"
    output:
        f"{R}/linear_power.txt",
    params:
        cfg=cfg_json("cosmology"),
    log:
        log_path("linear_power", "z0"),
    resources:
        runtime=10,
    shell:
        "exec srsim linear-power --config {params.cfg} --out {output} > {log} 2>&1"


def simulate_targets(z=None):
    out = [f"{R}/linear_power.txt"] if z is None else []
    out += [snapshot_dir(p, k, zz) for p in PAIRS for k in ("lr", "hr") for zz in _select(ZS, z)]
    out += [snapshot_dir("bigbox", "lr", zz) for zz in _select(BIGBOX_ZS, z)]
    return out


TARGETS["simulate"] = simulate_targets
