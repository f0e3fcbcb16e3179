# Analysis: matter power spectrum (CIC, no deconvolution), FOF halos and the halo mass function of
# every LR, HR and SR snapshot at every redshift (paper Figs. 3, 4, 6). When analysis.fof_domains > 1
# the big box's FOF runs as partition jobs (particles filed by domain), one job per domain (with its
# ghost zone) and a merge; the merged catalogue equals the single-box one.

ANA_CFG = cfg_json("analysis")
ANA = config["analysis"]
ANA_DOMAINS = ANA["fof_domains"]
ANA_GPU = 1 if str(ANA["device"]).startswith("cuda") else 0
ANA_REALIZATIONS = list(range(config["generate"]["realizations"]))


def analysis_path(sim, kind, z, name):
    return f"{R}/analysis/{sim}/{kind}/z{z}/{name}"


def _particles_per_side(sim, kind):
    """Particles per side of a snapshot, for memory requests."""
    suite = config["suite"]
    factor = suite["n_hr"] // suite["n_lr"]
    if sim == "bigbox":
        n = config["bigbox"]["n_lr"]
        return n if kind == "lr" else n * factor
    return suite["n_lr"] if kind == "lr" else suite["n_hr"]


def _power_mem_mb(w):
    # float64 mesh + its complex FFT + one chunk of 2^22 particles
    n = ANA["power_mesh"]
    return int(2.2 * 8 * n**3 / 2**20) + 512


def _fof_mem_mb(w):
    # ~160 bytes per particle (positions, sorted copy, IDs, cell keys, union-find forest, labels)
    n = _particles_per_side(w.sim, w.kind)
    return int(160 * n**3 / 2**20) + 512


rule power:
    conda:
        "../../envs/analysis.yaml"
    input:
        f"{R}/snapshots/{{sim}}/{{kind}}/z{{z}}",
    output:
        f"{R}/analysis/{{sim}}/{{kind}}/z{{z}}/power.txt",
    wildcard_constraints:
        kind=r"lr|hr|sr\d+",
    params:
        cfg=ANA_CFG,
    log:
        log_path("power", "{sim}_{kind}_z{z}"),
    resources:
        gpu=ANA_GPU,
        mem_mb=_power_mem_mb,
        runtime=60,
    threads: 2
    shell:
        "exec srsim power {input} {output} --config {params.cfg} > {log} 2>&1"


rule fof:
    conda:
        "../../envs/analysis.yaml"
    input:
        f"{R}/snapshots/{{sim}}/{{kind}}/z{{z}}",
    output:
        f"{R}/analysis/{{sim}}/{{kind}}/z{{z}}/fof.h5",
    wildcard_constraints:
        # with domains the big box goes through fof_domain + fof_merge instead
        sim=r"(train|test)\d+" if ANA_DOMAINS > 1 else r"(train|test)\d+|bigbox",
        kind=r"lr|hr|sr\d+",
    params:
        cfg=ANA_CFG,
    log:
        log_path("fof", "{sim}_{kind}_z{z}"),
    resources:
        mem_mb=_fof_mem_mb,
        runtime=120,
    threads: 1
    shell:
        "exec srsim fof {input} {output} --config {params.cfg} > {log} 2>&1"


