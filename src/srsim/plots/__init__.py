"""The paper's figures (Figs. 1-6) from snapshots, halo catalogues, power spectra and mass functions.

Modules
-------
projection  streamed density projections of slabs and zoom boxes: CIC, adaptive Gaussian smoothing,
            FOF members highlighted (member IDs, local FOF or halo centres)
slices      Fig. 1 (LR / HR / SR slab and zooms at z = 0) and Fig. 2 (HR and SR realizations of one LR)
power       Fig. 3 (Delta^2(k) with ratio panels)
hmf         Fig. 4 (mass functions per redshift) and Fig. 6 (big box vs small HR box)
bigbox      Fig. 5 (big-box SR slice, LR inset, zoom on the most massive halo)
tables      readers of the power and HMF text tables
common      Agg backend, colours, atomic PNG + PDF output
"""


def figure_settings(config_arg: str | None) -> dict:
    """The ``figures`` config section (defaults filled) from a subcommand's ``--config`` value, or defaults."""
    from srsim.config import parse_config_arg, validate_sections

    cfg = parse_config_arg(config_arg) if config_arg else {}
    if "figures" in cfg:
        return cfg["figures"]
    return validate_sections({"figures": {}}, "defaults")["figures"]
