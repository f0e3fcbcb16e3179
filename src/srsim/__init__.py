"""srsim: super-resolution N-body simulations (Li, Ni et al.), as a library and a Snakemake workflow."""

__version__ = "0.1.0"
