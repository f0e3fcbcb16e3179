# Snapshots -> displacement fields on the Lagrangian grid (HDF5), the model's input and target.


def disp_path(sim, kind, z):
    return f"{R}/disp/{sim}/{kind}/z{z}.h5"


rule displacement:
    conda:
        "../../envs/sims.yaml"
    input:
        f"{R}/snapshots/{{sim}}/{{kind}}/z{{z}}",
    output:
        f"{R}/disp/{{sim}}/{{kind}}/z{{z}}.h5",
    wildcard_constraints:
        kind="lr|hr",
    log:
        log_path("displacement", "{sim}_{kind}_z{z}"),
    resources:
        runtime=30,
    shell:
        "exec srsim displacement {input} {output} > {log} 2>&1"


def displacement_targets(z=None):
    out = [disp_path(p, k, zz) for p in PAIRS for k in ("lr", "hr") for zz in _select(ZS, z)]
    out += [disp_path("bigbox", "lr", zz) for zz in _select(BIGBOX_ZS, z)]
    return out


TARGETS["displacement"] = displacement_targets
