# Analysis: matter power spectrum (CIC, no deconvolution), FOF halos and the halo mass function of
# every LR, HR and SR snapshot at every redshift (paper Figs. 3, 4, 6). When analysis.fof_domains > 1
# the big box's FOF runs as partition jobs (particles filed by domain), one job per domain (with its
# ghost zone) and a merge; the merged catalogue equals the single-box one. With analysis.engine nbodykit
# every P(k) and FOF job is one MPI job (analysis.nbodykit.ntasks ranks), the big box's FOF included.

ANA_CFG = cfg_json("analysis")
# the P(k) and FOF jobs' conda environment: nbodykit's (MPI) for analysis.engine nbodykit
ANA_ENV = "../../envs/nbodykit.yaml" if ANA_MPI else "../../envs/analysis.yaml"
ANA_GPU = 1 if str(ANA["device"]).startswith("cuda") else 0


rule power:
    input:
        snapshot_dir("{sim}", "{kind}", "{z}"),
    output:
        analysis_path("{sim}", "{kind}", "{z}", "power.txt"),
    log:
        log_path("power", "{sim}_{kind}_z{z}"),
    wildcard_constraints:
        kind=r"lr|hr|sr\d+|trivial",
    conda:
        ANA_ENV
    threads: 1 if ANA_MPI else 2
    resources:
        gpu=0 if ANA_MPI else ANA_GPU,
        mpi=ANA_MPI,
        tasks=ana_tasks,
        mem_mb=power_mem_mb,
        runtime=60,
    params:
        cfg=ANA_CFG,
        launch=ana_launch,
    shell:
        "exec {params.launch} srsim power {input} {output} --config {params.cfg} > {log} 2>&1"


if VELOCITY:

    # Redshift-space multipoles (along analysis.rsd_axis) and the momentum power of every test-box snapshot
    # with velocities: LR, HR and the six-channel SR (the trivial predictor has none). srsim's own engine:
    # nbodykit's does not compute them.
    rule power_velocity:
        input:
            snapshot_dir("{sim}", "{kind}", "{z}"),
        output:
            analysis_path("{sim}", "{kind}", "{z}", "power_{stat}.txt"),
        log:
            log_path("power_{stat}", "{sim}_{kind}_z{z}"),
        wildcard_constraints:
            kind=r"lr|hr|sr\d+",
            stat="rsd|momentum",
        conda:
            "../../envs/analysis.yaml"
        threads: 2
        resources:
            gpu=ANA_GPU,
            mem_mb=power_mem_mb,
            runtime=60,
        params:
            cfg=ANA_CFG,
            stat=lambda w: f"--rsd {ANA['rsd_axis']}" if w.stat == "rsd" else "--momentum",
        shell:
            "exec srsim power {input} {output} --config {params.cfg} --engine srsim {params.stat} > {log} 2>&1"


rule fof:
    input:
        snapshot_dir("{sim}", "{kind}", "{z}"),
    output:
        analysis_path("{sim}", "{kind}", "{z}", "fof.h5"),
    log:
        log_path("fof", "{sim}_{kind}_z{z}"),
    wildcard_constraints:
        # with domains the big box goes through fof_domain + fof_merge instead
        sim=r"(train|test)\d+" if FOF_IN_DOMAINS else r"(train|test)\d+|bigbox",
        kind=r"lr|hr|sr\d+|trivial",
    conda:
        ANA_ENV
    threads: 1
    resources:
        mpi=ANA_MPI,
        tasks=ana_tasks,
        mem_mb=fof_mem_mb,
        runtime=120,
    params:
        cfg=ANA_CFG,
        launch=ana_launch,
    shell:
        "exec {params.launch} srsim fof {input} {output} --config {params.cfg} > {log} 2>&1"


