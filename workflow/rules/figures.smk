# Figures: the paper's Figs. 1-6 (PNG + PDF) and metrics.json / metrics.txt for the first test box.
# Figs. 5 and 6 need the big box and are targets only when the config has one; then the metrics also check
# Fig. 6's claim on the big box's mass functions.

FIG = config["figures"]
FIG_CFG = cfg_json("figures")
FIG_SIM = TEST[0]
FIG_SR = SR_KINDS
FIG2_SEED = 2


FIG1_Z = fig_z(ZS, 0.0)
# Fig. 1 runs a local FOF on every projected region (slab included: its particles plus a 2 Mpc/h margin), so
# FOF members are highlighted exactly without member lists in the catalogues; ~200 bytes per particle held.
_slab = min(1.0, (FIG["slab_thickness"] + 4.0) / config["suite"]["box_size"])
FIG1_COLLECT = int(1.1 * config["suite"]["n_hr"] ** 3 * _slab) + 1
FIG1_MEM_MB = 2048 + int(200 * FIG1_COLLECT / 2**20)
FIG2_Z = fig_z(ZS, 2.0)
FIG2_SR = FIG_SR[:3]  # the paper shows three SR realizations; fewer are shown when fewer exist
FIG_BIG_ZS = [z for z in BIGBOX_ZS if z in ZS]  # Fig. 6 compares with the small HR box at the same z
FIG56_Z = fig_z(FIG_BIG_ZS, 2.0) if FIG_BIG_ZS else None


rule fig1:
    input:
        lr=snapshot_dir(FIG_SIM, "lr", FIG1_Z),
        hr=snapshot_dir(FIG_SIM, "hr", FIG1_Z),
        sr=snapshot_dir(FIG_SIM, FIG_SR[0], FIG1_Z),
        lr_fof=analysis_path(FIG_SIM, "lr", FIG1_Z, "fof.h5"),
        hr_fof=analysis_path(FIG_SIM, "hr", FIG1_Z, "fof.h5"),
        sr_fof=analysis_path(FIG_SIM, FIG_SR[0], FIG1_Z, "fof.h5"),
    output:
        png=report(figure_path("fig1_projections"), caption="../report/fig1.rst", category="Figures"),
        pdf=figure_path("fig1_projections", "pdf"),
    log:
        log_path("figure", "fig1"),
    conda:
        "../../envs/analysis.yaml"
    resources:
        mem_mb=FIG1_MEM_MB,
        runtime=240,
    params:
        cfg=FIG_CFG,
        z=FIG1_Z,
        collect=FIG1_COLLECT,
    shell:
        "exec srsim figure fig1 --lr {input.lr} --hr {input.hr} --sr {input.sr} --lr-fof {input.lr_fof}"
        " --hr-fof {input.hr_fof} --sr-fof {input.sr_fof} --collect-limit {params.collect} --out {output.png}"
        " --config {params.cfg} > {log} 2>&1"


rule fig2:
    input:
        lr=snapshot_dir(FIG_SIM, "lr", FIG2_Z),
        hr=snapshot_dir(FIG_SIM, "hr", FIG2_Z),
        sr=[snapshot_dir(FIG_SIM, k, FIG2_Z) for k in FIG2_SR],
        lr_fof=analysis_path(FIG_SIM, "lr", FIG2_Z, "fof.h5"),
        hr_fof=analysis_path(FIG_SIM, "hr", FIG2_Z, "fof.h5"),
        sr_fof=[analysis_path(FIG_SIM, k, FIG2_Z, "fof.h5") for k in FIG2_SR],
    output:
        png=report(figure_path("fig2_realizations"), caption="../report/fig2.rst", category="Figures"),
        pdf=figure_path("fig2_realizations", "pdf"),
    log:
        log_path("figure", "fig2"),
    conda:
        "../../envs/analysis.yaml"
    resources:
        mem_mb=4096,
        runtime=120,
    params:
        cfg=FIG_CFG,
        z=FIG2_Z,
        seed=FIG2_SEED,
    shell:
        "exec srsim figure fig2 --lr {input.lr} --hr {input.hr} --sr {input.sr} --lr-fof {input.lr_fof}"
        " --hr-fof {input.hr_fof} --sr-fof {input.sr_fof} --seed {params.seed} --out {output.png}"
        " --config {params.cfg} > {log} 2>&1"


