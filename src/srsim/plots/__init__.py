"""The paper's figures (Figs. 1-6) from snapshots, halo catalogues, power spectra and mass functions.

Modules
-------
projection  streamed density projections of slabs and zoom boxes: CIC, adaptive Gaussian smoothing,
            FOF members highlighted (member IDs, local FOF or halo centres)
slices      Fig. 1 (LR / HR / SR slab and zooms at z = 0) and Fig. 2 (HR and SR realizations of one LR)
power       Fig. 3 (Delta^2(k) with ratio panels)
hmf         Fig. 4 (mass functions per redshift) and Fig. 6 (big box vs small HR box)
bigbox      Fig. 5 (big-box SR slice, LR inset, zoom on the most massive halo)
tables      power and HMF tables as `Table` items, grouped and matched by redshift
figures     one function per figure: input paths + the `figures` config section -> PNG + PDF
curve       the training curve of `srsim train` (losses and validation scores vs step)
common      Agg backend, colours, atomic PNG + PDF output
"""

