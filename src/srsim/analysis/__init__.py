"""Summary statistics of snapshots: matter power spectrum (real and redshift space, momentum), friends-of-friends halos, halo mass function.

Modules
-------
power   CIC painting (chunked; NumPy/numba on CPU, PyTorch on GPU), P(k) and Delta^2(k) tables
velocity_power  redshift-space multipoles P0, P2, P4 and the momentum power spectrum (NumPy/numba)
fof     friends-of-friends groups (numba cell lists + union-find), halo catalogues in HDF5
domains domain decomposition with ghost zones for boxes too large for one node, and the merge
hmf     halo mass function dn/dlog10M with Poisson errors, for one or several catalogues
"""