rule fig3:
    input:
        lr=[analysis_path(FIG_SIM, "lr", z, "power.txt") for z in ZS],
        hr=[analysis_path(FIG_SIM, "hr", z, "power.txt") for z in ZS],
        sr=[analysis_path(FIG_SIM, k, z, "power.txt") for z in ZS for k in FIG_SR],
        trivial=[analysis_path(FIG_SIM, TRIVIAL, z, "power.txt") for z in ZS],
    output:
        png=report(figure_path("fig3_power"), caption="../report/fig3.rst", category="Figures"),
        pdf=figure_path("fig3_power", "pdf"),
    log:
        log_path("figure", "fig3"),
    conda:
        "../../envs/analysis.yaml"
    params:
        cfg=FIG_CFG,
    shell:
        "exec srsim figure fig3 --lr {input.lr} --hr {input.hr} --sr {input.sr} --trivial {input.trivial}"
        " --out {output.png}"
        " --config {params.cfg} > {log} 2>&1"


rule fig4:
    input:
        lr=[analysis_path(FIG_SIM, "lr", z, "hmf.txt") for z in ZS],
        hr=[analysis_path(FIG_SIM, "hr", z, "hmf.txt") for z in ZS],
        sr=[analysis_path(FIG_SIM, "sr", z, "hmf.txt") for z in ZS],
        trivial=[analysis_path(FIG_SIM, TRIVIAL, z, "hmf.txt") for z in ZS],
    output:
        png=report(figure_path("fig4_hmf"), caption="../report/fig4.rst", category="Figures"),
        pdf=figure_path("fig4_hmf", "pdf"),
    log:
        log_path("figure", "fig4"),
    conda:
        "../../envs/analysis.yaml"
    params:
        cfg=FIG_CFG,
    shell:
        "exec srsim figure fig4 --lr {input.lr} --hr {input.hr} --sr {input.sr} --trivial {input.trivial}"
        " --out {output.png}"
        " --config {params.cfg} > {log} 2>&1"


if FIG56_Z is not None:

    rule fig5:
        input:
            lr=snapshot_dir("bigbox", "lr", FIG56_Z),
            sr=snapshot_dir("bigbox", "sr0", FIG56_Z),
            lr_fof=analysis_path("bigbox", "lr", FIG56_Z, "fof.h5"),
            sr_fof=analysis_path("bigbox", "sr0", FIG56_Z, "fof.h5"),
        output:
            png=report(figure_path("fig5_bigbox"), caption="../report/fig5.rst", category="Figures"),
            pdf=figure_path("fig5_bigbox", "pdf"),
        log:
            log_path("figure", "fig5"),
        conda:
            "../../envs/analysis.yaml"
        resources:
            mem_mb=16384,
            runtime=1440,  # streams every particle of the big SR box once
        params:
            cfg=FIG_CFG,
            z=FIG56_Z,
        shell:
            "exec srsim figure fig5 --lr {input.lr} --sr {input.sr} --lr-fof {input.lr_fof} --sr-fof {input.sr_fof}"
            " --out {output.png} --config {params.cfg} > {log} 2>&1"

    rule fig6:
        input:
            lr=analysis_path("bigbox", "lr", FIG56_Z, "hmf.txt"),
            sr=analysis_path("bigbox", "sr0", FIG56_Z, "hmf.txt"),
            hr=analysis_path(FIG_SIM, "hr", FIG56_Z, "hmf.txt"),
        output:
            png=report(figure_path("fig6_bigbox_hmf"), caption="../report/fig6.rst", category="Figures"),
            pdf=figure_path("fig6_bigbox_hmf", "pdf"),
        log:
            log_path("figure", "fig6"),
        conda:
            "../../envs/analysis.yaml"
        params:
            cfg=FIG_CFG,
            z=FIG56_Z,
        shell:
            "exec srsim figure fig6 --lr {input.lr} --sr {input.sr} --hr {input.hr} --out {output.png}"
            " --config {params.cfg} > {log} 2>&1"