if BIGBOX and ANA_DOMAINS > 1:
    ANA_PARTS = ANA["fof_partition_jobs"]

    def _fof_domain_mem_mb(w):
        n = _particles_per_side("bigbox", w.kind)
        box = config["bigbox"]["box_size"]
        frac = min(1.0, (1.0 / ANA_DOMAINS + 2 * ANA["fof_ghost"] / box)) ** 3
        return int(200 * frac * n**3 / 2**20) + 1024

    def _partition_dirs(w):
        return [
            f"{R}/analysis/bigbox/{w.kind}/z{w.z}/fof_parts/p{p}of{ANA_PARTS}"
            for p in range(ANA_PARTS)
        ]

    # One streaming pass (split in ANA_PARTS slices) files each particle under the domains whose
    # region (domain + ghost zone) holds it, so a domain job reads only its own particles.
    rule fof_partition:
        conda:
            "../../envs/analysis.yaml"
        input:
            f"{R}/snapshots/bigbox/{{kind}}/z{{z}}",
        output:
            # as large as the snapshot (plus ghost copies): deleted once every domain job has read it
            temp(directory(f"{R}/analysis/bigbox/{{kind}}/z{{z}}/fof_parts/p{{p}}of{ANA_PARTS}")),
        wildcard_constraints:
            kind=r"lr|sr\d+",
            p=r"\d+",
        params:
            cfg=ANA_CFG,
        log:
            log_path("fof_partition", f"bigbox_{{kind}}_z{{z}}_p{{p}}of{ANA_PARTS}"),
        resources:
            mem_mb=2048,
            runtime=240,
        threads: 1
        shell:
            f"exec srsim fof-partition {{input}} {{output}} --part {{wildcards.p}} --n-parts {ANA_PARTS} "
            "--config {params.cfg} > {log} 2>&1"

    rule fof_domain:
        conda:
            "../../envs/analysis.yaml"
        input:
            snapshot=f"{R}/snapshots/bigbox/{{kind}}/z{{z}}",
            parts=_partition_dirs,
        output:
            f"{R}/analysis/bigbox/{{kind}}/z{{z}}/fof_domains/d{{d}}of{ANA_DOMAINS}.h5",
        wildcard_constraints:
            kind=r"lr|sr\d+",
            d=r"\d+",
        params:
            cfg=ANA_CFG,
        log:
            log_path("fof_domain", f"bigbox_{{kind}}_z{{z}}_d{{d}}of{ANA_DOMAINS}"),
        resources:
            mem_mb=_fof_domain_mem_mb,
            runtime=240,
        threads: 1
        shell:
            "exec srsim fof-domain {input.snapshot} {output} --domain {wildcards.d} --parts {input.parts} "
            "--config {params.cfg} > {log} 2>&1"

    rule fof_merge:
        conda:
            "../../envs/analysis.yaml"
        input:
            [
                f"{R}/analysis/bigbox/{{kind}}/z{{z}}/fof_domains/d{d}of{ANA_DOMAINS}.h5"
                for d in range(ANA_DOMAINS**3)
            ],
        output:
            f"{R}/analysis/bigbox/{{kind}}/z{{z}}/fof.h5",
        wildcard_constraints:
            kind=r"lr|sr\d+",
        log:
            log_path("fof_merge", "bigbox_{kind}_z{z}"),
        resources:
            runtime=30,
        shell:
            "exec srsim fof-merge {input} {output} > {log} 2>&1"


rule hmf:
    conda:
        "../../envs/analysis.yaml"
    input:
        f"{R}/analysis/{{sim}}/{{kind}}/z{{z}}/fof.h5",
    output:
        f"{R}/analysis/{{sim}}/{{kind}}/z{{z}}/hmf.txt",
    wildcard_constraints:
        kind=r"lr|hr|sr\d+",
    params:
        cfg=ANA_CFG,
    log:
        log_path("hmf", "{sim}_{kind}_z{z}"),
    resources:
        runtime=10,
    shell:
        "exec srsim hmf {input} {output} --config {params.cfg} > {log} 2>&1"


# One mass function from all SR realizations of a test box (kind "sr", no number).
rule hmf_sr:
    conda:
        "../../envs/analysis.yaml"
    input:
        [f"{R}/analysis/{{sim}}/sr{r}/z{{z}}/fof.h5" for r in ANA_REALIZATIONS],
    output:
        f"{R}/analysis/{{sim}}/sr/z{{z}}/hmf.txt",
    wildcard_constraints:
        sim=r"test\d+",
    params:
        cfg=ANA_CFG,
    log:
        log_path("hmf_sr", "{sim}_z{z}"),
    resources:
        runtime=10,
    shell:
        "exec srsim hmf {input} {output} --config {params.cfg} > {log} 2>&1"


def analysis_targets(z=None):
    """Every analysis output at redshift z (None: all redshifts)."""
    out = []
    for zz in _select(ZS, z):
        for sim in PAIRS:
            for kind in ("lr", "hr"):
                out += [analysis_path(sim, kind, zz, f) for f in ("power.txt", "fof.h5", "hmf.txt")]
        for sim in TEST:
            for r in ANA_REALIZATIONS:
                out += [analysis_path(sim, f"sr{r}", zz, f) for f in ("power.txt", "fof.h5", "hmf.txt")]
            out.append(analysis_path(sim, "sr", zz, "hmf.txt"))
    for zz in _select(BIGBOX_ZS, z):
        for kind in ("lr", "sr0"):
            out += [analysis_path("bigbox", kind, zz, f) for f in ("power.txt", "fof.h5", "hmf.txt")]
    return out


ANALYSIS_TARGETS = analysis_targets()
TARGETS["analysis"] = analysis_targets