if FOF_IN_DOMAINS:

    # One streaming pass (split in ANA_PARTS slices) files each particle under the domains whose
    # region (domain + ghost zone) holds it, so a domain job reads only its own particles.
    rule fof_partition:
        input:
            snapshot_dir("bigbox", "{kind}", "{z}"),
        output:
            # as large as the snapshot (plus ghost copies): deleted once the merge has run
            temp(directory(fof_part_dir("{kind}", "{z}", "{p}"))),
        log:
            log_path("fof_partition", f"bigbox_{{kind}}_z{{z}}_p{{p}}of{ANA_PARTS}"),
        wildcard_constraints:
            kind=r"lr|sr\d+",
            p=r"\d+",
        conda:
            "../../envs/analysis.yaml"
        threads: 1
        resources:
            mem_mb=2048,
            runtime=240,
        params:
            cfg=ANA_CFG,
        shell:
            f"exec srsim fof-partition {{input}} {{output}} --part {{wildcards.p}} --n-parts {ANA_PARTS} "
            "--config {params.cfg} > {log} 2>&1"

    # The domain jobs read the slices through one checked index: D domains x P slices would otherwise be
    # D * P dependencies (192,000 for the paper), which dominated the time Snakemake took to build the DAG.
    rule fof_partition_index:
        input:
            fof_part_dirs,
        output:
            fof_part_index("{kind}", "{z}"),
        log:
            log_path("fof_partition", "bigbox_{kind}_z{z}_index"),
        wildcard_constraints:
            kind=r"lr|sr\d+",
        conda:
            "../../envs/analysis.yaml"
        resources:
            runtime=10,
        shell:
            "exec srsim fof-partition-index {input} {output} > {log} 2>&1"

    rule fof_domain:
        input:
            snapshot=snapshot_dir("bigbox", "{kind}", "{z}"),
            index=fof_part_index("{kind}", "{z}"),
        output:
            fof_domain_catalog("{kind}", "{z}", "{d}"),
        log:
            log_path("fof_domain", f"bigbox_{{kind}}_z{{z}}_d{{d}}of{ANA_DOMAINS}"),
        wildcard_constraints:
            kind=r"lr|sr\d+",
            d=r"\d+",
        conda:
            "../../envs/analysis.yaml"
        threads: 1
        resources:
            mem_mb=fof_domain_mem_mb,
            runtime=240,
        params:
            cfg=ANA_CFG,
        shell:
            "exec srsim fof-domain {input.snapshot} {output} --domain {wildcards.d} --index {input.index} "
            "--config {params.cfg} > {log} 2>&1"

    rule fof_merge:
        input:
            catalogs=[fof_domain_catalog("{kind}", "{z}", d) for d in range(ANA_DOMAINS**3)],
            # the slices the domain jobs read: listed here so that they are deleted (temp) only after the
            # last domain job, which the merge follows
            parts=fof_part_dirs,
        output:
            analysis_path("bigbox", "{kind}", "{z}", "fof.h5"),
        log:
            log_path("fof_merge", "bigbox_{kind}_z{z}"),
        wildcard_constraints:
            kind=r"lr|sr\d+",
        conda:
            "../../envs/analysis.yaml"
        resources:
            runtime=30,
        shell:
            "exec srsim fof-merge {input.catalogs} {output} > {log} 2>&1"


rule hmf:
    input:
        analysis_path("{sim}", "{kind}", "{z}", "fof.h5"),
    output:
        analysis_path("{sim}", "{kind}", "{z}", "hmf.txt"),
    log:
        log_path("hmf", "{sim}_{kind}_z{z}"),
    wildcard_constraints:
        kind=r"lr|hr|sr\d+|trivial",
    conda:
        "../../envs/analysis.yaml"
    resources:
        runtime=10,
    params:
        cfg=ANA_CFG,
    shell:
        "exec srsim hmf {input} {output} --config {params.cfg} > {log} 2>&1"


# One mass function from all SR realizations of a test box (kind "sr", no number).
rule hmf_sr:
    input:
        [analysis_path("{sim}", kind, "{z}", "fof.h5") for kind in SR_KINDS],
    output:
        analysis_path("{sim}", "sr", "{z}", "hmf.txt"),
    log:
        log_path("hmf_sr", "{sim}_z{z}"),
    wildcard_constraints:
        sim=r"test\d+",
    conda:
        "../../envs/analysis.yaml"
    resources:
        runtime=10,
    params:
        cfg=ANA_CFG,
    shell:
        "exec srsim hmf {input} {output} --config {params.cfg} > {log} 2>&1"


TARGETS["analysis"] = analysis_targets