rule metrics:
    input:
        power_lr=[analysis_path(FIG_SIM, "lr", z, "power.txt") for z in ZS],
        power_hr=[analysis_path(FIG_SIM, "hr", z, "power.txt") for z in ZS],
        power_sr=[analysis_path(FIG_SIM, k, z, "power.txt") for z in ZS for k in FIG_SR],
        hmf_lr=[analysis_path(FIG_SIM, "lr", z, "hmf.txt") for z in ZS],
        hmf_hr=[analysis_path(FIG_SIM, "hr", z, "hmf.txt") for z in ZS],
        hmf_sr=[analysis_path(FIG_SIM, "sr", z, "hmf.txt") for z in ZS],
        power_trivial=[analysis_path(FIG_SIM, TRIVIAL, z, "power.txt") for z in ZS],
        hmf_trivial=[analysis_path(FIG_SIM, TRIVIAL, z, "hmf.txt") for z in ZS],
        # the big box's HMFs (none without one): SR vs LR above the LR limit, vs the test box's HR below it
        bigbox_hmf_lr=bigbox_hmf_paths("lr"),
        bigbox_hmf_sr=bigbox_hmf_paths("sr0"),
        # six-channel runs: the redshift-space multipoles, momentum power and the FOF catalogues (halo
        # velocity dispersions) (none otherwise)
        rsd_lr=velocity_paths("power_rsd.txt", ["lr"]),
        rsd_hr=velocity_paths("power_rsd.txt", ["hr"]),
        rsd_sr=velocity_paths("power_rsd.txt", FIG_SR),
        momentum_lr=velocity_paths("power_momentum.txt", ["lr"]),
        momentum_hr=velocity_paths("power_momentum.txt", ["hr"]),
        momentum_sr=velocity_paths("power_momentum.txt", FIG_SR),
        fof_lr=velocity_paths("fof.h5", ["lr"]),
        fof_hr=velocity_paths("fof.h5", ["hr"]),
        fof_sr=velocity_paths("fof.h5", FIG_SR),
    output:
        json=report(metrics_path("json"), caption="../report/metrics_json.rst", category="Metrics"),
        txt=report(metrics_path("txt"), caption="../report/metrics.rst", category="Metrics"),
    log:
        log_path("metrics", FIG_SIM),
    conda:
        "../../envs/analysis.yaml"
    params:
        cfg=FIG_CFG,
        sim=FIG_SIM,
        bigbox=metrics_bigbox_arg,
        velocity=metrics_velocity_arg,
    shell:
        # the summary table goes to the log and to the console (no exec: `cat` runs after srsim)
        "srsim metrics --power-lr {input.power_lr} --power-hr {input.power_hr} --power-sr {input.power_sr}"
        " --hmf-lr {input.hmf_lr} --hmf-hr {input.hmf_hr} --hmf-sr {input.hmf_sr} --sim {params.sim}"
        " --power-trivial {input.power_trivial} --hmf-trivial {input.hmf_trivial} {params.bigbox} {params.velocity}"
        " --out {output.json} --config {params.cfg} > {log} 2>&1 && cat {output.txt}"


if VELOCITY:

    rule fig_velocity:
        input:
            rsd_lr=velocity_paths("power_rsd.txt", ["lr"]),
            rsd_hr=velocity_paths("power_rsd.txt", ["hr"]),
            rsd_sr=velocity_paths("power_rsd.txt", FIG_SR),
            momentum_lr=velocity_paths("power_momentum.txt", ["lr"]),
            momentum_hr=velocity_paths("power_momentum.txt", ["hr"]),
            momentum_sr=velocity_paths("power_momentum.txt", FIG_SR),
        output:
            png=report(figure_path("fig7_velocity"), caption="../report/fig7.rst", category="Figures"),
            pdf=figure_path("fig7_velocity", "pdf"),
        log:
            log_path("figure", "fig7"),
        conda:
            "../../envs/analysis.yaml"
        params:
            cfg=FIG_CFG,
        shell:
            "exec srsim figure velocity --rsd-lr {input.rsd_lr} --rsd-hr {input.rsd_hr} --rsd-sr {input.rsd_sr}"
            " --momentum-lr {input.momentum_lr} --momentum-hr {input.momentum_hr}"
            " --momentum-sr {input.momentum_sr} --out {output.png} --config {params.cfg} > {log} 2>&1"


FIGURE_TARGETS = [
    figure_path(name, ext)
    for name in ["fig1_projections", "fig2_realizations", "fig3_power", "fig4_hmf"]
    + (["fig5_bigbox", "fig6_bigbox_hmf"] if FIG56_Z is not None else [])
    + (["fig7_velocity"] if VELOCITY else [])
    for ext in ("png", "pdf")
]
METRICS_TXT = metrics_path("txt")
# figures and metrics depend on every redshift: final targets of the whole run only
TARGETS["figures"] = lambda z=None: (
    FIGURE_TARGETS + [metrics_path("json"), METRICS_TXT] if z is None else []
)
