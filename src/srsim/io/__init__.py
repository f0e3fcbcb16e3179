"""File formats: bigfile snapshots (MP-Gadget layout) and HDF5 displacement fields."""
