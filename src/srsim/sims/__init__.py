"""N-body simulation backends (embedded PM, MP-Gadget) and the LR/HR suite they run."""
