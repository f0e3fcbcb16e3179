"""Summary statistics of snapshots: matter power spectrum, friends-of-friends halos, halo mass function.

Modules
-------
power   CIC painting (chunked; NumPy/numba on CPU, PyTorch on GPU), P(k) and Delta^2(k) tables
fof     friends-of-friends groups (numba cell lists + union-find), halo catalogues in HDF5
domains domain decomposition with ghost zones for boxes too large for one node, and the merge
hmf     halo mass function dn/dlog10M with Poisson errors, for one or several catalogues
"""


def analysis_settings(config_arg: str | None) -> dict:
    """The ``analysis`` config section (defaults filled) from a subcommand's ``--config`` value, or defaults."""
    from srsim.config import parse_config_arg, validate_sections

    cfg = parse_config_arg(config_arg) if config_arg else {}
    if "analysis" in cfg:
        return cfg["analysis"]
    return validate_sections({"analysis": {}}, "defaults")["analysis"]
