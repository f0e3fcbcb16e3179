# Snapshots -> displacement fields on the Lagrangian grid (HDF5), the model's input and target.


rule displacement:
    input:
        snapshot_dir("{sim}", "{kind}", "{z}"),
    output:
        disp_path("{sim}", "{kind}", "{z}"),
    log:
        log_path("displacement", "{sim}_{kind}_z{z}"),
    wildcard_constraints:
        kind="lr|hr",
    conda:
        "../../envs/sims.yaml"
    resources:
        runtime=30,
    params:
        # MP-Gadget's snapshots lack sigma8 and n_s, which training and generation need
        cfg=cfg_json("cosmology"),
        # six-channel models (model.channels: 6) also learn the peculiar velocity: keep it on the grid too
        velocity="--velocity" if config["model"]["channels"] == 6 else "",
    shell:
        "exec srsim displacement {input} {output} --config {params.cfg} {params.velocity} > {log} 2>&1"


TARGETS["displacement"] = displacement_targets
